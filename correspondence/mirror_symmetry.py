"""The demo object's vertical mirror plane, found in the demo view itself, and the demo cloud completed with it.

Why: from one demo view the live camera, turned 90-180 deg, sees surfaces the demo never saw. Under the true pose
the demo cloud lands on the live view's hidden side and explains little, while the turn that lays the seen side on
the live's seen side (a box-like object's 180-deg twin) explains a lot: the scorer prefers the wrong turn. Most
man-made objects (cars, buses, trucks, chairs; mugs, kettles and jugs through the handle) are bilaterally
symmetric about a vertical plane, so the side the demo did not see is, to a first approximation, the reflection of
the side it saw. With gravity known the plane is vertical: two parameters, an angle about the vertical and an
offset, searched exhaustively.

Evidence for a plane comes only from what the demo camera can check (as for the symmetric rivals of
:mod:`correspondence.pose_equivalence`): each reflected point is projected into the demo view and

* **agrees** when it lands on the object's seen surface (within ``surface_m``);
* **contradicts** when the camera saw *through* it (``free_space_m`` in front of the seen depth, or off the
  silhouette where nothing was seen);
* is **unknown** when it lies behind the seen surface: the hidden side, which is what the completion adds.

A plane is accepted only when a fair share of the cloud agrees with its own reflection and almost none contradicts
it; otherwise there is no plane and the demo cloud stays as it was (an asymmetric object is not made symmetric).
The completion adds the reflected points that lie on the hidden side. Their colours and descriptors are unknown
(paint need not be symmetric where the shape is; a mirrored patch has other descriptors): NaN, which the colour
and appearance terms of the pose score skip. Colour takes no part in finding the plane either (see ``_DemoCheck``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass(frozen=True)
class MirrorSettings:
    angle_step_deg: float = 3.0  # coarse grid of the plane's normal about the vertical (0-180 deg)
    offset_step_m: float = 0.004  # coarse grid of the plane's offset along its normal
    coarse_points: int = 400  # points scored on the coarse grid (a random subset: the grid is 60 x ~50 planes)
    fine_angle_deg: float = 2.0  # fine search on every point: +- this about the coarse best, in steps of
    fine_angle_step_deg: float = 0.5  # this (a 1-deg error moves a 20-cm object's far end 3.5 mm)
    fine_offset_m: float = 0.004  # +- this about the coarse best, in steps of fine_offset_step_m
    fine_offset_step_m: float = 0.001
    surface_m: float = 0.01  # a reflected point this near the seen depth lies on the surface
    free_space_m: float = 0.02  # a reflected point this far in front of the seen depth contradicts it
    min_agreement: float = 0.1  # accept a plane only when at least this share of the cloud agrees with its
    # reflection (low: seen from one side, only the surfaces the plane cuts, the top and the ends, map onto seen
    # surfaces; the rest lands on the hidden side) ...
    max_contradiction: float = 0.03  # ... and at most this share contradicts it (the evidence that counts)
    min_hidden: float = 0.1  # ... and the reflection reveals at least this share as hidden points (else no use)


@dataclass(frozen=True)
class MirrorPlane:
    normal: np.ndarray  # (3,) unit, perpendicular to the vertical (demo camera frame)
    offset: float  # the plane is {p : normal . p = offset}
    agreement: float  # share of the cloud whose reflection lands on the seen surface in its colour
    contradiction: float  # share whose reflection the demo view contradicts
    hidden: float  # share whose reflection lies behind the seen surface (what completion adds)

    def reflect(self, points: np.ndarray) -> np.ndarray:
        return points - 2.0 * (points @ self.normal - self.offset)[:, None] * self.normal

    def as_dict(self) -> dict:
        return {"normal": self.normal.tolist(), "offset": self.offset, "agreement": self.agreement,
                "contradiction": self.contradiction, "hidden": self.hidden}


@dataclass(frozen=True)
class MirrorCompletion:
    points: np.ndarray  # (N + K, 3): the demo cloud, then the K reflected hidden points
    colors: np.ndarray | None  # (N + K, 3) RGB in 0-1; the reflected rows are NaN (unknown)
    descriptors: np.ndarray | None  # (N + K, C); the reflected rows are NaN (unknown)
    inferred: np.ndarray  # (N + K,) bool: True for the reflected rows
    plane: MirrorPlane


class _DemoCheck:
    """The demo view's verdict on reflected points, by geometry only: paint is often not symmetric where the shape
    is (a bus's doors, a car's decals; on this project's objects the true plane's reflection lands on another
    colour for 24-31 % of a car's or a bus's points, and contradicts their depth for under 1 %)."""

    def __init__(self, view, s: MirrorSettings):
        self.depth = np.asarray(view.depth, dtype=np.float64)
        self.mask = np.asarray(view.mask, dtype=bool)
        self.intrinsics, self.s = view.intrinsics, s

    def __call__(self, reflected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(..., N, 3) reflected points -> (agreement weight in 0-1, contradicts, hidden) per point. The agreement
        is soft (1 on the seen depth, falling to 0 at ``surface_m``) so the fine search can place the plane finer
        than the depth's tolerance."""
        s, depth = self.s, self.depth
        h, w = depth.shape
        z = reflected[..., 2]
        front = z > 1e-3
        xy = self.intrinsics.project(np.where(front[..., None], reflected, 1.0))
        col, row = np.floor(xy[..., 0]).astype(np.int64), np.floor(xy[..., 1]).astype(np.int64)
        inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        row, col = np.where(inside, row, 0), np.where(inside, col, 0)
        seen = depth[row, col]
        on = self.mask[row, col] & inside
        has = np.isfinite(seen) & (seen > 0) & inside
        seen = np.where(has, seen, np.inf)
        agree = np.where(on, np.clip(1.0 - np.abs(z - seen) / s.surface_m, 0.0, 1.0), 0.0)
        contradicts = inside & ((has & (z < seen - s.free_space_m)) | (~on & ~has))
        hidden = has & (z > seen + s.surface_m)
        return agree, contradicts, hidden


