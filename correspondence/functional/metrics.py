"""Evaluation metrics of dense functional correspondence, as the released reference code computes them
(Stojanov et al., ICCV 2025; ``cond_corr/inference_2D_HANDAL.py``, ``inference_2D_discovery_HANDAL.py`` and
``utils/gather_results_handal.py``). Numpy in, floats out. Coordinates are integer ``[row, col]`` pixels of the
224 x 224 evaluation crop.

* Label transfer, per pair direction: Euclidean distances ``d`` between transferred and annotated pixels;
  normalised distance ``mean(d) / 223`` and ``PCK@t = mean(d <= t)`` for t = 23 / 15 / 10 px. The paper's text
  writes ``<``; its numbers come from the code's ``<=``, which is what is used here.
* Discovery, per pair direction: candidate matches in ranked order (best first). For the cutoffs
  ``np.arange(0.01, 1.01, 0.01)`` the top ``int(n * cutoff)`` candidates are kept (a float sweep truncated to
  an integer, so at n = 100 the 7th cutoff keeps 6). A candidate is correct when one annotated pair has its
  source within ``tau`` px of the candidate's source and its target within ``tau`` px of its target
  (``<=``, a k-d tree ball query); recall is the share of annotated pairs whose first (best-ranked) matching
  candidate is kept. Best F1 = max over the sweep; AP = ``sum (R_k - R_{k-1}) P_k`` over the sweep from the
  point (R = 0, P = 1).
* :func:`discovery_scores`: ``(1 - mm(cycle)) * mm(sim)`` with ``mm`` min-max over the candidates (the
  reference sorts ``-(1 - mm(cycle)) * mm(sim)`` ascending; this is its negation, sorted descending).
* :func:`aggregate`: the mean over pair directions per split (within-category, across-category, all).

Where the reference gives NaN or crashes, a defined result is used instead (see ``docs/functional.md``):
a cutoff keeping no candidate (``int(n * cutoff) = 0``, only when n < 100) has precision 1, recall 0 and F1 0,
which changes neither best F1 nor AP (the reference's NaN there poisons both); a constant similarity array is
taken as all-maximal (mm = 1) and a constant cycle-distance array as all-minimal (mm = 0), so the other term
alone ranks (the reference divides 0 by 0). Pair directions without annotated points or without candidates
are skipped and counted by the evaluator, never averaged as NaN.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError

IMAGE_SIZE = 224
DISTANCE_DENOMINATOR = 223  # the reference's normalisation (the largest coordinate, not the side)
PCK_THRESHOLDS = (23, 15, 10)
DISCOVERY_TAUS = (23, 15, 10, 5)
CUTOFFS = np.arange(0.01, 1.01, 0.01)  # the reference's sweep, float steps included (100 values)

__all__ = ["CUTOFFS", "DISCOVERY_TAUS", "DISTANCE_DENOMINATOR", "DiscoveryCurve", "IMAGE_SIZE", "PCK_THRESHOLDS",
           "aggregate", "average_precision", "discovery_curve", "discovery_metrics", "discovery_scores", "f_measure",
           "iou", "kept_counts", "minmax", "normalised_distance", "pck_px", "transfer_distances"]


def _points(name: str, x, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"{name} must be (N, 2) [row, col] pixels, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} rows, expected {n}")
    return arr


def transfer_distances(pred_rc, true_rc) -> np.ndarray:
    """Euclidean pixel distances between transferred and annotated points (row-aligned)."""
    p = _points("pred", pred_rc)
    t = _points("true", true_rc, p.shape[0])
    if p.shape[0] == 0:
        raise InputError("no keypoints to evaluate: a pair without annotated keypoints has no label-transfer score")
    return np.sqrt(np.sum((p - t) ** 2, axis=1))


# --------------------------------------------------------------------------------------------- label transfer

def normalised_distance(pred_rc, true_rc, denominator: float = DISTANCE_DENOMINATOR) -> float:
    """``mean(d) / 223`` (the reference divides by 223 for a 224 crop; lower = better)."""
    return float(transfer_distances(pred_rc, true_rc).mean() / denominator)


def pck_px(pred_rc, true_rc, thresholds: Iterable[float] = PCK_THRESHOLDS) -> dict[float, float]:
    """``mean(d <= t)`` per threshold (inclusive, as the reference code)."""
    d = transfer_distances(pred_rc, true_rc)
    return {t: float(np.mean(d <= t)) for t in thresholds}


# -------------------------------------------------------------------------------------------------- discovery

def kept_counts(n: int) -> np.ndarray:
    """Candidates kept at each of the 100 cutoffs: ``int(n * cutoff)`` (truncation of the float product)."""
    return np.array([int(n * c) for c in CUTOFFS], dtype=np.int64)


def average_precision(precision, recall) -> float:
    """The reference's AP: prepend (R = 0, P = 1), then ``sum (R_k - R_{k-1}) * P_k`` in sweep order."""
    p = np.insert(np.asarray(precision, dtype=np.float64), 0, 1.0)
    r = np.insert(np.asarray(recall, dtype=np.float64), 0, 0.0)
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


