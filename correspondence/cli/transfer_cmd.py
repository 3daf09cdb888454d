"""``soco transfer``: a demo and one live RGB(-D) frame -> matches, the demo-to-live transform, an overlay PNG and,
with depth, both point clouds aligned (PLY + PNG)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("transfer", help="transfer a demo's keypoints to a live frame and align in 3D",
                            description="Segment the live object, find the demo keypoints in it, lift both sides "
                                        "with depth and estimate the demo-to-live rigid transform.")
    parser.add_argument("--demo", required=True, help="demo folder or YAML (see correspondence/demo_spec.py)")
    parser.add_argument("--live-rgb", required=True)
    parser.add_argument("--live-depth", default=None, help="uint16 PNG (x --depth-scale m) or .npy in metres")
    parser.add_argument("--depth-scale", type=float, default=0.001, help="metres per depth unit (default: mm)")
    parser.add_argument("--intrinsics", default=None, help="JSON {fx, fy, cx, cy, width, height} (OpenCV)")
    parser.add_argument("--live-mask", default=None, help="object mask of the live frame (skips segmentation)")
    parser.add_argument("--prompt", default=None, help="x,y (a point) or x0,y0,x1,y1 (a box) on the live object")
    parser.add_argument("--segmentation", default="auto", choices=("auto", "sam", "depth", "grabcut", "none"))
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--min-score", type=float, default=None, help="reject matches below this cosine score")
    parser.add_argument("--ransac-threshold", type=float, default=0.01, help="inlier distance in metres")
    parser.add_argument("--solver", default="ransac", choices=("ransac", "open3d"))
    parser.add_argument("--out", default="transfer_out")
    parser.set_defaults(handler=run)


def _prompt(text: str | None):
    from ..errors import ConfigError
    from ..segmentation import Prompt
    if not text:
        return Prompt.auto()
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--prompt must be x,y or x0,y0,x1,y1, got {text!r}") from None
    if len(values) == 2:
        return Prompt(point=tuple(values))
    if len(values) == 4:
        return Prompt(box=tuple(values))
    raise ConfigError(f"--prompt must be x,y or x0,y0,x1,y1, got {text!r}")


def run(args: argparse.Namespace) -> int:
    from ..api import Matcher, as_image, as_mask
    from ..demo_spec import load_demo, load_depth, load_intrinsics
    from ..errors import InputError
    from ..io import write_json
    from ..pipeline import PipelineSettings, TransferPipeline
    from ..segmentation import auto_provider, provider_from_name
    from ..viz import match_overlay, save

    demo = load_demo(args.demo)
    live = np.asarray(as_image(args.live_rgb))
    depth = load_depth(Path(args.live_depth), args.depth_scale) if args.live_depth else None
    intrinsics = load_intrinsics(Path("."), args.intrinsics, Path(args.intrinsics)) if args.intrinsics else None
    if (depth is None) != (intrinsics is None):
        raise InputError("3D alignment needs both --live-depth and --intrinsics (give both, or neither for 2D)")
    if args.segmentation == "auto":
        segmenter, reason = auto_provider(depth)
        print(f"segmentation: {reason}")
    elif args.segmentation == "none":
        segmenter = None
    else:
        segmenter = provider_from_name(args.segmentation)
    matcher = Matcher.create(args.backbone, weights=args.weights, size=args.size)
    pipeline = TransferPipeline(demo, matcher, PipelineSettings(min_score=args.min_score,
                                                                ransac_threshold=args.ransac_threshold,
                                                                solver=args.solver), segmenter)
    result = pipeline.process(live, depth, intrinsics, mask=as_mask(args.live_mask), prompt=_prompt(args.prompt))
    out = Path(args.out)
    alignment = result.alignment or result.alignment_2d
    record = {"demo": str(args.demo), "live": args.live_rgb, "mode": "3d" if result.alignment else "2d",
              "segmentation": result.mask.provider if result.mask else "none",
              "matches": [dict(name=m.name, demo_xy=m.demo_xy, live_xy=m.live_xy, score=m.score, mutual=m.mutual,
                               cycle_distance_px=m.cycle_distance_px, accepted=bool(a),
                               live_xyz=None if np.isnan(p).any() else p.tolist())
                          for m, a, p in zip(result.matches, result.accepted, result.live_points)],
              "alignment": {"success": alignment.success, "reason": alignment.reason,
                            "transform": None if not alignment.success else
                            (alignment.transform if result.alignment else alignment.matrix).tolist(),
                            "inlier_ratio": alignment.inlier_ratio, "rmse": alignment.rmse,
                            "num_inliers": alignment.num_inliers},
              "timings_s": result.timings_s}
    write_json(out / "transfer.json", json.loads(json.dumps(record, default=float)))
    save(match_overlay(demo.rgb, live, demo.keypoints.xy, np.array([m.live_xy for m in result.matches]),
                       [m.name for m in result.matches], result.accepted,
                       live_mask=result.mask.mask if result.mask else None,
                       title=f"{record['mode']} alignment: {alignment.reason}"), out / "overlay.png")
    if result.alignment is not None and result.alignment.success:
        write_aligned_clouds(demo, live, depth, intrinsics, result, out)
    print(f"{len(result.matches)} keypoints, {int(result.accepted.sum())} accepted; {record['mode']} alignment: "
          f"{alignment.reason} (inliers {alignment.num_inliers}, rmse {alignment.rmse:.4f})")
    print(f"wrote {out}/transfer.json and overlay.png")
    return 0


def write_aligned_clouds(demo, live_rgb, live_depth, intrinsics, result, out: Path) -> None:
    """Both object point clouds in the live camera frame (demo moved by the estimated transform): PLY + PNG."""
    from ..viz import save_point_clouds

    def cloud(rgb, depth, cam, mask):
        rows, cols = np.nonzero((depth > 0) & (mask if mask is not None else True))
        pick = np.linspace(0, len(rows) - 1, min(len(rows), 20000)).astype(int)
        rows, cols = rows[pick], cols[pick]
        xyz = cam.unproject(np.stack([cols + 0.5, rows + 0.5], 1), depth[rows, cols])
        return xyz, rgb[rows, cols]

    demo_xyz, demo_rgb = cloud(demo.rgb, demo.depth, demo.intrinsics, demo.mask)
    T = result.alignment.transform
    demo_xyz = demo_xyz @ T[:3, :3].T + T[:3, 3]
    live_xyz, live_colours = cloud(live_rgb, live_depth, intrinsics, result.mask.mask if result.mask else None)
    save_point_clouds({"demo (aligned)": (demo_xyz, demo_rgb), "live": (live_xyz, live_colours)},
                      out / "aligned.ply", out / "aligned.png")
