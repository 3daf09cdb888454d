"""``soco synth soco|handal|functional``: datasets from the procedural world, in the real formats."""
from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("synth", help="generate datasets from the procedural RGB-D world",
                            description="Render procedural objects with exact ground truth and write them in the SOCO, "
                                        "HANDAL (BOP) or functional-training layout.")
    parser.add_argument("format", choices=("soco", "handal", "functional", "sheet"),
                        help="dataset layout, or 'sheet': a contact-sheet PNG (--out FILE.png) of every category")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--categories", default="", help="comma-separated categories (default: all; see --list)")
    parser.add_argument("--views", type=int, default=20,
                        help="soco: images per category; handal: frames per scene; functional: pairs per function")
    parser.add_argument("--instances", type=int, default=3, help="handal/functional: instances per category")
    parser.add_argument("--pairs-per-category", type=int, default=40)
    parser.add_argument("--cross-pairs", type=int, default=20, help="soco: pairs per cross-category group")
    parser.add_argument("--size", type=int, default=256, help="image side in px (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--non-square", action="store_true",
                        help="soco: every image its own W x H (long side --size, short side 55-100 %%), to exercise "
                             "the padding and the reference's coordinate truncation")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..world.synth import SYNTHESISERS, SynthConfig

    if args.views < 1 or args.size < 32:
        raise ConfigError("--views must be >= 1 and --size >= 32")
    config = SynthConfig(out=args.out, categories=tuple(filter(None, args.categories.split(","))), views=args.views,
                         seed=args.seed, size=args.size, pairs_per_category=args.pairs_per_category,
                         cross_pairs_per_group=args.cross_pairs, instances=args.instances,
                         progress=not args.no_progress, non_square=args.non_square)
    counts = SYNTHESISERS[args.format](config)
    print(json.dumps(counts))
    print(f"wrote a {args.format} dataset to {args.out}")
    return 0
