"""``soco bench localisation`` and ``soco bench tracking``: finding and following the live object (segmentation)."""
from __future__ import annotations

import argparse

from .common import add_model_options


def add_bench_parsers(bench) -> None:
    loc = bench.add_parser("localisation", help="live-mask IoU among distractors: each mask source's own rule vs "
                                                "prompted by correspondence localisation")
    add_model_options(loc, "daisy")
    loc.add_argument("--trials", type=int, default=40)
    loc.add_argument("--size", type=int, default=448, help="frame and network input size in px")
    loc.add_argument("--distractors", type=int, default=2, help="other objects in the live view (one of them "
                                                                "another instance of the target's category)")
    loc.add_argument("--max-rotation", type=float, default=30.0,
                     help="live camera azimuth within +-DEG of the demo's")
    loc.add_argument("--absent-fraction", type=float, default=0.2,
                     help="share of trials whose live view shows only the distractors")
    loc.add_argument("--sources", nargs="+", default=["depth", "grabcut"], choices=("depth", "grabcut"))
    loc.add_argument("--seed", type=int, default=0)
    loc.add_argument("--out", default="bench_out/localisation")
    loc.set_defaults(handler=run_localisation)


def run_localisation(args: argparse.Namespace) -> int:
    from ..api import Matcher
    from ..benchmarks.localisation import LocalisationBenchConfig, run_localisation_benchmark

    matcher = Matcher.create(args.backbone, weights=args.weights, random_weights=args.random_weights, size=args.size,
                             cache_size=2)
    config = LocalisationBenchConfig(trials=args.trials, size=args.size, distractors=args.distractors,
                                     max_rotation_deg=args.max_rotation, absent_fraction=args.absent_fraction,
                                     sources=tuple(args.sources), seed=args.seed)
    result = run_localisation_benchmark(matcher, config, args.out)
    print(result["markdown"])
    print(f"wrote {args.out}/localisation.json, localisation.md and localisation_iou.png")
    return 0
