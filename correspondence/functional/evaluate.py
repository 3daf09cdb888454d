"""The reference evaluation protocol of dense functional correspondence (Stojanov et al., ICCV 2025), reproduced
from the released code (``cond_corr/inference_2D_HANDAL.py``, ``inference_2D_discovery_HANDAL.py``; crops from
``3_pseudo_label/resize_images.py`` and ``4_eval_curation/resize_annotations.py``).

**Crop** (:func:`~correspondence.object_crop.reference_crop`): the object is composited on white, the image padded by 60 px on every side
(white; the mask with 0), the box is ``[int(c - s // 2), int(c + s // 2)]`` per axis with ``c = (min + max) / 2``
and ``s = 1.2 * max(x_max - x_min, y_max - y_min)`` (inclusive extremes, floor-halved side), cropped with PIL
(black beyond the padded image), resized to 224 with LANCZOS (the mask with NEAREST); points
``round((p + 60 - box_origin) * 224 / box_width)`` (numpy's half-to-even), clipped to [0, 223].

**Embeddings**: every pixel of both 224 crops (:class:`~correspondence.functional.inference.PixelEmbedding`).

**Label transfer**, per direction: each annotated source pixel's embedding against every target pixel; the
argmax (first in row-major order) over the target object mask, intersected with the head's predicted
functional mask when the head has a mask head. An empty region gives pixel (0, 0) (the reference's argmax over a
constant -100 map), counted as ``empty_region``. Metrics: :func:`~.metrics.normalised_distance`,
:func:`~.metrics.pck_px`.

**Discovery**, per direction: every pixel of the source region is matched to its best target pixel (as above),
then back to its best source pixel; candidates are ranked by :func:`~.metrics.discovery_scores` (min-max of
the similarity and of the cycle distance over the candidates of one search). With a mask head the source and
target are split into predicted part and rest: part -> part ranked first, then rest -> rest; when any of the
four regions has fewer than 16 pixels, the whole objects are matched instead (``part_first: False``).

**Chance**: label transfer picks a uniformly random target-mask pixel per point; discovery pairs every source
pixel with a random target pixel in random order; both from ``np.random.RandomState(1234)`` streams, one for
label transfer and one for discovery, drawn in the reference's order.

Pair directions that the reference cannot score (no annotated point, an empty object mask) are skipped and
counted; nothing reaches a table mean as NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..device import to_numpy
from ..errors import InputError
from ..object_crop import CROP_SIZE, reference_crop
from .inference import PixelEmbedding
from .metrics import (DISCOVERY_TAUS, PCK_THRESHOLDS, discovery_metrics, discovery_scores, normalised_distance,
                      pck_px, transfer_distances)

MIN_PART_PIXELS = 16  # the reference's fallback: any of part/rest of either image below this -> whole objects
CHANCE_SEED = 1234
CURVE_TAU = 10
ROW_CHUNK = 1024  # source pixels per similarity block (bounds memory: 1024 x 50176 floats)


# ---------------------------------------------------------------------------------------------------- pairs

@dataclass(frozen=True)
class AnnotatedPair:
    """One pair in its evaluation frame (224 px crops) with row-aligned integer ``[row, col]`` annotations."""

    pair_id: str
    function: str
    category_a: str
    category_b: str
    image_a: np.ndarray
    mask_a: np.ndarray
    image_b: np.ndarray
    mask_b: np.ndarray
    rc_a: np.ndarray
    rc_b: np.ndarray

    @property
    def within_category(self) -> bool:
        return self.category_a == self.category_b

    @classmethod
    def from_full_images(cls, pair_id: str, function: str, category_a: str, category_b: str, image_a, mask_a,
                         image_b, mask_b, rc_a, rc_b, size: int = CROP_SIZE) -> "AnnotatedPair":
        """Crop both full frames as the reference does; ``rc_*`` are full-frame ``[row, col]`` pixel indices."""
        ia, ma, ca = reference_crop(image_a, mask_a, size)
        ib, mb, cb = reference_crop(image_b, mask_b, size)
        return cls(pair_id, function, category_a, category_b, ia, ma, ib, mb, ca.points(rc_a), cb.points(rc_b))


Method = Callable[[np.ndarray, str], PixelEmbedding]


@dataclass
class ChanceMethod:
    """The reference's Chance baseline: its two random streams (label transfer, discovery), seeded 1234."""

    seed: int = CHANCE_SEED
    label_rng: np.random.RandomState = field(init=False)
    discovery_rng: np.random.RandomState = field(init=False)
    predicts_mask = False

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.label_rng = np.random.RandomState(self.seed)
        self.discovery_rng = np.random.RandomState(self.seed)


