"""The dense coarse matches as a motion field: a check on each keypoint's coarse cell and an answer where the
refinement cannot place a keypoint.

The dense demo cells' coarse matches (:class:`~correspondence.refine.DenseCoarse`) describe how the whole view
moved. Where they agree on one affine map, that map is strong evidence: a keypoint whose own coarse cell lies more
than a live cell from it (a repeated or plain region matched somewhere else) is refined around the field's
prediction instead, and a keypoint the refinement refuses (a plain region, an edge, a repeated pattern: nothing
to correlate) takes the field's prediction (``position: "dense-field"``) instead of a cell centre up to half a
cell off. The field is made sub-pixel by refining its own dense cells (the ones that agree with it) and fitting
it again to those.

Trust is measured, not assumed. ``support`` is the share of *all* dense demo cells whose coarse match lies within
one live cell of the field (RANSAC affine of the mutual matches). With ``daisy`` at 448 px (issue 21): an image
against itself 1.00 (5 photos, 118-1024 px); copies turned 10-20 deg 0.49-0.69; turned 30 deg 0.28; different
instances (cats, dogs, hammers, UMD-i cup against mug) 0.02-0.20; unrelated photos 0.01-0.03. The field is trusted
from ``field_min_support`` (0.4, twice the best cross-instance pair), and per keypoint only where the dense cells
around it agree as well (a moved part, another object, a region the field does not explain keeps today's answer).
A different instance is not an affine copy of the demo: there the field is never trusted and nothing changes.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .refine import FrameRefiner, Refinement, plausible

MIN_NEIGHBOURS = 3  # dense cells a keypoint needs around it for a local verdict (fewer: the global one stands)


@dataclass(frozen=True)
class DenseField:
    """A demo -> live affine map of the dense matches and how far it is supported."""

    matrix: np.ndarray  # (2, 3), continuous pixels
    support: float  # share of the dense demo cells whose coarse match lies within one live cell of the map
    trusted: bool
    agree: np.ndarray  # (M,) bool: each dense cell's coarse match agrees with the map
    subpixel_matches: int = 0  # refined dense matches behind the final fit (0: fitted to the coarse cells)

    def predict(self, demo_xy: np.ndarray) -> np.ndarray:
        return np.asarray(demo_xy, dtype=np.float64).reshape(-1, 2) @ self.matrix[:, :2].T + self.matrix[:, 2]

    def trusted_at(self, demo_xy: np.ndarray, dense_demo_xy: np.ndarray, radius: float, min_support: float
                   ) -> np.ndarray:
        """Per point: the field is trusted and the dense cells within ``radius`` demo pixels agree with it at
        least as often as ``min_support`` (the global verdict where fewer than :data:`MIN_NEIGHBOURS` are near)."""
        points = np.asarray(demo_xy, dtype=np.float64).reshape(-1, 2)
        if not self.trusted:
            return np.zeros(len(points), dtype=bool)
        near = ((points[:, None, :] - dense_demo_xy[None]) ** 2).sum(-1) <= radius * radius
        count = near.sum(1)
        share = (near & self.agree[None]).sum(1) / np.maximum(count, 1)
        return np.where(count >= MIN_NEIGHBOURS, share >= min_support, True)


def untrusted(count: int) -> DenseField:
    return DenseField(np.hstack([np.eye(2), np.zeros((2, 1))]), 0.0, False, np.zeros(count, dtype=bool))


def fit_field(refiner: FrameRefiner) -> DenseField:
    """The dense field of one frame (see the module): a RANSAC affine map of the mutual coarse matches, its
    support, and, when trusted, the same map fitted again to its agreeing cells refined at full resolution."""
    settings, dense, cell = refiner.settings, refiner.dense, refiner.live_cell
    mutual = refiner.support
    if int(mutual.sum()) < max(3, settings.field_min_matches):
        return untrusted(len(dense.demo_xy))
    model, _ = cv2.estimateAffine2D(dense.demo_xy[mutual].astype(np.float64), dense.live_xy[mutual].astype(np.float64),
                                    method=cv2.RANSAC, ransacReprojThreshold=cell, maxIters=2000, confidence=0.99)
    if model is None or not plausible(model[:, :2]):
        return untrusted(len(dense.demo_xy))
    coarse = DenseField(model, 0.0, False, np.zeros(len(dense.demo_xy), dtype=bool))
    agree = np.linalg.norm(coarse.predict(dense.demo_xy) - dense.live_xy, axis=1) <= cell
    support = float(agree.mean())
    trusted = support >= settings.field_min_support and int(agree.sum()) >= settings.field_min_matches
    field = DenseField(model, support, trusted, agree)
    return _subpixel(field, refiner) if trusted else field


def _subpixel(field: DenseField, refiner: FrameRefiner) -> DenseField:
    """The field fitted again to its agreeing dense cells refined around its own prediction (cell-quantised
    matches cannot see a shift smaller than a cell: every cell snaps the same way)."""
    cells = np.flatnonzero(field.agree)
    limit = refiner.settings.field_cells
    if limit <= 0:
        return field
    if len(cells) > limit:
        cells = cells[np.linspace(0, len(cells) - 1, limit).round().astype(int)]
    demo_xy = refiner.dense.demo_xy[cells]
    result = refiner(demo_xy, field.predict(demo_xy), np.repeat(field.matrix[None, :, :2], len(cells), 0))
    ok = result.refined
    if ok.sum() < 6:
        return field
    threshold = max(1.0, 0.1 * refiner.live_cell)
    model, inliers = cv2.estimateAffine2D(demo_xy[ok], result.xy[ok], method=cv2.RANSAC,
                                          ransacReprojThreshold=threshold, maxIters=2000, confidence=0.99)
    if model is None or int(inliers.sum()) < 6 or not plausible(model[:, :2]):
        return field
    return DenseField(model, field.support, True, field.agree, int(inliers.sum()))


def refine_keypoints(refiner: FrameRefiner, demo_xy: np.ndarray, candidates: np.ndarray | None,
                     coarse_xy: np.ndarray) -> tuple[Refinement, np.ndarray, DenseField]:
    """Refine the keypoints' coarse matches, checked against the dense field where it is trusted (see the
    module). Returns the refinement, which keypoints took the field's prediction, and the field. Where the field
    is not trusted (or ``dense_field`` is off) this is :meth:`FrameRefiner.best_candidates` unchanged."""
    settings = refiner.settings
    coarse_xy = np.asarray(coarse_xy, dtype=np.float64).reshape(-1, 2)
    field = fit_field(refiner) if settings.dense_field else untrusted(len(refiner.dense.demo_xy))
    local = field.trusted_at(demo_xy, refiner.dense.demo_xy, settings.neighbourhood_cells * refiner.demo_cell,
                             settings.field_min_support)
    if not local.any():
        return refiner.best_candidates(demo_xy, candidates, coarse_xy), local, field
    predicted = field.predict(demo_xy)
    centre = np.where(local[:, None], predicted, coarse_xy)
    if candidates is not None:
        candidates = candidates.copy()
        candidates[:, 0] = centre
    result = refiner.best_candidates(demo_xy, candidates, centre)
    take = local & ~result.refined & _placeable(predicted, refiner)
    xy = np.where(take[:, None], predicted, result.xy)
    return Refinement(xy, result.refined, result.ncc, result.affine, result.sharpness), take, field


def _placeable(xy: np.ndarray, refiner: FrameRefiner) -> np.ndarray:
    """Inside the live image (and its mask, when given)."""
    height, width = refiner.live.shape
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    if refiner.mask is not None:
        rows = np.clip(xy[:, 1].astype(int), 0, height - 1)
        cols = np.clip(xy[:, 0].astype(int), 0, width - 1)
        inside &= refiner.mask[rows, cols]
    return inside
