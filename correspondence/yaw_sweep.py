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

from dataclasses import dataclass

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


def _seen(moved: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the live camera sees the moved points: (in front of it and in the image, row, column, the live depth
    there; rows, columns and depths are 0 outside)."""
    h, w = depth.shape
    front = moved[:, 2] > 1e-3
    xy = intrinsics.project(np.where(front[:, None], moved, 1.0))
    col, row = np.floor(xy[:, 0]).astype(np.int64), np.floor(xy[:, 1]).astype(np.int64)
    inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    row, col = np.where(inside, row, 0), np.where(inside, col, 0)
    return inside, row, col, np.where(inside, depth[row, col], 0.0)


class LiveCloud:
    """The live object's cloud with its KD-tree and, per query radius, a coarse occupancy grid: the sweep asks
    for each moved point's live neighbour within a few millimetres to centimetres, and most moved points of most
    turns have none; the grid (cells a hair over the radius, dilated by one) rules those out without a tree
    search. :meth:`query` answers as ``cKDTree.query(points, distance_upper_bound=radius)`` does, bit for bit."""

    MAX_CELLS = 4_000_000  # a grid larger than this (a huge cloud at a small radius) is not built: the tree alone

    def __init__(self, cloud: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        self.cloud = np.asarray(cloud, dtype=np.float64)
        self.tree = cKDTree(self.cloud)
        self._grids: dict[float, tuple | None] = {}

    def __len__(self) -> int:
        return len(self.cloud)

    def _grid(self, radius: float):
        if radius not in self._grids:
            cell = radius * 1.001  # a neighbour within the radius is at most one cell away, rounding included
            low = self.cloud.min(0) - 2 * cell
            index = np.floor((self.cloud - low) / cell).astype(np.int64)
            shape = index.max(0) + 3
            grid = None
            if len(self.cloud) and np.prod(shape) <= self.MAX_CELLS:
                occupied = np.zeros(shape, dtype=bool)  # each live point's cell and its 26 neighbours
                for offset in np.stack(np.meshgrid(*[(-1, 0, 1)] * 3), -1).reshape(-1, 3):
                    cells = index + offset
                    occupied[cells[:, 0], cells[:, 1], cells[:, 2]] = True
                grid = (low, cell, occupied)
            self._grids[radius] = grid
        return self._grids[radius]

    def query(self, points: np.ndarray, distance_upper_bound: float) -> tuple[np.ndarray, np.ndarray]:
        """(distance, index) of each point's nearest live point within ``distance_upper_bound`` (inf and
        ``len(self)`` for none): ``cKDTree.query``'s call and answer, so either serves the sweep."""
        radius = distance_upper_bound
        grid = self._grid(radius)
        if grid is None:
            return self.tree.query(points, distance_upper_bound=radius)
        low, cell, occupied = grid
        index = np.floor((points - low) / cell).astype(np.int64)
        inside = ((index >= 0) & (index < occupied.shape)).all(1)
        near = np.zeros(len(points), dtype=bool)
        near[inside] = occupied[index[inside, 0], index[inside, 1], index[inside, 2]]
        gap, nearest = np.full(len(points), np.inf), np.full(len(points), len(self.cloud), dtype=np.int64)
        if near.any():
            gap[near], nearest[near] = self.tree.query(points[near], distance_upper_bound=radius)
        return gap, nearest