@dataclass(frozen=True)
class DiscoveryCurve:
    """Precision / recall / F1 at the 100 cutoffs of the sweep."""

    kept: np.ndarray       # (100,) candidates kept
    precision: np.ndarray  # (100,)
    recall: np.ndarray     # (100,)
    f1: np.ndarray         # (100,)

    @property
    def best_f1(self) -> float:
        return float(self.f1.max()) if self.f1.size else 0.0

    @property
    def average_precision(self) -> float:
        return average_precision(self.precision, self.recall)


def _pairs_within(a: np.ndarray, b: np.ndarray, tau: float) -> np.ndarray:
    """Flat indices ``i * len(b) + j`` of all pairs with ``|a_i - b_j| <= tau`` (inclusive, as a k-d tree ball
    query), found sparsely."""
    if len(a) == 0 or len(b) == 0:
        return np.empty(0, dtype=np.int64)
    found = cKDTree(a).sparse_distance_matrix(cKDTree(b), max_distance=tau, output_type="ndarray")
    found = found[found["v"] <= tau]
    return found["i"].astype(np.int64) * len(b) + found["j"].astype(np.int64)


def discovery_curve(src_rc, trg_rc, gt_src, gt_trg, tau: float) -> DiscoveryCurve:
    """Precision / recall / F1 of ranked candidates (best first) against the annotated pairs, at tolerance tau.

    ``correct[i]``: some annotated pair ``g`` has ``|src_i - gt_src_g| <= tau`` and ``|trg_i - gt_trg_g| <= tau``.
    ``first[g]``: the smallest candidate index matching ``g`` that way (inf: none). At cutoff ``c`` with
    ``k = int(n c)``: ``P = sum(correct[:k]) / k``, ``R = mean(first < k)``, ``F1 = 2PR / (P + R)`` (0 if P + R
    = 0). ``k = 0`` gives P = 1, R = 0, F1 = 0 (the reference: 0 / 0).
    """
    src = _points("src_rc", src_rc)
    n = src.shape[0]
    trg = _points("trg_rc", trg_rc, n)
    g_src = _points("gt_src", gt_src)
    m = g_src.shape[0]
    g_trg = _points("gt_trg", gt_trg, m)
    if n == 0 or m == 0:
        raise InputError(f"discovery needs candidates and annotated pairs, got {n} and {m}")
    match = np.intersect1d(_pairs_within(src, g_src, tau), _pairs_within(trg, g_trg, tau))
    cand, gt = match // m, match % m
    correct = np.zeros(n, dtype=np.float64)
    correct[cand] = 1.0
    first = np.full(m, np.inf)
    np.minimum.at(first, gt, cand.astype(np.float64))
    kept = kept_counts(n)
    cum = np.concatenate([[0.0], np.cumsum(correct)])
    precision = np.where(kept > 0, cum[kept] / np.maximum(kept, 1), 1.0)
    recall = (first[None, :] < kept[:, None]).mean(axis=1)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return DiscoveryCurve(kept=kept, precision=precision, recall=recall, f1=f1)


