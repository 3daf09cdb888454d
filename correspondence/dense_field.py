"""The dense coarse matches as a motion field: a check on each keypoint's coarse cell and an answer where the
refinement cannot place a keypoint.

The dense demo cells' coarse matches (:class:`~correspondence.refine.DenseCoarse`) describe how the whole view
moved. Where they agree on one affine map, that map is strong evidence. Its agreeing cells are refined at full
resolution and the map fitted again to them (cell-quantised matches cannot see a shift smaller than a cell); when
that refit explains 90 % of them to a pixel the field is *precise* (an affine view: the same photo, turned,
scaled, cropped). Then each keypoint is searched around the field's prediction instead of its coarse cell (a
repeated or plain region matched somewhere else is put right; a cell centre is up to half a cell off), and a
keypoint the correlation refuses (a plain region, an edge, a repeated pattern) takes the field's prediction
(``position: "dense-field"``) instead of a cell centre. An imprecise field (a 3D scene bends the view) only offers
its prediction as one more refinement candidate to a keypoint whose cell is more than a cell off it.

Trust is measured, not assumed. ``support`` is the share of *all* dense demo cells whose coarse match lies within
one live cell of the field (RANSAC affine of the mutual matches). With ``daisy`` at 448 px (issue 21): an image
against itself 1.00 (5 photos, 118-1024 px); copies turned 10-20 deg 0.49-0.69; turned 30 deg 0.28; different
instances (cats, dogs, hammers, UMD-i cup against mug) 0.02-0.20; unrelated photos 0.01-0.03. The field is trusted
from ``field_min_support`` (0.4, twice the best cross-instance pair), and per keypoint unless the dense cells around
it say otherwise (:meth:`DenseField.trusted_at`: a part or object moving its own way keeps its own match).
A different instance is not an affine copy of the demo: there the field is never trusted and nothing changes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from .refine import FrameRefiner, Refinement, plausible

MIN_NEIGHBOURS = 3  # dense cells a keypoint needs around it for a local verdict (fewer: the global one stands)
MAX_BIAS = 0.5  # of a cell: the most the agreeing neighbours' coarse matches may be off an imprecise field on
# average (quantisation alone: median 0.15-0.24, 99th percentile 0.34-0.85 of a cell on turned and scaled copies)
PRECISE_SHARE = 0.9  # a field is precise when this share of its refined cells lies within threshold of its refit
PRECISE_MIN = 8  # ... of at least this many refined cells
MAX_ROUNDS = 8  # batches of field_cells dense cells tried for the sub-pixel refit


@dataclass(frozen=True)
class DenseField:
    """A demo -> live affine map of the dense matches and how far it is supported."""

    matrix: np.ndarray  # (2, 3), continuous pixels
    support: float  # share of the dense demo cells whose coarse match lies within one live cell of the map
    trusted: bool
    agree: np.ndarray  # (M,) bool: each dense cell's coarse match agrees with the map
    residual: np.ndarray  # (M, 2) each dense cell's coarse match minus the map's prediction, live px
    cell: float  # live cell size, px: "agree" means within one cell
    subpixel_matches: int = 0  # refined dense matches behind the final fit (0: fitted to the coarse cells)
    precise: bool = False  # the refit explains its refined cells to a pixel (an affine view; not a 3D scene)

    def predict(self, demo_xy: np.ndarray) -> np.ndarray:
        return np.asarray(demo_xy, dtype=np.float64).reshape(-1, 2) @ self.matrix[:, :2].T + self.matrix[:, 2]

    def trusted_at(self, demo_xy: np.ndarray, dense_demo_xy: np.ndarray, radius: float, min_support: float
                   ) -> np.ndarray:
        """Per point: the field is trusted unless the dense cells within ``radius`` demo pixels say otherwise.
        They do when the field is not precise and the ones that agree with it are off it on average by more
        than :data:`MAX_BIAS` of a cell (a 3D surface bends the view: each cell within a cell, all on one side),
        or when fewer than ``min_support`` agree with the field and at least that share agree with each other on
        another motion (a part that moved, another object). Neighbours that agree neither with the field nor
        with each other (a plain or repeated region, matched anywhere) do not outvote it."""
        points = np.asarray(demo_xy, dtype=np.float64).reshape(-1, 2)
        if not self.trusted:
            return np.zeros(len(points), dtype=bool)
        near = ((points[:, None, :] - dense_demo_xy[None]) ** 2).sum(-1) <= radius * radius
        out = np.ones(len(points), dtype=bool)
        for i in np.flatnonzero(near.sum(1) >= MIN_NEIGHBOURS):
            cells = np.flatnonzero(near[i])
            agreeing = cells[self.agree[cells]]
            if not self.precise and len(agreeing) >= MIN_NEIGHBOURS and \
                    np.linalg.norm(np.median(self.residual[agreeing], axis=0)) > MAX_BIAS * self.cell:
                out[i] = False
                continue
            if len(agreeing) >= min_support * len(cells):
                continue
            other = self.residual[cells[~self.agree[cells]]]
            together = (np.linalg.norm(other[:, None] - other[None], axis=2) <= self.cell).sum(1).max()
            out[i] = together / len(cells) < min_support
        return out


def untrusted(count: int) -> DenseField:
    return DenseField(np.hstack([np.eye(2), np.zeros((2, 1))]), 0.0, False, np.zeros(count, dtype=bool),
                      np.zeros((count, 2)), 1.0)


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
    residual = dense.live_xy - (dense.demo_xy @ model[:, :2].T + model[:, 2])
    agree = np.linalg.norm(residual, axis=1) <= cell
    support = float(agree.mean())
    trusted = support >= settings.field_min_support and int(agree.sum()) >= settings.field_min_matches
    field = DenseField(model, support, trusted, agree, residual, cell)
    return _subpixel(field, refiner) if trusted else field


def _subpixel(field: DenseField, refiner: FrameRefiner) -> DenseField:
    """The field fitted again to its agreeing dense cells refined around its own prediction (cell-quantised
    matches cannot see a shift smaller than a cell: every cell snaps the same way). Cells drawn over the whole
    view are refined ``field_cells`` at a time until that many correlated (a plain object leaves most cells
    without a peak; a plain cell costs only its template), at most :data:`MAX_ROUNDS` rounds. The refit is
    *precise* when it explains :data:`PRECISE_SHARE` of them to a pixel (a tenth of a cell on large images): an
    affine view, where the field's prediction is a better search centre than a cell centre; a 3D scene bends the
    view away from any one affine map."""
    limit = refiner.settings.field_cells
    cells = np.flatnonzero(field.agree)
    if limit <= 0 or len(cells) == 0:
        return field
    order = np.random.default_rng(0).permutation(cells)  # spread over the view (reading order is not)
    demo_all, live_all = [], []
    for batch in np.array_split(order, max(1, int(np.ceil(len(order) / limit))))[:MAX_ROUNDS]:
        demo_xy = refiner.dense.demo_xy[batch]
        result = refiner(demo_xy, field.predict(demo_xy), np.repeat(field.matrix[None, :, :2], len(batch), 0))
        demo_all.append(demo_xy[result.refined])
        live_all.append(result.xy[result.refined])
        if sum(len(d) for d in demo_all) >= limit:
            break
    demo_xy, live_xy = np.concatenate(demo_all), np.concatenate(live_all)
    if len(demo_xy) < 6:
        return field
    threshold = max(1.0, 0.1 * refiner.live_cell)
    model, inliers = cv2.estimateAffine2D(demo_xy, live_xy, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                          maxIters=2000, confidence=0.99)
    if model is None or int(inliers.sum()) < 6 or not plausible(model[:, :2]):
        return field
    count = int(inliers.sum())
    return replace(field, matrix=model, subpixel_matches=count,
                   precise=len(demo_xy) >= PRECISE_MIN and count >= PRECISE_SHARE * len(demo_xy))


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
    placeable, predicted = _placeable(field.predict(demo_xy), refiner)
    local &= placeable  # a point the field puts outside the view keeps its own match
    if field.precise:
        # An affine view, to a pixel: the field's prediction is the search centre (and prior) and the answer
        # where the correlation refuses, wherever the field holds.
        centre = np.where(local[:, None], predicted, coarse_xy)
        if candidates is not None:
            candidates = candidates.copy()
            candidates[:, 0] = centre
        result = refiner.best_candidates(demo_xy, candidates, centre)
        take = local & ~result.refined
        xy = np.where(take[:, None], predicted, result.xy)
        return Refinement(xy, result.refined, result.ncc, result.affine, result.sharpness), take, field
    # Not to a pixel (a 3D scene bends the view): a coarse cell more than a cell off the field only gets the
    # field's prediction as one more candidate, taken where it correlates clearly better (candidate_margin).
    off = local & (np.linalg.norm(coarse_xy - predicted, axis=1) > refiner.live_cell)
    base = candidates if candidates is not None else coarse_xy[:, None, :]
    extra = np.where(off[:, None], predicted, np.nan)[:, None, :]
    result = refiner.best_candidates(demo_xy, np.concatenate([base, extra], 1) if off.any() else candidates,
                                     coarse_xy)
    return result, np.zeros(len(coarse_xy), dtype=bool), field


def _placeable(xy: np.ndarray, refiner: FrameRefiner) -> tuple[np.ndarray, np.ndarray]:
    """Which predictions lie in the live image (within half a pixel: a point on the border may be predicted a
    hair outside it) and its mask, when given; and the predictions clipped into the image."""
    height, width = refiner.live.shape
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] < width + 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] < height + 0.5)
    clipped = np.column_stack([np.clip(xy[:, 0], 0.0, np.nextafter(width, 0)),
                               np.clip(xy[:, 1], 0.0, np.nextafter(height, 0))])
    if refiner.mask is not None:
        inside &= refiner.mask[clipped[:, 1].astype(int), clipped[:, 0].astype(int)]
    return inside, clipped