# ------------------------------------------------------------------------------------------- matching core

def _pixels(mask: np.ndarray) -> np.ndarray:
    """Flat row-major indices of a mask's pixels (the order of ``np.where``)."""
    return np.flatnonzero(np.asarray(mask, dtype=bool).ravel())


def _rc(index: np.ndarray, size: int) -> np.ndarray:
    index = np.asarray(index, dtype=np.int64)
    return np.stack([index // size, index % size], 1)


def best_match(queries: torch.Tensor, target: torch.Tensor, region: np.ndarray, size: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """For each query embedding, the first best pixel (row-major) of ``region`` in ``target`` and its similarity
    (float32). An empty region gives pixel 0 and similarity -100, as the reference's masked map."""
    n = queries.shape[0]
    if len(region) == 0:
        return np.zeros(n, dtype=np.int64), np.full(n, -100.0, dtype=np.float32)
    candidates = target[torch.from_numpy(region).to(target.device)]
    index, value = [], []
    for start in range(0, n, ROW_CHUNK):
        best_value, best = torch.max(queries[start:start + ROW_CHUNK] @ candidates.T, dim=1)  # first maximum,
        index.append(best)  # as numpy's argmax over the reference's masked map
        value.append(best_value)
    best_index = to_numpy(torch.cat(index), np.int64)
    return region[best_index], to_numpy(torch.cat(value), np.float32)


def cycle_matches(src: PixelEmbedding, src_region: np.ndarray, trg: PixelEmbedding, trg_region: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``find_cycle_consistent_matches``: every source-region pixel forward and back, ranked best first.
    Returns ranked source and target flat pixel indices."""
    size = src.size
    forward, sims = best_match(src.emb[torch.from_numpy(src_region).to(src.emb.device)], trg.emb, trg_region, size)
    unique, inverse = np.unique(forward, return_inverse=True)  # each distinct target pixel goes back once
    back_unique, _ = best_match(trg.emb[torch.from_numpy(unique).to(trg.emb.device)], src.emb, src_region, size)
    back = back_unique[inverse.reshape(-1)]
    cycle = np.sqrt(np.sum((_rc(back, size) - _rc(src_region, size)).astype(np.float64) ** 2, axis=1))
    order = np.argsort(-discovery_scores(sims, cycle), kind="stable")
    return src_region[order], forward[order]


def chance_cycle_matches(rng: np.random.RandomState, src_region: np.ndarray, trg_region: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The reference's chance discovery: every source pixel with a random target pixel, in random order."""
    picks = trg_region[rng.choice(len(trg_region), size=len(src_region), replace=True)]
    order = rng.permutation(len(src_region))
    return src_region[order], picks[order]


# ------------------------------------------------------------------------------------------------ evaluation

@dataclass
class EvaluationCounts:
    """What the evaluator could not score as the reference does (reported beside the table)."""

    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _split_regions(mask_s, part_s, mask_t, part_t) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Part -> part then rest -> rest (predicted part within the object), or None for the whole-object fallback."""
    if part_s is None or part_t is None:
        return None
    regions = [mask_s & part_s, mask_s & ~part_s, mask_t & part_t, mask_t & ~part_t]
    if min(int(r.sum()) for r in regions) < MIN_PART_PIXELS:
        return None
    return [(_pixels(regions[0]), _pixels(regions[2])), (_pixels(regions[1]), _pixels(regions[3]))]


def evaluate_pair(pair: AnnotatedPair, method, taus=DISCOVERY_TAUS, thresholds=PCK_THRESHOLDS,
                  discovery: bool = True, counts: EvaluationCounts | None = None) -> list[dict]:
    """Two records (a->b and b->a) of label-transfer and discovery metrics, as the reference computes them.

    ``method`` is an embedder with ``pixels(image, function) -> PixelEmbedding`` (the head, DINO) or a
    :class:`ChanceMethod`. Fractions, not percentages (the paper's Table 1 convention).
    """
    counts = counts if counts is not None else EvaluationCounts()
    size = pair.image_a.shape[0]
    chance = isinstance(method, ChanceMethod)
    masks = {"a": np.asarray(pair.mask_a, dtype=bool), "b": np.asarray(pair.mask_b, dtype=bool)}
    points = {"a": np.asarray(pair.rc_a, dtype=np.int64).reshape(-1, 2),
              "b": np.asarray(pair.rc_b, dtype=np.int64).reshape(-1, 2)}
    if not chance:
        pixels = {"a": method.pixels(pair.image_a, pair.function), "b": method.pixels(pair.image_b, pair.function)}
        parts = {k: (v.part & masks[k] if v.part is not None else None) for k, v in pixels.items()}
    else:
        pixels, parts = {}, {"a": None, "b": None}
    base = {"pair_id": pair.pair_id, "function": pair.function, "within_category": pair.within_category}
    records = {d: {**base, "direction": d, "points": int(len(points[d[0]]))} for d in ("a->b", "b->a")}
    has_points = len(points["a"]) > 0 and len(points["a"]) == len(points["b"])
    if len(points["a"]) != len(points["b"]):
        raise InputError(f"{pair.pair_id}: {len(points['a'])} points in A but {len(points['b'])} in B")
    if not masks["a"].any() or not masks["b"].any():
        counts.add("empty_object_mask")
        for r in records.values():
            r["skipped"] = "empty object mask"
        return list(records.values())

    # ---- label transfer (inference_2D_HANDAL.find_matches)
    if not has_points:
        counts.add("no_annotated_points")
    elif chance:
        trg_regions = {"a->b": _pixels(masks["b"]), "b->a": _pixels(masks["a"])}
        for d, (s, t) in (("a->b", ("a", "b")), ("b->a", ("b", "a"))):
            picks = trg_regions[d][method.label_rng.choice(len(trg_regions[d]), size=len(points[s]), replace=True)]
            _transfer_record(records[d], _rc(picks, size), points[t], thresholds)
    else:
        for d, (s, t) in (("a->b", ("a", "b")), ("b->a", ("b", "a"))):
            region = masks[t] if parts[t] is None else parts[t]
            if not region.any():
                counts.add("empty_predicted_part")
                records[d]["empty_region"] = True
            query = torch.from_numpy(points[s][:, 0] * size + points[s][:, 1]).to(pixels[s].emb.device)
            best, _ = best_match(pixels[s].emb[query], pixels[t].emb, _pixels(region), size)
            _transfer_record(records[d], _rc(best, size), points[t], thresholds)

    # ---- discovery (inference_2D_discovery_HANDAL.run_inference)
    if discovery and has_points:
        split = _split_regions(masks["a"], parts["a"], masks["b"], parts["b"])
        for d, (s, t) in (("a->b", ("a", "b")), ("b->a", ("b", "a"))):
            if chance:
                src_idx, trg_idx = chance_cycle_matches(method.discovery_rng, _pixels(masks[s]), _pixels(masks[t]))
            elif split is None:
                src_idx, trg_idx = cycle_matches(pixels[s], _pixels(masks[s]), pixels[t], _pixels(masks[t]))
            else:
                blocks = split if s == "a" else [(r_t, r_s) for r_s, r_t in split]
                ranked = [cycle_matches(pixels[s], rs, pixels[t], rt) for rs, rt in blocks]
                src_idx = np.concatenate([r[0] for r in ranked])
                trg_idx = np.concatenate([r[1] for r in ranked])
            records[d]["part_first"] = split is not None
            records[d]["candidates"] = int(len(src_idx))
            curves = discovery_metrics(_rc(src_idx, size), _rc(trg_idx, size), points[s], points[t], taus)
            for tau, curve in curves.items():
                records[d][f"best_f1@{tau:g}"] = curve.best_f1
                records[d][f"ap@{tau:g}"] = curve.average_precision
            if CURVE_TAU in curves:
                records[d]["curve"] = {"precision": curves[CURVE_TAU].precision.tolist(),
                                       "recall": curves[CURVE_TAU].recall.tolist()}
    return list(records.values())


def _transfer_record(record: dict, predicted_rc: np.ndarray, true_rc: np.ndarray, thresholds) -> None:
    record["normalised_distance"] = normalised_distance(predicted_rc, true_rc)
    record["mean_distance_px"] = float(transfer_distances(predicted_rc, true_rc).mean())
    for threshold, value in pck_px(predicted_rc, true_rc, thresholds).items():
        record[f"pck@{threshold:g}"] = value
