"""Geometric refinement of a correspondence pose: point-to-plane ICP between the demo object's and the live
object's depth clouds.

Why: dense feature matches land on a patch grid (14 px at 448 px is about 1.5 cm at half a metre), so the
RANSAC pose from them is typically a few degrees off. Both objects are segmented and have depth, so their
surfaces can pull the pose the rest of the way. ICP only converges from a nearby start, and on a different
instance (functional mode) the surfaces do not coincide; so the refinement is *guarded*. Open3D's
``registration_icp`` (point-to-plane, coarse to fine, ``ICPConvergenceCriteria``) does the work; the result is kept
only when all of these hold, else the correspondence pose stands and ``IcpResult.reason`` says which failed.
Given the demo camera's viewpoint, only the demo points facing the live camera at the current pose are fitted and
judged (:class:`FacingPart`, chosen again as the pose moves): the faces a turned live camera cannot see would be
pulled onto the nearest faces it does see (the front of a chair's back onto its back, 2.7 cm off).

1. it converged: one more point-to-plane iteration at the finest distance moves the pose by less than
   ``converged_deg`` and ``converged_m`` (a fixed point, not merely the iteration cap);
2. it moved the start pose by at most ``max_correction_deg`` and ``max_correction_m`` (at the demo cloud's centre);
3. the surfaces agree: fitness (share of demo points with a live point within the finest distance) is at least
   ``min_fitness``, is not lower than before by more than ``fitness_tolerance`` (0.02: noise when it is near 1),
   and the inlier RMSE is not higher than before by more than ``rmse_tolerance`` (10 %) unless fitness rose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .alignment import rotation_error_deg
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
    rmse_tolerance: float = 0.10  # nor raise the inlier RMSE by more than this fraction (unless fitness rose)
    converged_deg: float = 0.05  # one more iteration moving less than this (and converged_m) = converged
    converged_m: float = 0.0005
    cycle_deg: float = 0.5  # ... or two more returning there, the two poses of the cycle at most this far apart
    normal_neighbours: int = 12
    facing_only: bool = True  # fit only the demo points whose surface faces the live camera at the current pose
    # (when the caller gives the demo's viewpoint): a turned live camera sees other faces of thin parts (a chair's
    # back, its legs), and the demo's far faces pulled onto them shifted a chair 2.7 cm at 0.1 deg (docs/pose_search.md)
    facing_cos: float = 0.1  # ... facing: the cosine between the moved normal and the ray to the camera above this
    facing_rounds: int = 2  # the facing part is chosen again this many times per distance stage


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
    unguarded: np.ndarray | None = None  # refused only for lowering the surface agreement (fitness, RMSE): the
    # converged fit, for a caller that judges it by a fuller measure (the pose score, correspondence/pose_search.py)

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "fitness_before": self.fitness_before, "fitness_after": self.fitness_after,
                "rmse_m": self.rmse_after, "correction_deg": self.correction_deg,
                "correction_m": self.correction_m, "reason": self.reason}


def masked_cloud(depth: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray | None,
                 depth_range: tuple[float, float], max_points: int) -> np.ndarray:
    """Camera-frame points of the masked pixels with valid depth, evenly subsampled to at most ``max_points``."""
    return masked_pixels_and_cloud(depth, intrinsics, mask, depth_range, max_points)[1]


def masked_pixels_and_cloud(depth: np.ndarray, intrinsics: CameraIntrinsics, mask: np.ndarray | None,
                            depth_range: tuple[float, float], max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`masked_cloud` with each point's pixel (continuous xy of the pixel centre), row-aligned."""
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
    return xy, intrinsics.unproject(xy, depth[rows, cols].astype(np.float64))


def _cloud(points: np.ndarray, normals_k: int | None = None):
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(points, dtype=np.float64)))
    if normals_k:
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(normals_k))
    return cloud


