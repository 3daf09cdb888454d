"""Upright pose hypotheses at every yaw: with gravity known, an object standing on a table can only turn about the
vertical and slide, so the pose search tries every turn instead of hoping a feature match finds the right one.

Why not FPFH / RANSAC alone: turned by 90-180 deg, the demo and live views show different sides, the clouds overlap
on a sliver, and both the features and an unconstrained ICP slide the demo's seen side onto the live's seen side
(a wrong turn that explains more of the frame). Here the turn is fixed per hypothesis and only the translation is
fitted, by a few visibility-aware nearest-neighbour steps: a moved demo point that the live camera would not see
(behind the live surface: the side the demo saw and the live view does not) pairs with nothing, so the sliver of
overlap that is truly shared pulls the cloud into place. Each hypothesis is then scored by the pose search
(:func:`correspondence.pose_search.score_pose`), where colour and free space decide between the turns.
"""
from __future__ import annotations

import numpy as np

from .camera import CameraIntrinsics

FIT_DISTANCES_M = (0.06, 0.04, 0.025, 0.015, 0.01, 0.006)  # nearest-neighbour pairing radius per step, coarse to fine


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K  # Rodrigues


def leveller(up_demo: np.ndarray, up_live: np.ndarray) -> np.ndarray:
    """The smallest rotation that takes the demo camera's vertical onto the live camera's."""
    a, b = np.asarray(up_demo, float) / np.linalg.norm(up_demo), np.asarray(up_live, float) / np.linalg.norm(up_live)
    axis = np.cross(a, b)
    if np.linalg.norm(axis) > 1e-9:
        return _axis_angle(axis, np.arctan2(np.linalg.norm(axis), a @ b))
    if a @ b > 0:
        return np.eye(3)
    return _axis_angle(np.cross(a, [1.0, 0, 0]) if abs(a[0]) < 0.9 else np.cross(a, [0, 1.0, 0]), np.pi)


def upright_rotations(up_demo: np.ndarray, up_live: np.ndarray, step_deg: float) -> list[np.ndarray]:
    """Demo camera -> live camera rotations that keep the vertical vertical, every ``step_deg`` of turn about it."""
    level, b = leveller(up_demo, up_live), np.asarray(up_live, float) / np.linalg.norm(up_live)
    return [_axis_angle(b, angle) @ level for angle in np.radians(np.arange(0.0, 360.0 - 1e-6, step_deg))]


def fit_translation(R: np.ndarray, demo_points: np.ndarray, live_cloud: np.ndarray, live_tree, depth: np.ndarray,
                    intrinsics: CameraIntrinsics, start: np.ndarray,
                    distances: tuple[float, ...] = FIT_DISTANCES_M, hidden_m: float = 0.01) -> np.ndarray:
    """The translation (rotation ``R`` held) that brings the demo points the live camera would see onto the live
    cloud: per step, each moved point in front of (or on) the live surface pairs with its nearest live point within
    the step's radius, and the translation moves by the median offset of the pairs."""
    t = np.asarray(start, dtype=np.float64).copy()
    rotated = demo_points @ R.T
    h, w = depth.shape
    for distance in distances:
        moved = rotated + t
        z = moved[:, 2]
        front = z > 1e-3
        xy = intrinsics.project(np.where(front[:, None], moved, 1.0))
        col, row = np.floor(xy[:, 0]).astype(np.int64), np.floor(xy[:, 1]).astype(np.int64)
        inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        seen = depth[np.where(inside, row, 0), np.where(inside, col, 0)]
        hidden = inside & np.isfinite(seen) & (seen > 0) & (z > seen + hidden_m)  # behind the surface the camera saw
        use = front & ~hidden
        if use.sum() < 5:
            break
        gap, index = live_tree.query(moved[use], distance_upper_bound=distance)
        paired = np.isfinite(gap)
        if paired.sum() >= 5:
            t += np.median(live_cloud[index[paired]] - moved[use][paired], axis=0)
    return t


def yaw_sweep(demo_points: np.ndarray, live_cloud: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics,
              up: tuple[np.ndarray, np.ndarray], step_deg: float) -> list[np.ndarray]:
    """One upright pose (4x4, demo camera -> live camera) per turn of ``step_deg``, its translation fitted
    (:func:`fit_translation`) from the centroids' offset."""
    from scipy.spatial import cKDTree

    tree = cKDTree(live_cloud)
    out = []
    for R in upright_rotations(up[0], up[1], step_deg):
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = fit_translation(R, demo_points, live_cloud, tree, depth, intrinsics,
                                   live_cloud.mean(0) - R @ demo_points.mean(0))
        out.append(T)
    return out
