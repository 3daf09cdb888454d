"""Geometric verification of 2D matches: one robust model for a demo and a live view of the same rigid object.

Point-by-point matches of even a good descriptor are wrong a fifth of the time; a rigid object seen twice obeys a
model (an affine map for a far, flat-ish object, a homography for a plane or a pure rotation, the epipolar geometry
of a fundamental matrix for anything 3D). OpenCV's USAC (MAGSAC++) fits it to the dense matches; keypoints are
then re-predicted by the model (affine, homography) or flagged by their distance to it (fundamental). When the data
do not support the model (too few matches, too few inliers, a degenerate fit) the result is a refusal with the
reason, never a model. Across different instances (semantic transfer) no such model exists: the default is none.

Coordinates are the project's continuous pixels; a model is fitted and applied in them (the pixel-centre
convention cancels out).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from .errors import ConfigError
from .local_features import LocalFeatureSettings
from .photometric import PhotometricSettings
from .projective import as_points, homogeneous, project

GEOMETRY_MODELS = ("none", "affine", "homography", "fundamental", "auto")
PREDICTIVE = ("affine", "homography")  # models that say where a demo point goes (fundamental: only a line)


@dataclass(frozen=True)
class GeometrySettings:
    """``threshold_px``: inlier distance in live pixels (None: the caller's default, which depends on whether the
    matches were refined to sub-pixel or are cell centres)."""

    model: str = "none"
    threshold_px: float | None = None
    min_matches: int = 12
    min_inliers: int = 10  # affine / homography; a fundamental matrix needs min_inliers_fundamental
    min_inliers_fundamental: int = 40  # 7 degrees of freedom fit a few dozen matches of unrelated views by chance
    min_parallax: int = 10  # matches off the inliers' dominant plane that must agree on one epipole (see
    # plane_and_parallax): fewer leave a fundamental matrix undetermined
    min_inlier_ratio: float = 0.25
    confidence: float = 0.999
    max_iterations: int = 10000
    min_support: float = 0.15  # guided fits: share of the textured dense cells that must agree with the model ...
    min_local_inliers: int = 15  # ... or this many local-feature matches, and at least
    min_local_share: float = 0.5  # this share of them (see verify.py)
    min_confirmed_local: int = 8  # fewer local-feature matches (down to this many) vouch for a model only ...
    min_dense_agreement: float = 0.3  # ... when this share of the coarse dense matches in view agree with it
    min_coarse_inliers: int = 24  # where the pixels cannot test any model (too few sharp cells: a tiny or blurred
    min_coarse_share: float = 0.6  # view), the coarse dense matches' own model needs this many inliers and share
    quick_min_inliers: int = 40  # a dense-only model settles the frame only with this many inliers (verify.py)
    guided_rounds: int = 2  # refits of a predictive model to dense matches refined around its own prediction
    max_refined: int = 400  # dense matches refined per fit
    strict_ncc: float = 0.7  # the correlation a refined match behind a model needs ...
    strict_sharpness: float = 0.01  # ... and its peak's sharpness (see refine.RefineSettings.min_sharpness)
    # Local features (SIFT by default) of both full-resolution images, fused with the refined dense matches.
    local_features: LocalFeatureSettings = field(default_factory=LocalFeatureSettings)
    gric_sigma: float | None = None  # match noise (px) of the model selection; None: estimated (match_noise)
    photometric: PhotometricSettings = field(default_factory=PhotometricSettings)  # ECC refinement of a verified
    # homography / affine map over the pixels its inliers span (correspondence/photometric.py)
    distinct_cells: float = 1.0  # a guided match counts as support only if no other peak within +- this many live
    # cells nearly equals it (a repeated pattern supports any model shifted by its period)

    def __post_init__(self) -> None:
        if isinstance(self.local_features, str):
            object.__setattr__(self, "local_features", LocalFeatureSettings(kind=self.local_features))
        elif isinstance(self.local_features, dict):
            object.__setattr__(self, "local_features", LocalFeatureSettings(**self.local_features))
        if isinstance(self.photometric, bool):
            object.__setattr__(self, "photometric", PhotometricSettings(enabled=self.photometric))
        elif isinstance(self.photometric, dict):
            object.__setattr__(self, "photometric", PhotometricSettings(**self.photometric))
        if self.model not in GEOMETRY_MODELS:
            raise ConfigError(f"geometry must be one of {', '.join(GEOMETRY_MODELS)}, got {self.model!r}")
        if self.threshold_px is not None and not (np.isfinite(self.threshold_px) and self.threshold_px > 0):
            raise ConfigError(f"geometry threshold must be a positive number of pixels, got {self.threshold_px}")
        if not (0.0 <= self.min_inlier_ratio <= 1.0 and 0.0 <= self.min_support <= 1.0):
            raise ConfigError(f"min_inlier_ratio and min_support must be in [0, 1], got {self.min_inlier_ratio} and "
                              f"{self.min_support}")


@dataclass(frozen=True)
class GeometryResult:
    requested: str  # the model asked for (auto included)
    model: str  # the model fitted: affine | homography | fundamental (or the requested one when refused)
    success: bool
    reason: str
    matrix: np.ndarray | None  # 3 x 3 (affine and homography map demo -> live; F: live^T F demo = 0)
    num_matches: int
    num_inliers: int
    threshold_px: float
    inliers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool), repr=False)
    support: float | None = None  # predictive: share of the textured dense cells that agree with the model;
    # fundamental: share of the fused matches within the threshold of their epipolar line
    gric: dict[str, float] | None = None  # auto: each candidate's GRIC score (lower is better), when both fitted
    evidence: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)  # the
    # (demo, live) matches the model was fitted to: a fundamental matrix's inliers guide the epipolar search, a
    # homography's outline the region its photometric refinement uses
    photometric: dict[str, Any] | None = None  # what the photometric refinement did (photometric.py), if it ran

    @property
    def inlier_ratio(self) -> float:
        return self.num_inliers / self.num_matches if self.num_matches else 0.0

    @property
    def predictive(self) -> bool:
        return self.success and self.model in PREDICTIVE

    def predict(self, demo_xy: np.ndarray) -> np.ndarray:
        """Live positions of demo points under an affine map or homography."""
        if not self.predictive:
            raise ValueError(f"a {self.model} model ({'fitted' if self.success else 'refused'}) predicts no points")
        return project(self.matrix, demo_xy)

    def jacobians(self, demo_xy: np.ndarray) -> np.ndarray:
        """``(K, 2, 2)``: the local linear map of an affine map or homography at each demo point (how a small
        demo patch there looks in the live view)."""
        if not self.predictive:
            raise ValueError(f"a {self.model} model has no point-to-point jacobian")
        h = homogeneous(demo_xy) @ self.matrix.T
        w = h[:, 2]
        p = h[:, :2] / w[:, None]
        return (self.matrix[None, :2, :2] - p[:, :, None] * self.matrix[None, 2:3, :2]) / w[:, None, None]

    def residuals(self, demo_xy: np.ndarray, live_xy: np.ndarray) -> np.ndarray:
        """Live-pixel distance of each match from the model: the transfer error (affine, homography) or the
        distance of the live point to its epipolar line (fundamental)."""
        demo_xy, live_xy = as_points(demo_xy), as_points(live_xy)
        if self.model in PREDICTIVE:
            return np.linalg.norm(project(self.matrix, demo_xy) - live_xy, axis=1)
        lines = homogeneous(demo_xy) @ self.matrix.T
        dist = np.abs((homogeneous(live_xy) * lines).sum(1))
        return dist / np.maximum(np.hypot(lines[:, 0], lines[:, 1]), 1e-12)

    def as_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "model": self.model, "success": self.success, "reason": self.reason,
                "matrix": None if self.matrix is None else self.matrix.tolist(), "num_matches": self.num_matches,
                "num_inliers": self.num_inliers, "inlier_ratio": round(self.inlier_ratio, 4),
                "threshold_px": self.threshold_px, "support": self.support, "gric": self.gric,
                "photometric": self.photometric}

    def refused(self, reason: str) -> "GeometryResult":
        """This model turned down for ``reason`` (no matrix, no inliers)."""
        return replace(self, success=False, reason=reason, matrix=None, inliers=np.zeros(0, dtype=bool))


def fit_geometry(demo_xy: np.ndarray, live_xy: np.ndarray, settings: GeometrySettings, threshold_px: float
                 ) -> GeometryResult:
    """Fit ``settings.model`` to the matches with MAGSAC++ (``auto``: the homography or the fundamental matrix,
    whichever has the lower :func:`gric`). A model the data do not support comes back refused, with the reason."""
    demo_xy, live_xy = as_points(demo_xy), as_points(live_xy)
    keep = np.isfinite(demo_xy).all(1) & np.isfinite(live_xy).all(1)
    demo_xy, live_xy = demo_xy[keep], live_xy[keep]
    if settings.model == "none":
        raise ConfigError("fit_geometry needs a model (affine, homography, fundamental or auto), got none")
    if settings.model != "auto":
        return _checked(settings.model, settings, demo_xy, live_xy, threshold_px, keep)
    planar = _checked("homography", settings, demo_xy, live_xy, threshold_px, keep, requested="auto")
    general = _checked("fundamental", settings, demo_xy, live_xy, threshold_px, keep, requested="auto")
    if planar.success and general.success:
        sigma = settings.gric_sigma or match_noise(general, demo_xy, live_xy)
        scores = select_scores(planar, general, demo_xy, live_xy, sigma)
        return replace(planar if scores["homography"] <= scores["fundamental"] else general, gric=scores)
    if planar.success:
        return planar
    if general.success:
        return general
    return GeometryResult("auto", "auto", False, f"homography: {planar.reason}; fundamental: {general.reason}",
                          None, int(keep.sum()), 0, threshold_px, np.zeros(len(keep), dtype=bool))


def _checked(model: str, settings: GeometrySettings, demo_xy: np.ndarray, live_xy: np.ndarray, threshold: float,
             keep: np.ndarray, requested: str | None = None) -> GeometryResult:
    requested = requested or model
    n = len(demo_xy)
    minimum = {"affine": 3, "homography": 4, "fundamental": 8}[model]

    def refuse(reason: str, inliers=None) -> GeometryResult:
        mask = np.zeros(len(keep), dtype=bool)
        return GeometryResult(requested, model, False, reason, None, n,
                              int(inliers.sum()) if inliers is not None else 0, threshold, mask)

    if n < max(settings.min_matches, minimum):
        return refuse(f"not enough matches for a {model} ({n} < {max(settings.min_matches, minimum)})")
    src, dst = demo_xy.astype(np.float64), live_xy.astype(np.float64)
    try:
        matrix, mask = _estimate(model, src, dst, threshold, settings)
    except cv2.error as error:  # USAC asserts on some degenerate sets (e.g. many repeated points) instead of failing
        return refuse(f"no {model} fits the matches (OpenCV: {str(error).strip().splitlines()[-1][:120]})")
    if matrix is None or mask is None or not np.isfinite(matrix).all():
        return refuse(f"no {model} fits the matches")
    if model != "fundamental":
        matrix = matrix / matrix[2, 2] if abs(matrix[2, 2]) > 1e-12 else matrix
    candidate = GeometryResult(requested, model, True, "ok", matrix, n, 0, threshold)
    inliers = candidate.residuals(demo_xy, live_xy) <= threshold
    count = int(inliers.sum())
    ratio = count / n
    needed = max(settings.min_inliers_fundamental if model == "fundamental" else settings.min_inliers, minimum)
    if count < needed or ratio < settings.min_inlier_ratio:
        return refuse(f"the {model} is supported by {count} of {n} matches (ratio {ratio:.2f}; needs "
                      f">= {needed} and >= {settings.min_inlier_ratio:.2f})", inliers=inliers)
    problem = _degenerate(model, matrix, demo_xy[inliers])
    if problem:
        return refuse(f"degenerate {model}: {problem}", inliers=inliers)
    full = np.zeros(len(keep), dtype=bool)
    full[np.flatnonzero(keep)[inliers]] = True
    return GeometryResult(requested, model, True, f"{count} of {n} matches within {threshold:.2g} px", matrix, n,
                          count, threshold, full)


def _estimate(model: str, src: np.ndarray, dst: np.ndarray, threshold: float, settings: GeometrySettings
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """OpenCV's USAC / MAGSAC++ fit of ``model`` (3 x 3 matrix or None, inlier mask)."""
    if model == "affine":
        affine, mask = cv2.estimateAffine2D(src, dst, method=cv2.USAC_MAGSAC, ransacReprojThreshold=threshold,
                                            maxIters=settings.max_iterations, confidence=settings.confidence)
        matrix = None if affine is None else np.vstack([affine, [0.0, 0.0, 1.0]])
    elif model == "homography":
        matrix, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, threshold, maxIters=settings.max_iterations,
                                          confidence=settings.confidence)
    else:
        matrix, mask = cv2.findFundamentalMat(src, dst, cv2.USAC_MAGSAC, threshold, settings.confidence,
                                              settings.max_iterations)
        if matrix is not None and matrix.shape != (3, 3):  # several solutions stacked: not one model
            matrix = None
    return matrix, mask


