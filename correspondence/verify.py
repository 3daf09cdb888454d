"""Geometric verification of one frame (the step after refinement, see :mod:`correspondence.keypoint_matching`):
which model, if any, a demo and a live view of the same rigid object support, and what it says about the keypoints.

Evidence: the refined mutual dense matches (sub-pixel) *fused* with the ratio-tested mutual local-feature matches
(SIFT by default, :mod:`correspondence.local_features`: invariant to rotation and scale, so a turned or re-scaled
view still gets a model), plus the coarse dense matches (cell-sized threshold) as extra hypotheses. An affine map
or homography is then *guided*: the visible dense demo cells are refined again around its predictions with its own
local map (which follows the found rotation and scale), and the model refitted, twice. The guided model must be
backed by ``min_support`` of the textured cells, counting only matches whose correlation peak is distinct (a
repeated pattern supports any model shifted by its period, so it supports none), or, where plain or noisy
surfaces leave few cells to test, by ``min_local_inliers`` local-feature matches that are at least
``min_local_share`` of them (ratio-tested, mutual, distinctive: chance does not line up that many). ``auto`` picks between the
homography and a fundamental matrix by GRIC (:func:`correspondence.geometry2d.gric`), which does not reward a
fundamental matrix for absorbing outliers; an explicit homography (or affine map) is refused when a
non-degenerate fundamental matrix has the better GRIC (a 3D scene: keypoints off the plane would be misplaced).

Keypoints then: a predictive model re-predicts them (``position: "model"``, an explicit prediction), a
fundamental matrix accepts only those whose own match lies on its epipolar line. A refused model accepts nothing:
same-object mode asked for a verified answer, and there is none.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from . import epipolar
from .geometry2d import (GeometryResult, GeometrySettings, beats_chance, fit_geometry, match_noise,
                         plane_and_parallax, select_scores)
from .refine import DenseCoarse, FrameRefiner

Matches = tuple[np.ndarray, np.ndarray]  # (demo_xy, live_xy)


def spread(index: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of ``index``, evenly spaced (the dense cells are in grid order: spread over the image)."""
    return index if len(index) <= limit else index[np.linspace(0, len(index) - 1, limit).round().astype(int)]


def _fuse(*sets: Matches | None) -> Matches | None:
    present = [s for s in sets if s is not None and len(s[0])]
    if not present:
        return None
    return np.concatenate([s[0] for s in present]), np.concatenate([s[1] for s in present])


def verify_dense(dense: DenseCoarse, support: np.ndarray, settings: GeometrySettings, live_cell: float,
                 live_wh: tuple[int, int], refiner: FrameRefiner | None,
                 local: Matches | Callable[[], Matches | None] | None = None) -> GeometryResult:
    """The model of the frame (``support``: the mutual dense matches; ``local``: the local-feature matches, or a
    function that finds them). ``refiner`` None: coarse dense matches and local features only (no guidance).

    Given a function, the dense matches are tried first: an affine map or homography they support well
    (``2 min_support`` of the textured cells and ``quick_min_inliers`` inliers; an upright view at about the
    demo's scale) ends the search without local features, so those frames cost what they did before; anything else
    (a turn, a scale change, a 3D scene, too little support, a small view whose few cells leave the model loose)
    runs again with them."""
    if callable(local):
        if refiner is not None:
            quick = verify_dense(dense, support, settings, live_cell, live_wh, refiner, None)
            if quick.predictive and (quick.support or 0.0) >= 2 * settings.min_support and \
                    quick.num_inliers >= settings.quick_min_inliers:
                return quick
        local = local()
    requested = settings.model
    fine = settings.threshold_px or 3.0
    refined = None
    if refiner is not None:
        use = spread(np.flatnonzero(support), settings.max_refined)
        result = refiner(dense.demo_xy[use], dense.live_xy[use], min_ncc=settings.strict_ncc,
                         min_sharpness=settings.strict_sharpness)
        refined = (dense.demo_xy[use][result.refined], result.xy[result.refined])
    fused = _fuse(refined, local)
    general = _fundamental(fused, settings, fine, requested)
    if requested == "fundamental":
        return general
    model = "homography" if requested == "auto" else requested
    predictive = _predictive(model, dense, support, fused, local, settings, live_cell, live_wh, refiner)
    scores = _gric_scores(predictive, general, fused, settings.gric_sigma)
    if requested != "auto":
        # A fundamental matrix that survived (not degenerate: no one homography explains its inliers) and that GRIC
        # prefers means a 3D scene: the model asked for would misplace every keypoint off its plane.
        if predictive.success and scores and scores["fundamental"] < scores[model]:
            return replace(predictive.refused(
                f"not one plane: a fundamental matrix explains the matches better than the {model} (GRIC "
                f"{scores['fundamental']:.0f} < {scores[model]:.0f}; the {model} has {predictive.support:.0%} of the "
                f"textured cells); use --geometry auto or fundamental"), gric=scores)
        return replace(predictive, gric=scores)
    if predictive.success and (not general.success or scores[model] <= scores["fundamental"]):
        return replace(predictive, requested="auto", gric=scores)
    if general.success:
        return replace(general, requested="auto", gric=scores)
    return replace(predictive, model="auto", requested="auto",
                   reason=f"homography: {predictive.reason}; fundamental: {general.reason}")


