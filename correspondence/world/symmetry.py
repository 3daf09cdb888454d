"""Rotational symmetries of an object about its vertical axis, and BOP's symmetry-aware pose errors.

Why: a stool or a bottle turned by a symmetry looks the same to depth, so a pose that differs from the truth by
one of them is as right as the truth. BOP (Hodan et al., "BOP Challenge 2020 on 6D Object Localization", sec. 2.2)
judges such objects by

* **MSSD**, the maximum symmetry-aware surface distance: ``min over S of max over x of |P_est x - P_true S x|``;
* **ADD-S** (Hinterstoisser et al. 2012), the mean distance to the closest model point:
  ``mean over x of min over y of |P_est x - P_true y|``, which needs no list of symmetries;

both counted correct within 10 % of the object's diameter here. The symmetries are found from the mesh, not
declared: turns about the vertical axis through the surface centroid (an axis every symmetry of a part that
stands on the table keeps) under which every surface sample lands within ``tolerance`` of the surface. Objects in
this world move on the table (turns about the vertical), so symmetries about other axes are never needed.
Geometry only, as in BOP: a texture may still tell the turns apart.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .groundtruth import sample_surface
from .mesh import rot_z
from .types import ObjectInstance

CONTINUOUS_TEST_DEG = (7.0, 13.0, 29.0, 61.0, 97.0, 143.0)  # off every n-fold angle n <= 12: all pass = continuous
MAX_ORDER = 12
CONTINUOUS_STEP_DEG = 5.0  # a continuous symmetry is listed as turns this far apart


@dataclass(frozen=True, eq=False)
class Symmetry:
    """The turns about the vertical axis that map the object onto itself (object frame, identity first)."""

    order: int  # 1: none; n: n-fold; 0: continuous (listed every CONTINUOUS_STEP_DEG)
    transforms: tuple[np.ndarray, ...]  # (4, 4) object-frame maps, identity first
    axis_xy: np.ndarray  # (2,) where the vertical axis pierces the table, object frame
    diameter: float  # largest distance between two surface points (metres)

    @property
    def symmetric(self) -> bool:
        return self.order != 1

    @property
    def label(self) -> str:
        return {0: "continuous", 1: "none"}.get(self.order, f"{self.order}-fold")


def _turn(angle_deg: float, axis_xy: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rot_z(np.radians(angle_deg))
    centre = np.array([axis_xy[0], axis_xy[1], 0.0])
    T[:3, 3] = centre - T[:3, :3] @ centre
    return T


def _diameter(points: np.ndarray) -> float:
    from scipy.spatial import ConvexHull

    hull = points[ConvexHull(points).vertices] if len(points) > 4 else points
    return float(np.sqrt(((hull[:, None] - hull[None]) ** 2).sum(-1).max()))


_CACHE: dict[tuple, Symmetry] = {}


def object_symmetry(obj: ObjectInstance, tolerance_fraction: float = 0.01, samples: int = 4000) -> Symmetry:
    """The object's turns about the vertical axis (see the module doc); ``tolerance_fraction`` of the diameter is
    how far a turned surface sample may lie from the surface (the mesh's tessellation alone moves a round part's
    samples by well under 1 %). Cached per object."""
    from scipy.spatial import cKDTree

    key = (id(obj), obj.instance_id, len(obj.vertices), tolerance_fraction, samples)
    if key in _CACHE:
        return _CACHE[key]
    rng = np.random.default_rng(0)
    every_face = np.ones(len(obj.faces), dtype=bool)
    dense = sample_surface(obj, every_face, 8 * samples, rng)
    probe = sample_surface(obj, every_face, samples, rng)
    vertices = np.asarray(obj.vertices, dtype=np.float64)
    diameter = _diameter(vertices)
    tree = cKDTree(dense)
    tolerance = tolerance_fraction * diameter

    def maps_onto_itself(angle: float, axis_xy: np.ndarray) -> bool:
        T = _turn(angle, axis_xy)
        distance, _ = tree.query(probe @ T[:3, :3].T + T[:3, 3])
        return bool(np.percentile(distance, 99) < tolerance)

    def order_about(axis_xy: np.ndarray) -> int:
        if all(maps_onto_itself(a, axis_xy) for a in CONTINUOUS_TEST_DEG):
            return 0
        return next((n for n in range(MAX_ORDER, 1, -1) if maps_onto_itself(360.0 / n, axis_xy)), 1)

    # where the axis may pierce the table: the area centroid (exact for an exactly symmetric surface), the
    # bounding box's centre and the object frame's origin (a small off-axis detail, a label, moves the first)
    candidates = (dense[:, :2].mean(0), 0.5 * (vertices[:, :2].min(0) + vertices[:, :2].max(0)), np.zeros(2))
    orders = [order_about(c) for c in candidates]
    rank = [(1 if o == 1 else 0, -o if o else -np.inf) for o in orders]  # continuous, then the highest order
    best = int(min(range(len(candidates)), key=lambda i: rank[i]))
    order, axis_xy = orders[best], candidates[best]
    angles = np.arange(0.0, 360.0, CONTINUOUS_STEP_DEG) if order == 0 else np.arange(order) * 360.0 / order
    symmetry = Symmetry(order, tuple(_turn(a, axis_xy) for a in angles), axis_xy, diameter)
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[key] = symmetry
    return symmetry


def model_points(obj: ObjectInstance, n: int = 1000) -> np.ndarray:
    """Area-uniform surface samples (object frame) for the pose errors, fixed per object."""
    return sample_surface(obj, np.ones(len(obj.faces), dtype=bool), n, np.random.default_rng(1))


def _apply(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


def mssd(estimate: np.ndarray, truth: np.ndarray, points: np.ndarray, symmetry: Symmetry) -> float:
    """BOP's maximum symmetry-aware surface distance (metres) between two object -> camera poses."""
    moved = _apply(estimate, points)
    return float(min(np.linalg.norm(moved - _apply(truth @ S, points), axis=1).max() for S in symmetry.transforms))


def add_s(estimate: np.ndarray, truth: np.ndarray, points: np.ndarray) -> float:
    """ADD-S (metres): mean distance from each estimated model point to the nearest true one."""
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(_apply(truth, points)).query(_apply(estimate, points))
    return float(distance.mean())
