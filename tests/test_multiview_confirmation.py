"""A four-view demo's chosen pose judged by the contradiction rules on the fused cloud
(correspondence/multiview_confirmation.py). Synthetic ground truth: a plate 1 m in front of the live camera, its
left half red and its right half blue, so the truth contradicts nothing, its 180-deg turn lays each half on the
other colour and a pose 5 cm nearer the camera floats where the camera saw through it."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from correspondence.alignment import AlignmentResult
from correspondence.camera import CameraIntrinsics
from correspondence.multiview_confirmation import (FusedConfirmationSettings, confirm_fused, facing_views,
                                                   fused_check)
from correspondence.pose_search import Hypothesis, LiveFrame, PoseScore, PoseSearchResult, PoseSearchSettings

K = CameraIntrinsics(200.0, 200.0, 32.0, 32.0, 64, 64)
RED, BLUE, GREEN = (200, 30, 30), (30, 30, 200), (30, 200, 30)


def _plate():
    u, v = np.meshgrid(np.arange(10, 54, 2) + 0.5, np.arange(10, 54, 2) + 0.5)
    xy = np.stack([u.ravel(), v.ravel()], 1)
    points = np.column_stack([(xy - [K.cx, K.cy]) / K.fx, np.ones(len(xy))])
    colours = np.where((xy[:, 0] < K.cx)[:, None], RED, BLUE).astype(np.uint8)
    image = np.zeros((K.height, K.width, 3), dtype=np.uint8)
    image[:, :32], image[:, 32:] = RED, BLUE
    mask = np.zeros((K.height, K.width), dtype=bool)
    mask[9:55, 9:55] = True
    live = LiveFrame(np.where(mask, 1.0, 3.0), K, mask, points.copy(), None, image)
    return points, colours, live


def _about_centre(deg: float) -> np.ndarray:
    a = np.radians(deg)
    T = np.eye(4)
    T[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    T[:3, 3] = np.array([0.0, 0.0, 1.0]) - T[:3, :3] @ [0.0, 0.0, 1.0]
    return T


def _mug():
    """A round body (radius 5 cm, 10 cm tall, axis along y, 60 cm away) with a handle on its +x side."""
    rng = np.random.default_rng(1)
    a, h = rng.uniform(0, 2 * np.pi, 3000), rng.uniform(-0.05, 0.05, 3000)
    body = np.column_stack([0.05 * np.cos(a), h, 0.6 + 0.05 * np.sin(a)])
    handle = np.column_stack([rng.uniform(0.06, 0.08, 300), rng.uniform(-0.03, 0.03, 300),
                              0.6 + rng.uniform(-0.005, 0.005, 300)])
    return np.concatenate([body, handle])


def _about_axis(deg: float) -> np.ndarray:
    """A turn about the mug's axis (the vertical line x = 0, z = 0.6)."""
    a = np.radians(deg)
    T = np.eye(4)
    T[[0, 0, 2, 2], [0, 2, 0, 2]] = [np.cos(a), np.sin(a), -np.sin(a), np.cos(a)]
    T[:3, 3] = np.array([0.0, 0.0, 0.6]) - T[:3, :3] @ [0.0, 0.0, 0.6]
    return T


def test_a_turn_that_lays_the_handle_off_the_live_one_is_refused_by_default():
    """The rule on by default (the one that separated right from wrong poses on the four-view rows): the body fits
    under any turn, only the handle tells them apart."""
    points = _mug()
    live = LiveFrame(np.full((64, 64), 0.6), K, np.ones((64, 64), bool), points.copy(), None, None)
    s, rules, up = PoseSearchSettings(), FusedConfirmationSettings(min_surface_agreement=None), np.array([0., 1, 0])
    truth = fused_check(np.eye(4), points, None, live, s, up, rules)
    assert truth.handle_match > 0.9 and truth.reason is None
    turned = fused_check(_about_axis(90.0), points, None, live, s, up, rules)
    assert turned.handle_match < 0.1 and "handle" in turned.reason
    assert fused_check(_about_axis(90.0), points, None, live, s, None, rules).handle_match is None  # no vertical


