"""The view choice of a multi-view demo after the pose search: every candidate view's searched pose scored alike on
the fused cloud, the best taken (the primary's by a margin), pooled with its search's hypotheses, its turn read
again from a round body's handle or spout, and refused when another view's pose explains the frame as well
(:mod:`~correspondence.view_pool`). Apart from :mod:`~correspondence.multiview_pose`, which holds the views."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from .handle_turn import turn_outcome
from .view_pool import FusedFit, pool_view, refuse_rival, turn_best, with_view_poses

if TYPE_CHECKING:
    from .multiview_pose import ViewCandidate

PRIMARY_MARGIN = 0.05  # after the search, a turned view's pose wins over the primary's only by this much of the
# pose score: a near tie is two sides that look alike (a bus's two ends: 0.661 vs 0.659 at yaw -45 deg, 180 deg
# apart), which the data cannot settle, and the primary is the frame the keypoints were marked in

def choose_searched(candidates: list[ViewCandidate], search: Callable[[ViewCandidate], tuple],
                    score: Callable[[np.ndarray], float], primary_margin: float = PRIMARY_MARGIN,
                    fitter: FusedFit | None = None, check: Callable | None = None
                    ) -> tuple[ViewCandidate, tuple, dict[int, float] | None]:
    """(the chosen candidate, its ``search(candidate)`` result = (alignment, pose search result), each searched
    pose's score). Every candidate view's pose goes through the pose search (from that view's cloud, starting at its
    matches pose, or from nothing when its RANSAC failed), and the searched poses are scored alike, ``score(T)``
    (the fused cloud's visible part against the live frame); the best wins, the primary's by ``primary_margin``
    (:data:`PRIMARY_MARGIN`), ties the earlier candidate. Why: at
    yaw +-180 deg with distractors a candidate's RANSAC often fails or lands 20-70 deg off (5 of 6 failures at
    507cc3a: the right view's search, never run, finds the truth, which scores far higher than the pose chosen).
    A candidate whose search refuses (ambiguous) or finds nothing gives no pose; when none gives one, the first
    candidate's refusal stands. With ``fitter`` (:class:`~correspondence.view_pool.FusedFit`)
    the chosen view's pose is pooled with its search's best hypotheses (:func:`_refit_chosen`). ``check``
    (:func:`~correspondence.multiview_confirmation.fused_check` bound to the frame): each weighed pose's contradiction
    values go into the result's ``view_poses`` (what the bench judges on the truth)."""
    outcomes = []
    for candidate in candidates:
        alignment, result = search(candidate)
        ok = alignment is not None and alignment.success and alignment.transform is not None
        outcomes.append((candidate, (alignment, result), float(score(alignment.transform)) if ok else None))
    scores = {c.index: round(v, 4) for c, _, v in outcomes if v is not None}
    with_pose = [o for o in outcomes if o[2] is not None]
    if not with_pose:
        return outcomes[0][0], outcomes[0][1], scores or None
    best = max(with_pose, key=lambda o: o[2] + (primary_margin if o[0].index == 0 else 0.0))  # max keeps the
    # first of equals: the candidates' order
    searched = [(f"view {c.index}", a.transform, v) for c, (a, _), v in with_pose]
    if fitter is not None:
        chosen, outcome, scores, pooled = _refit_chosen(best[0], best[1], fitter, scores)
        outcome, handle = turn_outcome(outcome, fitter)  # a round body's turn read from its handle or spout
        poses = [*searched, (f"chosen view {chosen.index}", outcome[0].transform, scores.get(chosen.index))]
        outcome, rival, index = refuse_rival(chosen.index, outcome, pooled, outcomes, fitter, handle)
        if rival is not None:
            poses.append((f"rival view {rival.view}", rival.transform, rival.score))
        if index != chosen.index:  # the frame contradicted the chosen pose, not its rival's: the rival's view
            poses.append((f"taken view {index}", outcome[0].transform, None))
            chosen = next(c for c, _, _ in outcomes if c.index == index)
        return chosen, with_view_poses(outcome, poses, check), scores
    return best[0], with_view_poses(best[1], searched, check), scores


def _refit_chosen(candidate: ViewCandidate, outcome: tuple, fitter: FusedFit, scores: dict[int, float]
                  ) -> tuple[ViewCandidate, tuple, dict[int, float], list]:
    """The chosen view's pose, pooled with its search's best distinct hypotheses (:mod:`~correspondence.view_pool`):
    each fitted on the fused cloud and scored alike, the best three also turned by half the sweep step; the best
    replaces the searched pose (``solver`` ``<source>+fused-fit``). Only within the chosen view: across views the
    fit lifts a wrong turn of a round object to within the primary margin of the truth (a jug 145 deg off at 0.874
    against the truth's 0.919), and a refusal stays a refusal (a car whose fitted 180-deg turn beat its rivals by
    0.09)."""
    alignment, result = outcome
    pooled = turn_best(pool_view(candidate.index, alignment.transform, () if result is None else result.hypotheses,
                                 fitter), fitter)
    best = max(pooled, key=lambda p: p.score)  # the searched pose comes first: it keeps a tie
    if best.is_searched:
        return candidate, outcome, scores, pooled
    score, transform = fitter.polish(best.transform, best.score)  # placed and turned in steps: ICP makes it precise
    pooled = [p for p in pooled if p is not best]
    best = replace(best, score=score, transform=transform)
    pooled.append(best)
    scores = {**scores, candidate.index: round(best.score, 4)}
    source = best.source.source if best.source is not None else alignment.solver
    alignment = replace(alignment, success=True, transform=best.transform, reason="ok", solver=f"{source}+fused-fit")
    if result is not None:  # the search's record says which hypothesis was taken, and where it went
        chosen = best.source if best.source is not None else result.chosen
        result = replace(result, transform=best.transform,
                         chosen=None if chosen is None else replace(chosen, transform=best.transform),
                         reason="ok: the chosen view's hypotheses fitted and scored on the fused cloud")
    return candidate, (alignment, result), scores, pooled


__all__ = ["PRIMARY_MARGIN", "choose_searched"]
