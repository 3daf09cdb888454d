"""The linear probe's evaluation, as the reference scores it (``eval_correspondence_linear_probe_soco.py``:
``compute_predictions_with_probe``, ``evaluate_matches``, ``evaluate_dataset_with_probe``, ``run_task``).

Predictions and per-keypoint flags are the zero-shot evaluator's (the reference's probe script repeats its zero-shot
``compute_predictions`` with argmax and its ``evaluate_matches``): argmax, SOC and CC. The reduction is the probe
script's own: per class folder of ``trainsplits/test``, keypoints pooled (``recall_from_errors``: float32 mean x 100),
then the mean over classes; the epoch-selection metric pools keypoints over the whole split.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from .evaluator import FeatureSource, KeypointResult, evaluate
from .loader import SocoPair
from .protocol import PAPER_FIELDS, ProtocolSettings, preset

TASKS = ("soc", "cc")
# what the probe's features depend on; the reference's probe config is image_size 800, nearest_multiple (soco-798)
PROTOCOL_FIELDS = tuple(f for f in PAPER_FIELDS if not f.startswith("geo_"))  # SOC-geo is not the probe's
ClassRecords = dict[str, list[KeypointResult]]


def evaluation_settings(settings: ProtocolSettings, thresh: float) -> ProtocolSettings:
    """The run's protocol with the probe script's choices: argmax, CC and SOC, ``thresh`` among the alphas."""
    alphas = settings.alphas if thresh in settings.alphas else (thresh,) + tuple(settings.alphas)
    return replace(settings, method="argmax", tasks=("cc", "soc"), alphas=alphas)


def protocol_differences(settings: ProtocolSettings) -> list[str]:
    """How the run's features differ from the reference probe's (``soco-798``); empty when they are the same."""
    reference = preset("soco-798")
    return [f"{name}: {getattr(settings, name)!r} (reference {getattr(reference, name)!r})"
            for name in PROTOCOL_FIELDS if getattr(settings, name) != getattr(reference, name)]


def by_class(pairs: Sequence[SocoPair]) -> dict[str, list[SocoPair]]:
    """Pairs per class folder (the reference's classes are the folders of the split, sorted), order kept."""
    out: dict[str, list[SocoPair]] = defaultdict(list)
    for pair in pairs:
        out[pair.path.parent.name].append(pair)
    return dict(sorted(out.items()))


def evaluate_classes(classes: dict[str, list[SocoPair]], features: FeatureSource,
                     settings: ProtocolSettings) -> ClassRecords:
    """Every class's per-keypoint records (the zero-shot evaluator's arithmetic)."""
    return {name: evaluate(pairs, features, settings, progress=False).records for name, pairs in classes.items()}


def recall(records: Sequence[KeypointResult], task: str, alpha_index: int) -> float:
    """``recall_from_errors``: keypoints pooled, the float32 mean of ``error < alpha`` x 100; NaN without any."""
    flags = [r.correct[alpha_index] for r in records if r.task == task]
    if not flags:
        return float("nan")
    return torch.tensor(flags, dtype=torch.float32).mean().item() * 100.0


def class_mean(records: ClassRecords, task: str, alpha_index: int) -> float | None:
    """The mean over classes of the per-class recall, classes without keypoints of the task left out."""
    values = [v for v in (recall(rows, task, alpha_index) for rows in records.values()) if not math.isnan(v)]
    return float(np.mean(values)) if values else None


def pooled(records: ClassRecords, task: str, alpha_index: int) -> float:
    """Recall over the whole split (the epoch-selection metric)."""
    return recall([r for rows in records.values() for r in rows], task, alpha_index)


def selection_recalls(records: ClassRecords, settings: ProtocolSettings, thresh: float) -> tuple[float, float]:
    """(SOC, CC) recall at ``thresh``, pooled over the split: what the reference compares between epochs."""
    index = settings.alphas.index(thresh)
    return pooled(records, "soc", index), pooled(records, "cc", index)


def summary(records: ClassRecords, settings: ProtocolSettings, thresh: float) -> dict:
    """Per task and alpha, the mean over classes; per class, the recall at ``thresh``."""
    index = settings.alphas.index(thresh)
    out: dict = {task: {f"{a:g}": class_mean(records, task, i) for i, a in enumerate(settings.alphas)}
                 for task in ("cc", "soc")}
    out["per_class"] = {task: {name: _finite(recall(rows, task, index)) for name, rows in records.items()}
                        for task in ("cc", "soc")}
    return out


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value
