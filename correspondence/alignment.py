"""From pixel correspondences to a pose a robot can act on: matches lifted to 3D with depth
(:mod:`correspondence.lifting`, re-exported here), then a robust rigid transform (RANSAC + weighted Umeyama refinement), or a 2D similarity when there is no depth.

Safety rule, everywhere in this module: when the data cannot support a pose, the result says so
(``success=False`` and a ``reason``) and carries **no transform** (``transform is None``), never a guess.
Pixels without trustworthy depth become NaN points flagged invalid, never wrong points; the solvers
skip rows containing NaN, so ``lift`` output can be passed straight in.

Conventions:

* pixel coordinates are continuous (pixel (row i, col j) covers ``[j, j+1) x [i, i+1)``), as in
  :mod:`correspondence.camera`;
* ``transform`` maps ``src`` points into the ``dst`` frame: ``dst ~ R @ src + t``. When ``src`` and ``dst``
  are the same surface points lifted in cameras A and B, that is the A-camera -> B-camera transform
  (``pose_b @ inv(pose_a)`` for object->camera poses);
* distances (``threshold``, ``rmse``) are in metres in 3D and pixels in 2D.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import ConfigError, InputError
from .lifting import depth_from_uint16, lift  # noqa: F401  (re-exported: the alignment API)
from .optional import require

REASON_OK = "ok"
REASON_TOO_FEW = "not enough correspondences"
REASON_FEW_INLIERS = "not enough inliers"
REASON_DEGENERATE = "degenerate"

# A minimal sample (or the final inlier set) must spread at least this many thresholds away from a line (3D)
# or a point (2D): thinner configurations leave a rotation that the noise, not the data, decides.
_DEGENERACY_FACTOR = 0.5
_MAX_REFINEMENTS = 10
_BATCH = 64  # RANSAC hypotheses solved per vectorised batch


# ==================================================================================================== Umeyama


def _umeyama_core(src: np.ndarray, dst: np.ndarray, w: np.ndarray, with_scale: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched weighted Umeyama on ``(..., N, D)`` arrays (no checks). Returns R ``(..., D, D)``, t, s."""
    w = w / w.sum(-1, keepdims=True)
    mu_s = np.einsum("...n,...nd->...d", w, src)
    mu_d = np.einsum("...n,...nd->...d", w, dst)
    cs, cd = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    cov = np.einsum("...n,...ni,...nj->...ij", w, cd, cs)
    u, sv, vt = np.linalg.svd(cov)
    # Reflection correction: flip the weakest axis when U V^T would be a mirror, so det(R) = +1 always.
    sign = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    corr = np.ones(sv.shape)
    corr[..., -1] = sign
    R = np.einsum("...ij,...j,...jk->...ik", u, corr, vt)
    if with_scale:
        var_s = np.einsum("...n,...nd,...nd->...", w, cs, cs)
        s = (sv * corr).sum(-1) / np.where(var_s > 0, var_s, 1.0)
    else:
        s = np.ones(sv.shape[:-1])
    t = mu_d - s[..., None] * np.einsum("...ij,...j->...i", R, mu_s)
    return R, t, s


