"""A one-view demo's pose is confirmed by appearance or refused as a guess by shape alone
(correspondence/pose_confirmation.py). Synthetic: a textured plane seen head-on, so every pose considered lays the
demo points on the live surface (geometry alone cannot tell them apart) and only the descriptors can."""
from __future__ import annotations

import numpy as np

from correspondence.camera import CameraIntrinsics
from correspondence.pose_confirmation import ConfirmationSettings, appearance_agreement, confirm, view_change_deg
from correspondence.pose_search import Hypothesis, LiveFrame, PoseScore, PoseSearchResult, PoseSearchSettings

K = CameraIntrinsics(200.0, 200.0, 32.0, 32.0, 64, 64)


def _scene(mirrored: bool):
    """Demo points on a plane 1 m away, each with its own random descriptor; the live frame shows the same plane
    with, at each pixel, the descriptor of the demo point seen there, or of its mirror twin (x -> -x): the side
    laid on its mirror image, which the depth cannot tell from the truth."""
    rng = np.random.default_rng(0)
    u, v = np.meshgrid(np.arange(8, 56, 2) + 0.5, np.arange(8, 56, 2) + 0.5)
    xy = np.stack([u.ravel(), v.ravel()], 1)
    points = np.column_stack([(xy - [K.cx, K.cy]) / K.fx, np.ones(len(xy))])
    descriptors = rng.normal(size=(len(points), 16))
    seen = descriptors.reshape(u.shape + (16,))[:, ::-1].reshape(-1, 16) if mirrored else descriptors

    def sampler(pixels):
        nearest = np.argmin(((pixels[:, None] - xy[None]) ** 2).sum(-1), axis=1)
        return seen[nearest]

    depth = np.ones((K.height, K.width))
    mask = np.zeros((K.height, K.width), dtype=bool)
    mask[7:57, 7:57] = True
    return points, descriptors, LiveFrame(depth, K, mask, points.copy(), sampler, None)


def _result(T: np.ndarray) -> PoseSearchResult:
    chosen = Hypothesis("upright", T, PoseScore(1.0, 1.0, 0.0, 0.0, 1.0))
    return PoseSearchResult(T, chosen, (chosen,))


def test_the_seen_side_is_confirmed_and_its_mirror_twin_is_at_chance():
    s = PoseSearchSettings()
    points, descriptors, live = _scene(mirrored=False)
    right = appearance_agreement(np.eye(4), points, descriptors, live, s)
    points, descriptors, live = _scene(mirrored=True)
    mirror = appearance_agreement(np.eye(4), points, descriptors, live, s)
    assert right > 0.95
    assert 0.35 < mirror < 0.65  # chance: the pairs look no more alike than random ones


def test_an_unconfirmed_pose_is_refused_with_the_reason_and_the_value_kept():
    points, descriptors, live = _scene(mirrored=True)
    out = confirm(_result(np.eye(4)), points, descriptors, live, PoseSearchSettings(), None, None,
                  ConfirmationSettings(min_agreement=0.6))
    assert out.transform is None and out.unconfirmed and not out.ambiguous
    assert out.appearance_agreement < 0.6
    assert "side the demo did not see" in out.reason and f"{out.appearance_agreement:.2f} < 0.60" in out.reason
    assert out.chosen is not None  # what the search found is still reported
    assert out.view_change_deg is not None and out.view_change_deg < 1.0


def test_a_confirmed_pose_stands_and_the_rule_can_be_turned_off():
    points, descriptors, live = _scene(mirrored=False)
    out = confirm(_result(np.eye(4)), points, descriptors, live, PoseSearchSettings(), None, None,
                  ConfirmationSettings())
    assert out.transform is not None and not out.unconfirmed and out.appearance_agreement > 0.95
    points, descriptors, live = _scene(mirrored=True)
    off = confirm(_result(np.eye(4)), points, descriptors, live, PoseSearchSettings(), None, None,
                  ConfirmationSettings(min_agreement=None))
    assert off.transform is not None and not off.unconfirmed and off.appearance_agreement < 0.65


def test_no_descriptors_or_too_few_pairs_give_no_verdict_and_no_refusal():
    points, descriptors, live = _scene(mirrored=True)
    assert appearance_agreement(np.eye(4), points, None, live, PoseSearchSettings()) is None
    away = np.eye(4)
    away[2, 3] = 0.5  # every point 50 cm behind the surface: no pair on it
    out = confirm(_result(away), points, descriptors, live, PoseSearchSettings(), None, None, ConfirmationSettings())
    assert out.appearance_agreement is None and out.transform is not None
    inferred = np.ones(len(points), dtype=bool)  # mirror-completed rows carry no descriptor of their own
    assert appearance_agreement(np.eye(4), points, descriptors, live, PoseSearchSettings(), inferred=inferred) is None


def test_view_change_is_the_turn_of_the_viewing_direction_about_the_object():
    points, _, _ = _scene(mirrored=False)
    centre = points.mean(0)
    angle = np.radians(60.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, centre - R @ centre  # the object turned by 60 deg about its own vertical axis
    assert abs(view_change_deg(T, points) - 60.0) < 1.0
    roll = np.eye(4)
    roll[:2, :2] = [[0, -1], [1, 0]]  # the camera rolled about its axis: the object is seen from where it was
    assert view_change_deg(roll, points) < 5.0


def test_a_pose_that_claims_another_side_is_not_judged_by_appearance():
    points, descriptors, live = _scene(mirrored=True)
    out = confirm(_result(np.eye(4)), points, descriptors, live, PoseSearchSettings(), None, None,
                  ConfirmationSettings(min_agreement=0.6, max_view_change_deg=-1.0))
    assert out.transform is not None and not out.unconfirmed and out.appearance_agreement < 0.6