def _degenerate(model: str, matrix: np.ndarray, inlier_demo: np.ndarray) -> str:
    """Why a fitted model must not be used, or ''. Inliers on a line leave a model undetermined across it; a
    mirror or collapse is no view of a rigid object; a homography must not send an inlier behind the camera."""
    centred = inlier_demo - inlier_demo.mean(0)
    spread = np.linalg.svd(centred, compute_uv=False) if len(centred) >= 2 else np.zeros(2)
    if spread[0] <= 0 or spread[-1] / spread[0] < 0.05:
        return "the inliers are (nearly) collinear"
    if model == "fundamental":
        return ""
    if model == "homography":
        w = np.column_stack([inlier_demo, np.ones(len(inlier_demo))]) @ matrix[2]
        if (w <= 0).any():
            return "it folds the inliers across its horizon line (a projective flip, no view of a rigid object)"
    result = GeometryResult(model, model, True, "", matrix, len(inlier_demo), len(inlier_demo), 0.0)
    jacobians = result.jacobians(inlier_demo)  # the local map at every inlier: a collapse may be local
    if (np.linalg.det(jacobians) <= 0).any():
        return "it mirrors the image"
    s = np.linalg.svd(jacobians, compute_uv=False)
    area = s[:, 0] * s[:, 1]
    if s[:, 1].min() < 0.05 or s[:, 0].max() > 20.0 or (s[:, 0] / s[:, 1]).max() > 10.0 or area.max() > 25 * area.min():
        return (f"local scales {s[:, 1].min():.3g}-{s[:, 0].max():.3g}, stretch up to {(s[:, 0] / s[:, 1]).max():.3g}x"
                f" (a collapse, not a view of the same object)")
    return ""


