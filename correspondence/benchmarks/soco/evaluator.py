"""SOCO evaluation: per-keypoint results for CC, SOC, Cross-SOC and SOC-geo, PCK at several alphas.

Under the paper protocols (``arithmetic="reference"``) every step is the released code's (see
:mod:`.reference`): normalised maps, the query sampled at the reference's truncated coordinates, argmax or
soft-argmax, predictions and targets as float32 fractions of the processed side, ``error / scale < alpha`` with
``scale = max(box side) / max(W, H)``. Records report errors in original pixels either way.
"""
from __future__ import annotations

import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from ...features import FeatureMap
from .loader import SocoPair, SocoView
from .protocol import ProtocolSettings
from .reference import Frame, locate, reference_targets, similarities  # noqa: F401  (reference_targets re-exported)

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
    correct: tuple[bool, ...]  # per alpha, as the protocol's arithmetic compares (see reference.py)
    chance: float | None = None  # SOC-geo: 1 / number of candidates


@dataclass
class EvaluationRun:
    settings: ProtocolSettings
    records: list[KeypointResult] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # task -> pairs without a valid match
    pairs: int = 0
    match_seconds: float = 0.0
    qualitative: list[dict] = field(default_factory=list)


def predict(source: FeatureMap, target: FeatureMap, source_xy: np.ndarray, settings: ProtocolSettings,
            allowed: list[np.ndarray] | None = None) -> np.ndarray:
    """Predicted target positions (original pixels) for each source point, under ``settings``.

    ``allowed``: per source point, the target cells it may land in; None = all cells.
    The maps may live on any device (the target's is used); only the predictions come back, as numpy."""
    source_frame = Frame(source, _view_of(source), settings)
    target_frame = Frame(target, _view_of(target), settings)
    maps = similarities(source, target, source_frame.query_grid(source_xy), settings)
    if allowed is not None:
        k, h, w = maps.shape
        valid = torch.zeros(k, h * w, dtype=torch.bool, device=maps.device)
        for i, cells in enumerate(allowed):
            valid[i, torch.as_tensor(cells, dtype=torch.long, device=maps.device)] = True
        maps = maps.masked_fill(~valid.view(k, h, w), -1e9)
    return target_frame.positions_to_pixels(target_frame.cells(locate(maps, settings)))


def _view_of(fmap: FeatureMap) -> SocoView:
    """A stand-in view (whole image as the box) for :func:`predict`, which has feature maps only."""
    size = (fmap.geometry.original_width, fmap.geometry.original_height)
    return SocoView("", "", Path(""), size, None, ())


def _records(pair: SocoPair, task: str, names: list[str], frame: Frame, errors: torch.Tensor,
             alphas: tuple[float, ...]) -> list[KeypointResult]:
    correct = frame.correct(errors, alphas)
    pixels = frame.to_pixels(errors)
    return [KeypointResult(pair.pair_id, pair.pair_group, pair.pair_type, task, name, float(pixels[i]),
                           frame.side_px, tuple(bool(v) for v in correct[i])) for i, name in enumerate(names)]


def _concept_targets(pair: SocoPair) -> dict[int, list[int]]:
    """Source keypoint -> every target keypoint of its concept (merged over concept groups, sorted)."""
    targets: dict[int, set[int]] = {}
    for match in pair.concept_matches:
        if not match.target_indices:
            continue
        for s in match.source_indices:
            targets.setdefault(s, set()).update(match.target_indices)
    return {s: sorted(ts) for s, ts in targets.items() if ts}


def _geo_records(pair: SocoPair, maps: torch.Tensor, frame: Frame, targets: torch.Tensor,
                 settings: ProtocolSettings) -> list[KeypointResult]:
    """SOC-geo: each source keypoint may only land on a target patch holding a keypoint of its concept; the
    best-scoring such patch (its top-left corner, as the reference predicts) is compared with the SOC target.

    As the reference: only keypoints with a SOC target; with fewer than ``geo_min_candidates`` candidates (target
    keypoints of the concept, or unique patches with ``geo_candidates="patches"``), none, or a true target that is
    not among them, skipped. Each record carries its chance level, 1 / number of candidates."""
    concept = _concept_targets(pair)
    semantic = {m.source_indices[0]: m.target_indices[0] for m in pair.semantic_matches}
    patch_of = frame.patches(targets)
    flat = maps.flatten(1)
    out = []
    for s in range(maps.shape[0]):
        truth = semantic.get(s)
        if truth is None:
            continue
        candidates = concept.get(s, [])
        patches = sorted({patch_of[t] for t in candidates})
        if settings.geo_candidates == "targets":
            count, contains = len(candidates), truth in candidates
        else:
            count, contains = len(patches), patch_of[truth] in patches
        if count < settings.geo_min_candidates or not candidates or not contains:
            continue
        scores = flat[s, torch.tensor(patches, dtype=torch.long, device=flat.device)]
        best = patches[int(torch.argmax(scores))]
        correct, pixels = frame.geo_correct(frame.cell_position(best), targets[truth], settings.alphas)
        out.append(KeypointResult(pair.pair_id, pair.pair_group, pair.pair_type, "geo",
                                  pair.source.keypoints[s].name, float(pixels), frame.side_px, correct,
                                  chance=1.0 / count))
    return out


def evaluate_pair(pair: SocoPair, features: FeatureSource, settings: ProtocolSettings
                  ) -> tuple[list[KeypointResult], dict[str, bool], dict]:
    """Records for every task that applies to this pair; which tasks had nothing to evaluate; a figure record."""
    source, target = features(pair.source), features(pair.target)
    source_frame = Frame(source, pair.source, settings)
    frame = Frame(target, pair.target, settings)
    src_xy = np.array([k.xy for k in pair.source.keypoints], dtype=np.float64).reshape(-1, 2)
    trg_xy = np.array([k.xy for k in pair.target.keypoints], dtype=np.float64).reshape(-1, 2)
    maps = similarities(source, target, source_frame.query_grid(src_xy), settings)
    predicted = frame.cells(locate(maps, settings))
    targets = frame.points(trg_xy)
    cross = pair.pair_type == "cross"
    soc_task, cc_task = ("cross", "cross-cc") if cross else ("soc", "cc")
    wanted = set(settings.tasks)
    records: list[KeypointResult] = []
    empty: dict[str, bool] = {}
    names = [k.name for k in pair.source.keypoints]
    if soc_task in wanted:
        empty[soc_task] = not pair.semantic_matches
        if pair.semantic_matches:
            s = [m.source_indices[0] for m in pair.semantic_matches]
            t = [m.target_indices[0] for m in pair.semantic_matches]
            records += _records(pair, soc_task, [names[i] for i in s], frame,
                                frame.errors(predicted[s], targets[t]), settings.alphas)
    if "cc" in wanted:
        concept = _concept_targets(pair)
        empty[cc_task] = not concept
        if concept:
            order = sorted(concept)
            errors = torch.stack([frame.errors(predicted[s][None], targets[concept[s]]).min() for s in order])
            records += _records(pair, cc_task, [names[s] for s in order], frame, errors, settings.alphas)
    if "geo" in wanted and not cross:
        records.extend(_geo_records(pair, maps, frame, targets, settings))
        empty["geo"] = not pair.semantic_matches
    figure = {"pair": pair, "prediction": frame.positions_to_pixels(predicted),
              "targets": frame.positions_to_pixels(targets)}
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
