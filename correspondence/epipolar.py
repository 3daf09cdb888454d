"""Epipolar-guided search: with a verified fundamental matrix, find each keypoint again on its epipolar line.

A fundamental matrix only says on which live line a demo point lies; the keypoint's own coarse match, from an
upright single-scale grid, may be anywhere on it (or off it, under rotation). Here each keypoint is searched at the
original resolution around the position its neighbourhood predicts: the verified model's inlier matches near the
keypoint (local features and refined dense cells) give a local affine map, whose prediction is moved onto the
epipolar line and whose linear part warps the demo patch (so rotation and scale follow the views). The
correlation peak (sub-pixel, sharp, distinct within a live cell) is kept only where it lies on the line.

Where the pixels cannot say (a texture-less patch, or a correlation that fits well but is flat or repeats along
the search: sky, a plain wall, an edge along the line), the neighbourhood's prediction on the line is the answer,
as a stereo matcher's smoothness term fills such regions, but only where it is an explicit, well-founded
prediction (:class:`FillSettings`): at least 6 of its 12 nearest verified matches, the farthest within
``reach_cells`` live cells, fit one affine map to ``spread_px`` (median residual), the demo patch correlates there
(or has no texture), and the live patch there is no busier than the demo patch (at most ``texture_ratio`` times its
grey-level spread). Such keypoints are marked ``interpolated``, never as found. Pixels that disagree (a low correlation, a distinct
peak off the line, texture in the live view where the demo has none: an occlusion, another surface) give no
answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry2d import GeometryResult
from .refine import FrameRefiner


@dataclass(frozen=True)
class EpipolarSearch:
    xy: np.ndarray  # (K, 2) live pixels (NaN where no prediction)
    found: np.ndarray  # (K,) bool: a distinct correlation peak on the epipolar line
    predicted: np.ndarray  # (K, 2) the neighbourhood's prediction, moved onto the line (NaN: too few neighbours)
    search_px: np.ndarray  # (K,) the half-width searched
    interpolated: np.ndarray | None = None  # (K,) bool: no peak, so the neighbourhood's prediction on the line


@dataclass(frozen=True)
class FillSettings:
    """When the neighbourhood's prediction stands in for a peak the pixels cannot give (module doc)."""

    enabled: bool = True
    spread_px: float = 1.0  # the local affine map fits its verified neighbours this well (median residual)
    reach_cells: float = 8.0  # ... and its farthest neighbour is at most this many live cells away
    plain_std: float = 2.0  # the live patch at the prediction may have this much texture (grey-level spread) ...
    texture_ratio: float = 2.0  # ... or this many times the demo patch's: more is something else (an occluder)


