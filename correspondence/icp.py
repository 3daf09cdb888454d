"""Geometric refinement of a correspondence pose: point-to-plane ICP between the demo object's and the live
object's depth clouds.

Why: dense feature matches land on a patch grid (14 px at 448 px is about 1.5 cm at half a metre), so the
RANSAC pose from them is typically a few degrees off. Both objects are segmented and have depth, so their
surfaces can pull the pose the rest of the way. ICP only converges from a nearby start, and on a different
instance (functional mode) the surfaces do not coincide; so the refinement is *guarded*: it is kept only when it
converged, moved the pose by a bounded amount, and made the surfaces agree better; otherwise the correspondence
pose stands and the result says why.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import CameraIntrinsics
from .errors import InputError


@dataclass(frozen=True)
class IcpSettings:
    max_distances: tuple[float, ...] = (0.03, 0.015, 0.008)  # metres, coarse to fine
    iterations_per_stage: int = 10
    max_points: int = 2500  # per cloud, subsampled evenly
    max_correction_deg: float = 30.0  # reject a refinement that rotates the start pose by more
    max_correction_m: float = 0.10  # or moves the demo object's centre by more
    min_fitness: float = 0.3  # share of demo points with a live neighbour within the finest distance
    fitness_tolerance: float = 0.02  # a refinement may not lower that share by more (noise when it is near 1)


@dataclass(frozen=True)
class IcpResult:
    accepted: bool
    transform: np.ndarray  # refined when accepted, else the start pose
    fitness_before: float  # share of demo points within the finest distance of the live surface
    fitness_after: float
    rmse_after: float  # metres, over the pairs within the finest distance
    correction_deg: float
    correction_m: float
    reason: str

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "fitness_before": self.fitness_before, "fitness_after": self.fitness_after,
                "rmse_m": self.rmse_after, "correction_deg": self.correction_deg,
                "correction_m": self.correction_m, "reason": self.reason}


def masked_cloud(depth: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray | None,
                 depth_range: tuple[float, float], max_points: int) -> np.ndarray:
    """Camera-frame points of the masked pixels with valid depth, evenly subsampled to at most ``max_points``."""
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f"depth is {depth.shape[1]}x{depth.shape[0]} but the intrinsics are for "
                         f"{intrinsics.width}x{intrinsics.height}")
    with np.errstate(invalid="ignore"):
        good = np.isfinite(depth) & (depth >= depth_range[0]) & (depth <= depth_range[1]) & (depth > 0)
    if mask is not None:
        good &= mask.astype(bool)
    rows, cols = np.nonzero(good)
    if len(rows) > max_points:
        keep = np.linspace(0, len(rows) - 1, max_points).astype(np.int64)
        rows, cols = rows[keep], cols[keep]
    xy = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float64)
    return intrinsics.unproject(xy, depth[rows, cols].astype(np.float64))


def _normals(points: np.ndarray, tree, k: int = 12) -> np.ndarray:
    """Unit normals from the smallest principal axis of each point's k neighbours."""
    _, idx = tree.query(points, k=min(k, len(points)))
    neighbours = points[idx] - points[idx].mean(1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", neighbours, neighbours)
    _, vectors = np.linalg.eigh(cov)
    return vectors[:, :, 0]


def _fitness(src: np.ndarray, tree, distance: float) -> tuple[float, float]:
    d, _ = tree.query(src, distance_upper_bound=distance)
    close = np.isfinite(d)
    rmse = float(np.sqrt(np.mean(d[close] ** 2))) if close.any() else float("nan")
    return float(close.mean()), rmse


def _step(src: np.ndarray, dst: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """One linearised point-to-plane solve: the small motion (rotation vector, translation) and its 4x4 matrix."""
    a = np.hstack([np.cross(src, normals), normals])
    b = np.einsum("ij,ij->i", dst - src, normals)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    w, t = x[:3], x[3:]
    angle = np.linalg.norm(w)
    R = np.eye(3)
    if angle > 1e-12:
        k = w / angle
        K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        R = np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K
    step = np.eye(4)
    step[:3, :3], step[:3, 3] = R, t
    return step


def refine(src_cloud: np.ndarray, dst_cloud: np.ndarray, start: np.ndarray, settings: IcpSettings | None = None
           ) -> IcpResult:
    """Point-to-plane ICP of ``src_cloud`` (demo frame) onto ``dst_cloud`` (live frame) from ``start`` (4x4)."""
    from scipy.spatial import cKDTree

    s = settings or IcpSettings()
    start = np.asarray(start, dtype=np.float64)
    if len(src_cloud) < 10 or len(dst_cloud) < 10:
        return IcpResult(False, start, 0.0, 0.0, float("nan"), 0.0, 0.0, "too few depth points for ICP")
    tree = cKDTree(dst_cloud)
    normals = _normals(dst_cloud, tree)
    finest = s.max_distances[-1]
    moved = src_cloud @ start[:3, :3].T + start[:3, 3]
    before, _ = _fitness(moved, tree, finest)
    T = start.copy()
    for distance in s.max_distances:
        for _ in range(s.iterations_per_stage):
            moved = src_cloud @ T[:3, :3].T + T[:3, 3]
            d, idx = tree.query(moved, distance_upper_bound=distance)
            close = np.isfinite(d)
            if close.sum() < 10:
                break
            step = _step(moved[close], dst_cloud[idx[close]], normals[idx[close]])
            T = step @ T
            if np.linalg.norm(step[:3, 3]) < 5e-5 and np.abs(step[:3, :3] - np.eye(3)).max() < 5e-5:
                break
    moved = src_cloud @ T[:3, :3].T + T[:3, 3]
    after, rmse = _fitness(moved, tree, finest)
    delta = T @ np.linalg.inv(start)
    correction_deg = float(np.degrees(np.arccos(np.clip((np.trace(delta[:3, :3]) - 1) / 2, -1, 1))))
    centre = src_cloud.mean(0)
    correction_m = float(np.linalg.norm((T[:3, :3] @ centre + T[:3, 3]) - (start[:3, :3] @ centre + start[:3, 3])))
    if correction_deg > s.max_correction_deg or correction_m > s.max_correction_m:
        reason = f"refinement moved the pose too far ({correction_deg:.1f} deg, {100 * correction_m:.1f} cm)"
    elif after < s.min_fitness:
        reason = f"surfaces do not agree after refinement (fitness {after:.2f} < {s.min_fitness})"
    elif after < before - s.fitness_tolerance:
        reason = f"refinement made the surface agreement worse ({before:.2f} -> {after:.2f})"
    else:
        return IcpResult(True, T, before, after, rmse, correction_deg, correction_m, "ok")
    return IcpResult(False, start, before, after, rmse, correction_deg, correction_m, reason)
