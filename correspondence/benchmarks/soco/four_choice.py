"""The LVLM-style 4-choice protocol for vision backbones, with CircularEval.

For a query keypoint of the source image the options are the target's true keypoint plus 3 other annotated
target keypoints drawn at random (seeded). A vision backbone answers with the option whose feature is most
similar to the query's (ties go to the earlier option). Each question is asked under the 4 rotations of its
options; CircularEval counts it correct only if all 4 answers are. Baselines: Random (a uniformly random letter per
rotation, 1/256 circular) and Random++ (a random option, the same one under every rotation: 25%).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .evaluator import FeatureSource
from .loader import SocoPair


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


def evaluate_backbone(pairs: list[SocoPair], features: FeatureSource, seed: int = 0) -> dict:
    by_id = {p.pair_id: p for p in pairs}
    questions = build_questions(pairs, seed)
    rows, circular = 0, []
    correct_rows = 0
    for q in questions:
        pair = by_id[q.pair_id]
        source, target = features(pair.source), features(pair.target)
        query = source.sample(np.array([pair.source.keypoints[q.query].xy]))
        query = query / query.norm(dim=1, keepdim=True).clamp_min(1e-12)
        ok = True
        for options, answer in _rotations(q):
            option_feats = target.sample(np.array([pair.target.keypoints[i].xy for i in options])).to(query.device)
            option_feats = option_feats / option_feats.norm(dim=1, keepdim=True).clamp_min(1e-12)
            choice = int((option_feats @ query[0]).argmax())  # first maximum on ties
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
