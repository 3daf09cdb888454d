"""Evaluation metrics of dense functional correspondence (Stojanov et al., ICCV 2025). Numpy in, floats out.

* Label transfer: ground-truth keypoints of the source are transferred to the target and compared to the
  target's annotation, in pixels of the 224 x 224 evaluation crop (``[row, col]``): mean normalised distance
  and PCK at 23 / 15 / 10 px (about 0.1 / 0.067 / 0.045 of the image side).
* Discovery: a method proposes scored candidate matches with no keypoint given; sweeping the top-k % of them
  gives a precision / recall curve against the ground-truth correspondences, summarised by the best F1 and the
  average precision, at tolerances 23 / 15 / 10 / 5 px.
* Functional-part masks: IoU and F-measure.
* :func:`aggregate` splits per-pair records into within-category, across-category and all, like the
  paper's tables.

Distance thresholds are strict everywhere (``distance < threshold``), so PCK and discovery agree on what
"within tau px" means and a point exactly on the threshold is a miss.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError

IMAGE_SIZE = 224
PCK_THRESHOLDS = (23, 15, 10)
DISCOVERY_TAUS = (23, 15, 10, 5)

__all__ = ["DISCOVERY_TAUS", "DiscoveryCurve", "IMAGE_SIZE", "PCK_THRESHOLDS", "aggregate", "discovery_curve",
           "discovery_metrics", "discovery_scores", "f_measure", "iou", "normalised_distance", "pck_px"]


def _points(name: str, x, n: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputError(f"{name} must be (N, 2) [row, col] pixels, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} rows, expected {n}")
    return arr


def _distances(pred, true) -> np.ndarray:
    p = _points("pred", pred)
    t = _points("true", true, p.shape[0])
    if p.shape[0] == 0:
        raise InputError("no keypoints to evaluate: a pair without annotated keypoints has no label-transfer score")
    return np.linalg.norm(p - t, axis=1)


# --------------------------------------------------------------------------------------------- label transfer

def normalised_distance(pred_rc, true_rc, image_size: int = IMAGE_SIZE) -> float:
    """Mean Euclidean distance between transferred and true keypoints, divided by the crop side (lower = better)."""
    return float(_distances(pred_rc, true_rc).mean() / image_size)


def pck_px(pred_rc, true_rc, thresholds: Iterable[float] = PCK_THRESHOLDS) -> dict[float, float]:
    """Fraction of keypoints transferred to within ``threshold`` px, strictly (``d < threshold``), per threshold."""
    d = _distances(pred_rc, true_rc)
    return {t: float(np.mean(d < t)) for t in thresholds}


# -------------------------------------------------------------------------------------------------- discovery

@dataclass(frozen=True)
class DiscoveryCurve:
    """Precision / recall / F1 when keeping the top ``k`` % of candidates, for k = 1..100."""

    k: np.ndarray          # (100,) percent
    precision: np.ndarray  # (100,)
    recall: np.ndarray     # (100,)
    f1: np.ndarray         # (100,)

    @property
    def best_f1(self) -> float:
        return float(self.f1.max()) if self.f1.size else 0.0

    @property
    def average_precision(self) -> float:
        """Step-wise (non-interpolated) area under the PR curve, as in information retrieval / sklearn.

        With the points sorted by recall (stable) and ``R_0 = 0``: ``AP = sum_k (R_k - R_{k-1}) * P_k``, i.e.
        every recall increment is credited with the precision at which it was reached. Repeated points (several
        k giving the same number of kept candidates) add zero.
        """
        order = np.argsort(self.recall, kind="stable")
        r, p = self.recall[order], self.precision[order]
        return float(np.sum(np.diff(r, prepend=0.0) * p))


def _pairs_within(a: np.ndarray, b: np.ndarray, tau: float) -> np.ndarray:
    """Flat indices ``i * len(b) + j`` of all pairs with ``|a_i - b_j| < tau`` (sparse, via k-d trees)."""
    if len(a) == 0 or len(b) == 0:
        return np.empty(0, dtype=np.int64)
    found = cKDTree(a).sparse_distance_matrix(cKDTree(b), max_distance=tau, output_type="ndarray")
    found = found[found["v"] < tau]  # the tree is inclusive (<=); our thresholds are strict
    return found["i"].astype(np.int64) * len(b) + found["j"].astype(np.int64)


def discovery_curve(src_rc, trg_rc, scores, gt_src, gt_trg, tau: float) -> DiscoveryCurve:
    """Precision / recall of the top-k % scored candidate matches of one pair direction, k = 1..100.

    * Kept at k: the ``ceil(k N / 100)`` best candidates by score (ties keep input order: stable sort).
    * A candidate is a true positive if some ground-truth pair has its source within ``tau`` px of the
      candidate's source AND its target within ``tau`` px of the candidate's target (both strict).
    * ``precision = TP / kept``; ``recall`` = fraction of ground-truth pairs matched by at least one kept true
      positive (many candidates on one GT pair count once for recall, every one of them for precision);
      ``F1 = 2PR / (P + R)`` (0 when P + R = 0).

    No candidates or no ground truth: precision, recall and F1 are all 0 (nothing can be discovered).
    """
    src = _points("src_rc", src_rc)
    n = src.shape[0]
    trg = _points("trg_rc", trg_rc, n)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise InputError(f"scores must be ({n},), got shape {s.shape}")
    g_src = _points("gt_src", gt_src)
    m = g_src.shape[0]
    g_trg = _points("gt_trg", gt_trg, m)
    k = np.arange(1, 101)
    if n == 0 or m == 0:
        zeros = np.zeros(100)
        return DiscoveryCurve(k=k, precision=zeros, recall=zeros.copy(), f1=zeros.copy())

    match = np.intersect1d(_pairs_within(src, g_src, tau), _pairs_within(trg, g_trg, tau))
    cand, gt = match // m, match % m
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-s, kind="stable")] = np.arange(n)
    is_tp = np.zeros(n, dtype=bool)
    is_tp[cand] = True
    tp_cum = np.cumsum(is_tp[np.argsort(rank)])  # TPs among the best r + 1 candidates
    first_rank = np.full(m, n, dtype=np.int64)  # rank of the best candidate covering each GT pair (n: never)
    np.minimum.at(first_rank, gt, rank[cand])
    covered_cum = np.cumsum(np.bincount(first_rank, minlength=n + 1)[:n])  # GT covered by the best r + 1

    kept = (k * n + 99) // 100  # ceil(k N / 100) in exact integer arithmetic
    precision = tp_cum[kept - 1] / kept
    recall = covered_cum[kept - 1] / m
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return DiscoveryCurve(k=k, precision=precision, recall=recall, f1=f1)


def discovery_metrics(src_rc, trg_rc, scores, gt_src, gt_trg, taus: Sequence[float] = DISCOVERY_TAUS
                      ) -> dict[float, dict[str, float]]:
    """Best F1 and average precision of the discovery curve per tolerance: ``{tau: {"best_f1", "ap"}}``."""
    out = {}
    for tau in taus:
        curve = discovery_curve(src_rc, trg_rc, scores, gt_src, gt_trg, tau)
        out[tau] = {"best_f1": curve.best_f1, "ap": curve.average_precision}
    return out


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    if hi - lo <= 0:
        return np.full_like(x, 0.5)  # constant: no ranking information, take the neutral midpoint
    return (x - lo) / (hi - lo)


def discovery_scores(max_similarity, cycle_distance) -> np.ndarray:
    """Confidence of each discovered match: ``(mm(similarity) + 1 - mm(cycle_distance)) / 2`` in [0, 1].

    ``mm`` is min-max normalisation over the candidates of one pair, which puts a cosine similarity and a
    cycle-consistency distance (px) on the same scale so neither dominates: a match is confident when it is
    both similar and cycle-consistent. A constant array (including a single candidate) normalises to 0.5
    everywhere instead of dividing by zero, so it adds the same offset to every score and the ranking comes
    from the other term alone.
    """
    sim = np.asarray(max_similarity, dtype=np.float64)
    cyc = np.asarray(cycle_distance, dtype=np.float64)
    if sim.ndim != 1 or sim.shape != cyc.shape:
        raise InputError(f"max_similarity {sim.shape} and cycle_distance {cyc.shape} must be equal (N,) arrays")
    if sim.size == 0:
        return sim.copy()
    return 0.5 * (_minmax(sim) + 1.0 - _minmax(cyc))


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
    """``F = (1 + b2) P R / (b2 P + R)`` with P = |pred & true| / |pred|, R = |pred & true| / |true|.

    Computed as ``(1 + b2) |pred & true| / (b2 |true| + |pred|)``, which is the same number but defined
    whenever either mask is non-empty (one empty, the other not -> 0). Both empty -> 1.0: the prediction is
    exactly right (there is no part and none was predicted), matching :func:`iou`. ``beta2`` = beta squared
    (> 1 weighs recall more).
    """
    if beta2 <= 0:
        raise InputError(f"beta2 must be > 0, got {beta2}")
    p, t = _masks(pred, true)
    n_p, n_t = np.count_nonzero(p), np.count_nonzero(t)
    if n_p == 0 and n_t == 0:
        return 1.0
    return float((1.0 + beta2) * np.count_nonzero(p & t) / (beta2 * n_t + n_p))


# ---------------------------------------------------------------------------------------------- aggregation

def aggregate(records: Sequence[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """Mean of every numeric metric per split: ``{"within": {...}, "across": {...}, "all": {...}}``.

    Each record is one evaluated pair with a boolean ``"within_category"`` (same object category, e.g. mug ->
    mug, vs across, e.g. mug -> kettle) plus metric values. Non-numeric fields (ids, names) are ignored. A metric
    is averaged over the records of the split that have it; a split with no records has an empty dict.
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
                if key != "within_category" and isinstance(v, numbers.Real):
                    values.setdefault(key, []).append(float(v))
        out[split] = {key: float(np.mean(v)) for key, v in values.items()}
    return out
