"""``soco bench umd``: the UMD-i one-shot affordance-transfer benchmark (AffCorrs protocol).

The command lives under the ``bench`` group: ``bench_cmd.add_parser`` calls :func:`add_bench_parser` on its
sub-parsers. :func:`add_parser` adds no top-level command; it exists so this module can sit in
``cli.COMMANDS`` like every other command module.
"""
from __future__ import annotations

import argparse

from .common import add_model_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    """No top-level command (``umd`` is registered under ``soco bench``)."""
    return None


def add_bench_parser(bench: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..benchmarks.umd import LABEL_RULES, METHODS, TRANSFER_MODES

    umd = bench.add_parser("umd", help="UMD-i one-shot affordance transfer: per-affordance IoU / weighted F, "
                                       "intra- and inter-class, with chance and whole-mask floors")
    umd.add_argument("--root", required=True, help="UMD_i.zip as released, or its extracted folder")
    add_model_options(umd, "dinov2_vits14")
    umd.add_argument("--size", type=int, default=224, help="image size in px the backbone sees (default: %(default)s)")
    umd.add_argument("--mode", default="cell", choices=TRANSFER_MODES,
                     help="cell: each target pixel takes its cell's match; pixel: bilinear descriptor per pixel")
    umd.add_argument("--labels", default="primary", choices=LABEL_RULES,
                     help="primary: rank == 1 (UMD part regions); ranked: any rank 1..8 (default: %(default)s)")
    umd.add_argument("--methods", default=",".join(METHODS),
                     help="comma-separated subset of: " + ", ".join(METHODS) + " (default: all)")
    umd.add_argument("--classes", default="", help="comma-separated classes to keep (default: all)")
    umd.add_argument("--max-pairs", type=int, default=0,
                     help="at most N pairs per (setting, affordance), seeded sample; 0 = all (default)")
    umd.add_argument("--seed", type=int, default=0, help="seed of the pair sample and the chance row")
    umd.add_argument("--device", default="cpu")
    umd.add_argument("--no-progress", action="store_true", help="no progress bars")
    umd.add_argument("--out", default="bench_out/umd")
    umd.set_defaults(handler=run_umd)
    return umd


def run_umd(args: argparse.Namespace) -> int:
    from ..backbones import create_backbone
    from ..benchmarks.umd import run_umd_benchmark
    from ..errors import ConfigError
    from ..features import ExtractionSettings, FeatureExtractor
    from ..preprocessing import PreprocessSettings

    split = lambda text: tuple(filter(None, (t.strip() for t in text.split(","))))  # noqa: E731
    methods = split(args.methods)
    if not methods:
        raise ConfigError("--methods is empty")
    if args.max_pairs < 0:
        raise ConfigError(f"--max-pairs must be >= 0, got {args.max_pairs}")
    extractor = None
    if "transfer" in methods:
        backbone = create_backbone(args.backbone, weights=args.weights, random_init=args.random_weights)
        extractor = FeatureExtractor(backbone, ExtractionSettings(preprocess=PreprocessSettings(size=args.size)),
                                     device=args.device, cache_size=0)
    result = run_umd_benchmark(args.root, extractor, args.out, methods=methods, label_rule=args.labels,
                               mode=args.mode, max_pairs=args.max_pairs or None, seed=args.seed,
                               classes=split(args.classes) or None, progress=not args.no_progress)
    print(result["markdown"])
    timing = result["timing"]
    print(f"{timing['ordered_pairs']} ordered pairs ({timing['pair_affordance_evaluations']} pair-affordance "
          f"evaluations), {timing['images_encoded']} images encoded once each, {timing['wall_seconds']:.1f} s")
    paths = result["paths"]
    print(f"wrote {paths['json']}, {paths['markdown']}" + (f" and {paths['plot']}" if paths["plot"] else ""))
    return 0
