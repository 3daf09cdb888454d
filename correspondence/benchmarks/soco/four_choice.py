"""The LVLM-style 4-choice protocol for vision backbones, with CircularEval.

For a query keypoint of the source image the options are the target's true keypoint plus 3 other annotated
target keypoints drawn at random (seeded). A vision backbone answers with the option whose feature is most
similar to the query's (ties go to the earlier option). Each question is asked under the 4 rotations of its
options; CircularEval counts it correct only if all 4 answers are. Baselines: Random (a uniformly random letter per
rotation, 1/256 circular) and Random++ (a random option, the same one under every rotation: 25%).

Features are compared as the run's protocol compares them (:func:`.reference.similarities`: the same
normalisation order, query and keypoint coordinates as CC / SOC): an option's score is the query's similarity map
sampled at the option keypoint, as that keypoint would be sampled as a query. The released SOCO code has no
4-choice evaluation for vision backbones (its VLMEvalKit scripts score LVLM answers): the question sampling is
this library's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import torch.nn.functional as F

from ...device import to_numpy
from .evaluator import FeatureSource
from .loader import SocoPair
from .protocol import ProtocolSettings
from .reference import Frame, similarities


@dataclass(frozen=True)
class Question:
    pair_id: int
    query: int  # source keypoint index
    options: tuple[int, ...]  # target keypoint indices, the true one among them
    answer: int  # index into options of the true keypoint


def build_questions(pairs: list[SocoPair], seed: int = 0) -> list[Question]:
    rng = np.random.default_rng(seed)
    questions = []
    for pair in pairs:
        n = len(pair.target.keypoints)
        if n < 4:
            continue
        for match in pair.semantic_matches:
            truth = match.target_indices[0]
            others = [i for i in range(n) if i != truth]
            options = [truth] + [int(i) for i in rng.choice(others, 3, replace=False)]
            rng.shuffle(options)
            questions.append(Question(pair.pair_id, match.source_indices[0], tuple(options), options.index(truth)))
    return questions


def _rotations(question: Question) -> list[tuple[tuple[int, ...], int]]:
    k = len(question.options)
    return [(question.options[r:] + question.options[:r], (question.answer - r) % k) for r in range(k)]


def option_scores(pair: SocoPair, question: Question, features: FeatureSource,
                  settings: ProtocolSettings) -> np.ndarray:
    """The query's similarity to each option, in option order, under the protocol's sampling."""
    source, target = features(pair.source), features(pair.target)
    source_frame, target_frame = Frame(source, pair.source, settings), Frame(target, pair.target, settings)
    query_xy = np.array([pair.source.keypoints[question.query].xy], dtype=np.float64)
    maps = similarities(source, target, source_frame.query_grid(query_xy), settings)  # (1, h, w)
    option_xy = np.array([pair.target.keypoints[i].xy for i in question.options], dtype=np.float64)
    where = target_frame.query_grid(option_xy).to(maps.device, maps.dtype)[None, None]
    padding = "zeros" if settings.arithmetic == "reference" else "border"
    scores = F.grid_sample(maps[None], where, mode="bilinear", align_corners=True, padding_mode=padding)
    return to_numpy(scores[0, 0, 0], np.float64)


def evaluate_backbone(pairs: list[SocoPair], features: FeatureSource, seed: int = 0,
                      settings: ProtocolSettings | None = None) -> dict:
    """CircularEval of a backbone; ``settings``: the run's protocol (default: ``soco-798``'s)."""
    settings = settings or ProtocolSettings()
    by_id = {p.pair_id: p for p in pairs}
    rows, correct_rows, circular = 0, 0, []
    for q in build_questions(pairs, seed):
        scores = dict(zip(q.options, option_scores(by_id[q.pair_id], q, features, settings)))
        ok = True
        for options, answer in _rotations(q):
            choice = int(np.argmax([scores[i] for i in options]))  # first maximum on ties
            rows += 1
            correct_rows += choice == answer
            ok &= choice == answer
        circular.append(ok)
    return _summary("backbone", rows, correct_rows, circular)


def evaluate_random(pairs: list[SocoPair], seed: int = 0, consistent: bool = True) -> dict:
    """Random++ (``consistent``: one random option per question) or Random (a random letter per rotation)."""
    rng = np.random.default_rng(seed + 1)
    questions = build_questions(pairs, seed)
    rows, correct_rows, circular = 0, 0, []
    for q in questions:
        pick = int(rng.integers(4))  # the option (by identity) Random++ always names
        ok = True
        for r, (options, answer) in enumerate(_rotations(q)):
            choice = (pick - r) % 4 if consistent else int(rng.integers(4))
            rows += 1
            correct_rows += choice == answer
            ok &= choice == answer
        circular.append(ok)
    return _summary("random++" if consistent else "random", rows, correct_rows, circular)


def _summary(name: str, rows: int, correct_rows: int, circular: list[bool]) -> dict:
    return {"method": name, "questions": len(circular), "rows": rows,
            "average_accuracy": 100.0 * correct_rows / max(rows, 1),
            "circular_accuracy": 100.0 * float(np.mean(circular)) if circular else None}
