"""Support-plane removal on real RGB-D: UMD-i's tools on a table (Kinect depth, object-centred crops).

Per sample with depth: does :func:`~correspondence.support_plane.find_support_plane` find the table, how much of the
tool (its labelled mask) does it remove, how much of the rest; and the depth mask source's component under the tool
(the localised path: :func:`~correspondence.localised_mask.depth_component_under` with votes drawn inside the true
mask) before and after the removal, as IoU with the true mask. No gravity is given (UMD-i has none): the largest
plane. The crops carry no intrinsics; a Kinect's (fx = fy = 570 px at 640 x 480) with the principal point at the
crop's centre: a plane stays a plane under any pinhole intrinsics (1/z is affine in the pixel), so the inliers do not
depend on them, the normal's direction does.

    PYTHONPATH=$PWD python scripts/support_plane_umd.py ../shared/data/umd_i/UMD_i.zip --out bench_out/support_umd
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from correspondence.benchmarks.umd_data import UMDDataset
from correspondence.camera import CameraIntrinsics
from correspondence.localised_mask import depth_component_under
from correspondence.segmentation import DepthForeground
from correspondence.support_plane import find_support_plane

KINECT_F = 570.0


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else float("nan")


def measure(sample, votes: int = 40, seed: int = 0) -> dict:
    depth, truth = sample.depth, sample.mask.astype(bool)
    height, width = depth.shape
    intrinsics = CameraIntrinsics(KINECT_F, KINECT_F, width / 2.0, height / 2.0, width, height)
    plane = find_support_plane(depth, intrinsics)
    valid = depth > 0
    tool, rest = truth & valid, ~truth & valid
    row = {"sample": sample.name, "class": sample.class_name, "size": [width, height], **plane.as_dict(),
           "tool_removed": float((plane.removed & tool).sum()) / max(int(tool.sum()), 1),
           "rest_removed": float((plane.removed & rest).sum()) / max(int(rest.sum()), 1)}
    rng = np.random.default_rng(seed)
    ys, xs = np.nonzero(tool)
    if len(xs) == 0:
        return row
    pick = rng.choice(len(xs), min(votes, len(xs)), replace=False)
    votes_xy = np.stack([xs[pick] + 0.5, ys[pick] + 0.5], 1)
    source = DepthForeground((0.1, 5.0))
    for name, d in (("before", depth), ("after", plane.without_plane(depth))):
        try:
            mask = depth_component_under(source, sample.rgb, votes_xy, d).mask
            row[f"iou_{name}"] = _iou(mask, truth)
        except Exception as exc:  # noqa: BLE001 - a failed sample is a row, the reason kept
            row[f"iou_{name}"], row[f"error_{name}"] = 0.0, f"{type(exc).__name__}: {exc}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="UMD_i.zip or its extracted folder")
    parser.add_argument("--out", default="bench_out/support_umd")
    args = parser.parse_args()
    rows = [measure(s) for s in UMDDataset(args.root) if s.depth is not None]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "support_umd.json").write_text(json.dumps(rows, indent=1))
    found = [r for r in rows if r["found"]]
    before = np.array([r.get("iou_before", np.nan) for r in rows], dtype=float)
    after = np.array([r.get("iou_after", np.nan) for r in rows], dtype=float)
    lines = ["| samples | plane found | tool removed (median / max, found) | rest removed (median, found) | "
             "band mm (median) | noise mm (median) | depth-component IoU >= 0.8 before / after | median IoU "
             "before / after |", "|---|---|---|---|---|---|---|---|",
             f"| {len(rows)} | {len(found)} | {np.median([r['tool_removed'] for r in found]):.1%} / "
             f"{max(r['tool_removed'] for r in found):.1%} | {np.median([r['rest_removed'] for r in found]):.1%} | "
             f"{1000 * np.median([r['band_m'] for r in found]):.1f} | {1000 * np.median([r['noise_m'] for r in found]):.1f} | "
             f"{np.mean(before >= 0.8):.1%} / {np.mean(after >= 0.8):.1%} | {np.nanmedian(before):.3f} / "
             f"{np.nanmedian(after):.3f} |"]
    (out / "support_umd.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    for r in rows:
        print(f"{r['sample']:28s} found={r['found']!s:5s} tool-={r['tool_removed']:.1%} rest-={r['rest_removed']:.1%} "
              f"IoU {r.get('iou_before', float('nan')):.2f}->{r.get('iou_after', float('nan')):.2f}  {r['reason']}")
    print(f"wrote {out / 'support_umd.json'} and support_umd.md")


if __name__ == "__main__":
    main()
