"""Geometric verification of one frame's dense matches (the step after refinement, see
:mod:`correspondence.keypoint_matching`): which model, if any, the dense matches of a demo and a live view of the
same rigid object support, and what it says about the keypoints.

Hypotheses come from the refined mutual dense matches (sub-pixel threshold) and the coarse ones (cell-sized
threshold). An affine map or homography is then *guided*: the visible dense demo cells are refined again around
its predictions with its own local map, and the model refitted to them, twice. The best guided model must be
backed by ``min_support`` of the textured cells (those a correlation could test), which a model of some other
scene is not. A fundamental matrix can only be tested to a few pixels: it is fitted to refined matches or
refused. Keypoints are then re-predicted (affine, homography) or flagged (fundamental).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .geometry2d import GeometryResult, GeometrySettings, fit_geometry
from .refine import DenseCoarse, FrameRefiner


def spread(index: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of ``index``, evenly spaced (the dense cells are in grid order: spread over the image)."""
    return index if len(index) <= limit else index[np.linspace(0, len(index) - 1, limit).round().astype(int)]


def verify_dense(dense: DenseCoarse, support: np.ndarray, settings: GeometrySettings, live_cell: float,
                 live_wh: tuple[int, int], refiner: FrameRefiner | None) -> GeometryResult:
    """The model of the dense matches (``support``: the mutual ones); ``auto`` takes the homography when it
    explains nearly as many refined matches as the fundamental matrix (a plane or a pure rotation make the latter
    degenerate), else the fundamental matrix. ``refiner`` None: coarse matches only (no guidance, no
    fundamental matrix)."""
    requested = settings.model
    fine = settings.threshold_px or 3.0
    refined = None
    if refiner is not None:
        use = spread(np.flatnonzero(support), settings.max_refined)
        result = refiner(dense.demo_xy[use], dense.live_xy[use], min_ncc=settings.strict_ncc,
                         min_sharpness=settings.strict_sharpness)
        refined = (dense.demo_xy[use][result.refined], result.xy[result.refined])
    if requested == "fundamental":
        return _fundamental(refined, settings, fine, requested)
    model = "homography" if requested == "auto" else requested
    predictive = _predictive(model, dense, support, refined, settings, live_cell, live_wh, refiner)
    if requested != "auto":
        return predictive
    general = _fundamental(refined, settings, fine, "auto")
    if not general.success:
        return predictive if predictive.success else replace(
            predictive, model="auto", reason=f"homography: {predictive.reason}; fundamental: {general.reason}")
    if predictive.success:
        explained = int((predictive.residuals(*refined) <= fine).sum())
        if explained >= settings.planar_ratio * general.num_inliers:
            return predictive
    return general


def _fundamental(refined, settings: GeometrySettings, threshold: float, requested: str) -> GeometryResult:
    if refined is None:
        return GeometryResult(requested, "fundamental", False, "a fundamental matrix needs refined matches (cell "
                              "centres are too coarse to test epipolar lines): turn refinement on", None, 0, 0,
                              threshold)
    return replace(fit_geometry(*refined, replace(settings, model="fundamental"), threshold), requested=requested)


