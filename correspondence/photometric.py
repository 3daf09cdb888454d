"""Direct photometric refinement of a verified homography or affine map (same-object mode, after verification).

A model fitted to point matches inherits their noise: each match is a correlation peak or a SIFT keypoint, placed
to a few tenths of a pixel at best, and where the evidence is few or uneven (an upright view settled by the dense
cells alone, a small image, a large scale change) the fit carries part of it. The pixels themselves say more:
OpenCV's ECC (Evangelidis and Psarakis 2008, ``cv2.findTransformECCWithMask``) maximises the correlation of the
two images over the model's parameters, using every pixel of the region the model's inliers span. The correlation
is invariant to an affine change of brightness (gain, offset), as is the refinement's own NCC.

ECC is a local optimiser, so it only polishes: it starts from the verified model, and its answer is kept only
when the correlation rises, the refined model moves no inlier's prediction by more than the model's own inlier
threshold (``max_move_px``, default: the threshold, 3 px: the verification's tolerance; a model that was good
within its inliers stays within that bound of it) and it still explains ``min_inlier_share`` as many of the
matches the model was fitted to (a polish does not lose the evidence; a right one usually gains matches the fit
left just outside the threshold at the edges of its region). Measured on the held-out photos: fitted models were
off by up to 1-3 px at the hull's extremes while their median was 0.2-0.5 px; ECC brought both down. The image with the coarser sampling is the template (the other is warped into it, blurred first by its
extra resolution), so no detail is invented and none aliased. The fundamental matrix is untouched (there is no
one warp between the views of a 3D scene).

Coordinates are the project's continuous pixels; OpenCV's (pixel centres at integers) only inside this module.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import ConfigError
from .projective import project

if TYPE_CHECKING:  # geometry2d holds these settings
    from .geometry2d import GeometryResult

MOTION = {"homography": cv2.MOTION_HOMOGRAPHY, "affine": cv2.MOTION_AFFINE}


@dataclass(frozen=True)
class PhotometricSettings:
    """``enabled`` False: the verified model stands as fitted."""

    enabled: bool = True
    iterations: int = 20  # ECC iterations (it starts close: few are needed) ...
    epsilon: float = 1e-5  # ... or until the correlation rises by less than this
    max_move_px: float | None = None  # the refined model may move no inlier's live prediction further than this
    # (None: the model's inlier threshold)
    min_inlier_share: float = 0.8  # ... and must keep this share of the fitted model's inlier count
    min_inliers: int = 15  # inliers needed to outline the region the model holds on (fewer: a small region, and
    # the model beyond it an extrapolation the pixels there did not check; the held-out clock at 2.8x had 8)
    margin_px: float = 4.0  # the region: the inliers' convex hull grown by this many template pixels
    edge_px: float = 4.0  # pixels this close to an image's border are not compared (its blur saw a made-up border)
    max_side_px: int = 512  # a larger template is shrunk to this (time; ECC's precision is sub-pixel anyway)

    def __post_init__(self) -> None:
        if self.iterations < 1 or not (self.max_move_px is None or self.max_move_px > 0) or self.min_inliers < 3 or self.max_side_px < 32:
            raise ConfigError(f"photometric refinement needs iterations >= 1, max_move_px > 0, min_inliers >= 3 and "
                              f"max_side_px >= 32, got {self}")


@dataclass(frozen=True)
class PhotometricOutcome:
    """What the refinement did (``accepted``: the model was replaced)."""

    accepted: bool
    reason: str
    ecc_before: float | None = None
    ecc_after: float | None = None
    max_move_px: float | None = None

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "reason": self.reason, "ecc_before": self.ecc_before,
                "ecc_after": self.ecc_after, "max_move_px": self.max_move_px}


def _shift(a: float) -> np.ndarray:
    return np.array([[1.0, 0.0, a], [0.0, 1.0, a], [0.0, 0.0, 1.0]])


def to_cv(matrix: np.ndarray) -> np.ndarray:
    """A continuous-pixel map as OpenCV's (x_cv = x - 0.5 on both sides)."""
    return _shift(-0.5) @ matrix @ _shift(0.5)


def from_cv(matrix: np.ndarray) -> np.ndarray:
    return _shift(0.5) @ matrix @ _shift(-0.5)