def _gric_scores(predictive: GeometryResult, general: GeometryResult, fused: Matches | None, sigma: float | None
                 ) -> dict[str, float] | None:
    """Both models' GRIC over the fused matches (None unless both fitted; ``sigma`` None: the matches' noise
    estimated from the fundamental matrix's inliers)."""
    if fused is None or not (predictive.success and general.success):
        return None
    return select_scores(predictive, general, *fused, sigma or match_noise(general, *fused))


def _fundamental(fused: Matches | None, settings: GeometrySettings, threshold: float, requested: str
                 ) -> GeometryResult:
    if fused is None:
        return GeometryResult(requested, "fundamental", False, "no precise matches: a fundamental matrix needs "
                              "refined dense matches or local features (cell centres are too coarse to test "
                              "epipolar lines)", None, 0, 0, threshold)
    result = replace(fit_geometry(*fused, replace(settings, model="fundamental"), threshold), requested=requested)
    if result.success:
        problem = (beats_chance(result, *fused, settings)
                   or plane_and_parallax(result, *fused, settings.min_parallax))
        result = result.refused(problem) if problem else replace(result, support=result.inlier_ratio,
                                                                  evidence=fused)
    return result


def _predictive(model: str, dense: DenseCoarse, support: np.ndarray, fused: Matches | None, local: Matches | None,
                settings: GeometrySettings, live_cell: float, live_wh: tuple[int, int],
                refiner: FrameRefiner | None) -> GeometryResult:
    """An affine map or homography (see the module). Without refinement the hypothesis that agrees with the most
    matches stands."""
    geometry = replace(settings, model=model)
    coarse_threshold = settings.threshold_px or 0.75 * live_cell
    fine_threshold = settings.threshold_px or 3.0
    # Guided refits are checked against the textured cells, so hypotheses only need a minimal consensus.
    loose = replace(geometry, min_inlier_ratio=0.0, min_inliers=6) if refiner is not None else geometry
    candidates: list[GeometryResult] = []
    if fused is not None:
        candidates.append(fit_geometry(*fused, loose, fine_threshold))
    if local is not None and len(local[0]) and fused is not None and len(fused[0]) > len(local[0]):
        # the local features alone: on a small or plain image the upright dense matches can outvote them
        candidates.append(fit_geometry(*local, loose, fine_threshold))
    candidates.append(fit_geometry(dense.demo_xy[support], dense.live_xy[support], loose, coarse_threshold))
    if not support.all():
        candidates.append(fit_geometry(dense.demo_xy, dense.live_xy, loose, coarse_threshold))
    fitted = [c for c in candidates if c.success]
    if not fitted and refiner is not None:  # too few matches for any hypothesis; a few agreeing ones may do
        alone = _confirmed_local(local, dense, support, geometry, fine_threshold, coarse_threshold, live_wh)
        if alone is not None:
            return replace(alone, requested=settings.model)
    if not fitted:
        precise = 0 if fused is None else len(fused[0])
        return GeometryResult(settings.model, model, False,
                              f"no {model} is consistent with the matches ({precise} precise matches, "
                              f"{int(support.sum())} mutual dense cells; too little shared texture)", None,
                              precise, 0, fine_threshold)
    if refiner is None:
        def agreement(candidate: GeometryResult) -> int:
            own = int((candidate.residuals(dense.demo_xy, dense.live_xy) <= coarse_threshold).sum())
            return own + (0 if fused is None else int((candidate.residuals(*fused) <= fine_threshold).sum()))
        return replace(max(fitted, key=agreement), requested=settings.model)
    guided: list[GeometryResult] = []
    confirmed: list[GeometryResult] = []  # few local features, confirmed by the coarse dense matches
    for candidate in fitted:  # most precise first; a well-supported model ends the search
        result = _guided(candidate, dense, geometry, fine_threshold, live_cell, live_wh, refiner, local)
        if result is None and _vouched(candidate, local, settings):  # few cells to test (small, plain, blurred)
            result = _refit_local(candidate, local, geometry, fine_threshold)
        if result is None and not confirmed:
            result = _confirmed_local(local, dense, support, geometry, fine_threshold, coarse_threshold, live_wh)
            confirmed += [] if result is None else [result]
        if result is not None:
            guided.append(result)
            if result.success and (result.support or 0.0) >= 2 * settings.min_support:
                break
    if not guided:
        coarse = _coarse_consensus(dense, support, geometry, coarse_threshold, live_wh)
        if coarse is not None:
            return replace(coarse, requested=settings.model)
        return GeometryResult(settings.model, model, False, f"no {model} hypothesis is confirmed by the pixels: too "
                              f"few dense cells correlate sharply around its predictions", None,
                              len(dense.demo_xy), 0, fine_threshold)
    def backed(g: GeometryResult) -> bool:
        return (g.support or 0.0) >= settings.min_support or _vouched(g, local, settings) or \
            any(g is c for c in confirmed)
    best = max(guided, key=lambda g: (g.success, backed(g), g.support or 0.0))
    vouched, best = backed(best), replace(best, requested=settings.model)
    if best.success and (best.support or 0.0) < settings.min_support:
        if vouched:
            return best  # plain or noisy surfaces leave few cells to test; distinctive features vouch for it
        agree, total = _local_agreement(best, local)
        return best.refused(f"only {best.support:.0%} of the textured dense cells agree with the best {model} "
                            f"(needs {settings.min_support:.0%}) and {agree} of {total} local-feature matches (needs "
                            f"{settings.min_local_inliers} and {settings.min_local_share:.0%}): not one rigid "
                            f"{model} scene")
    return best