def fit_translations(Rs: np.ndarray, demo_points: np.ndarray, live_cloud: np.ndarray, live_tree, depth: np.ndarray,
                     intrinsics: CameraIntrinsics, starts: np.ndarray,
                     distances: tuple[float, ...] = FIT_DISTANCES_M, hidden_m: float = 0.01) -> np.ndarray:
    """(K, 3): the translation per rotation of ``Rs`` (K, 3, 3), each held, that brings the demo points the live
    camera would see onto the live cloud: per step, each moved point in front of (or on) the live surface pairs with
    its nearest live point within the step's radius, and the translation moves by the median offset of the pairs.
    Every turn is fitted in one array per step (one projection, one KD-tree query): the per-turn loop's Python
    overhead was a fifth of a +-180 deg frame (docs/multiview_demo.md, "Cost"); the result is the loop's, bit for bit
    (tests/test_sweep_batched.py)."""
    Rs = np.asarray(Rs, dtype=np.float64).reshape(-1, 3, 3)
    t = np.asarray(starts, dtype=np.float64).reshape(-1, 3).copy()
    rotated = np.stack([demo_points @ R.T for R in Rs])  # per turn, as the loop did (the same rounding)
    n = len(demo_points)
    active = np.ones(len(Rs), dtype=bool)  # a turn with under 5 usable points stops, as the loop's break did
    for distance in distances:
        moved = rotated + t[:, None]
        inside, _, _, seen = _seen(moved.reshape(-1, 3), depth, intrinsics)
        inside, seen = inside.reshape(len(Rs), n), seen.reshape(len(Rs), n)
        hidden = inside & np.isfinite(seen) & (seen > 0) & (moved[..., 2] > seen + hidden_m)  # behind the surface
        use = (moved[..., 2] > 1e-3) & ~hidden
        active &= use.sum(1) >= 5
        use &= active[:, None]
        if not use.any():
            break
        gap, index = live_tree.query(moved[use], distance_upper_bound=distance)
        paired = np.isfinite(gap)
        turn = np.nonzero(use)[0]  # row-major: each turn's points contiguous, in the loop's order
        bounds = np.searchsorted(turn, np.arange(len(Rs) + 1))
        offsets = live_cloud[np.where(paired, index, 0)] - moved[use]
        for k in np.nonzero(active)[0]:
            pairs = paired[bounds[k]:bounds[k + 1]]
            if pairs.sum() >= 5:
                t[k] += np.median(offsets[bounds[k]:bounds[k + 1]][pairs], axis=0)
    return t


def fit_translation(R: np.ndarray, demo_points: np.ndarray, live_cloud: np.ndarray, live_tree, depth: np.ndarray,
                    intrinsics: CameraIntrinsics, start: np.ndarray,
                    distances: tuple[float, ...] = FIT_DISTANCES_M, hidden_m: float = 0.01) -> np.ndarray:
    """One turn's :func:`fit_translations`."""
    return fit_translations(np.asarray(R)[None], demo_points, live_cloud, live_tree, depth, intrinsics,
                            np.asarray(start)[None], distances, hidden_m)[0]