def discovery_metrics(src_rc, trg_rc, gt_src, gt_trg, taus: Sequence[float] = DISCOVERY_TAUS
                      ) -> dict[float, DiscoveryCurve]:
    """The discovery curve per tolerance (``.best_f1``, ``.average_precision``)."""
    return {tau: discovery_curve(src_rc, trg_rc, gt_src, gt_trg, tau) for tau in taus}


def minmax(x, constant: float) -> np.ndarray:
    """``(x - min) / (max - min)`` in the input's float precision; a constant array gives ``constant``."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    lo, hi = x.min(), x.max()
    if not hi > lo:
        return np.full_like(x, constant)
    return (x - lo) / (hi - lo)


def discovery_scores(max_similarity, cycle_distance) -> np.ndarray:
    """Confidence of each discovered match, ``(1 - mm(cycle)) * mm(similarity)`` in [0, 1], higher = better.

    The reference ranks by ``-(1 - mm(cycle)) * mm(sim)`` ascending, i.e. this descending. ``mm`` is min-max
    normalisation over the candidates of one search. A constant similarity (a single candidate included)
    counts as all-maximal (1) and a constant cycle distance (e.g. every match cycle-consistent) as all-minimal
    (0), so the other term alone ranks; the reference divides 0 by 0 there (and never gets to a single candidate:
    its one-query heatmap loses the batch dimension and the search raises first).
    """
    sim = np.asarray(max_similarity)
    cyc = np.asarray(cycle_distance, dtype=np.float64)
    if sim.ndim != 1 or sim.shape != cyc.shape:
        raise InputError(f"max_similarity {sim.shape} and cycle_distance {cyc.shape} must be equal (N,) arrays")
    if sim.size == 0:
        return np.zeros(0)
    return (1.0 - minmax(cyc, 0.0)) * minmax(sim, 1.0).astype(np.float64)


# ------------------------------------------------------------------------------------------------------ masks

def _masks(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=bool), np.asarray(true, dtype=bool)
    if p.shape != t.shape:
        raise InputError(f"predicted mask {p.shape} and true mask {t.shape} differ in shape")
    return p, t


def iou(pred, true) -> float:
    """Intersection over union of two boolean masks. Both empty -> 1.0 (correctly predicting "no part")."""
    p, t = _masks(pred, true)
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else float(np.count_nonzero(p & t) / union)


def f_measure(pred, true, beta2: float = 1.0) -> float:
    """``F = (1 + b2) |pred & true| / (b2 |true| + |pred|)``; both empty -> 1.0 (as :func:`iou`)."""
    if beta2 <= 0:
        raise InputError(f"beta2 must be > 0, got {beta2}")
    p, t = _masks(pred, true)
    n_p, n_t = np.count_nonzero(p), np.count_nonzero(t)
    if n_p == 0 and n_t == 0:
        return 1.0
    return float((1.0 + beta2) * np.count_nonzero(p & t) / (beta2 * n_t + n_p))


# ---------------------------------------------------------------------------------------------- aggregation

def aggregate(records: Sequence[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """Mean of every numeric metric per split over pair directions: ``{"within", "across", "all"}``.

    Each record is one evaluated pair direction with a boolean ``"within_category"``. "all" is the mean over
    the within and across records together (the reference's ``np.mean(within + across)``). A metric is
    averaged over the records that have it; non-finite values are never produced by the evaluator and are
    refused here rather than averaged.
    """
    groups: dict[str, list[Mapping[str, object]]] = {"within": [], "across": [], "all": []}
    for i, rec in enumerate(records):
        if "within_category" not in rec:
            raise InputError(f"record {i} has no 'within_category' field")
        groups["within" if rec["within_category"] else "across"].append(rec)
        groups["all"].append(rec)
    out: dict[str, dict[str, float]] = {}
    for split, recs in groups.items():
        values: dict[str, list[float]] = {}
        for rec in recs:
            for key, v in rec.items():
                if key != "within_category" and isinstance(v, numbers.Real) and not isinstance(v, bool):
                    if not np.isfinite(v):
                        raise InputError(f"record {rec.get('pair_id')!r} has a non-finite {key}: {v}")
                    values.setdefault(key, []).append(float(v))
        out[split] = {key: float(np.mean(v)) for key, v in values.items()}
    return out