def _vouched(model: GeometryResult, local: Matches | None, settings: GeometrySettings) -> bool:
    """Enough local-feature matches agree with ``model`` (see the module)."""
    agree, total = _local_agreement(model, local)
    return model.success and agree >= settings.min_local_inliers and agree >= settings.min_local_share * total


def _confirmed_local(local: Matches | None, dense: DenseCoarse, support: np.ndarray, geometry: GeometrySettings,
                     threshold: float, coarse_threshold: float, live_wh: tuple[int, int]) -> GeometryResult | None:
    """The local-feature matches' own model when they are too few to vouch for it alone (``min_confirmed_local``
    to ``min_local_inliers``: a plain or blurred view, a large scale change) and the mutual coarse dense matches, an
    independent source, agree with it: ``min_dense_agreement`` of those it keeps in view, and at least
    ``min_matches``, within a coarse cell. (A plain clock face at 4x: SIFT finds 11 matches, 10 right; too few
    cells correlate sharply for the guided confirmation; the coarse cells of the searched hypothesis agree.)"""
    if local is None or len(local[0]) < geometry.min_confirmed_local:
        return None
    few = replace(geometry, min_matches=geometry.min_confirmed_local, min_inliers=geometry.min_confirmed_local,
                  min_inlier_ratio=geometry.min_local_share)
    model = replace(fit_geometry(*local, few, threshold), evidence=local)
    if not model.predictive:
        return None
    agree, in_view = _agreeing(model, dense.demo_xy[support], dense.live_xy[support], coarse_threshold, live_wh)
    if agree < geometry.min_matches or agree < geometry.min_dense_agreement * max(in_view, 1):
        return None
    return replace(model, support=0.0, reason=f"ok: {model.num_inliers} local-feature matches, confirmed by {agree} "
                                              f"of {in_view} coarse dense matches")