@dataclass(frozen=True)
class Placement:
    """The live evidence a placement is judged by while its turn is held (a cheap form of the pose score: depth
    and silhouette only, no colour or descriptors, so it can be evaluated hundreds of times a frame)."""

    depth: np.ndarray
    mask: np.ndarray
    intrinsics: CameraIntrinsics
    live_tree: object  # the live object cloud's cKDTree or LiveCloud (the same answers, faster)
    live_count: int
    surface_m: float = 0.01  # a moved point this near the live depth on the live mask agrees
    free_space_m: float = 0.02  # this far in front of the seen surface, or off the silhouette, contradicts
    contradiction_weight: float = 4.0  # as the pose score: a contradiction costs this many agreeing points
    unknown: np.ndarray | None = None  # (H, W) bool: the camera's holes, no free-space evidence (LiveFrame.unknown)

    def score(self, moved: np.ndarray) -> float:
        """0.5 (agreement + coverage) - weight x contradictions, the pose score's terms on depth alone."""
        return float(self.scores(moved[None])[0])

    def scores(self, moved: np.ndarray) -> np.ndarray:
        """(B,): :meth:`score` of each of ``moved`` (B, N, 3) placements, in one projection and one KD-tree query."""
        b, n = moved.shape[:2]
        inside, row, col, seen = (a.reshape(b, n) for a in _seen(moved.reshape(-1, 3), self.depth, self.intrinsics))
        on_object, has_depth = self.mask[row, col] & inside, inside & np.isfinite(seen) & (seen > 0)
        agree = on_object & has_depth & (np.abs(moved[..., 2] - seen) < self.surface_m)
        empty = ~on_object & ~has_depth
        if self.unknown is not None:  # a hole in the camera's depth is not seen-through space
            empty &= ~(self.unknown[row, col] & inside)
        contradiction = inside & ((has_depth & (moved[..., 2] < seen - self.free_space_m)) | empty)
        gap, index = self.live_tree.query(moved.reshape(-1, 3), distance_upper_bound=self.surface_m)
        found = np.isfinite(gap)  # the live points each placement covers, counted apart: (placement, live index) once
        key = np.unique(np.repeat(np.arange(b), n)[found] * (self.live_count + 1) + index[found])
        coverage = np.bincount(key // (self.live_count + 1), minlength=b) / max(min(self.live_count, n), 1)
        return (0.5 * (agree.mean(1) + coverage)
                - self.contradiction_weight * contradiction.sum(1) / np.maximum(inside.sum(1), 1))


PLACE_STEPS_M = (0.02, 0.01, 0.005)  # the placement search's step per stage, coarse to fine
PLACE_POINTS = 600  # demo points the placement is judged on (evenly spaced: ~20 scores a turn, 36 turns a frame)
_DIRECTIONS = np.vstack([np.eye(3), -np.eye(3)])


def place_all(Rs: np.ndarray, demo_points: np.ndarray, starts: np.ndarray, placement: Placement,
              steps: tuple[float, ...] = PLACE_STEPS_M, max_moves: int = 8) -> np.ndarray:
    """(K, 3): each turn's translation (``Rs`` (K, 3, 3), ``starts`` (K, 3)) moved, step by step along the camera
    axes, while :meth:`Placement.score` improves.

    Why: the nearest-neighbour fit starts from the offset of two partial clouds' centroids, which belong to
    different sides of the object; on a turn of 60-90 deg it settles on a slid fit that lays a fifth of the demo's
    points in free space (a kettle placed 3-4 cm off, its near-right turn scoring far below a wrong one). Free
    space is what the fit does not look at and the score weighs most, so the placement climbs on it. Every turn
    still climbing is scored in one batch per move (its six neighbours, :meth:`Placement.scores`): per turn and
    direction, the placement cost 3 of a 4.9 s frame (docs/multiview_demo.md, "Cost"); the moves are the same."""
    Rs = np.asarray(Rs, dtype=np.float64).reshape(-1, 3, 3)
    sample = demo_points[::max(1, -(-len(demo_points) // PLACE_POINTS))]
    rotated = np.stack([sample @ R.T for R in Rs])  # per turn, as one turn's placement did (the same rounding)
    t = np.asarray(starts, dtype=np.float64).reshape(-1, 3).copy()
    best = placement.scores(rotated + t[:, None])
    for step in steps:
        back = np.full(len(Rs), -1)  # the way back to where the last move came from: it scored lower
        climbing = np.ones(len(Rs), dtype=bool)
        for _ in range(max_moves):
            k = np.nonzero(climbing)[0]
            if not len(k):
                break
            moved = (rotated[k] + t[k, None])[:, None] + (step * _DIRECTIONS)[None, :, None]  # (A, 6, n, 3)
            values = placement.scores(moved.reshape(-1, *rotated.shape[1:])).reshape(len(k), 6)
            values[(back[k] >= 0).nonzero()[0], back[k][back[k] >= 0]] = -np.inf
            direction = np.argmax(values, axis=1)  # the first of equals, as before
            value = values[np.arange(len(k)), direction]
            better = value > best[k]
            climbing[k[~better]] = False
            moving, d = k[better], direction[better]
            best[moving], t[moving], back[moving] = value[better], t[moving] + step * _DIRECTIONS[d], (d + 3) % 6
    return t


def place(R: np.ndarray, demo_points: np.ndarray, t: np.ndarray, placement: Placement,
          steps: tuple[float, ...] = PLACE_STEPS_M, max_moves: int = 8) -> np.ndarray:
    """One turn's :func:`place_all`."""
    return place_all(np.asarray(R)[None], demo_points, np.asarray(t)[None], placement, steps, max_moves)[0]


def yaw_sweep(demo_points: np.ndarray, live_cloud: np.ndarray, depth: np.ndarray, intrinsics: CameraIntrinsics,
              up: tuple[np.ndarray, np.ndarray], step_deg: float, mask: np.ndarray | None = None,
              unknown: np.ndarray | None = None) -> list[np.ndarray]:
    """One upright pose (4x4, demo camera -> live camera) per turn of ``step_deg``, its translation fitted
    (:func:`fit_translations`) from the centroids' offset; with the live ``mask``, then placed on the depth and
    silhouette evidence (:func:`place_all`) and the fit's finest steps run again from there. All turns at once."""
    tree = LiveCloud(live_cloud)
    Rs = np.stack(upright_rotations(up[0], up[1], step_deg))
    starts = np.stack([live_cloud.mean(0) - R @ demo_points.mean(0) for R in Rs])
    t = fit_translations(Rs, demo_points, live_cloud, tree, depth, intrinsics, starts)
    if mask is not None:
        placement = Placement(depth, np.asarray(mask, bool), intrinsics, tree, len(live_cloud), unknown=unknown)
        t = fit_translations(Rs, demo_points, live_cloud, tree, depth, intrinsics,
                             place_all(Rs, demo_points, t, placement), FIT_DISTANCES_M[-3:])
    out = []
    for R, translation in zip(Rs, t):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, translation
        out.append(T)
    return out
