"""Named reductions of keypoint records to PCK percentages (0-100).

``pair-category-mean`` (the paper's main tables): per pair -> per category -> unweighted mean over categories.
``keypoint-category-mean``: keypoints pooled within each category -> mean over categories (the reference's SOC-geo,
and its ``reduction=keypoint``).
``pooled``: every keypoint pooled.

The same reductions apply to any per-keypoint value (``value=``), e.g. SOC-geo's chance level ``1 / candidates``.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

import numpy as np

from .evaluator import KeypointResult


def _correct(alpha_index: int) -> Callable[[KeypointResult], float]:
    return lambda r: float(r.correct[alpha_index])


def per_category(records: Iterable[KeypointResult], task: str, alpha_index: int, reduction: str,
                 value: Callable[[KeypointResult], float] | None = None) -> dict[str, float]:
    value = value or _correct(alpha_index)
    by_category: dict[str, list[KeypointResult]] = defaultdict(list)
    for r in records:
        if r.task == task:
            by_category[r.group].append(r)
    out = {}
    for category, rows in sorted(by_category.items()):
        if reduction == "pair-category-mean":
            by_pair: dict[int, list[float]] = defaultdict(list)
            for r in rows:
                by_pair[r.pair_id].append(value(r))
            out[category] = 100.0 * float(np.mean([np.mean(v) for v in by_pair.values()]))
        else:
            out[category] = 100.0 * float(np.mean([value(r) for r in rows]))
    return out


def overall(records: list[KeypointResult], task: str, alpha_index: int, reduction: str,
            value: Callable[[KeypointResult], float] | None = None) -> float | None:
    if reduction == "pooled":
        value = value or _correct(alpha_index)
        rows = [value(r) for r in records if r.task == task]
        return 100.0 * float(np.mean(rows)) if rows else None
    values = per_category(records, task, alpha_index, reduction, value)
    return float(np.mean(list(values.values()))) if values else None


def chance(records: list[KeypointResult], task: str, reduction: str) -> float | None:
    """The chance level of a task whose records carry one (SOC-geo), reduced like its score."""
    rows = [r for r in records if r.task == task and r.chance is not None]
    return overall(rows, task, 0, reduction, value=lambda r: float(r.chance)) if rows else None


def by_supercategory(values: dict[str, float], supercategory_of) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for category, value in values.items():
        groups[supercategory_of(category.split("-")[0]) or "unknown"].append(value)
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}