def local_predictions(points: np.ndarray, demo_xy: np.ndarray, live_xy: np.ndarray, neighbours: int = 12
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per point, an affine map fitted to its ``neighbours`` nearest matches (trimmed least squares): the predicted
    live position, the linear part ``(K, 2, 2)``, the fit's residual spread in live pixels and the demo distance to
    the farthest match it kept (NaN / identity / inf / inf where fewer than 6 matches agree)."""
    k = len(points)
    predicted, linear, spread = np.full((k, 2), np.nan), np.repeat(np.eye(2)[None], k, 0), np.full(k, np.inf)
    reach = np.full(k, np.inf)
    if len(demo_xy) < 6:
        return predicted, linear, spread, reach
    distance = np.linalg.norm(points[:, None, :] - demo_xy[None], axis=2)
    for i in range(k):
        use = np.argsort(distance[i])[:neighbours]
        for _ in range(3):
            design = np.column_stack([demo_xy[use], np.ones(len(use))])
            coef, *_ = np.linalg.lstsq(design, live_xy[use], rcond=None)
            residual = np.linalg.norm(design @ coef - live_xy[use], axis=1)
            keep = residual <= max(2.0, 2.5 * float(np.median(residual)))
            if keep.all() or keep.sum() < 6:
                break
            use = use[keep]
        if len(use) >= 6 and np.linalg.det(coef[:2].T) > 0:
            predicted[i] = np.append(points[i], 1.0) @ coef
            linear[i] = coef[:2].T
            spread[i] = float(np.median(residual))
            reach[i] = float(distance[i, use].max())
    return predicted, linear, spread, reach


def onto_lines(geometry: GeometryResult, demo_xy: np.ndarray, live_xy: np.ndarray) -> np.ndarray:
    """``live_xy`` moved perpendicularly onto the epipolar lines of ``demo_xy``."""
    lines = np.column_stack([demo_xy, np.ones(len(demo_xy))]) @ geometry.matrix.T
    norm = np.maximum(np.hypot(lines[:, 0], lines[:, 1]), 1e-12)
    signed = (np.column_stack([live_xy, np.ones(len(live_xy))]) * lines).sum(1) / norm
    return live_xy - signed[:, None] * lines[:, :2] / norm[:, None]


def _patch_std(refiner: FrameRefiner, image, xy: np.ndarray, live_cell: float) -> float:
    """The grey-level spread of the patch (the refinement's template size) of ``image`` centred at ``xy``."""
    settings = refiner.settings
    radius = int(np.clip(round(settings.patch_cells * live_cell), settings.min_radius_px, settings.max_radius_px))
    col, row = int(xy[0]), int(xy[1])
    patch = image.levels[0][max(0, row - radius):row + radius + 1, max(0, col - radius):col + radius + 1]
    return float(patch.std()) if patch.size else float("inf")


def search(geometry: GeometryResult, demo_xy: np.ndarray, refiner: FrameRefiner, live_cell: float,
           min_ncc: float = 0.6, fill: FillSettings | None = None) -> EpipolarSearch:
    """Each demo point searched near its epipolar line (see the module); needs ``geometry.evidence``."""
    fill = fill or FillSettings()
    demo_xy = np.asarray(demo_xy, dtype=np.float64).reshape(-1, 2)
    evidence = geometry.evidence
    inliers = geometry.residuals(*evidence) <= geometry.threshold_px
    predicted, linear, spread, reach = local_predictions(demo_xy, evidence[0][inliers], evidence[1][inliers])
    ok = np.isfinite(predicted).all(1)
    on_line = np.full_like(predicted, np.nan)
    on_line[ok] = onto_lines(geometry, demo_xy[ok], predicted[ok])
    search_px = np.clip(3.0 * np.where(np.isfinite(spread), spread, 0.0), 2.0 * geometry.threshold_px, live_cell)
    xy, found = np.full_like(predicted, np.nan), np.zeros(len(demo_xy), dtype=bool)
    interpolated = np.zeros(len(demo_xy), dtype=bool)
    height, width = refiner.live.shape
    trusted = (spread <= fill.spread_px) & (reach <= fill.reach_cells * live_cell)
    for i in np.flatnonzero(ok):  # one window per point: the half-widths differ
        result = refiner(demo_xy[i:i + 1], on_line[i:i + 1], linear[i:i + 1], search_px=float(search_px[i]),
                         min_ncc=min_ncc, distinct_px=live_cell)
        if result.refined[0]:
            if geometry.residuals(demo_xy[i:i + 1], result.xy)[0] <= geometry.threshold_px:
                xy[i] = onto_lines(geometry, demo_xy[i:i + 1], result.xy)[0]  # the line is the constraint
                found[i] = True
            continue  # a distinct peak off the line: the pixels contradict the neighbourhood
        # a flat or repeated fit, or no texture; and the live patch no busier than the demo's (else an occluder)
        plain = max(fill.plain_std, fill.texture_ratio * _patch_std(refiner, refiner.demo, demo_xy[i], live_cell))
        silent = ((np.isnan(result.ncc[0]) or result.ncc[0] >= min_ncc)
                  and _patch_std(refiner, refiner.live, on_line[i], live_cell) <= plain)
        inside = 0 <= on_line[i, 0] < width and 0 <= on_line[i, 1] < height
        if fill.enabled and trusted[i] and silent and inside:
            xy[i] = on_line[i]
            interpolated[i] = True
    return EpipolarSearch(xy, found, on_line, search_px, interpolated)
