"""Exact ground truth between rendered views: pixel correspondences, functional alignments, keypoint pairs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .types import ObjectInstance, RenderedView


def _transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


@dataclass(frozen=True)
class PixelCorrespondences:
    """Row-aligned pixel pairs in continuous coordinates (pixel centres), plus the 3D points they come from."""

    xy_a: np.ndarray  # (N, 2)
    xy_b: np.ndarray  # (N, 2)
    points_a: np.ndarray  # (N, 3) in A's object frame

    def __len__(self) -> int:
        return len(self.xy_a)

    def rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer [row, col] arrays (the HANDAL functional annotation convention)."""
        to_rc = lambda xy: np.stack([np.floor(xy[:, 1]), np.floor(xy[:, 0])], 1).astype(np.int64)  # noqa: E731
        return to_rc(self.xy_a), to_rc(self.xy_b)


def visible_in(view: RenderedView, points_object: np.ndarray, depth_tolerance: float = 0.003
               ) -> tuple[np.ndarray, np.ndarray]:
    """Project object-frame points into a view; return pixel xy and a visibility flag (in frame, on the object,
    and not occluded: the view's depth at that pixel agrees with the point's depth)."""
    cam = _transform(view.pose, points_object)
    xy = view.intrinsics.project(cam)
    h, w = view.depth.shape
    col, row = np.floor(xy[:, 0]).astype(np.int64), np.floor(xy[:, 1]).astype(np.int64)
    inside = (cam[:, 2] > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    ok = np.zeros(len(points_object), dtype=bool)
    r, c = row[inside], col[inside]
    depth = view.depth[r, c]
    tol = np.maximum(depth_tolerance, 0.01 * cam[inside, 2])
    ok[inside] = view.mask[r, c] & (np.abs(depth - cam[inside, 2]) < tol)
    return xy, ok


def same_object_correspondences(a: RenderedView, b: RenderedView, max_points: int | None = None,
                                rng: np.random.Generator | None = None, depth_tolerance: float = 0.003,
                                restrict: np.ndarray | None = None) -> PixelCorrespondences:
    """Pixels of A whose surface point is visible in B, and where it lands there.

    ``restrict``: an optional boolean mask over A's pixels (e.g. a functional part). The B pixel is the exact
    projection (continuous); its rendered surface point lies within the depth tolerance of A's point.
    """
    valid = a.mask if restrict is None else (a.mask & restrict)
    rows, cols = np.nonzero(valid)
    if max_points is not None and len(rows) > max_points:
        pick = (rng or np.random.default_rng(0)).choice(len(rows), max_points, replace=False)
        rows, cols = rows[np.sort(pick)], cols[np.sort(pick)]
    points = a.points_object[rows, cols].astype(np.float64)
    xy_b, ok = visible_in(b, points, depth_tolerance)
    xy_a = np.stack([cols + 0.5, rows + 0.5], 1).astype(np.float64)
    return PixelCorrespondences(xy_a[ok], xy_b[ok], points[ok])


# ---- functional alignment ------------------------------------------------------------------------------------
def sample_surface(obj: ObjectInstance, face_mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform samples on the selected triangles."""
    faces = obj.faces[face_mask]
    if len(faces) == 0:
        raise InputError(f"{obj.instance_id}: no triangles selected for sampling")
    tri = obj.vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    pick = rng.choice(len(faces), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


@dataclass(frozen=True)
class FunctionalAlignment:
    """Similarity transform taking A's functional part onto B's (A object frame -> B object frame)."""

    function: str
    transform: np.ndarray  # (4, 4), rotation * scale in the upper-left block
    scale: float
    rmse: float  # metres, in B's frame, over matched samples
    fitness: float  # share of A samples within the match radius of B's part
    match_radius: float


def _proper_pca_frames(points: np.ndarray) -> list[np.ndarray]:
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    frames = []
    for sx in (1, -1):
        for sy in (1, -1):
            R = vt.T * np.array([sx, sy, 1.0])
            if np.linalg.det(R) < 0:
                R[:, 2] *= -1
            frames.append(R)
    return frames


def _rotation_angle(T: np.ndarray) -> float:
    R = T[:3, :3] / np.cbrt(abs(np.linalg.det(T[:3, :3])))
    return float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))


def align_functional_parts(a: ObjectInstance, b: ObjectInstance, function: str, n_samples: int = 3000,
                           seed: int = 0, match_radius_ratio: float = 0.08) -> FunctionalAlignment:
    """Align A's functional part to B's with a similarity ICP, as the dense functional correspondence work does
    (functional parts aligned in 3D, then surface points that end up close are correspondences).

    Candidates: the canonical object frames (same-category objects share them) and PCA frames; each is refined by
    point-to-point ICP with scaling (Open3D); the best fitness, then lowest RMSE, wins.
    """
    import open3d as o3d

    for obj in (a, b):
        if function not in obj.functional_parts:
            raise InputError(f"{obj.instance_id} ({obj.category}) has no functional part for {function!r}; "
                             f"it has {sorted(obj.functional_parts)}")
    rng = np.random.default_rng(seed)
    pa = sample_surface(a, a.function_face_mask(function), n_samples, rng)
    pb = sample_surface(b, b.function_face_mask(function), n_samples, rng)
    size_a = np.linalg.norm(pa.max(0) - pa.min(0))
    size_b = np.linalg.norm(pb.max(0) - pb.min(0))
    radius = match_radius_ratio * size_b
    cloud_a, cloud_b = o3d.geometry.PointCloud(), o3d.geometry.PointCloud()
    cloud_a.points, cloud_b.points = o3d.utility.Vector3dVector(pa), o3d.utility.Vector3dVector(pb)
    scale0 = size_b / max(size_a, 1e-9)
    inits = [np.eye(3)] + [Rb @ Ra.T for Ra in _proper_pca_frames(pa) for Rb in _proper_pca_frames(pb)[:1]]
    estimation = o3d.pipelines.registration.TransformationEstimationPointToPoint(with_scaling=True)
    criteria = o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=60)
    results = []
    for R0 in inits:
        T0 = np.eye(4)
        T0[:3, :3] = scale0 * R0
        T0[:3, 3] = pb.mean(0) - scale0 * R0 @ pa.mean(0)
        for r in (4 * radius, radius):
            result = o3d.pipelines.registration.registration_icp(cloud_a, cloud_b, r, T0, estimation, criteria)
            T0 = result.transformation
        results.append(result)
    # Symmetric parts (a rim is a ring) fit equally well flipped; among the near-best fits prefer the rotation
    # closest to the canonical frames, in which both objects stand upright facing +x.
    top_fitness = max(r.fitness for r in results)
    good = [r for r in results if r.fitness >= top_fitness - 0.02]
    top_rmse = min(r.inlier_rmse for r in good)
    good = [r for r in good if r.inlier_rmse <= 1.2 * top_rmse + 1e-6]
    result = min(good, key=lambda r: _rotation_angle(np.asarray(r.transformation)))
    T = np.asarray(result.transformation)
    scale = float(np.cbrt(abs(np.linalg.det(T[:3, :3]))))
    return FunctionalAlignment(function, T, scale, float(result.inlier_rmse), float(result.fitness), float(radius))


def functional_correspondences(view_a: RenderedView, obj_a: ObjectInstance, view_b: RenderedView,
                               obj_b: ObjectInstance, alignment: FunctionalAlignment, max_points: int | None = 2000,
                               rng: np.random.Generator | None = None) -> PixelCorrespondences:
    """Pixels on A's visible functional part matched to the B pixel whose surface point is nearest after the
    alignment, kept when that distance is under the alignment's match radius."""
    from scipy.spatial import cKDTree

    part_a = np.isin(view_a.part_map, [obj_a.part_id(p) for p in obj_a.functional_parts[alignment.function]])
    part_b = np.isin(view_b.part_map, [obj_b.part_id(p) for p in obj_b.functional_parts[alignment.function]])
    rows_a, cols_a = np.nonzero(part_a & view_a.mask)
    rows_b, cols_b = np.nonzero(part_b & view_b.mask)
    if len(rows_a) == 0 or len(rows_b) == 0:
        return PixelCorrespondences(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 3)))
    if max_points is not None and len(rows_a) > max_points:
        pick = np.sort((rng or np.random.default_rng(0)).choice(len(rows_a), max_points, replace=False))
        rows_a, cols_a = rows_a[pick], cols_a[pick]
    points_a = view_a.points_object[rows_a, cols_a].astype(np.float64)
    moved = _transform(alignment.transform, points_a)
    tree = cKDTree(view_b.points_object[rows_b, cols_b].astype(np.float64))
    distance, index = tree.query(moved)
    keep = distance < alignment.match_radius
    xy_a = np.stack([cols_a + 0.5, rows_a + 0.5], 1)[keep]
    xy_b = np.stack([cols_b[index] + 0.5, rows_b[index] + 0.5], 1)[keep]
    return PixelCorrespondences(xy_a.astype(np.float64), xy_b.astype(np.float64), points_a[keep])


# ---- keypoint pairs -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeypointPairs:
    """SOC: same name in both views; CC: per concept, the visible keypoints of each side."""

    soc: tuple[str, ...]
    cc: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]  # (concept, src names, trg names)
    cross_category: bool


def keypoint_pairs(obj_a: ObjectInstance, view_a: RenderedView, obj_b: ObjectInstance,
                   view_b: RenderedView) -> KeypointPairs:
    visible_a = [kp for kp, v in zip(obj_a.keypoints, view_a.keypoints_visible) if v]
    visible_b = [kp for kp, v in zip(obj_b.keypoints, view_b.keypoints_visible) if v]
    names_b = {kp.name for kp in visible_b}
    soc = tuple(kp.name for kp in visible_a if kp.name in names_b)
    concepts = []
    for concept in dict.fromkeys(kp.keypoint.concept.name for kp in visible_a):
        src = tuple(kp.name for kp in visible_a if kp.keypoint.concept.name == concept)
        trg = tuple(kp.name for kp in visible_b if kp.keypoint.concept.name == concept)
        if trg:
            concepts.append((concept, src, trg))
    return KeypointPairs(soc, tuple(concepts), obj_a.category != obj_b.category)
