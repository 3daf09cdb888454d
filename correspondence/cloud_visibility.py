"""Which points of an object cloud a camera would see with the object at a pose: hidden point removal by a coarse
z-buffer. Why here: the pose search scores, the multi-view demo's fused cloud and the pose diagnosis all need the
same answer, and none of them should import the others to get it."""
from __future__ import annotations

import numpy as np


def visible_points(points: np.ndarray, T: np.ndarray, intrinsics, cell_px: float = 4.0,
                   depth_margin_m: float = 0.015) -> np.ndarray:
    """The rows of ``points`` that :func:`visible_mask` keeps."""
    return points[visible_mask(points, T, intrinsics, cell_px, depth_margin_m)]


def visible_mask(points: np.ndarray, T: np.ndarray, intrinsics, cell_px: float = 4.0,
                 depth_margin_m: float = 0.015) -> np.ndarray:
    """Which points (demo frame) the live camera would see with the object at ``T``: moved into the live camera,
    binned into ``cell_px`` cells, each cell keeps the points within ``depth_margin_m`` of its nearest one (hidden
    point removal by a coarse z-buffer; points outside the frame are kept, they hide nothing in it)."""
    moved = points @ T[:3, :3].T + T[:3, 3]
    z = moved[:, 2]
    keep = np.ones(len(points), dtype=bool)
    front = z > 1e-3
    if not front.any():
        return keep
    xy = intrinsics.project(moved[front])
    w, h = int(np.ceil(intrinsics.width / cell_px)), int(np.ceil(intrinsics.height / cell_px))
    col, row = np.floor(xy[:, 0] / cell_px).astype(np.int64), np.floor(xy[:, 1] / cell_px).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    cell = row[inside] * w + col[inside]
    nearest = np.full(w * h, np.inf)
    np.minimum.at(nearest, cell, z[front][inside])
    seen = np.ones(int(front.sum()), dtype=bool)
    seen[inside] = z[front][inside] <= nearest[cell] + depth_margin_m
    keep[front] = seen
    return keep