def test_the_truth_stands_and_a_turn_in_the_wrong_colours_or_a_pose_in_free_space_is_refused():
    """Free space and colour, off by default on the fused cloud (right poses reach 0.084 and 0.27 on the bench),
    still judge when turned on."""
    points, colours, live = _plate()
    s, rules = PoseSearchSettings(), FusedConfirmationSettings(max_free_space=0.04, max_color_mismatch=0.1)
    truth = fused_check(np.eye(4), points, colours, live, s, None, rules)
    assert truth.reason is None and truth.free_space < 0.01 and truth.color_mismatch < 0.01 and truth.agreement > 0.9
    turned = fused_check(_about_centre(180.0), points, colours, live, s, None, rules)
    assert turned.color_mismatch > 0.8 and "another colour" in turned.reason and "fused views" in turned.reason
    nearer = np.eye(4)
    nearer[2, 3] = -0.05
    floating = fused_check(nearer, points, colours, live, s, None, rules)
    assert floating.free_space > 0.5 and "sees through it" in floating.reason
    off = fused_check(_about_centre(180.0), points, colours, live, s, None, replace(rules, enabled=False))
    assert off.reason is None and off.color_mismatch > 0.8  # measured, not refused


def test_colour_and_free_space_count_only_the_views_that_face_the_live_camera():
    """A second view that saw the plate from the side in other light (green): under the truth its colours
    contradict the live image, but it does not face the live camera, so it is not judged; without the views'
    sources every row is, and the truth would be refused."""
    points, colours, live = _plate()
    fused_points = np.concatenate([points, points])
    fused_colours = np.concatenate([colours, np.tile(np.array(GREEN, dtype=np.uint8), (len(points), 1))])
    rows = np.repeat([0, 1], len(points))
    centres = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])  # view 0 where the live camera is, view 1 at 90 deg
    assert facing_views(np.eye(4), fused_points, centres, 50.0).tolist() == [True, False]
    s, rules = PoseSearchSettings(), FusedConfirmationSettings(max_color_mismatch=0.1)
    judged = fused_check(np.eye(4), fused_points, fused_colours, live, s, None, rules, (rows, centres))
    assert judged.reason is None and judged.color_mismatch < 0.01
    every = fused_check(np.eye(4), fused_points, fused_colours, live, s, None, rules)
    assert every.color_mismatch > 0.4 and every.reason is not None


def test_confirm_fused_refuses_with_the_values_kept_and_passes_a_refusal_unchanged():
    points, colours, live = _plate()
    s, rules = PoseSearchSettings(), FusedConfirmationSettings(max_color_mismatch=0.1)
    T = _about_centre(180.0)
    chosen = Hypothesis("upright", T, PoseScore(0.9, 0.9, 0.0, None, 0.9))
    searched = (AlignmentResult(True, T, np.zeros(0, bool), 0.0, 0.0, 0, "ok", "test"),
                PoseSearchResult(T, chosen, (chosen,)))
    alignment, result = confirm_fused(searched, lambda P: fused_check(P, points, colours, live, s, None, rules))
    assert not alignment.success and alignment.transform is None and "another colour" in alignment.reason
    assert result.unconfirmed and result.transform is None and result.chosen is chosen  # what was found stays
    assert result.fused_check["color_mismatch"] > 0.8 and result.fused_check["refused"]
    refused = (AlignmentResult(False, None, np.zeros(0, bool), 0.0, 0.0, 0, "ambiguous", "test"), None)
    assert confirm_fused(refused, lambda P: 1 / 0) is refused  # nothing to judge: the check is not called


def test_the_bench_judges_every_weighed_pose_and_the_checked_one_on_the_truth():
    """The bench row's ``view_poses`` and ``fused_check`` (what the multi-view decision weighed, with errors against
    the truth) are what the doc's right-vs-wrong figures are read from."""
    from types import SimpleNamespace

    from correspondence.benchmarks.alignment_scoring import _view_pose_errors

    truth, off = np.eye(4), _about_axis(30.0)
    search = PoseSearchResult(None, None, view_poses=(("view 0", truth, 0.8, {"handle_match": 1.0}),
                                                      ("rival view 2", off, 0.79, None)),
                              fused_check={"handle_match": 0.1, "refused": True, "transform": off.tolist()})
    row = _view_pose_errors(search, SimpleNamespace(transforms=[np.eye(4)]), np.eye(4), truth, np.array([0, 0, .6]))
    assert [v["label"] for v in row["view_poses"]] == ["view 0", "rival view 2"]
    assert row["view_poses"][0]["error"] == [0.0, 0.0] and row["view_poses"][0]["check"] == {"handle_match": 1.0}
    assert abs(row["view_poses"][1]["error"][0] - 30.0) < 0.01
    assert row["fused_check"]["right"] is False and abs(row["fused_check"]["error"][0] - 30.0) < 0.01
    assert "transform" not in row["fused_check"] and row["fused_check"]["refused"]
    assert _view_pose_errors(None, None, None, None, None) == {}
