"""Options shared by several sub-commands (backbone choice, extraction settings)."""
from __future__ import annotations

import argparse

from ..coords import Convention
from ..preprocessing import PadPolicy, SizePolicy


def add_backbone_options(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    group = parser.add_argument_group("backbone")
    group.add_argument("--backbone", default=default,
                       help="registry name (see `soco backbones`) or 'auto': DINOv2 ViT-S/14 when its weights "
                            "resolve, else the weight-free 'daisy' backbone (default: %(default)s)")
    group.add_argument("--weights", default=None, help="explicit checkpoint path (official or timm key layout)")
    group.add_argument("--random-weights", action="store_true",
                       help="use seeded random weights instead of pretrained ones (latency/export checks)")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: %(default)s)")
    group.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))


def add_extraction_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("feature extraction")
    group.add_argument("--size", type=int, default=None,
                       help="target image size in px (or patches with --size-policy fixed-grid); default: backbone's")
    group.add_argument("--pad", default=PadPolicy.PAD_TOPLEFT_WHITE.value, choices=[p.value for p in PadPolicy])
    group.add_argument("--size-policy", default=SizePolicy.NEAREST_MULTIPLE.value, choices=[p.value for p in SizePolicy])
    group.add_argument("--convention", default=Convention.PATCH_CENTER.value, choices=[c.value for c in Convention],
                       help="pixel <-> grid convention (soco reproduces the reference implementation)")