class IcpTarget:
    """The live cloud of one frame with its normals, estimated once however many ICPs fit onto it (each candidate
    view's, each pose hypothesis's): point-to-plane ICP needs the target's normals, and estimating them is the
    costly part of building it. :func:`refine` accepts one in place of the array, with the same result."""

    def __init__(self, points: np.ndarray) -> None:
        self.points = points
        self._clouds: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.points)

    def cloud(self, normal_neighbours: int):
        """The Open3D cloud with normals from ``normal_neighbours`` nearest neighbours, built on first use."""
        if normal_neighbours not in self._clouds:
            self._clouds[normal_neighbours] = _cloud(self.points, normal_neighbours)
        return self._clouds[normal_neighbours]


def refine(src_cloud: np.ndarray, dst_cloud: "np.ndarray | IcpTarget", start: np.ndarray,
           settings: IcpSettings | None = None, viewpoint: np.ndarray | None = None) -> IcpResult:
    """Point-to-plane ICP of ``src_cloud`` (demo frame) onto ``dst_cloud`` (live frame; an :class:`IcpTarget` when
    several fits share it) from ``start`` (4x4). ``viewpoint``: the camera centre that saw ``src_cloud`` (its frame;
    the origin for a view's own cloud): then only the part facing the live camera at the current pose is fitted and
    judged (:class:`FacingPart`); None: all of it (a cloud the caller already cut to what the camera sees)."""
    s = settings or IcpSettings()
    start = np.asarray(start, dtype=np.float64)
    nan = float("nan")
    if len(src_cloud) < 10 or len(dst_cloud) < 10:
        return IcpResult(False, start, 0.0, 0.0, nan, 0.0, 0.0, "too few depth points for ICP")
    try:
        import open3d  # noqa: F401
    except ImportError:
        return IcpResult(False, start, 0.0, 0.0, nan, 0.0, 0.0,
                         "ICP skipped: open3d is not installed (pip install -e .[vision])")
    target = dst_cloud if isinstance(dst_cloud, IcpTarget) else IcpTarget(dst_cloud)
    if viewpoint is not None and s.facing_only:
        fitted = _fit(src_cloud, target, start, s, FacingPart(src_cloud, viewpoint, s))
        if fitted.accepted or fitted.unguarded is not None:
            return fitted
        # the facing part alone did not converge or moved too far (too little of it on a sparse cloud, measured on
        # a 192-px chair): the whole cloud's fit, as without a viewpoint
    return _fit(src_cloud, target, start, s, None)


