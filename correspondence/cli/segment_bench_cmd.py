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
    loc.add_argument("--no-rigid", action="store_true",
                     help="localise with 2D votes only (no rigid 3D check with both views' depth)")
    loc.add_argument("--no-gravity", action="store_true",
                     help="do not give localisation the vertical (no height / footprint / colour rule 6)")
    loc.add_argument("--seed", type=int, default=0)
    loc.add_argument("--out", default="bench_out/localisation")
    loc.set_defaults(handler=run_localisation)

    track = bench.add_parser("tracking", help="per-frame cost of a stream with the live mask tracked, vs segmented "
                                              "every frame and vs the backbone alone")
    add_model_options(track, "dinov2_vits14")
    track.add_argument("--mask-source", default="sam2", choices=("sam2", "depth", "grabcut"))
    track.add_argument("--sam2-model", default="tiny", choices=("tiny", "small", "base_plus", "large"))
    track.add_argument("--sam2-random-weights", action="store_true",
                       help="random-init SAM 2 (timing only: its masks are meaningless)")
    track.add_argument("--sam2-image-size", type=int, default=1024,
                       help="SAM 2's encoder input side, a multiple of 32 (default: %(default)s, the trained size; "
                            "smaller is faster on small frames, mask quality untested with real weights)")
    track.add_argument("--frames", type=int, default=30)
    track.add_argument("--size", type=int, default=448, help="frame and network input size in px")
    track.add_argument("--every", type=int, default=30, help="full segmentation at least every N frames")
    track.add_argument("--baseline-frames", type=int, default=5,
                       help="frames also run segmenting every frame (each is an image-encoder pass)")
    track.add_argument("--seed", type=int, default=0)
    track.add_argument("--yaw-step", type=float, default=1.5, help="deg the object turns per frame")
    track.add_argument("--demo-views", type=int, default=1, metavar="K",
                       help="a demo recorded from K sides (the object turned by 360/K); with K > 1 the stream also "
                            "runs without the view schedule (every view localises every frame), alternately")
    track.add_argument("--out", default="bench_out/tracking")
    track.set_defaults(handler=run_tracking)


def run_localisation(args: argparse.Namespace) -> int:
    from ..api import Matcher
    from ..benchmarks.localisation import LocalisationBenchConfig, run_localisation_benchmark

    matcher = Matcher.create(args.backbone, weights=args.weights, random_weights=args.random_weights, size=args.size,
                             cache_size=2)
    config = LocalisationBenchConfig(trials=args.trials, size=args.size, distractors=args.distractors,
                                     max_rotation_deg=args.max_rotation, absent_fraction=args.absent_fraction,
                                     sources=tuple(args.sources), seed=args.seed, rigid=not args.no_rigid,
                                     gravity=not args.no_gravity)
    result = run_localisation_benchmark(matcher, config, args.out)
    print(result["markdown"])
    print(f"wrote {args.out}/localisation.json, localisation.md and localisation_iou.png")
    return 0


def run_tracking(args: argparse.Namespace) -> int:
    from ..api import Matcher
    from ..benchmarks.tracking import TrackingBenchConfig, run_tracking_benchmark
    from ..segmentation import DepthForeground, GrabCutBox

    matcher = Matcher.create(args.backbone, weights=args.weights, random_weights=args.random_weights, size=args.size,
                             cache_size=2)
    if args.mask_source == "sam2":
        from ..sam2_source import Sam2MaskSource
        source = Sam2MaskSource.create(args.sam2_model, random_init=args.sam2_random_weights,
                                       image_size=args.sam2_image_size)
        name = f"SAM 2.1 {args.sam2_model} at {source.image_size} px" + (" (random weights)"
                                                                           if args.sam2_random_weights else "")
    else:
        source, name = (DepthForeground((0.05, 5.0)), "depth") if args.mask_source == "depth" else (GrabCutBox(),
                                                                                                   "grabcut")
    config = TrackingBenchConfig(frames=args.frames, size=args.size, every=args.every,
                                 baseline_frames=args.baseline_frames, seed=args.seed, yaw_step_deg=args.yaw_step,
                                 demo_views=args.demo_views)
    result = run_tracking_benchmark(matcher, source, name, config, args.out)
    print(result["markdown"])
    print(f"wrote {args.out}/tracking.json, tracking.md and tracking_frames.png")
    return 0
