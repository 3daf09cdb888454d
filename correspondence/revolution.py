"""Which points of a demo cloud fix the object's turn about its vertical: a near-rotationally-symmetric object (a
mug, a jug) agrees with the live frame under any turn on its round body, and only a few per cent of its points (the
handle, the spout) tell the turns apart. The pose score's agreement and coverage count every point alike, so a
turn 20-35 deg off, which moves the handle off the live handle but keeps the body on the body, scores within a few
hundredths of the truth (docs/multiview_demo.md "Turn weights").

:func:`fit_revolution` fits the surface of revolution about the demo's vertical through the cloud (one axis, a
radius per height slice, by least squares with the far points trimmed), and :meth:`Revolution.weights` gives each
point ``1 + (gain - 1) * off`` where ``off`` in [0, 1] is how far the point lies from that surface (0 on it, 1 at
``2 * tolerance`` and beyond) and ``gain`` makes the off-surface points weigh as much as the on-surface ones
together (capped at :data:`MAX_GAIN`). An object that is not round (its points mostly off any such surface, or a
body whose fit residual is a large share of its radius) gets no :class:`Revolution` (None): its score stays the
unweighted one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SLICES = 8  # height slices, each with its own radius: a jug narrows to its neck
MAX_GAIN = 15.0  # the off-surface points' weight at most this many times the body's: a cloud with a handful of
# outliers (depth noise at the rim) must not let them decide the score
ROUND_RESIDUAL = 0.08  # the points' median distance from the fitted surface, as a share of its median radius, above
# which the object is not round (a box's sides are ~0.1 R from the circle through its corners)
MAX_OFF_SHARE = 0.35  # more points than this off the surface: the object is not a round body with an appendage
MIN_POINTS = 100
TRIM_ROUNDS = 10  # at most this many fits, each on the points the one before kept. Three were not enough for one
# view's half of a mug: its handle (13 % of the points) held the third fit's centre 6 mm off and its radius 5 mm
# wide, the body then read as handle; the kept set is stable after six (tests/test_revolution.py)
ROUNDNESS_ROUND = 3  # whether the object is round is judged on the third fit, as ROUND_RESIDUAL was measured: trimmed
# further, a box's fit keeps only the points nearest its circle (68 % of them) and its residual falls under the limit


@dataclass(frozen=True)
class Revolution:
    """A surface of revolution in the demo frame: ``axis`` (unit, the vertical), ``centre`` (a point on the axis),
    the slices' height edges and radii, and the distance ``tolerance`` (m) within which a point is on it."""

    axis: np.ndarray
    centre: np.ndarray
    edges: np.ndarray
    radii: np.ndarray
    tolerance: float
    gain: float

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Each point's distance (m) from the surface, along its radius."""
        rel = np.asarray(points, dtype=np.float64) - self.centre
        h = rel @ self.axis
        r = np.linalg.norm(rel - h[:, None] * self.axis, axis=1)
        s = np.clip(np.searchsorted(self.edges, h) - 1, 0, len(self.radii) - 1)
        return np.abs(r - self.radii[s])

    def off(self, points: np.ndarray) -> np.ndarray:
        """0 on the surface (within ``tolerance``), rising to 1 at twice it."""
        return np.clip(self.distance(points) / self.tolerance - 1.0, 0.0, 1.0)

    def weights(self, points: np.ndarray) -> np.ndarray:
        return 1.0 + (self.gain - 1.0) * self.off(points)


def _basis(axis: np.ndarray) -> np.ndarray:
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(axis, e1)])


def _fit(q: np.ndarray, slice_of: np.ndarray, keep: np.ndarray, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """Common centre (2D) and per-slice radius: ``|q - c|^2 = r_s^2`` is linear in (c, r_s^2 - |c|^2)."""
    A = np.zeros((int(keep.sum()), 2 + slices))
    A[:, :2] = 2 * q[keep]
    A[np.arange(len(A)), 2 + slice_of[keep]] = 1.0
    b = (q[keep] ** 2).sum(1)
    solution = np.linalg.lstsq(A, b, rcond=None)[0]
    centre = solution[:2]
    radii = np.sqrt(np.maximum(solution[2:] + centre @ centre, 0.0))
    return centre, radii


def _scale(radii: np.ndarray) -> float:
    return float(np.median(radii[radii > 0])) if (radii > 0).any() else 0.0


def fit_revolution(points: np.ndarray, up: np.ndarray, min_tolerance_m: float = 0.003) -> Revolution | None:
    """The surface of revolution about ``up`` (the vertical in the cloud's frame) that fits ``points`` (N, 3), or
    None when the object is not round (see the module doc) or the cloud is too small."""
    points = np.asarray(points, dtype=np.float64)
    points = points[np.isfinite(points).all(1)]
    if len(points) < MIN_POINTS:
        return None
    axis = np.asarray(up, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    basis = _basis(axis)
    h, q = points @ axis, points @ basis.T
    edges = np.quantile(h, np.linspace(0, 1, SLICES + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    slice_of = np.clip(np.searchsorted(edges, h) - 1, 0, SLICES - 1)
    keep = np.ones(len(points), dtype=bool)
    for k in range(TRIM_ROUNDS):  # trimmed until the kept points stay the same: the handle pulls the first fit's
        centre, radii = _fit(q, slice_of, keep, SLICES)  # centre towards it
        d = np.abs(np.linalg.norm(q - centre, axis=1) - radii[slice_of])
        if k < ROUNDNESS_ROUND:  # the roundness test's fit (below)
            residual, scale = float(np.median(d)), _scale(radii)
        trimmed = d <= max(2.5 * float(np.median(d)), min_tolerance_m)
        if np.array_equal(trimmed, keep):
            break
        keep = trimmed
    if scale <= 0 or residual > ROUND_RESIDUAL * scale:  # every point's: the trimmed fit of a box keeps the points
        return None  # nearest its circle, whose residual alone would call the box round
    body = float(np.median(d[keep])) if keep.any() else np.inf
    scale = _scale(radii)
    tolerance = max(3.0 * body, min_tolerance_m, 0.05 * scale)
    off = np.clip(d / tolerance - 1.0, 0.0, 1.0)
    share = float(off.mean())
    if share > MAX_OFF_SHARE:
        return None
    gain = float(np.clip((1.0 - share) / max(share, 1e-6), 1.0, MAX_GAIN))
    centre3 = basis.T @ centre
    return Revolution(axis, centre3, edges, radii, tolerance, gain)