def beats_chance(result: GeometryResult, demo_xy: np.ndarray, live_xy: np.ndarray, settings: GeometrySettings,
                 seed: int = 0) -> str:
    """'' when ``result`` (a fitted fundamental matrix) explains clearly more matches than the same model fitted
    to the matches shuffled (the live side permuted: no correspondence left), else why not. An epipolar line is a
    weak test: on a small image or with matches bunched near an epipole, a fundamental matrix fits chance."""
    demo_xy, live_xy = as_points(demo_xy), as_points(live_xy)
    shuffled = live_xy[np.random.default_rng(seed).permutation(len(live_xy))]
    chance = fit_geometry(demo_xy, shuffled, replace(settings, model=result.model, min_inlier_ratio=0.0,
                                                      min_inliers=0, min_inliers_fundamental=0), result.threshold_px)
    luck = chance.num_inliers  # counted even where the shuffled fit is refused (e.g. degenerate)
    if result.num_inliers < max(2 * luck, luck + settings.min_inliers):
        return (f"no better than chance: the {result.model} explains {result.num_inliers} of {result.num_matches} "
                f"matches, and {luck} of the same matches shuffled")
    return ""


def plane_and_parallax(result: GeometryResult, demo_xy: np.ndarray, live_xy: np.ndarray, min_parallax: int,
                       seed: int = 0) -> str:
    """'' when a fitted fundamental matrix is determined by its matches, else why not. A plane (or a camera that
    only turns, or does not move) fits a whole family of fundamental matrices: F = [e']x H for any epipole e', and
    MAGSAC picks the e' whose lines absorb the most wrong matches. A 3D scene is a plane plus parallax: the
    matches the dominant plane's homography H misses are displaced from their H-prediction along lines that all
    meet at the one epipole (plane + parallax; Irani and Anandan; the idea of Chum et al.'s DEGENSAC). So: H is
    fitted to the fundamental matrix's inliers, and among *all* matches off that plane the largest set agreeing
    on one epipole (a 2-point RANSAC) must number ``min_parallax`` and twice what the same off-plane matches
    shuffled reach (wrong matches also agree with some epipole by chance). No share of inliers is asked of the
    plane: an accurate matrix of a scene with a dominant plane (a stereo pair of a wall and an object) passes."""
    demo_xy, live_xy = as_points(demo_xy), as_points(live_xy)
    threshold = result.threshold_px
    inliers = result.residuals(demo_xy, live_xy) <= threshold
    plane, _ = cv2.findHomography(demo_xy[inliers], live_xy[inliers], cv2.USAC_MAGSAC, threshold, maxIters=2000,
                                  confidence=0.99) if inliers.sum() >= 4 else (None, None)
    if plane is None or not np.isfinite(plane).all():
        return ""  # no homography explains even part of the inliers: nothing planar to be confused with
    predicted = project(plane, demo_xy)
    off = np.isfinite(predicted).all(1) & (np.linalg.norm(predicted - live_xy, axis=1) > threshold)
    rng = np.random.default_rng(seed)
    real = _epipole_support(predicted[off], live_xy[off], threshold, rng)
    shuffled = live_xy[off][rng.permutation(int(off.sum()))]
    chance = _epipole_support(predicted[off], shuffled, threshold, rng)
    on_plane = int((inliers & ~off).sum())
    if real < max(min_parallax, 2 * chance):
        return (f"degenerate: one homography explains {on_plane} of the fundamental matrix's {int(inliers.sum())} "
                f"inliers and only {real} of the {int(off.sum())} matches off that plane agree on one epipole "
                f"(needs {min_parallax} and twice the {chance} of the same matches shuffled): no parallax fixes the "
                f"matrix (a plane, a turning or still camera)")
    return ""