def _fit(src_cloud: np.ndarray, target: IcpTarget, start: np.ndarray, s: IcpSettings,
         facing: "FacingPart | None") -> IcpResult:
    """The guarded ICP of :func:`refine`, on ``facing``'s part of ``src_cloud`` (chosen again as the pose moves) or
    on all of it."""
    import open3d as o3d

    reg = o3d.pipelines.registration
    nan = float("nan")
    dst = target.cloud(s.normal_neighbours)
    whole = _cloud(src_cloud)
    part = (lambda T: whole) if facing is None else (lambda T: _cloud(facing(T)))  # noqa: E731
    plane = reg.TransformationEstimationPointToPlane()
    finest = s.max_distances[-1]
    before = reg.evaluate_registration(part(start), dst, finest, start)
    T = start.copy()
    rounds = 1 if facing is None else max(1, s.facing_rounds)  # the facing part is chosen again each round
    for distance in s.max_distances:
        for k in range(rounds):
            iterations = s.iterations_per_stage // rounds + (k < s.iterations_per_stage % rounds)
            criteria = reg.ICPConvergenceCriteria(relative_fitness=1e-6, relative_rmse=1e-6, max_iteration=iterations)
            src = part(T)
            if len(src.points) < 10:
                break
            T = np.asarray(reg.registration_icp(src, dst, distance, T, plane, criteria).transformation)
    src = part(T)
    if len(src.points) < 10:
        return IcpResult(False, start, float(before.fitness), 0.0, nan, 0.0, 0.0,
                         "too few demo points face the live camera for ICP")
    one_more = np.asarray(reg.registration_icp(src, dst, finest, T, plane,
                                               reg.ICPConvergenceCriteria(max_iteration=1)).transformation)
    after = reg.evaluate_registration(src, dst, finest, T)
    correction_deg, correction_m = _motion(start, T, src_cloud)
    residual_deg, residual_m = _motion(T, one_more, src_cloud)
    if residual_deg > s.converged_deg or residual_m > s.converged_m:  # a 2-cycle (nearest neighbours that swap
        # back and forth; measured on a truck, 0.2 deg apart, both 0.3 deg from the truth) is a fixed point too
        two_more = np.asarray(reg.registration_icp(src, dst, finest, one_more, plane,
                                                   reg.ICPConvergenceCriteria(max_iteration=1)).transformation)
        back_deg, back_m = _motion(T, two_more, src_cloud)
        if back_deg <= s.converged_deg and back_m <= s.converged_m and residual_deg <= s.cycle_deg:
            residual_deg, residual_m = back_deg, back_m
    fitness_before, fitness_after = float(before.fitness), float(after.fitness)
    rmse_before = float(before.inlier_rmse) if before.fitness > 0 else nan
    rmse_after = float(after.inlier_rmse) if after.fitness > 0 else nan
    if residual_deg > s.converged_deg or residual_m > s.converged_m:
        reason = (f"ICP did not converge (one more iteration still moves the pose {residual_deg:.2f} deg, "
                  f"{1000 * residual_m:.2f} mm)")
    elif correction_deg > s.max_correction_deg or correction_m > s.max_correction_m:
        reason = f"refinement moved the pose too far ({correction_deg:.1f} deg, {100 * correction_m:.1f} cm)"
    elif fitness_after < s.min_fitness:
        reason = f"surfaces do not agree after refinement (fitness {fitness_after:.2f} < {s.min_fitness})"
    elif fitness_after < fitness_before - s.fitness_tolerance:
        reason = f"refinement lowered the surface agreement (fitness {fitness_before:.2f} -> {fitness_after:.2f})"
    elif (fitness_after <= fitness_before and np.isfinite(rmse_before)
          and rmse_after > rmse_before * (1 + s.rmse_tolerance)):
        reason = f"refinement raised the surface distance (RMSE {1000 * rmse_before:.1f} -> {1000 * rmse_after:.1f} mm)"
    else:
        return IcpResult(True, T, fitness_before, fitness_after, rmse_after, correction_deg, correction_m, "ok")
    surface_only = reason.startswith(("refinement lowered", "refinement raised"))
    return IcpResult(False, start, fitness_before, fitness_after, rmse_after, correction_deg, correction_m, reason,
                     T if surface_only else None)


class FacingPart:
    """The demo points whose surface faces a camera at the origin of the live frame, by pose: the normals are
    estimated once (``normal_neighbours``) and oriented towards ``viewpoint``, the camera that saw the points, so a
    point's outside is known; moved by a pose, a point whose normal turns away from the live camera (cosine with the
    ray to it at most ``facing_cos``) shows the live camera its back, which it cannot see."""

    def __init__(self, points: np.ndarray, viewpoint: np.ndarray, settings: IcpSettings) -> None:
        cloud = _cloud(points, settings.normal_neighbours)
        cloud.orient_normals_towards_camera_location(np.asarray(viewpoint, dtype=np.float64).reshape(3))
        self.points, self.normals, self.cos = points, np.asarray(cloud.normals), settings.facing_cos

    def mask(self, T: np.ndarray) -> np.ndarray:
        moved = self.points @ T[:3, :3].T + T[:3, 3]
        normals = self.normals @ T[:3, :3].T
        return (normals * -moved).sum(1) > self.cos * np.linalg.norm(moved, axis=1)

    def __call__(self, T: np.ndarray) -> np.ndarray:
        return self.points[self.mask(T)]


def _motion(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """How far pose ``b`` is from ``a``: rotation angle (deg) and the displacement of the points' centre (m)."""
    centre = points.mean(0)
    return rotation_error_deg(a, b), float(np.linalg.norm((b[:3, :3] @ centre + b[:3, 3]) - (a[:3, :3] @ centre + a[:3, 3])))