def _predictive(model: str, dense: DenseCoarse, support: np.ndarray, refined, settings: GeometrySettings,
                live_cell: float, live_wh: tuple[int, int], refiner: FrameRefiner | None) -> GeometryResult:
    """An affine map or homography (see the module). Without refinement the hypothesis that agrees with the most
    coarse matches stands."""
    geometry = replace(settings, model=model)
    coarse_threshold = settings.threshold_px or 0.75 * live_cell
    fine_threshold = settings.threshold_px or 3.0
    # Guided refits are checked against the textured cells, so hypotheses only need a minimal consensus.
    loose = replace(geometry, min_inlier_ratio=0.0, min_inliers=6) if refiner is not None else geometry
    candidates: list[GeometryResult] = []
    if refined is not None and len(refined[0]) >= loose.min_inliers:
        candidates.append(fit_geometry(*refined, loose, fine_threshold))
    candidates.append(fit_geometry(dense.demo_xy[support], dense.live_xy[support], loose, coarse_threshold))
    if not support.all():
        candidates.append(fit_geometry(dense.demo_xy, dense.live_xy, loose, coarse_threshold))
    fitted = [c for c in candidates if c.success]
    if not fitted:
        return replace(candidates[0], requested=settings.model)
    if refiner is None:
        def agreement(candidate: GeometryResult) -> int:
            return int((candidate.residuals(dense.demo_xy, dense.live_xy) <= coarse_threshold).sum())
        return replace(max(fitted, key=agreement), requested=settings.model)
    guided: list[GeometryResult] = []
    for candidate in fitted:  # most precise first; a well-supported model ends the search
        result = _guided(candidate, dense, geometry, fine_threshold, live_wh, refiner)
        if result is not None:
            guided.append(result)
            if result.success and (result.support or 0.0) >= 2 * settings.min_support:
                break
    if not guided:
        return GeometryResult(settings.model, model, False, f"no {model} hypothesis survived guided matching", None,
                              len(dense.demo_xy), 0, fine_threshold)
    best = replace(max(guided, key=lambda g: (g.success, g.support or 0.0)), requested=settings.model)
    if best.success and (best.support or 0.0) < settings.min_support:
        return replace(best, success=False, matrix=None, inliers=np.zeros(0, dtype=bool),
                       reason=f"only {best.support:.0%} of the textured dense cells agree with the best {model} "
                              f"(needs {settings.min_support:.0%}): not one rigid {model} scene")
    return best


def _guided(model: GeometryResult, dense: DenseCoarse, geometry: GeometrySettings, threshold: float,
            live_wh: tuple[int, int], refiner: FrameRefiner) -> GeometryResult | None:
    """Refit ``model`` to the dense demo cells refined around its own predictions, with the share of the textured
    cells that agree as its ``support`` (None when too few refine)."""
    best = None
    for _ in range(max(1, geometry.guided_rounds)):
        predicted = model.predict(dense.demo_xy)
        visible = np.flatnonzero(np.isfinite(predicted).all(1) & (predicted >= 0).all(1)
                                 & (predicted[:, 0] < live_wh[0]) & (predicted[:, 1] < live_wh[1]))
        pick = spread(visible, geometry.max_refined)
        result = refiner(dense.demo_xy[pick], predicted[pick], model.jacobians(dense.demo_xy[pick]),
                         search_px=max(2.0 * model.threshold_px, 2.0), min_ncc=geometry.strict_ncc,
                         min_sharpness=geometry.strict_sharpness)
        ok = result.refined
        if ok.sum() < geometry.min_inliers:
            break
        again = fit_geometry(dense.demo_xy[pick][ok], result.xy[ok], geometry, threshold)
        if not again.predictive:
            break
        textured = max(1, int(np.isfinite(result.ncc).sum()))
        model = best = replace(again, support=again.num_inliers / textured)
    return best


def apply_model(geometry: GeometryResult, matches: list, live_wh: tuple[int, int]) -> list:
    """Re-predict (affine, homography) or flag (fundamental) keypoint matches; a refused model changes nothing.
    A keypoint the model puts outside the live view is not visible there, so not accepted."""
    if not geometry.success or not matches:
        return matches
    demo_kp = np.array([m.demo_xy for m in matches]).reshape(-1, 2)
    own = np.array([m.live_xy for m in matches]).reshape(-1, 2)
    agree = geometry.residuals(demo_kp, own) <= geometry.threshold_px
    if not geometry.predictive:
        return [replace(m, geometry_inlier=bool(agree[i]), accepted=m.accepted and bool(agree[i]))
                for i, m in enumerate(matches)]
    predicted = geometry.predict(demo_kp)
    out = []
    for i, m in enumerate(matches):
        p = predicted[i]
        if np.isfinite(p).all() and 0 <= p[0] < live_wh[0] and 0 <= p[1] < live_wh[1]:
            out.append(replace(m, live_xy=(float(p[0]), float(p[1])), geometry_inlier=bool(agree[i]),
                               position="model"))
        else:
            out.append(replace(m, geometry_inlier=False, accepted=False))
    return out