def _agreeing(model: GeometryResult, demo: np.ndarray, live: np.ndarray, threshold: float,
              live_wh: tuple[int, int]) -> tuple[int, int]:
    """How many of the matches ``model`` keeps in the live view lie within ``threshold`` of its prediction, of
    how many it keeps in view."""
    predicted = model.predict(demo)
    inside = np.isfinite(predicted).all(1) & (predicted >= 0).all(1) & (predicted[:, 0] < live_wh[0]) & (
        predicted[:, 1] < live_wh[1])
    return int((np.linalg.norm(predicted[inside] - live[inside], axis=1) <= threshold).sum()), int(inside.sum())


def _coarse_consensus(dense: DenseCoarse, support: np.ndarray, geometry: GeometrySettings, coarse_threshold: float,
                      live_wh: tuple[int, int]) -> GeometryResult | None:
    """The mutual coarse dense matches' own model, for a view whose pixels cannot test any model (no hypothesis
    got ``min_inliers`` sharp cells around its predictions: a tiny or blurred view) and whose local features are
    too few: accepted only when ``min_coarse_inliers`` of them and ``min_coarse_share`` of those it keeps in view
    agree within the coarse threshold (the search's similarity gathers at most 0.37 of the cells and 14 of them on
    12 unrelated held-out pairs, and 0.36-0.47 for the wrong hypotheses of a plain clock, whose coarse matches
    collapse). Cell precision (the rocket copy at 0.25x, an 88 x 58-px view: 40 of 42 cells, median error 2.5 px),
    so the reason says it."""
    demo, live = dense.demo_xy[support], dense.live_xy[support]
    if len(demo) < geometry.min_coarse_inliers:
        return None
    model = fit_geometry(demo, live, replace(geometry, min_inliers=geometry.min_coarse_inliers,
                                             min_inlier_ratio=geometry.min_coarse_share), coarse_threshold)
    if not model.predictive:
        return None
    agree, in_view = _agreeing(model, demo, live, coarse_threshold, live_wh)
    if agree < geometry.min_coarse_inliers or agree < geometry.min_coarse_share * max(in_view, 1):
        return None
    return replace(model, support=0.0, reason=f"ok at cell precision: {agree} of {in_view} mutual coarse dense "
                                              f"matches agree; too few sharp cells to refine it")


def _refit_local(candidate: GeometryResult, local: Matches, geometry: GeometrySettings, threshold: float
                 ) -> GeometryResult | None:
    """``candidate`` refitted to the local-feature matches under the real settings (support 0: no cell tested)."""
    again = fit_geometry(*local, geometry, threshold)
    return replace(again, support=0.0, evidence=local) if again.predictive else None


def _local_agreement(model: GeometryResult, local: Matches | None) -> tuple[int, int]:
    """How many of the local-feature matches agree with ``model``, of how many."""
    if local is None or not len(local[0]):
        return 0, 0
    return int((model.residuals(*local) <= model.threshold_px).sum()), len(local[0])


