"""``soco match``: transfer named keypoints from a demo image to a live image."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_backbone_options, add_extraction_options, torch_runtime_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("match", help="find the demo's keypoints in a live image",
                            description="Find the demo's named keypoints in a live image; writes matches.json "
                                        "and overlay.png.")
    parser.add_argument("--demo", required=True, help="demo image")
    parser.add_argument("--demo-keypoints", required=True, help="JSON with {keypoints: [{name, xy}, ...]}")
    parser.add_argument("--live", required=True, help="live image")
    parser.add_argument("--live-mask", default=None, help="object mask of the live image (non-zero = object)")
    parser.add_argument("--demo-mask", default=None, help="object mask of the demo image (for the cycle check)")
    parser.add_argument("--method", default="argmax", choices=("argmax", "soft-argmax"))
    parser.add_argument("--window", type=int, default=7,
                        help="soft-argmax half-width in cells: a (2w+1)^2 window (default: %(default)s, as SOCO)")
    parser.add_argument("--beta", type=float, default=0.02, help="soft-argmax temperature (default: %(default)s)")
    parser.add_argument("--out", default="match_out", help="output folder (default: %(default)s)")
    add_backbone_options(parser)
    add_extraction_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..api import Matcher, as_image, as_keypoints, as_mask
    from ..io import write_json
    from ..viz import match_overlay, save

    demo, live = as_image(args.demo), as_image(args.live)
    keypoints = as_keypoints(args.demo_keypoints)
    live_mask = as_mask(args.live_mask)
    matcher = Matcher.create(args.backbone, weights=args.weights, random_weights=args.random_weights, size=args.size,
                             pad=args.pad, size_policy=args.size_policy, convention=args.convention,
                             device=args.device, dtype=args.dtype, method=args.method, window=args.window,
                             beta=args.beta, runtime=torch_runtime_options(args))
    result = matcher(demo, keypoints, live, live_mask=live_mask, demo_mask=as_mask(args.demo_mask))
    out = Path(args.out)
    record = {"demo": str(args.demo), "live": str(args.live), "demo_keypoints": str(args.demo_keypoints),
              **result.as_dict()}
    write_json(out / "matches.json", record)
    backbone = result.settings["backbone"]
    title = f"{backbone['name']} ({backbone['weights']}) | {result.settings['matching']['method']}"
    overlay = match_overlay(demo, live, keypoints.xy, result.live_xy, [m.name for m in result.matches],
                            [m.accepted for m in result.matches], title=title, live_mask=live_mask)
    save(overlay, out / "overlay.png")
    print(f"backbone: {backbone['name']} ({backbone['weights']}), image size {result.settings['effective_image_size']},"
          f" grid {result.settings['grid']}")
    for m in result.matches:
        print(f"  {m.name:24s} demo ({m.demo_xy[0]:7.1f}, {m.demo_xy[1]:7.1f}) -> live ({m.live_xy[0]:7.1f}, "
              f"{m.live_xy[1]:7.1f})  score {m.score:.3f}  mutual {'yes' if m.mutual else 'no '}  "
              f"cycle {m.cycle_distance_px:6.1f} px")
    print(f"wrote {out / 'matches.json'} and {out / 'overlay.png'}")
    return 0