def _horizontal_basis(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    e1 = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(u, e1)


def _grid_scores(points: np.ndarray, check: _DemoCheck, normals: np.ndarray, offsets: np.ndarray,
                 s: MirrorSettings) -> np.ndarray:
    """Score every (normal, offset) pair, (A, D): the agreement of a plane whose reflection the view does not
    contradict (at most ``max_contradiction``, less four times the contradiction: a view can hide a surface, never
    show a wrong one) and that reveals a hidden side (at least ``min_hidden``); -inf for any other. A plane that
    only maps the seen side onto itself (a bus's front onto its back, seen end-on) may be a symmetry too, but says
    nothing about what the live camera may see that the demo did not."""
    out = np.empty((len(normals), len(offsets)))
    for i, n in enumerate(normals):
        distance = points @ n  # (N,)
        reflected = points[None] - 2.0 * (distance[None] - offsets[:, None])[..., None] * n  # (D, N, 3)
        agree, contradicts, hidden = check(reflected)
        contradiction = contradicts.mean(1)
        valid = (contradiction <= s.max_contradiction) & (hidden.mean(1) >= s.min_hidden)
        out[i] = np.where(valid, agree.mean(1) - 4.0 * contradiction, -np.inf)
    return out


def estimate_mirror_plane(points: np.ndarray, view, up: np.ndarray,
                          settings: MirrorSettings | None = None, seed: int = 0) -> MirrorPlane | None:
    """The vertical plane about which the demo cloud best agrees with its own reflection, as the demo view
    (``view``: a :class:`~correspondence.pose_search.LiveFrame` with the demo's depth, mask, intrinsics and image)
    checks it; ``up``: the vertical in the demo camera. None when no plane has strong evidence (module doc)."""
    s = settings or MirrorSettings()
    plane = best_mirror_plane(points, view, up, s, seed)
    strong = (plane is not None and plane.agreement >= s.min_agreement and plane.contradiction <= s.max_contradiction
              and plane.hidden >= s.min_hidden)
    return plane if strong else None


def best_mirror_plane(points: np.ndarray, view, up: np.ndarray,
                      settings: MirrorSettings | None = None, seed: int = 0) -> MirrorPlane | None:
    """The best-scoring vertical plane and its evidence, strong or not (None: too few points, no vertical, or no
    plane both consistent with the view and revealing a hidden side)."""
    s = settings or MirrorSettings()
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 50 or not np.isfinite(up).all() or np.linalg.norm(up) < 1e-9:
        return None
    check = _DemoCheck(view, s)
    e1, e2 = _horizontal_basis(up)
    pick = np.random.default_rng(seed).choice(len(points), min(s.coarse_points, len(points)), replace=False)
    sub = points[pick]
    angles = np.radians(np.arange(0.0, 180.0, s.angle_step_deg))
    normals = np.cos(angles)[:, None] * e1 + np.sin(angles)[:, None] * e2
    projected = sub @ normals.T  # (N, A): the plane must cut the cloud (about a plane outside it, the reflection
    lo, hi = projected.min(0), projected.max(0)  # lands elsewhere)
    best = (-np.inf, 0.0, 0.0)
    for i, n in enumerate(normals):
        offsets = np.arange(lo[i], hi[i] + 1e-9, s.offset_step_m)
        scores = _grid_scores(sub, check, n[None], offsets, s)[0]
        j = int(np.argmax(scores))
        if scores[j] > best[0]:
            best = (float(scores[j]), float(angles[i]), float(offsets[j]))
    score, angle, offset = best
    if not np.isfinite(score):
        return None
    fine_angles = angle + np.radians(np.arange(-s.fine_angle_deg, s.fine_angle_deg + 1e-9, s.fine_angle_step_deg))
    fine_normals = np.cos(fine_angles)[:, None] * e1 + np.sin(fine_angles)[:, None] * e2
    fine_offsets = offset + np.arange(-s.fine_offset_m, s.fine_offset_m + 1e-9, s.fine_offset_step_m)
    scores = _grid_scores(points, check, fine_normals, fine_offsets, s)
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)  # the coarse best's neighbourhood: a subset's
    # verdict may not hold on every point, and then no fine plane passes
    if not np.isfinite(scores[i, j]):
        return None
    plane = MirrorPlane(fine_normals[i], float(fine_offsets[j]), 0.0, 0.0, 0.0)
    agree, contradicts, hidden = check(plane.reflect(points))
    return MirrorPlane(plane.normal, plane.offset, float((agree > 0).mean()), float(contradicts.mean()),
                       float(hidden.mean()))