def _check_pairs(src: np.ndarray, dst: np.ndarray, dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] not in dims:
        raise InputError(f"src must be an (N, {'|'.join(map(str, dims))}) array, got shape {a.shape}")
    if b.shape != a.shape:
        raise InputError(f"src and dst must have the same shape (row i of src matches row i of dst), "
                         f"got {a.shape} and {b.shape}")
    return a, b


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise InputError(f"weights must have shape ({n},), got {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise InputError("weights must be finite and non-negative")
    return w


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = False
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares ``dst ~ s * R @ src + t`` (weighted Kabsch / Umeyama 1991), ``det(R) = +1`` always.

    Works for 3-D and 2-D points. Needs at least D finite pairs with positive total weight; it does not judge
    degeneracy (collinear points give *a* rotation) -- the RANSAC solvers do.
    """
    a, b = _check_pairs(src, dst, (2, 3))
    w = _check_weights(weights, len(a))
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("umeyama needs finite points; drop invalid (NaN) rows first")
    if len(a) < a.shape[1]:
        raise InputError(f"umeyama needs at least {a.shape[1]} point pairs in {a.shape[1]}-D, got {len(a)}")
    if not w.sum() > 0:
        raise InputError("weights sum to zero")
    R, t, s = _umeyama_core(a, b, w, with_scale)
    return R, t, float(s)


def _to_matrix(R: np.ndarray, t: np.ndarray, s: float = 1.0) -> np.ndarray:
    d = len(t)
    T = np.eye(d + 1)
    T[:d, :d] = s * R
    T[:d, d] = t
    return T


# ===================================================================================================== RANSAC


@dataclass(frozen=True)
class AlignmentResult:
    """A rigid src -> dst transform, or the reason there is none.

    ``transform`` is the 4x4 matrix when ``success`` and **None** otherwise: a failed alignment has no pose to
    misuse (``result.transform @ x`` raises instead of moving the robot). ``inliers`` / ``num_inliers`` /
    ``inlier_ratio`` / ``rmse`` describe the final fit, or on failure the best consensus found (diagnostics
    only). ``inlier_ratio`` is over the valid (finite, positive-weight) correspondences; ``rmse`` in metres
    over the inliers (NaN when there are none).
    """

    success: bool
    transform: np.ndarray | None
    inliers: np.ndarray
    inlier_ratio: float
    rmse: float
    num_inliers: int
    reason: str
    solver: str

    @property
    def rotation(self) -> np.ndarray | None:
        return None if self.transform is None else self.transform[:3, :3]

    @property
    def translation(self) -> np.ndarray | None:
        return None if self.transform is None else self.transform[:3, 3]


@dataclass(frozen=True)
class Alignment2DResult:
    """A 2D similarity ``dst ~ scale * R(angle) @ src + t`` in pixels; ``matrix`` (3x3) is None on failure."""

    success: bool
    matrix: np.ndarray | None
    scale: float | None
    angle_deg: float | None
    inliers: np.ndarray
    inlier_ratio: float
    rmse: float
    num_inliers: int
    reason: str
    solver: str = "ransac-similarity2d"


@dataclass(frozen=True)
class _Fit:
    """Internal outcome shared by the 3D and 2D front ends."""

    success: bool
    R: np.ndarray | None
    t: np.ndarray | None
    s: float
    inliers: np.ndarray
    inlier_ratio: float
    rmse: float
    reason: str


def _spread(points: np.ndarray) -> np.ndarray:
    """How far minimal samples ``(B, m, D)`` are from degenerate: 2-D pairs -> their distance; 3-D triples ->
    the triangle's smallest height (distance of a vertex from the line through the other two)."""
    if points.shape[-1] == 2:
        return np.linalg.norm(points[:, 1] - points[:, 0], axis=-1)
    e = [points[:, 1] - points[:, 0], points[:, 2] - points[:, 1], points[:, 0] - points[:, 2]]
    area2 = np.linalg.norm(np.cross(e[0], -e[2]), axis=-1)
    longest = np.max([np.linalg.norm(v, axis=-1) for v in e], axis=0)
    return area2 / np.maximum(longest, 1e-300)


def _set_spread(points: np.ndarray) -> float:
    """RMS distance of a point set from its best line (3-D) / its centroid (2-D): zero means degenerate."""
    if len(points) < points.shape[1]:
        return 0.0
    sv = np.linalg.svd(points - points.mean(0), compute_uv=False)
    if points.shape[1] == 2:
        return float(np.sqrt((sv ** 2).sum() / len(points)))
    return float(sv[1] / np.sqrt(len(points)))


def _residuals(R: np.ndarray, t: np.ndarray, s: np.ndarray | float, src: np.ndarray, dst: np.ndarray
               ) -> np.ndarray:
    """Euclidean residuals of one or a batch of models."""
    moved = np.asarray(s)[..., None, None] * np.einsum("...ij,nj->...ni", R, src) + t[..., None, :]
    return np.linalg.norm(moved - dst, axis=-1)


def _required_iterations(ratio: float, sample_size: int, confidence: float, cap: int) -> int:
    """Standard adaptive bound: iterations so that an all-inlier sample was drawn with ``confidence``."""
    good = ratio ** sample_size
    if good >= 1.0:
        return 1
    if good <= 0.0:
        return cap
    return min(cap, int(math.ceil(math.log(1.0 - confidence) / math.log(1.0 - good))))


def _check_ransac_args(threshold: float, iterations: int, min_inliers: int, min_inlier_ratio: float,
                       confidence: float) -> None:
    if not (np.isfinite(threshold) and threshold > 0):
        raise InputError(f"threshold must be a positive distance, got {threshold}")
    if int(iterations) < 1:
        raise InputError(f"iterations must be >= 1, got {iterations}")
    if int(min_inliers) < 0:
        raise InputError(f"min_inliers must be >= 0, got {min_inliers}")
    if not 0.0 <= min_inlier_ratio <= 1.0:
        raise InputError(f"min_inlier_ratio must be in [0, 1], got {min_inlier_ratio}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")


def _hypothesise(src: np.ndarray, dst: np.ndarray, threshold: float, iterations: int, seed: int,
                 confidence: float, with_scale: bool) -> tuple[np.ndarray | None, int]:
    """RANSAC core on valid rows: best consensus set (count first, then lower inlier residual) or None when
    no non-degenerate minimal sample exists. Returns (inlier mask, hypotheses tried)."""
    n, m = len(src), src.shape[1]
    rng = np.random.default_rng(seed)
    min_spread = _DEGENERACY_FACTOR * threshold
    best, best_key, needed, tried, drawn = None, (-1, 0.0), int(iterations), 0, 0
    while tried < needed and drawn < 10 * int(iterations):
        batch = min(_BATCH, needed - tried)
        idx = np.argsort(rng.random((batch, n)), axis=1)[:, :m] if n < 64 else _distinct(rng, n, m, batch)
        drawn += batch
        ok = (_spread(src[idx]) > min_spread) & (_spread(dst[idx]) > min_spread)
        if not ok.any():
            continue
        idx = idx[ok]
        tried += len(idx)
        R, t, s = _umeyama_core(src[idx], dst[idx], np.ones(idx.shape), with_scale)
        res = _residuals(R, t, s, src, dst)  # (B, N)
        inl = res < threshold
        counts = inl.sum(1)
        cost = np.where(inl, res, 0.0).sum(1)
        k = int(np.lexsort((cost, -counts))[0])
        key = (int(counts[k]), -float(cost[k]))
        if key > best_key:
            best_key, best = key, inl[k]
            needed = _required_iterations(counts[k] / n, m, confidence, int(iterations))
    return best, tried


def _distinct(rng: np.random.Generator, n: int, m: int, batch: int) -> np.ndarray:
    """``batch`` rows of ``m`` distinct indices in [0, n) (rejection; cheap when n >> m)."""
    idx = rng.integers(0, n, (batch, m))
    while True:
        dup = np.zeros(batch, dtype=bool)
        for i in range(m):
            for j in range(i + 1, m):
                dup |= idx[:, i] == idx[:, j]
        if not dup.any():
            return idx
        idx[dup] = rng.integers(0, n, (int(dup.sum()), m))


def _refine(src: np.ndarray, dst: np.ndarray, w: np.ndarray, inliers: np.ndarray, threshold: float,
            with_scale: bool) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Weighted Umeyama on the inliers, re-select inliers, repeat until the set is stable (at most 10 times).
    The returned inliers are those *of the returned model*, so rmse and transform agree."""
    m = src.shape[1]
    R, t, s = None, None, 1.0
    for _ in range(_MAX_REFINEMENTS):
        if inliers.sum() < m or not w[inliers].sum() > 0:
            break
        R, t, s_arr = _umeyama_core(src[inliers], dst[inliers], w[inliers], with_scale)
        s = float(s_arr)
        updated = _residuals(R, t, s, src, dst) < threshold
        stable = np.array_equal(updated, inliers)
        inliers = updated
        if stable:
            break
    return R, t, s, inliers


def _robust_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None, threshold: float, iterations: int,
                min_inliers: int, min_inlier_ratio: float, seed: int, confidence: float, with_scale: bool,
                hypothesise: Callable[..., np.ndarray | None] | None = None) -> _Fit:
    """Shared pipeline: validity filter -> hypotheses -> refinement -> acceptance checks."""
    _check_ransac_args(threshold, iterations, min_inliers, min_inlier_ratio, confidence)
    n, m = src.shape
    w = _check_weights(weights, n)
    valid = np.isfinite(src).all(1) & np.isfinite(dst).all(1) & (w > 0)
    inliers_all = np.zeros(n, dtype=bool)

    def fail(reason: str, inl: np.ndarray | None = None, rmse: float = math.nan) -> _Fit:
        if inl is not None:
            inliers_all[np.flatnonzero(valid)] = inl
        count = int(inliers_all.sum())
        return _Fit(False, None, None, math.nan, inliers_all.copy(), count / max(int(valid.sum()), 1), rmse, reason)

    nv = int(valid.sum())
    if nv < m:
        return fail(REASON_TOO_FEW)
    vs, vd, vw = src[valid], dst[valid], w[valid]
    if hypothesise is None:
        best, _ = _hypothesise(vs, vd, threshold, iterations, seed, confidence, with_scale)
    else:
        best = hypothesise(vs, vd)
    if best is None or best.sum() < m:
        return fail(REASON_DEGENERATE if best is None else REASON_FEW_INLIERS, best)
    R, t, s, inl = _refine(vs, vd, vw, best, threshold, with_scale)
    if R is None:
        return fail(REASON_FEW_INLIERS, inl)
    count = int(inl.sum())
    rmse = float(np.sqrt(np.mean(_residuals(R, t, s, vs[inl], vd[inl]) ** 2))) if count else math.nan
    if count < max(int(min_inliers), m) or count / nv < min_inlier_ratio:
        return fail(REASON_FEW_INLIERS, inl, rmse)
    min_spread = _DEGENERACY_FACTOR * threshold
    if min(_set_spread(vs[inl]), _set_spread(vd[inl])) <= min_spread:
        return fail(REASON_DEGENERATE, inl, rmse)
    if with_scale and not s > 0:
        return fail(REASON_DEGENERATE, inl, rmse)
    inliers_all[np.flatnonzero(valid)] = inl
    return _Fit(True, R, t, s, inliers_all, count / nv, rmse, REASON_OK)


def _result_3d(fit: _Fit, solver: str) -> AlignmentResult:
    T = _to_matrix(fit.R, fit.t) if fit.success else None
    return AlignmentResult(fit.success, T, fit.inliers, float(fit.inlier_ratio), float(fit.rmse),
                           int(fit.inliers.sum()), fit.reason, solver)


def ransac_rigid(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, threshold: float = 0.01,
                 iterations: int = 1000, min_inliers: int = 4, min_inlier_ratio: float = 0.25, seed: int = 0,
                 confidence: float = 0.999) -> AlignmentResult:
    """Robust rigid ``dst ~ R @ src + t`` from 3-D correspondences (rows with NaN or zero weight are skipped).

    RANSAC over non-collinear triples (score: inlier count, ties to the lower inlier residual; the iteration
    count adapts to the best inlier ratio, capped at ``iterations``), then weighted Umeyama on the inliers,
    re-selecting them until stable. Fails, without a transform, when fewer than 3 valid pairs exist
    ("not enough correspondences"), no non-collinear sample / inlier set exists ("degenerate"), or the inliers
    are fewer than ``min_inliers`` or ``min_inlier_ratio`` of the valid pairs ("not enough inliers").
    """
    a, b = _check_pairs(src, dst, (3,))
    fit = _robust_fit(a, b, weights, float(threshold), int(iterations), int(min_inliers), float(min_inlier_ratio),
                      int(seed), float(confidence), with_scale=False)
    return _result_3d(fit, "ransac")


def _open3d() -> Any:
    return require("open3d", "the open3d solver", "; solver='ransac' needs nothing extra")


def open3d_ransac(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, threshold: float = 0.01,
                  iterations: int = 1000, min_inliers: int = 4, min_inlier_ratio: float = 0.25, seed: int = 0,
                  confidence: float = 0.999) -> AlignmentResult:
    """Same contract as :func:`ransac_rigid`, hypotheses from Open3D's
    ``registration_ransac_based_on_correspondence`` (weights are used in the refinement only), then the same
    weighted Umeyama refinement and acceptance checks, so both solvers are judged by one rule."""
    o3d = _open3d()
    a, b = _check_pairs(src, dst, (3,))
    reg = o3d.pipelines.registration

    def hypothesise(vs: np.ndarray, vd: np.ndarray) -> np.ndarray | None:
        o3d.utility.random.seed(int(seed))
        cloud_s, cloud_d = o3d.geometry.PointCloud(), o3d.geometry.PointCloud()
        cloud_s.points, cloud_d.points = o3d.utility.Vector3dVector(vs), o3d.utility.Vector3dVector(vd)
        corres = o3d.utility.Vector2iVector(np.repeat(np.arange(len(vs), dtype=np.int32)[:, None], 2, 1))
        out = reg.registration_ransac_based_on_correspondence(
            cloud_s, cloud_d, corres, float(threshold), reg.TransformationEstimationPointToPoint(False), 3, [],
            reg.RANSACConvergenceCriteria(int(iterations), float(confidence)))
        T = np.asarray(out.transformation)
        if not np.isfinite(T).all() or len(out.correspondence_set) == 0:
            return None
        return _residuals(T[:3, :3], T[:3, 3], 1.0, vs, vd) < threshold

    fit = _robust_fit(a, b, weights, float(threshold), int(iterations), int(min_inliers), float(min_inlier_ratio),
                      int(seed), float(confidence), with_scale=False, hypothesise=hypothesise)
    return _result_3d(fit, "open3d")


_SOLVERS: dict[str, Callable[..., AlignmentResult]] = {"ransac": ransac_rigid, "open3d": open3d_ransac}


def estimate_alignment(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, solver: str = "ransac",
                       **kwargs: Any) -> AlignmentResult:
    """Dispatch to a rigid solver by name ("ransac": pure numpy; "open3d": needs open3d)."""
    if solver not in _SOLVERS:
        raise ConfigError(f"unknown alignment solver {solver!r}; expected one of {sorted(_SOLVERS)}")
    return _SOLVERS[solver](src, dst, weights=weights, **kwargs)


def similarity_2d(src_xy: np.ndarray, dst_xy: np.ndarray, weights: np.ndarray | None = None,
                  threshold: float = 3.0, iterations: int = 1000, min_inliers: int = 4,
                  min_inlier_ratio: float = 0.25, seed: int = 0, confidence: float = 0.999) -> Alignment2DResult:
    """Robust 2-D similarity (scale, rotation, translation; no reflection) between pixel sets, for when there is
    no depth. Same pipeline and failure reasons as :func:`ransac_rigid`, with minimal samples of 2 distinct
    points and ``threshold`` in pixels."""
    a, b = _check_pairs(src_xy, dst_xy, (2,))
    fit = _robust_fit(a, b, weights, float(threshold), int(iterations), int(min_inliers), float(min_inlier_ratio),
                      int(seed), float(confidence), with_scale=True)
    if not fit.success:
        return Alignment2DResult(False, None, None, None, fit.inliers, float(fit.inlier_ratio), float(fit.rmse),
                                 int(fit.inliers.sum()), fit.reason)
    angle = float(np.degrees(np.arctan2(fit.R[1, 0], fit.R[0, 0])))
    return Alignment2DResult(True, _to_matrix(fit.R, fit.t, fit.s), float(fit.s), angle, fit.inliers,
                             float(fit.inlier_ratio), float(fit.rmse), int(fit.inliers.sum()), fit.reason)


_REASON_WORDS = {
    REASON_DEGENERATE: "the matched points that agree lie on a line or a point, which leaves the turn about it free",
    REASON_FEW_INLIERS: "too few of the matches agree on one rigid motion",
    REASON_TOO_FEW: "too few matches with depth on both sides",
}


def no_pose_reason(alignment: AlignmentResult, search_reason: str) -> str:
    """The words for a frame where neither the dense matches' RANSAC nor the pose search gave a pose: what each
    found, so the user can act (the matches' bare ``degenerate`` named neither the stage nor what degenerated)."""
    words = _REASON_WORDS.get(alignment.reason, alignment.reason)
    return (f"no pose: the dense matches gave none ({alignment.reason}: {words}; {alignment.num_inliers} inliers) "
            f"and the pose search found none ({search_reason})")


# =============================================================================================== pose errors


def _rotation_block(R: np.ndarray | None, what: str) -> np.ndarray:
    if R is None:
        raise InputError(f"{what} is None (a failed alignment has no pose to evaluate)")
    M = np.asarray(R, dtype=np.float64)
    if M.shape == (4, 4):
        M = M[:3, :3]
    if M.shape != (3, 3):
        raise InputError(f"{what} must be a 3x3 rotation or a 4x4 transform, got shape {M.shape}")
    return M


def rotation_error_deg(R_est: np.ndarray, R_true: np.ndarray) -> float:
    """Geodesic angle (degrees) of ``R_est^T R_true``; accepts 3x3 rotations or 4x4 transforms."""
    A, B = _rotation_block(R_est, "R_est"), _rotation_block(R_true, "R_true")
    cos = (np.trace(A.T @ B) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _translation(t: np.ndarray | None, what: str) -> np.ndarray:
    if t is None:
        raise InputError(f"{what} is None (a failed alignment has no pose to evaluate)")
    v = np.asarray(t, dtype=np.float64)
    if v.shape == (4, 4):
        v = v[:3, 3]
    if v.shape != (3,):
        raise InputError(f"{what} must be a 3-vector or a 4x4 transform, got shape {v.shape}")
    return v


def translation_error(t_est: np.ndarray, t_true: np.ndarray) -> float:
    """Euclidean distance between translations (same unit as the inputs); accepts 3-vectors or 4x4 transforms."""
    return float(np.linalg.norm(_translation(t_est, "t_est") - _translation(t_true, "t_true")))
