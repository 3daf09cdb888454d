"""Options shared by several sub-commands (backbone choice, extraction settings)."""
from __future__ import annotations

import argparse

from ..coords import Convention
from ..preprocessing import PadPolicy, SizePolicy


def add_backbone_options(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    group = parser.add_argument_group("backbone")
    add_model_options(group, default)
    add_device_options(group)


def add_model_options(group, default: str = "auto") -> None:
    """``--backbone``, ``--weights``, ``--random-weights``: one wording in every sub-command."""
    group.add_argument("--backbone", default=default,
                       help="registry name (see `soco backbones`) or 'auto': DINOv2 ViT-S/14 when its weights "
                            "resolve, else the weight-free 'daisy' backbone (default: %(default)s)")
    group.add_argument("--weights", default=None, help="explicit checkpoint path (official or timm key layout)")
    group.add_argument("--random-weights", action="store_true",
                       help="use seeded random weights instead of pretrained ones (tests, latency and export checks)")


def add_device_options(group) -> None:
    """``--device``, ``--dtype`` / ``--fp16``, ``--compile``, ``--cuda-graphs`` (checked by the CLI's entry point)."""
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda or cuda:1 (default: %(default)s)")
    group.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"),
                       help="backbone precision of the torch runtime; auto: bf16 on a CPU with native bf16 once "
                            "verified on these weights, else float32 (default: %(default)s)")
    group.add_argument("--fp16", action="store_const", const="float16", dest="dtype",
                       help="half precision (CUDA): the same as --dtype float16")
    group.add_argument("--compile", action="store_true", help="run the backbone through torch.compile")
    group.add_argument("--cuda-graphs", action="store_true",
                       help="capture the backbone as a CUDA graph at start-up and replay it per frame; preprocessing "
                            "runs on the GPU too (CUDA only; the fastest torch path at batch 1)")


def torch_runtime_options(args) -> dict:
    """The torch runtime's options from the parsed device flags (for ``Matcher.create(runtime=...)``)."""
    return {"name": "torch", "compile": bool(getattr(args, "compile", False)),
            "cuda_graphs": bool(getattr(args, "cuda_graphs", False))}


def add_extraction_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("feature extraction")
    group.add_argument("--size", type=int, default=None,
                       help="target image size in px (or patches with --size-policy fixed-grid); default: backbone's")
    group.add_argument("--pad", default=PadPolicy.PAD_TOPLEFT_WHITE.value, choices=[p.value for p in PadPolicy])
    group.add_argument("--size-policy", default=SizePolicy.NEAREST_MULTIPLE.value, choices=[p.value for p in SizePolicy])
    group.add_argument("--convention", default=Convention.PATCH_CENTER.value, choices=[c.value for c in Convention],
                       help="pixel <-> grid convention (soco reproduces the reference implementation)")
