"""``soco`` command line. Each sub-command lives in its own module with ``add_parser`` and ``run``.

Exit codes: 0 success, 1 bad input or settings, 2 something missing from the environment (weights,
optional packages, a GPU).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import SocoError
from .. import plugins
from . import (backbones_cmd, bench_cmd, convert_cmd, demo_cmd, match_cmd, synth_cmd, train_cmd, transfer_cmd,
               umd_cmd)

COMMANDS = (match_cmd, transfer_cmd, demo_cmd, backbones_cmd, bench_cmd, synth_cmd, train_cmd, umd_cmd, convert_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soco", description="Semantic and functional correspondence transfer.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Sub-commands of optional packages built on the core (``soco export`` from export/), via entry points.
    for module in COMMANDS + tuple(plugins.load_all(plugins.CLI_GROUP)):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_device_args(args)
        return int(args.handler(args) or 0)
    except SocoError as exc:
        print(f"soco {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def check_device_args(args: argparse.Namespace) -> None:
    """Every sub-command's ``--device`` is checked before any work: a missing GPU is one sentence, not a CUDA
    traceback halfway through a benchmark."""
    from ..device import resolve_device
    from ..errors import DeviceError
    if getattr(args, "device", None) is None:
        return
    device = resolve_device(args.device)
    if getattr(args, "cuda_graphs", False) and device.type != "cuda":
        raise DeviceError("--cuda-graphs needs a CUDA device; add --device cuda (or drop --cuda-graphs)")


if __name__ == "__main__":
    sys.exit(main())
