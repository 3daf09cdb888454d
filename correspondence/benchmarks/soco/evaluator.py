"""SOCO evaluation: per-keypoint errors for CC, SOC, Cross-SOC and SOC-geo, PCK at several alphas.

Errors are measured in original target-image pixels against ``alpha * max(h, w)`` of the target bounding box
(strict ``<``). Under the ``soco`` convention the targets get the reference's two truncations (original, then
processed pixels), which makes the numbers identical to the reference's normalised-coordinate computation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from ...coords import Convention
from ...device import to_numpy
from ...features import FeatureMap
from ...matching import similarity_maps, soft_argmax_window
from .loader import SocoPair, SocoView
from .protocol import ProtocolSettings

FeatureSource = Callable[[SocoView], FeatureMap]


@dataclass(frozen=True)
class KeypointResult:
    pair_id: int
    group: str  # what results are aggregated by (category, or "a-b" for cross pairs)
    pair_type: str
    task: str  # cc | soc | cross | cross-cc | geo
    keypoint: str  # source keypoint name
    error_px: float  # to the nearest valid target, original target pixels
    bbox_side_px: float  # max(h, w) of the target box
    correct: tuple[bool, ...]  # per alpha, error < alpha * bbox_side


@dataclass
class EvaluationRun:
    settings: ProtocolSettings
    records: list[KeypointResult] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # task -> pairs without a valid match
    pairs: int = 0
    match_seconds: float = 0.0
    qualitative: list[dict] = field(default_factory=list)


def reference_targets(fmap: FeatureMap, xy: np.ndarray) -> np.ndarray:
    """Target positions as the protocol sees them (see module docstring)."""
    xy = np.asarray(xy, dtype=np.float64)
    if fmap.convention is Convention.SOCO:
        processed = np.trunc(fmap.geometry.to_processed(np.trunc(xy)))
        return fmap.geometry.to_original(processed)
    return xy


def _cells_holding(fmap: FeatureMap, xy: np.ndarray) -> np.ndarray:
    """Flat index of the patch containing each (original-pixel) point."""
    processed = fmap.geometry.to_processed(np.asarray(xy, dtype=np.float64))
    w, h = fmap.grid_wh
    pw, ph = fmap.processed_wh[0] / w, fmap.processed_wh[1] / h
    col = np.clip(np.floor(processed[:, 0] / pw), 0, w - 1).astype(int)
    row = np.clip(np.floor(processed[:, 1] / ph), 0, h - 1).astype(int)
    return row * w + col


def predict(source: FeatureMap, target: FeatureMap, source_xy: np.ndarray, settings: ProtocolSettings,
            allowed: list[np.ndarray] | None = None) -> np.ndarray:
    """Predicted target positions (original pixels) for each source point.

    ``allowed``: per source point, the target cells it may land in (SOC-geo); None = all cells.
    The maps may live on any device (the target's is used); only the predictions come back, as numpy."""
    descriptors = source.sample(source_xy)
    grid = target.features.float()
    sims = similarity_maps(descriptors.to(grid.device), grid)
    k, h, w = sims.shape
    valid = None
    if allowed is not None:
        valid = torch.zeros(k, h * w, dtype=torch.bool, device=sims.device)
        for i, cells in enumerate(allowed):
            valid[i, torch.as_tensor(cells, dtype=torch.long, device=sims.device)] = True
        sims = sims.masked_fill(~valid.view(k, h, w), -1e9)
    if settings.method == "soft-argmax":
        uv, _ = soft_argmax_window(sims, settings.window, settings.beta)
        uv = to_numpy(uv)
    else:
        index = to_numpy(sims.flatten(1).argmax(1))
        uv = np.stack([index % w, index // w], 1).astype(np.float64)
    return target.cell_to_original(uv)


def _record(pair: SocoPair, task: str, name: str, error: float, alphas: tuple[float, ...]) -> KeypointResult:
    side = pair.target.bbox_max_side
    return KeypointResult(pair.pair_id, pair.pair_group, pair.pair_type, task, name, float(error), side,
                          tuple(bool(error < a * side) for a in alphas))


def _geo_records(pair: SocoPair, source: FeatureMap, target: FeatureMap, src_xy: np.ndarray, trg_xy: np.ndarray,
                 settings: ProtocolSettings) -> list[KeypointResult]:
    """SOC-geo: each source keypoint may only land on a target patch holding a keypoint of its concept; the
    best-scoring such patch (top-left corner, as the reference predicts) is compared with the SOC target.
    Keypoints with no candidate patch, or whose true patch is not a candidate, are skipped, as in the reference."""
    concept_targets: dict[int, set[int]] = {}
    for match in pair.concept_matches:
        for s in match.source_indices:
            concept_targets.setdefault(s, set()).update(match.target_indices)
    cells = _cells_holding(target, trg_xy)
    descriptors = source.sample(src_xy)
    grid = target.features.float()
    sims = similarity_maps(descriptors.to(grid.device), grid).flatten(1)
    w = target.grid_wh[0]
    out = []
    for match in pair.semantic_matches:
        s, t = match.source_indices[0], match.target_indices[0]
        candidates = np.unique(cells[sorted(concept_targets.get(s, ()))]) if s in concept_targets else np.array([])
        if len(candidates) < max(1, settings.geo_min_candidates) or cells[t] not in candidates:
            continue
        best = int(candidates[int(torch.argmax(sims[s, torch.as_tensor(candidates, dtype=torch.long,
                                                                         device=sims.device)]))])
        predicted = target.cell_to_original(np.array([[best % w, best // w]], dtype=np.float64))[0]
        out.append(_record(pair, "geo", pair.source.keypoints[s].name, np.linalg.norm(predicted - trg_xy[t]),
                           settings.alphas))
    return out


def evaluate_pair(pair: SocoPair, features: FeatureSource, settings: ProtocolSettings
                  ) -> tuple[list[KeypointResult], dict[str, bool], dict]:
    """Records for every task that applies to this pair; which tasks had nothing to evaluate; a figure record."""
    source, target = features(pair.source), features(pair.target)
    src_xy = np.array([k.xy for k in pair.source.keypoints], dtype=np.float64).reshape(-1, 2)
    trg_xy = reference_targets(target, np.array([k.xy for k in pair.target.keypoints]).reshape(-1, 2))
    prediction = predict(source, target, src_xy, settings)
    cross = pair.pair_type == "cross"
    soc_task, cc_task = ("cross", "cross-cc") if cross else ("soc", "cc")
    wanted = set(settings.tasks)
    records: list[KeypointResult] = []
    empty: dict[str, bool] = {}
    names = [k.name for k in pair.source.keypoints]
    if soc_task in wanted:
        empty[soc_task] = not pair.semantic_matches
        for match in pair.semantic_matches:
            s, t = match.source_indices[0], match.target_indices[0]
            records.append(_record(pair, soc_task, names[s], np.linalg.norm(prediction[s] - trg_xy[t]), settings.alphas))
    if "cc" in wanted:
        targets: dict[int, set[int]] = {}
        for match in pair.concept_matches:
            for s in match.source_indices:
                targets.setdefault(s, set()).update(match.target_indices)
        empty[cc_task] = not targets
        for s, ts in sorted(targets.items()):
            error = np.linalg.norm(trg_xy[sorted(ts)] - prediction[s], axis=1).min()
            records.append(_record(pair, cc_task, names[s], error, settings.alphas))
    if "geo" in wanted and not cross:
        records.extend(_geo_records(pair, source, target, src_xy, trg_xy, settings))
        empty["geo"] = not pair.semantic_matches
    figure = {"pair": pair, "prediction": prediction, "targets": trg_xy}
    return records, empty, figure


def evaluate(pairs: Iterable[SocoPair], features: FeatureSource, settings: ProtocolSettings, total: int | None = None,
             progress: bool = True, keep_figures: int = 6) -> EvaluationRun:
    run = EvaluationRun(settings)
    for pair in tqdm(pairs, total=total, desc="soco pairs", unit="pair", disable=not progress):
        start = time.perf_counter()
        records, empty, figure = evaluate_pair(pair, features, settings)
        run.match_seconds += time.perf_counter() - start
        run.records.extend(records)
        run.pairs += 1
        for task, is_empty in empty.items():
            if is_empty:
                run.skipped[task] = run.skipped.get(task, 0) + 1
        if len(run.qualitative) < keep_figures and records:
            run.qualitative.append(figure)
    return run