def _away_from_border(shape: tuple[int, ...], band: float) -> np.ndarray:
    """255 except within ``band`` px of the image border, where the blur saw a made-up border (a turned copy's
    fill there is a strong false edge: measured 0.14 -> 0.36 px on a 220-px hammer turned 20 deg)."""
    valid = np.zeros(shape[:2], np.uint8)
    b = int(math.ceil(band))
    valid[b:shape[0] - b, b:shape[1] - b] = 255
    return valid


def _correlation(template: np.ndarray, image: np.ndarray, warp_cv: np.ndarray, template_mask: np.ndarray,
                 image_mask: np.ndarray) -> float:
    """ECC's objective (the masked correlation coefficient) of ``template`` and ``image`` warped by ``warp_cv``."""
    size = template.shape[::-1]
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(image, warp_cv, size, flags=flags)
    valid = cv2.warpPerspective(image_mask, warp_cv, size, flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP)
    mask = ((valid > 0) & (template_mask > 0)).astype(np.uint8)
    if mask.sum() < 16:
        return float("nan")
    return float(cv2.computeECC(template, warped, mask))


def refine_model(geometry: GeometryResult, demo_gray: np.ndarray, live_gray: np.ndarray,
                 evidence: tuple[np.ndarray, np.ndarray], settings: PhotometricSettings,
                 live_mask: np.ndarray | None = None) -> tuple[GeometryResult, PhotometricOutcome]:
    """``geometry`` (a verified homography or affine map, demo -> live) refined by ECC over the region spanned by
    its inliers among ``evidence`` (the (demo, live) matches it was fitted to), or unchanged with the reason (see
    the module). ``demo_gray`` / ``live_gray``: float32 grey images of the two views (equally pre-blurred);
    ``live_mask``: the object in the live view, if known."""
    if not (settings.enabled and geometry.predictive and geometry.model in MOTION):
        return geometry, PhotometricOutcome(False, "not a verified homography or affine map")
    demo_xy, live_xy = (np.asarray(a, dtype=np.float64).reshape(-1, 2) for a in evidence)
    inliers = geometry.residuals(demo_xy, live_xy) <= geometry.threshold_px
    inlier_demo_xy = demo_xy[inliers]
    if len(inlier_demo_xy) < settings.min_inliers:
        return geometry, PhotometricOutcome(False, f"{len(inlier_demo_xy)} inliers outline no region "
                                                   f"(needs {settings.min_inliers})")
    h = geometry.matrix / geometry.matrix[2, 2]
    inlier_live_xy = project(h, inlier_demo_xy)
    jac = geometry.jacobians(inlier_demo_xy)
    scale = float(np.median(np.sqrt(np.abs(np.linalg.det(jac)))))  # live px per demo px over the inliers
    live_valid = _away_from_border(live_gray.shape, settings.edge_px)
    if live_mask is not None:
        live_valid &= (np.asarray(live_mask).reshape(live_gray.shape) > 0).astype(np.uint8) * 255
    demo_valid = _away_from_border(demo_gray.shape, settings.edge_px)
    if scale >= 1.0:  # the live view is the finer one: warp it into the demo
        template, image, warp, points, template_valid, image_valid = (
            demo_gray, live_gray, h, inlier_demo_xy, demo_valid, live_valid)
        extra = scale
    else:
        template, image, warp, points, template_valid, image_valid = (
            live_gray, demo_gray, np.linalg.inv(h), inlier_live_xy, live_valid, demo_valid)
        extra = 1.0 / scale
    shrink = min(1.0, settings.max_side_px / max(template.shape))
    extra /= shrink
    # The warped image is sampled 1/extra as densely as its pixels: blur away what the template cannot hold.
    if extra > 1.05:
        sigma = 0.5 * math.sqrt(extra ** 2 - 1.0)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
        image_valid = image_valid & _away_from_border(image.shape, settings.edge_px + math.ceil(3 * sigma))
    if shrink < 1.0:  # continuous pixels scale exactly: x' = shrink x
        s = np.diag([shrink, shrink, 1.0])
        template = cv2.resize(template, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        template_valid = cv2.resize(template_valid, template.shape[::-1], interpolation=cv2.INTER_NEAREST)
        warp, points = warp @ np.linalg.inv(s), points * shrink
    region = np.zeros(template.shape, np.uint8)
    hull = cv2.convexHull((points - 0.5).astype(np.float32))
    cv2.fillConvexPoly(region, np.round(hull).astype(np.int32), 255)
    grow = max(1, int(round(settings.margin_px)))
    region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    template_mask = cv2.bitwise_and(region, template_valid)
    x0, y0, w, h_ = cv2.boundingRect(template_mask)  # ECC works on every template pixel: only the region's box
    if w < 8 or h_ < 8:
        return geometry, PhotometricOutcome(False, "the inliers' region is too small")
    template, template_mask = template[y0:y0 + h_, x0:x0 + w], template_mask[y0:y0 + h_, x0:x0 + w]
    crop = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])  # box -> template (continuous pixels)
    warp = warp @ crop
    warp_cv = to_cv(warp)
    before = _correlation(template, image, warp_cv, template_mask, image_valid)
    motion = MOTION[geometry.model]
    start = warp_cv.astype(np.float32) if motion == cv2.MOTION_HOMOGRAPHY else warp_cv[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, settings.iterations, settings.epsilon)
    try:
        _, found = cv2.findTransformECCWithMask(template, image, template_mask, image_valid, start, motion,
                                                criteria, 1)
    except cv2.error as error:  # ECC throws when it diverges or the region has no texture
        return geometry, PhotometricOutcome(False, f"ECC failed ({str(error).strip().splitlines()[-1][:80]})",
                                            before)
    found = np.asarray(found, dtype=np.float64)
    found_cv = found if found.shape == (3, 3) else np.vstack([found, [0.0, 0.0, 1.0]])
    if not np.isfinite(found_cv).all():
        return geometry, PhotometricOutcome(False, "ECC diverged", before)
    after = _correlation(template, image, found_cv, template_mask, image_valid)
    refined = from_cv(found_cv) @ np.linalg.inv(crop)
    if shrink < 1.0:
        refined = refined @ s
    demo_to_live = refined if scale >= 1.0 else np.linalg.inv(refined)
    demo_to_live = demo_to_live / demo_to_live[2, 2]
    moved = project(demo_to_live, inlier_demo_xy)
    move = float(np.max(np.linalg.norm(moved - inlier_live_xy, axis=1))) if np.isfinite(moved).all() else math.inf
    if not (np.isfinite(after) and np.isfinite(before) and after > before):
        return geometry, PhotometricOutcome(False, "the correlation did not rise", before, after, move)
    bound = settings.max_move_px or geometry.threshold_px  # live pixels
    if move > bound:
        return geometry, PhotometricOutcome(False, f"it moved an inlier {move:.2f} px (bound {bound:.2f} px)", before,
                                            after, move)
    kept = int((np.linalg.norm(project(demo_to_live, demo_xy) - live_xy, axis=1) <= geometry.threshold_px).sum())
    if kept < settings.min_inlier_share * len(inlier_demo_xy):
        return geometry, PhotometricOutcome(False, f"it explains {kept} of the {len(inlier_demo_xy)} matches the model "
                                                   f"did", before, after, move)
    outcome = PhotometricOutcome(True, f"ECC {before:.3f} -> {after:.3f}, inliers moved <= {move:.2f} px, "
                                       f"{kept} matches within the threshold (fit: {len(inlier_demo_xy)})", before,
                                 after, move)
    return replace(geometry, matrix=demo_to_live), outcome


def refine_verified(geometry: GeometryResult, refiner, settings: PhotometricSettings) -> GeometryResult:
    """:func:`refine_model` of a frame's verified model with its refiner's images and live mask, the inliers taken
    from the matches it was fitted to (``geometry.evidence``); what was done goes in ``geometry.photometric``.
    Anything but a verified homography / affine map with its evidence comes back as it was."""
    if refiner is None or not settings.enabled or not geometry.predictive or geometry.evidence is None:
        return geometry
    start = time.perf_counter()
    refined, outcome = refine_model(geometry, refiner.demo.levels[0], refiner.live.levels[0], geometry.evidence,
                                    settings, refiner.mask)
    return replace(refined, photometric={**outcome.as_dict(), "seconds": round(time.perf_counter() - start, 4)})
