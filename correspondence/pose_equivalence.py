"""Rivals that are no ambiguity: two poses that put the demo object's surface in the same place, judged from the demo
view alone (:func:`equivalent_poses`).

Why: the pose search refuses a turn when another turn far from it explains the live frame as well
(:mod:`correspondence.pose_search`). For a symmetric object (a 2-fold stool turned by 180 deg) that refusal is wrong:
both poses put the object where it is, and BOP's MSSD judges either right. The estimator may not read the object's
symmetry from anywhere; what it has is the demo's own depth and silhouette, which say whether the motion between the
two poses maps the surface the demo saw onto itself.
"""
from __future__ import annotations

import numpy as np

from .pose_search import LiveFrame, PoseSearchSettings, _apply, _close, _snapper


def self_consistency(motion: np.ndarray, demo_points: np.ndarray, demo_view: LiveFrame,
                     settings: PoseSearchSettings) -> tuple[float, float]:
    """(agreement, contradictions) of the demo cloud moved by ``motion`` (demo camera -> demo camera) against the demo
    view itself: the share of moved points within ``surface_m`` of a demo point, and the share where the demo camera
    saw nothing (off its silhouette) or saw through (2 cm or more in front of the surface), in every pixel within
    ``equivalent_window_px`` (a thin leg laid on its twin a few millimetres off is no contradiction). Two poses ``A``
    and ``B`` put the object's surface in the same place, as far as the demo shows it, when ``inv(A) @ B`` (and its
    inverse) lands the demo's points on the demo's own surface and nowhere the demo saw empty: a 2-fold symmetric
    stool turned by 180 deg, whose seat maps onto itself and whose legs onto each other; a car's bonnet laid where
    its boot is contradicts by free space. Geometry only, as BOP's MSSD judges (a texture that differs between the
    turns is what the live frame, which could not tell them apart, did not show). No symmetry declared."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    moved = _apply(motion, demo_points)
    near = np.isfinite(cKDTree(demo_points).query(moved, distance_upper_bound=settings.surface_m)[0])
    h, w = demo_view.depth.shape
    z = moved[:, 2]
    front = z > 1e-3
    xy = demo_view.intrinsics.project(np.where(front[:, None], moved, 1.0))
    col, row = np.floor(xy[:, 0]).astype(np.int64), np.floor(xy[:, 1]).astype(np.int64)
    inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    depth = np.where(np.isfinite(demo_view.depth) & (demo_view.depth > 0) & demo_view.mask, demo_view.depth, np.inf)
    nearest = ndimage.minimum_filter(depth, size=2 * settings.equivalent_window_px + 1)  # no depth: nothing there
    empty = ~inside  # the demo camera saw the whole object: a point moved out of its view went somewhere else
    empty[inside] = z[inside] < nearest[row[inside], col[inside]] - settings.free_space_m  # in front of every
    # surface (or where none is) within the window: the demo camera would have seen it
    return float(near.mean()), float(empty.mean())


def equivalent_poses(a: np.ndarray, b: np.ndarray, demo_points: np.ndarray, demo_view: LiveFrame | None,
                     settings: PoseSearchSettings) -> bool:
    """Whether poses ``a`` and ``b`` (demo camera -> live camera) put the demo object's surface in the same place
    (:func:`self_consistency`, both ways): then the frame cannot tell them apart *and* need not, since either puts
    the object where it is. False without the demo view."""
    if demo_view is None:
        return False
    motion = np.linalg.inv(a) @ b
    snapped = _snapper(demo_points, demo_points, settings)(motion)  # the rivals are placed coarsely: the demo's
    # own surface says where the turn it proposes lands exactly
    if not _close(snapped, motion, demo_points.mean(0), 10.0, 0.03):
        return False
    for m in (snapped, np.linalg.inv(snapped)):
        agreement, contradictions = self_consistency(m, demo_points, demo_view, settings)
        if contradictions > settings.equivalent_contradiction or agreement < settings.equivalent_agreement:
            return False
    return True


__all__ = ["equivalent_poses", "self_consistency"]
