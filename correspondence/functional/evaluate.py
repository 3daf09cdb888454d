"""Evaluating dense functional correspondence on annotated pairs, as the paper does.

Each image is cropped to a square around its object mask (side = 1.2 x the box's longer side) and resized to
224 px; the annotated correspondences follow the same transform. Label transfer: every annotated source pixel is
matched to the target (restricted to the target mask, and to the predicted functional mask when the head has
one), both directions; metrics are the mean normalised distance and PCK@23/15/10 px. Discovery: every source-mask
cell is matched forward and back, scored by similarity and cycle distance, and the top-k% sweep gives best F1
and AP against the annotations within tau px in both images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from .inference import discover, transfer, valid_cells
from .metrics import (DISCOVERY_TAUS, PCK_THRESHOLDS, discovery_curve, discovery_metrics, discovery_scores,
                      normalised_distance, pck_px)

CURVE_TAU = 10

CROP_SIZE = 224
PAD_RATIO = 1.2
Embedder = Callable[[np.ndarray, str], tuple]


@dataclass(frozen=True)
class Crop:
    """original pixel ``p`` -> crop pixel ``(p - origin) * scale``."""

    origin: np.ndarray
    scale: float

    def apply(self, xy: np.ndarray) -> np.ndarray:
        return (np.asarray(xy, dtype=np.float64) - self.origin) * self.scale


def crop_square(image: np.ndarray, mask: np.ndarray, pad_ratio: float = PAD_RATIO, size: int = CROP_SIZE
                ) -> tuple[np.ndarray, np.ndarray, Crop]:
    """Square crop around the mask (padded with black outside the image), resized to ``size``."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        raise ValueError("cannot crop around an empty mask")
    cy, cx = (rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2
    side = max(rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min()) * pad_ratio
    left, top = cx - side / 2, cy - side / 2
    box = (int(np.floor(left)), int(np.floor(top)), int(np.floor(left)) + int(np.ceil(side)),
           int(np.floor(top)) + int(np.ceil(side)))
    scale = size / (box[2] - box[0])
    crop_img = Image.fromarray(image).crop(box).resize((size, size), Image.BICUBIC)
    crop_mask = Image.fromarray(mask.astype(np.uint8) * 255).crop(box).resize((size, size), Image.NEAREST)
    return np.asarray(crop_img), np.asarray(crop_mask) > 127, Crop(np.array(box[:2], dtype=np.float64), scale)


@dataclass(frozen=True)
class AnnotatedPair:
    """One pair in its evaluation frame (224 px crops) with row-aligned ground-truth correspondences."""

    pair_id: str
    function: str
    category_a: str
    category_b: str
    image_a: np.ndarray
    mask_a: np.ndarray
    image_b: np.ndarray
    mask_b: np.ndarray
    xy_a: np.ndarray
    xy_b: np.ndarray

    @classmethod
    def from_full_images(cls, pair_id: str, function: str, category_a: str, category_b: str, image_a, mask_a,
                         image_b, mask_b, xy_a, xy_b) -> "AnnotatedPair":
        ia, ma, ca = crop_square(image_a, mask_a)
        ib, mb, cb = crop_square(image_b, mask_b)
        xa, xb = ca.apply(xy_a), cb.apply(xy_b)
        keep = ((xa >= 0) & (xa < CROP_SIZE)).all(1) & ((xb >= 0) & (xb < CROP_SIZE)).all(1)
        return cls(pair_id, function, category_a, category_b, ia, ma, ib, mb, xa[keep], xb[keep])


def _rc(xy: np.ndarray) -> np.ndarray:
    return np.asarray(xy)[:, ::-1]


def evaluate_pair(pair: AnnotatedPair, embed: Embedder, taus=DISCOVERY_TAUS, thresholds=PCK_THRESHOLDS,
                  discovery: bool = True) -> list[dict]:
    """Two records (a->b and b->a) of label-transfer and discovery metrics."""
    emb_a, pred_a = embed(pair.image_a, pair.function)
    emb_b, pred_b = embed(pair.image_b, pair.function)
    sides = {"a": (emb_a, pred_a, pair.mask_a, pair.xy_a), "b": (emb_b, pred_b, pair.mask_b, pair.xy_b)}
    records = []
    for src, trg in (("a", "b"), ("b", "a")):
        s_emb, _, s_mask, s_xy = sides[src]
        t_emb, t_pred, t_mask, t_xy = sides[trg]
        record = {"pair_id": pair.pair_id, "direction": f"{src}->{trg}", "function": pair.function,
                  "within_category": pair.category_a == pair.category_b, "points": int(len(s_xy))}
        if len(s_xy):
            predicted = transfer(s_emb, s_xy, t_emb, valid_cells(t_emb, t_mask, t_pred))
            record["normalised_distance"] = normalised_distance(_rc(predicted), _rc(t_xy), CROP_SIZE)
            for threshold, value in pck_px(_rc(predicted), _rc(t_xy), thresholds).items():
                record[f"pck@{threshold:g}"] = 100.0 * value
        if discovery and len(s_xy):
            found = discover(s_emb, valid_cells(s_emb, s_mask), t_emb, valid_cells(t_emb, t_mask))
            scores = discovery_scores(found.similarity, found.cycle_px)
            for tau, values in discovery_metrics(_rc(found.src_xy), _rc(found.trg_xy), scores, _rc(s_xy), _rc(t_xy),
                                                 taus).items():
                record[f"best_f1@{tau:g}"] = 100.0 * values["best_f1"]
                record[f"ap@{tau:g}"] = 100.0 * values["ap"]
            curve = discovery_curve(_rc(found.src_xy), _rc(found.trg_xy), scores, _rc(s_xy), _rc(t_xy), CURVE_TAU)
            record["curve"] = {"precision": curve.precision.tolist(), "recall": curve.recall.tolist()}
        records.append(record)
    return records