def complete_with_mirror(points: np.ndarray, descriptors: np.ndarray | None, colors: np.ndarray | None, view,
                         plane: MirrorPlane, settings: MirrorSettings | None = None) -> MirrorCompletion:
    """The demo cloud plus the reflections of its points that land on the demo's hidden side (the seen side's
    reflections duplicate points it has; contradicted ones are left out)."""
    s = settings or MirrorSettings()
    reflected = plane.reflect(np.asarray(points, dtype=np.float64))
    _, _, hidden = _DemoCheck(view, s)(reflected)
    new = reflected[hidden]
    inferred = np.concatenate([np.zeros(len(points), bool), np.ones(len(new), bool)])
    all_colors = None  # the reflected points' colours are unknown (paint need not be symmetric): NaN, not compared
    if colors is not None:
        seen_colors = np.asarray(colors, dtype=np.float64)
        seen_colors = seen_colors / 255.0 if seen_colors.size and seen_colors.max() > 1.0 else seen_colors
        all_colors = np.concatenate([seen_colors, np.full((len(new), 3), np.nan)])
    all_descriptors = None
    if descriptors is not None:
        unknown = np.full((len(new), descriptors.shape[1]), np.nan, dtype=descriptors.dtype)
        all_descriptors = np.concatenate([descriptors, unknown])
    return MirrorCompletion(np.concatenate([points, new]), all_colors, all_descriptors, inferred, plane)
