"""Point-to-plane ICP of an upright object that keeps it upright: the pose's translation and its turn about the live
vertical are fitted, its tilt is held. Why: a mug or a jug stands on the table in both frames, so once the pose is
levelled (:func:`~correspondence.handle_turn.level`) its tilt is known exactly, and the free six-degree ICP
(:meth:`~correspondence.view_pool.FusedFit.polish`) tilts it again by 0.5-2 deg and slides it along the body's
axis, because a round body's surface fixes neither well; the rims of a mug at 0.3-0.4 m then land 5-10 px off
(docs/multiview_demo.md "Handle turn"). With four unknowns the body's surface fixes the translation across the
axis, the rim and the base the height, and the handle or spout the turn.

The fit is linear in each step: a moved point ``p`` with its live neighbour ``q`` (normal ``n``) gives the residual
``(p - q) . n``; a small turn ``theta`` about the vertical ``u`` through the points' centre ``c`` and a shift ``t``
change it by ``theta * ((p - c) x n) . u + t . n``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class UprightSettings:
    """``distances_m``: correspondence gates, coarse to fine (the guarded ICP's 15 and 8 mm and one at 4 mm, about
    the scan's ``match_m``: on the last stage only points on the live surface pull); ``iterations``: per gate;
    ``min_pairs``: fewer pairs end the fit (the pose as it stands); ``converged_m`` / ``converged_deg``: a step
    smaller than both ends a gate; ``max_turn_deg`` / ``max_shift_m``: a fit that turns or moves the pose further is
    refused (the pose it started from is kept): it makes a pose precise, it does not move it to another basin.
    ``facing_cos``: see the field."""

    distances_m: tuple[float, ...] = (0.015, 0.008, 0.004)
    iterations: int = 15
    min_pairs: int = 30
    converged_m: float = 1e-5
    converged_deg: float = 0.005
    max_turn_deg: float = 5.0
    max_shift_m: float = 0.02
    rcond: float = 1e-3  # a direction the points fix less than this share of the best-fixed one does not move
    # (least squares' cut-off): a bare round body does not fix its turn, and without the cut-off noise turns it
    facing_cos: float = 0.1  # with the demo points' normals: a moved point is fitted only when its normal's cosine
    # with the ray to the live camera is above this (the guarded ICP's ``IcpSettings.facing_cos``)


@dataclass(frozen=True)
class UprightFit:
    """The fit's outcome: ``transform`` the fitted pose (or the start when refused), ``turn_deg`` / ``shift_m`` how
    far it turned about the vertical / moved the fitted points' centre, ``pairs`` the last step's correspondences,
    ``accepted`` whether it is taken, ``reason`` why not."""

    transform: np.ndarray
    turn_deg: float
    shift_m: float
    pairs: int
    accepted: bool
    reason: str


def _about(u: np.ndarray, theta: float, c: np.ndarray) -> np.ndarray:
    """The 4x4 turn by ``theta`` (radians) about the line through ``c`` along the unit vector ``u``."""
    K = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    R = np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, c - R @ c
    return M


def upright_icp(T: np.ndarray, points: np.ndarray, live_points: np.ndarray, live_normals: np.ndarray,
                up: np.ndarray, visible: Callable[[np.ndarray, np.ndarray], np.ndarray],
                settings: UprightSettings | None = None, tree=None, normals: np.ndarray | None = None
                ) -> UprightFit:
    """``T`` (demo -> live) fitted by point-to-plane ICP of the demo ``points`` the live camera sees under it
    (``visible(points, T)``, chosen again each step) onto ``live_points`` (with ``live_normals``), turning only
    about the live vertical ``up`` (module doc). ``tree``: a cKDTree of ``live_points`` when the caller has one.
    ``normals``: the demo points' outward normals (each towards the camera that saw it); with them only the points
    facing the live camera are fitted. Why: a z-buffer keeps the inside of a mug's near wall (a few millimetres
    behind its outside, within the buffer's margin), and pulled onto the live outside it slid the fitted mugs
    1.3-1.5 mm towards the camera."""
    from scipy.spatial import cKDTree

    s = settings or UprightSettings()
    u = np.asarray(up, dtype=np.float64)
    u = u / np.linalg.norm(u)
    points = np.asarray(points, dtype=np.float64)
    tree = tree if tree is not None else cKDTree(live_points)
    start = np.asarray(T, dtype=np.float64)
    current, pairs = start.copy(), 0
    for gate in s.distances_m:
        for _ in range(s.iterations):
            keep = visible(points, current)
            if normals is not None:
                moved_normals = normals @ current[:3, :3].T
                at = points @ current[:3, :3].T + current[:3, 3]
                keep = keep & ((moved_normals * -at).sum(1) > s.facing_cos * np.linalg.norm(at, axis=1))
            seen = points[keep]
            moved = seen @ current[:3, :3].T + current[:3, 3]
            dist, idx = tree.query(moved, distance_upper_bound=gate)
            ok = np.isfinite(dist)
            pairs = int(ok.sum())
            if pairs < s.min_pairs:
                return UprightFit(start, 0.0, 0.0, pairs, False,
                                  f"too few points on the live surface ({pairs} within {1000 * gate:.0f} mm)")
            p, q, n = moved[ok], live_points[idx[ok]], live_normals[idx[ok]]
            c = p.mean(0)
            arm = max(float(np.sqrt(((p - c) ** 2).sum(1).mean())), 1e-3)  # the turn as a motion in metres
            A = np.hstack([n, np.cross(p - c, n) @ u[:, None] / arm])
            x = np.linalg.lstsq(A, -np.einsum("ij,ij->i", p - q, n), rcond=s.rcond)[0]
            x[3] /= arm
            step = _about(u, float(x[3]), c)
            step[:3, 3] += x[:3]
            current = step @ current
            if np.linalg.norm(x[:3]) < s.converged_m and abs(np.degrees(x[3])) < s.converged_deg:
                break
    R = current[:3, :3] @ start[:3, :3].T
    turn = float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))
    centre = points.mean(0)
    shift = float(np.linalg.norm((current - start)[:3, :3] @ centre + (current - start)[:3, 3]))
    if turn > s.max_turn_deg or shift > s.max_shift_m:
        return UprightFit(start, turn, shift, pairs, False,
                          f"the fit turned {turn:.1f} deg and moved {1000 * shift:.1f} mm (at most "
                          f"{s.max_turn_deg:.0f} deg and {1000 * s.max_shift_m:.0f} mm)")
    return UprightFit(current, turn, shift, pairs, True, "ok")


__all__ = ["UprightFit", "UprightSettings", "upright_icp"]