def _epipole_support(planar_xy: np.ndarray, live_xy: np.ndarray, threshold: float, rng: np.random.Generator,
                     trials: int = 500) -> int:
    """The most of the matches (each a plane's prediction and the live point) whose parallax lines meet at one
    epipole within ``threshold`` px (2-point RANSAC: two parallax lines give the epipole)."""
    n = len(planar_xy)
    if n < 3:
        return n
    a = np.column_stack([planar_xy, np.ones(n)])
    b = np.column_stack([live_xy, np.ones(n)])
    lines = np.cross(a, b)
    i, j = rng.integers(0, n, (2, trials))
    epipoles = np.cross(lines[i[i != j]], lines[j[i != j]])  # homogeneous: at infinity too
    through = np.cross(epipoles[:, None, :], a[None])  # the line through each epipole and each prediction
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = np.abs((through * b[None]).sum(-1)) / np.hypot(through[..., 0], through[..., 1])
    return int((distance <= threshold).sum(1).max()) if len(epipoles) else 0


GRIC_DOF = {"affine": (2, 6), "homography": (2, 8), "fundamental": (3, 7)}  # manifold dimension, parameters


def gric(model: GeometryResult, demo_xy: np.ndarray, live_xy: np.ndarray, sigma: float,
         count: np.ndarray | None = None) -> float:
    """Torr's Geometric Robust Information Criterion of a fitted model on matches (lower is better): robust
    residuals plus a penalty for the model's dimension and parameters. A fundamental matrix fits a plane's matches
    as well as a homography does and also absorbs outliers that happen to lie near their epipolar line; GRIC makes
    it pay for its extra dimension on every match, so a plane keeps its homography while a 3D scene, which the
    homography misses, gets the fundamental matrix. ``count``: the matches scored (the caller passes those inlying
    to either candidate: a match both reject says nothing about which is right, but its robust cap differs by
    model dimension and would tip the choice by the outlier ratio alone). Residuals are halved into the joint
    image space (noise in both views)."""
    dimension, parameters = GRIC_DOF[model.model]
    e2 = model.residuals(demo_xy, live_xy) ** 2 / 2.0
    if count is not None:
        e2 = e2[count]
    n = len(e2)
    r = 4.0  # two 2D points per match
    rho = np.minimum(e2 / sigma ** 2, 2.0 * (r - dimension))
    return float(rho.sum() + np.log(r) * dimension * n + np.log(r * max(n, 1)) * parameters)


