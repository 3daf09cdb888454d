"""A processed frame as artefacts people and programs read: a JSON-ready record, an overlay image, and both
object clouds aligned (PLY + PNG). Shared by ``soco transfer``, ``make demo`` and the ROS node's debug image, so
they show the same thing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .camera import CameraIntrinsics
from .demo_spec import DemoSpec
from .pipeline import FrameResult
from .viz import match_overlay, save_point_clouds

MAX_DRAWN_DENSE = 40  # more lines than this make an overlay unreadable


def _finite_or_none(point: np.ndarray) -> list[float] | None:
    return None if np.isnan(point).any() else [float(v) for v in point]


def _finite(value) -> float | None:
    """JSON has no NaN: a missing or non-finite number is None."""
    return float(value) if value is not None and np.isfinite(float(value)) else None


def alignment_record(result: FrameResult) -> dict[str, Any] | None:
    """The frame's alignment as JSON, the one definition behind ``soco transfer``'s ``transfer.json`` and the node's
    ``~/alignment_quality``: ``kind`` 3d (``transform`` 4x4 demo camera -> live camera, ``rmse_m``) or 2d (``matrix``
    2x3 demo -> live pixels, ``rmse_px``, ``scale``, ``angle_deg``), ``success``, ``reason``, ``inlier_ratio``,
    ``num_inliers``, ``solver``, ``demo_view`` (a multi-view demo: the view whose matches gave the pose, 0 = the
    primary; else None), ``demo_view_scores`` (each candidate view's pose score against the live frame, by view index;
    else None). None when the frame had no alignment at all."""
    if result.alignment is not None:
        a = result.alignment
        return {"kind": "3d", "success": bool(a.success), "reason": a.reason,
                "transform": np.asarray(a.transform).tolist() if a.success and a.transform is not None else None,
                "inlier_ratio": _finite(a.inlier_ratio), "rmse_m": _finite(a.rmse), "num_inliers": int(a.num_inliers),
                "solver": a.solver, "demo_view": result.demo_view,
                "demo_view_scores": (None if result.demo_view_scores is None else
                                     {str(k): v for k, v in result.demo_view_scores.items()})}
    if result.alignment_2d is not None:
        a = result.alignment_2d
        return {"kind": "2d", "success": bool(a.success), "reason": a.reason,
                "matrix": None if a.matrix is None else np.asarray(a.matrix).tolist(),
                "inlier_ratio": _finite(a.inlier_ratio), "rmse_px": _finite(a.rmse), "num_inliers": int(a.num_inliers),
                "solver": a.solver, "scale": _finite(a.scale) if a.scale is not None else None,
                "angle_deg": _finite(a.angle_deg) if a.angle_deg is not None else None}
    return None


def frame_record(result: FrameResult) -> dict[str, Any]:
    """Everything a caller needs from one frame, JSON-serialisable (floats, lists, None)."""
    record: dict[str, Any] = {
        "mode": result.mode, "alignment_kind": "3d" if result.alignment is not None else "2d",
        "segmentation": result.mask.source if result.mask else "none",
        "alignment_source": result.alignment_source,
        "matches": [dict(name=m.name, demo_xy=[float(v) for v in m.demo_xy], live_xy=[float(v) for v in m.live_xy],
                         score=float(m.score), mutual=bool(m.mutual), cycle_distance_px=float(m.cycle_distance_px),
                         accepted=bool(a), live_xyz=_finite_or_none(p), position=m.position,
                         coarse_xy=None if m.coarse_xy is None else [float(v) for v in m.coarse_xy],
                         refined_xy=None if m.refined_xy is None else [float(v) for v in m.refined_xy],
                         geometry_inlier=m.geometry_inlier)
                    for m, a, p in zip(result.matches, result.accepted, result.live_points)],
        "alignment": alignment_record(result),
        "refinement": result.refinement.as_dict() if result.refinement is not None else None,
        "keypoint_geometry": result.keypoint_geometry.as_dict() if result.keypoint_geometry is not None else None,
        "localisation": result.localisation.as_dict() if result.localisation is not None else None,
        "support_plane": result.support_plane.as_dict() if result.support_plane is not None else None,
        "timings_s": {k: float(v) for k, v in result.timings_s.items()}}
    if result.dense is not None:
        d = result.dense
        record["dense"] = {"candidates": d.candidates, "count": len(d),
                           "demo_xy": d.demo_xy.tolist(), "live_xy": d.live_xy.tolist(), "score": d.score.tolist(),
                           "similarity": d.similarity.tolist()}
    return record


def frame_overlay(demo: DemoSpec, live_rgb: np.ndarray, result: FrameResult, title: str = "",
                  height: int = 480) -> Image.Image:
    """Keypoint lines (keypoint mode) or the best dense matches (functional mode), the live mask tinted."""
    mask = result.mask.mask if result.mask else None
    alignment = result.alignment or result.alignment_2d
    title = title or f"{result.mode}: {'pose' if alignment.success else 'no pose'} ({alignment.reason})"
    if result.mode == "keypoints":
        return match_overlay(demo.rgb, live_rgb, demo.keypoints.xy, np.array([m.live_xy for m in result.matches]),
                             [m.name for m in result.matches], result.accepted, height=height, title=title,
                             live_mask=mask)
    dense = result.dense
    n = min(len(dense), MAX_DRAWN_DENSE)
    return match_overlay(demo.rgb, live_rgb, dense.demo_xy[:n], dense.live_xy[:n], [""] * n, height=height,
                         title=f"{title}; {len(dense)} matches of '{demo.function}', best {n} drawn",
                         live_mask=mask)


def _cloud(rgb: np.ndarray, depth: np.ndarray, cam: CameraIntrinsics, mask: np.ndarray | None,
           max_points: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero((depth > 0) & (mask if mask is not None else True))
    pick = np.linspace(0, len(rows) - 1, min(len(rows), max_points)).astype(int)
    rows, cols = rows[pick], cols[pick]
    return cam.unproject(np.stack([cols + 0.5, rows + 0.5], 1), depth[rows, cols]), rgb[rows, cols]


def write_aligned_clouds(demo: DemoSpec, live_rgb: np.ndarray, live_depth: np.ndarray, intrinsics: CameraIntrinsics,
                         result: FrameResult, out: Path) -> None:
    """Both object point clouds in the live camera frame (demo moved by the estimated transform): PLY + PNG."""
    demo_xyz, demo_rgb = _cloud(demo.rgb, demo.depth, demo.intrinsics, demo.mask)
    T = result.alignment.transform
    demo_xyz = demo_xyz @ T[:3, :3].T + T[:3, 3]
    live_xyz, live_colours = _cloud(live_rgb, live_depth, intrinsics, result.mask.mask if result.mask else None)
    save_point_clouds({"demo (aligned)": (demo_xyz, demo_rgb), "live": (live_xyz, live_colours)},
                      Path(out) / "aligned.ply", Path(out) / "aligned.png")
