"""The multi-view view choice after the pose search (multiview_pose.choose_searched) and the search run in a turned
view's own frame (multiview_pose._result_to_primary): fast rules on hand-made candidates, no rendering."""
from __future__ import annotations

import numpy as np

from correspondence.alignment import AlignmentResult
from correspondence.icp import IcpResult
from correspondence.multiview_pose import PRIMARY_MARGIN, ViewCandidate, _result_to_primary, choose_searched
from correspondence.pose_search import Hypothesis, PoseScore, PoseSearchResult


def _pose(yaw_deg: float, x: float = 0.0) -> np.ndarray:
    a = np.radians(yaw_deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = [x, 0.0, 1.0]
    return T


def _alignment(T: np.ndarray | None) -> AlignmentResult:
    ok = T is not None
    return AlignmentResult(ok, T, np.zeros(0, dtype=bool), 0.0, float("nan"), 0, "ok" if ok else "ambiguous", "test")


def _candidates(*indices: int) -> list[ViewCandidate]:
    return [ViewCandidate(i, None, (None, None, None), None) for i in indices]


def test_the_searched_pose_that_scores_best_wins_whatever_the_candidate_order():
    """The candidates come ranked by their matches pose; the searched poses decide (a view whose RANSAC failed and
    came last can still win once its search finds the pose that explains the frame)."""
    searched = {3: _pose(0.0), 0: _pose(120.0), 2: _pose(60.0)}
    scores = {id(searched[3]): 0.9, id(searched[0]): 0.2, id(searched[2]): 0.5}
    calls = []

    def search(c):
        calls.append(c.index)
        return _alignment(searched[c.index]), None

    chosen, (alignment, _), view_scores = choose_searched(_candidates(0, 2, 3), search, lambda T: scores[id(T)])
    assert calls == [0, 2, 3]  # every candidate is searched
    assert chosen.index == 3 and alignment.transform is searched[3]
    assert view_scores == {0: 0.2, 2: 0.5, 3: 0.9}


def test_a_tie_keeps_the_earlier_candidate_and_a_refusal_gives_no_score():
    poses = {1: _pose(10.0), 0: _pose(0.0), 2: None}  # view 2's search refused (ambiguous): no pose
    chosen, (alignment, _), view_scores = choose_searched(
        _candidates(1, 0, 2), lambda c: (_alignment(poses[c.index]), None), lambda T: 0.7, primary_margin=0.0)
    assert chosen.index == 1 and alignment.transform is poses[1]
    assert view_scores == {1: 0.7, 0: 0.7}


def test_a_turned_view_must_beat_the_primary_by_the_margin():
    """Two sides that look alike give near-equal scores 180 deg apart (a bus's ends): the primary keeps a near tie,
    a turned view that explains the frame clearly better still wins."""
    poses = {2: _pose(180.0), 0: _pose(0.0)}
    for turned_score, expected in ((0.66 + PRIMARY_MARGIN / 2, 0), (0.66 + 2 * PRIMARY_MARGIN, 2)):
        scores = {id(poses[2]): turned_score, id(poses[0]): 0.66}
        chosen, _, _ = choose_searched(_candidates(2, 0), lambda c: (_alignment(poses[c.index]), None),
                                       lambda T: scores[id(T)])
        assert chosen.index == expected, (turned_score, chosen.index)


def test_when_every_search_refuses_the_first_candidates_refusal_stands():
    refusals = {0: _alignment(None), 1: _alignment(None)}
    chosen, (alignment, _), view_scores = choose_searched(
        _candidates(1, 0), lambda c: (refusals[c.index], "search"), lambda T: 1.0)
    assert chosen.index == 1 and alignment is refusals[1] and not alignment.success
    assert view_scores is None


def test_a_search_in_a_views_frame_comes_back_as_primary_to_live():
    """view -> live poses composed with T_view_from_primary are primary -> live: a point of the primary frame
    lands where the view-frame pose puts the same point expressed in the view."""
    T_primary_from_view = _pose(90.0, x=0.3)
    T_view_from_primary = np.linalg.inv(T_primary_from_view)
    view_to_live = _pose(-30.0, x=0.05)
    icp = IcpResult(True, view_to_live, 0.5, 0.9, 0.001, 1.0, 0.001, "ok")
    score = PoseScore(0.8, 0.8, 0.0, None, 0.8)
    chosen = Hypothesis("matches", view_to_live, score, icp)
    rival = Hypothesis("turn", _pose(150.0), score)
    result = PoseSearchResult(view_to_live, chosen, (chosen, rival), False, "ok", (rival,))
    moved = _result_to_primary(result, T_view_from_primary)
    p_view = np.array([0.1, -0.02, 0.4, 1.0])
    p_primary = T_primary_from_view @ p_view
    np.testing.assert_allclose(moved.transform @ p_primary, view_to_live @ p_view, atol=1e-12)
    assert moved.chosen is moved.hypotheses[0] and moved.equivalent[0] is moved.hypotheses[1]
    np.testing.assert_allclose(moved.chosen.refinement.transform, moved.transform, atol=1e-12)
    np.testing.assert_allclose(moved.hypotheses[1].transform, rival.transform @ T_view_from_primary, atol=1e-12)
    assert moved.reason == "ok" and not moved.ambiguous