def match_noise(general: GeometryResult, demo_xy: np.ndarray, live_xy: np.ndarray, floor: float = 0.2) -> float:
    """The matches' noise (px), estimated from a fitted fundamental matrix's inliers: the robust spread of their
    distances to their epipolar lines (median / 0.6745), between ``floor`` and a third of the threshold. GRIC
    weighs residuals against it: with refined, sub-pixel matches a fixed third of a 3-px threshold (1 px) is so
    loose that a homography missing the parallax by 1-2 px on every match looks as good as the exact epipolar
    geometry. The line distance carries the noise of both views, so this errs on the large side (toward the
    homography) for a plane."""
    residual = general.residuals(demo_xy, live_xy)
    residual = residual[residual <= general.threshold_px]
    if not len(residual):
        return general.threshold_px / 3.0
    return float(np.clip(np.median(residual) / 0.6745, floor, general.threshold_px / 3.0))


def select_scores(predictive: GeometryResult, general: GeometryResult, demo_xy: np.ndarray, live_xy: np.ndarray,
                  sigma: float) -> dict[str, float]:
    """Both fitted models' :func:`gric` over the matches inlying to either (lower wins)."""
    either = ((predictive.residuals(demo_xy, live_xy) <= predictive.threshold_px)
              | (general.residuals(demo_xy, live_xy) <= general.threshold_px))
    return {m.model: round(gric(m, demo_xy, live_xy, sigma, either), 1) for m in (predictive, general)}
