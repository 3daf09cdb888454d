"""A synthetic RGB-D scene with a known pose, for the ROS tests and ``python -m soco_ros.bench`` (no rclpy here).

The procedural world (``correspondence.world``) renders a demo view of an object and a live view after a known
rigid motion (``correspondence.benchmarks.alignment.make_trial``). The demo is written to a folder the node can
load (``rgb.png``, ``depth.npy`` in metres, ``intrinsics.json``, ``mask.png``, ``keypoints.json``) with the
object's visible taxonomy keypoints plus a grid of surface points (many keypoints make RANSAC well posed even
with the weight-free ``daisy`` matcher). Ground truth per keypoint: its live pixel (the object-frame surface
point moved by the true motion and projected) and whether it is visible in the live view.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from correspondence.benchmarks.alignment import AlignmentBenchConfig, make_trial
from correspondence.camera import CameraIntrinsics
from correspondence.world.render import RenderSettings


@dataclass
class Scene:
    demo_dir: Path
    rgb: np.ndarray  # live (H, W, 3) uint8
    depth: np.ndarray  # live (H, W) float32 metres, 0 = background
    mask: np.ndarray  # live (H, W) bool
    intrinsics: CameraIntrinsics
    truth: np.ndarray  # 4x4 demo camera -> live camera
    centre: np.ndarray  # object centre in the demo camera frame
    names: list[str]
    demo_xy: np.ndarray  # (K, 2)
    live_xy: np.ndarray  # (K, 2) ground truth, NaN where not visible
    live_points: np.ndarray  # (K, 3) ground-truth live camera points, NaN where not visible
    up: tuple[np.ndarray, np.ndarray] | None = None  # the table's vertical in the (demo, live) camera (gravity)


def make_scene(out_dir: str | Path, size: int = 448, category: str = "car", seed: int = 7,
               max_rotation_deg: float = 3.0, max_translation_m: float = 0.03, grid_points: int = 30) -> Scene:
    config = AlignmentBenchConfig(max_rotation_deg=max_rotation_deg, max_translation_m=max_translation_m)
    obj, demo, live, truth, centre = make_trial(np.random.default_rng(seed), category, 1, config,
                                                RenderSettings(width=size, height=size))
    names, demo_xy, object_points = [], [], []
    for keypoint, xy, visible in zip(obj.keypoints, demo.keypoints_xy, demo.keypoints_visible):
        ij = np.floor(np.asarray(xy)).astype(int)
        if visible and 0 <= ij[0] < size and 0 <= ij[1] < size and np.isfinite(demo.points_object[ij[1], ij[0]]).all():
            names.append(keypoint.name)
            demo_xy.append(tuple(float(v) for v in xy))
            object_points.append(demo.points_object[ij[1], ij[0]])
    inner = ndimage.binary_erosion(demo.mask, iterations=max(2, size // 56)) & np.isfinite(demo.points_object).all(-1)
    ys, xs = np.nonzero(inner)
    if len(xs):
        pick = np.linspace(0, len(xs) - 1, min(grid_points, len(xs))).round().astype(int)
        for k, i in enumerate(pick):
            names.append(f"surface/{k:02d}")
            demo_xy.append((xs[i] + 0.5, ys[i] + 0.5))
            object_points.append(demo.points_object[ys[i], xs[i]])
    object_points = np.asarray(object_points, dtype=np.float64)
    live_points = object_points @ live.pose[:3, :3].T + live.pose[:3, 3]
    live_xy = live.intrinsics.project(live_points)
    visible = np.zeros(len(names), dtype=bool)
    for k, (x, y) in enumerate(live_xy):
        if 0 <= x < size and 0 <= y < size:
            z = live.depth[int(y), int(x)]
            visible[k] = z > 0 and abs(z - live_points[k, 2]) < 0.01
    live_xy[~visible] = np.nan
    live_points[~visible] = np.nan
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(demo.rgb).save(out / "rgb.png")
    np.save(out / "depth.npy", demo.depth.astype(np.float32))
    Image.fromarray(demo.mask.astype(np.uint8) * 255).save(out / "mask.png")
    (out / "intrinsics.json").write_text(json.dumps(demo.intrinsics.as_dict(), default=float), encoding="utf-8")
    (out / "keypoints.json").write_text(json.dumps(
        {"keypoints": [{"name": n, "xy": list(xy)} for n, xy in zip(names, demo_xy)]}), encoding="utf-8")
    return Scene(out, live.rgb, live.depth.astype(np.float32), live.mask, live.intrinsics, truth, centre, names,
                 np.asarray(demo_xy), live_xy, live_points, (demo.pose[:3, 2].copy(), live.pose[:3, 2].copy()))


def varied(rgb: np.ndarray, index: int) -> np.ndarray:
    """A copy of ``rgb`` with a 1-level change in one corner pixel, so consecutive frames differ (the feature cache
    cannot serve a repeated frame) while the scene stays the same."""
    out = rgb.copy()
    out[0, 0, 0] = np.uint8((int(out[0, 0, 0]) + 1 + index % 200) % 256)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m soco_ros.synthetic OUT_DIR [--size 448] [--category car]``: write a demo folder the node can load
    (a procedural object, RGB-D, mask, named keypoints), e.g. to try the node without a recorded demo."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("out", help="demo folder to write")
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--category", default="car")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    scene = make_scene(args.out, size=args.size, category=args.category, seed=args.seed)
    print(f"demo written to {scene.demo_dir} ({len(scene.names)} keypoints, {args.size} px, RGB-D): "
          f"use it as demo_path")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