def _guided(model: GeometryResult, dense: DenseCoarse, geometry: GeometrySettings, threshold: float,
            live_cell: float, live_wh: tuple[int, int], refiner: FrameRefiner, local: Matches | None
            ) -> GeometryResult | None:
    """Refit ``model`` to the dense demo cells refined around its own predictions (its local maps warp the demo
    patches, so rotation and scale follow the model) and the local-feature matches, with the share of the
    textured cells whose distinct peak agrees as its ``support`` (None when too few refine)."""
    best = None
    for _ in range(max(1, geometry.guided_rounds)):
        predicted = model.predict(dense.demo_xy)
        visible = np.isfinite(predicted).all(1) & (predicted >= 0).all(1) & (predicted[:, 0] < live_wh[0]) & (
            predicted[:, 1] < live_wh[1])
        if refiner.mask is not None:  # a live mask says where the object is: only cells predicted onto it count
            inside = np.zeros(len(predicted), dtype=bool)
            p = np.floor(predicted[visible]).astype(int)
            inside[visible] = refiner.mask[p[:, 1], p[:, 0]]
            visible &= inside
        pick = spread(np.flatnonzero(visible), geometry.max_refined)
        result = refiner(dense.demo_xy[pick], predicted[pick], model.jacobians(dense.demo_xy[pick]),
                         search_px=max(2.0 * model.threshold_px, 2.0), min_ncc=geometry.strict_ncc,
                         min_sharpness=geometry.strict_sharpness, distinct_px=geometry.distinct_cells * live_cell)
        ok = result.refined
        if ok.sum() < geometry.min_inliers:
            break
        cells = int(ok.sum())
        evidence = _fuse((dense.demo_xy[pick][ok], result.xy[ok]), local)
        again = fit_geometry(*evidence, geometry, threshold)
        if not again.predictive:
            break
        textured = max(1, int(np.isfinite(result.ncc).sum()))
        model = best = replace(again, support=int(again.inliers[:cells].sum()) / textured, evidence=evidence)
    return best


def apply_model(geometry: GeometryResult, matches: list, live_wh: tuple[int, int],
                refiner: FrameRefiner | None = None, live_cell: float | None = None) -> list:
    """Keypoints under the frame's model. Affine map or homography: each is re-predicted (``position: "model"``,
    accepted where it lands in the live view; ``geometry_inlier``: its own match agreed). Fundamental matrix:
    with a ``refiner``, each keypoint is searched again near its epipolar line (:mod:`correspondence.epipolar`;
    ``position: "epipolar"``; where the pixels cannot say, the neighbourhood's prediction on the line,
    ``position: "interpolated"``); otherwise, or where that finds nothing, its own match is accepted only if it lies
    on its line (and, after a search, near the neighbourhood's prediction). Refused: nothing is accepted
    (same-object mode asked for a verified answer)."""
    if not matches:
        return matches
    if not geometry.success:
        return [replace(m, accepted=False) for m in matches]
    demo_kp = np.array([m.demo_xy for m in matches]).reshape(-1, 2)
    own = np.array([m.live_xy for m in matches]).reshape(-1, 2)
    agree = geometry.residuals(demo_kp, own) <= geometry.threshold_px
    if not geometry.predictive:
        if refiner is None or geometry.evidence is None:
            return [replace(m, geometry_inlier=bool(agree[i]), accepted=m.accepted and bool(agree[i]))
                    for i, m in enumerate(matches)]
        found = epipolar.search(geometry, demo_kp, refiner, live_cell or refiner.live_cell)
        near = np.linalg.norm(own - found.predicted, axis=1) <= found.search_px  # NaN (no prediction): False
        filled = found.interpolated if found.interpolated is not None else np.zeros(len(matches), dtype=bool)
        return [replace(m, live_xy=(float(found.xy[i, 0]), float(found.xy[i, 1])), geometry_inlier=bool(agree[i]),
                        position="epipolar" if found.found[i] else "interpolated", accepted=True)
                if found.found[i] or filled[i] else
                replace(m, geometry_inlier=bool(agree[i]), accepted=m.accepted and bool(agree[i] and near[i]))
                for i, m in enumerate(matches)]
    predicted = geometry.predict(demo_kp)
    out = []
    for i, m in enumerate(matches):
        p = predicted[i]
        if np.isfinite(p).all() and 0 <= p[0] < live_wh[0] and 0 <= p[1] < live_wh[1]:
            out.append(replace(m, live_xy=(float(p[0]), float(p[1])), geometry_inlier=bool(agree[i]),
                               position="model", accepted=True))
        else:
            out.append(replace(m, geometry_inlier=False, accepted=False))
    return out
