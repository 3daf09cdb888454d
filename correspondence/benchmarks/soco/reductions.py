"""Named reductions of keypoint records to PCK percentages (0-100).

``pair-category-mean`` (the paper's main tables): per pair -> per category -> unweighted mean over categories.
``keypoint-category-mean``: keypoints pooled within each category -> mean over categories.
``pooled``: every keypoint pooled.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

from .evaluator import KeypointResult


def per_category(records: Iterable[KeypointResult], task: str, alpha_index: int, reduction: str) -> dict[str, float]:
    by_category: dict[str, list[KeypointResult]] = defaultdict(list)
    for r in records:
        if r.task == task:
            by_category[r.group].append(r)
    out = {}
    for category, rows in sorted(by_category.items()):
        if reduction == "pair-category-mean":
            by_pair: dict[int, list[bool]] = defaultdict(list)
            for r in rows:
                by_pair[r.pair_id].append(r.correct[alpha_index])
            out[category] = 100.0 * float(np.mean([np.mean(v) for v in by_pair.values()]))
        else:
            out[category] = 100.0 * float(np.mean([r.correct[alpha_index] for r in rows]))
    return out


def overall(records: list[KeypointResult], task: str, alpha_index: int, reduction: str) -> float | None:
    if reduction == "pooled":
        rows = [r.correct[alpha_index] for r in records if r.task == task]
        return 100.0 * float(np.mean(rows)) if rows else None
    values = per_category(records, task, alpha_index, reduction)
    return float(np.mean(list(values.values()))) if values else None


def by_supercategory(values: dict[str, float], supercategory_of) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for category, value in values.items():
        groups[supercategory_of(category.split("-")[0]) or "unknown"].append(value)
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}
