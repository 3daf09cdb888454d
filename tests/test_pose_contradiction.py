"""A one-view pose that contradicts what the live camera saw is refused (``ConfirmationSettings.max_free_space``,
correspondence/pose_confirmation.py). A rigid object under its true pose hides surfaces but shows no wrong one; the
wrong poses issue 26 recorded (a car's and a bus's 180-deg twin, a kettle's and a jug's wrong turn) put 4.5-8.8 % of
the demo's points where the live camera saw through them, right poses at most 3.8 % (docs/pose_search.md, "Poses
that contradict the frame")."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.camera import CameraIntrinsics
from correspondence.pose_confirmation import ConfirmationSettings, confirm
from correspondence.pose_search import Hypothesis, LiveFrame, PoseScore, PoseSearchResult, PoseSearchSettings, \
    score_pose

K = CameraIntrinsics(200.0, 200.0, 32.0, 32.0, 64, 64)


def _plane_scene(sticking_out: float):
    """The live camera sees a plane 1 m away over the whole mask. The demo cloud is that plane, except a share
    ``sticking_out`` of its points laid 5 cm in front of it, at pixels where the camera saw the plane behind: a
    pose that puts a bonnet where the live view shows the boot's far wall."""
    u, v = np.meshgrid(np.arange(8, 56) + 0.5, np.arange(8, 56) + 0.5)
    xy = np.stack([u.ravel(), v.ravel()], 1)
    rays = np.column_stack([(xy - [K.cx, K.cy]) / K.fx, np.ones(len(xy))])
    z = np.ones(len(xy))
    z[: int(round(sticking_out * len(xy)))] = 0.95
    points = rays * z[:, None]
    depth = np.ones((K.height, K.width))
    mask = np.zeros((K.height, K.width), dtype=bool)
    mask[8:56, 8:56] = True
    return points, LiveFrame(depth, K, mask, rays.copy(), None, None)


def _searched(points, live, settings):
    T = np.eye(4)
    chosen = Hypothesis("upright", T, score_pose(T, points, None, live, settings))
    return PoseSearchResult(T, chosen, (chosen,))


@pytest.mark.parametrize("share, refused", [(0.0, False), (0.03, False), (0.06, True), (0.09, True)])
def test_the_scorer_measures_the_contradiction_and_the_rule_refuses_it(share, refused):
    settings = PoseSearchSettings()
    points, live = _plane_scene(share)
    search = _searched(points, live, settings)
    assert search.chosen.score.free_space == pytest.approx(share, abs=0.005)
    out = confirm(search, points, None, live, settings, None, None, ConfirmationSettings())
    assert (out.transform is None) == refused and out.unconfirmed == refused
    if refused:
        assert "sees through it" in out.reason and f"free space {search.chosen.score.free_space:.3f} > 0.046" \
            in out.reason
        assert out.chosen is search.chosen and not out.ambiguous  # what the search found is still reported


def _recorded(free_space: float, color_mismatch: float = 0.0, agreement: float = 0.8) -> PoseSearchResult:
    T = np.eye(4)
    chosen = Hypothesis("upright", T, PoseScore(agreement, 0.8, free_space, 0.05, 0.5, color_mismatch))
    return PoseSearchResult(T, chosen, (chosen,))


# the chosen poses' PoseScore.free_space in the issue-26 runs at 191add5 (`soco bench alignment --backbone daisy
# --trials 32 --functional-trials 0 --max-rotation 180 --distractors 2 --mask-source depth [--seed 1]` and
# `--trials 40 --functional-trials 0`, alignment.json's pose_score): (run, trial, object, yaw, free space, right?)
RECORDED = [
    ("+-180 s0", 16, "car", -124, 0.0452, False),  # 179 deg off
    ("+-180 s0", 24, "car", 169, 0.0631, False),  # 180 deg off
    ("+-180 s0", 25, "bus", 94, 0.0559, False),  # 180 deg off
    ("+-180 s1", 22, "kettle", -103, 0.0880, False),  # 90 deg off
    ("+-180 s1", 23, "jug", 96, 0.0730, False),  # 91 deg off
    ("+-180 s0", 18, "truck", -43, 0.0360, True),  # the highest of a right pose at +-180 deg
    ("+-180 s1", 18, "truck", 98, 0.0340, True),
    ("+-30 s0", 23, "jug", 22, 0.0380, True),  # the highest of a right pose at +-30 deg
    ("+-180 s0", 29, "mug", -175, 0.0090, False),  # wrong by its colours (0.138), not by free space (below)
]


def _judged(score_args: dict) -> PoseSearchResult:
    return confirm(_recorded(**score_args), np.array([[0.0, 0.0, 1.0]]), None, None, PoseSearchSettings(), None,
                   None, ConfirmationSettings(min_agreement=None))


# colour mismatch and agreement of the chosen poses in the same runs
@pytest.mark.parametrize("case, score_args, refused, words", [
    ("+-180 s0 t29 mug -175 deg, 140 deg off", dict(free_space=0.009, color_mismatch=0.138, agreement=0.504), True,
     "another colour"),
    ("+-30 s0 t29 mug, right (the highest mismatch of a right pose)", dict(free_space=0.012, color_mismatch=0.063,
                                                                          agreement=0.80), False, ""),
    ("+-180 s1 t3 chair -71 deg on a wrong mask (IoU 0.17), 6.2 cm off", dict(free_space=0.0, color_mismatch=0.0,
                                                                              agreement=0.0), True, "nothing in"),
    ("+-180 s0 t10 truck 165 deg, right (the lowest agreement of a right pose)", dict(free_space=0.003,
                                                                                       color_mismatch=0.0,
                                                                                       agreement=0.078), False, ""),
])
def test_colour_and_no_evidence(case, score_args, refused, words):
    out = _judged(score_args)
    assert (out.transform is None) == refused, case
    assert words in out.reason


@pytest.mark.parametrize("run, trial, category, yaw, free_space, right", RECORDED)
def test_recorded_poses(run, trial, category, yaw, free_space, right):
    out = confirm(_recorded(free_space), np.array([[0.0, 0.0, 1.0]]), None, None, PoseSearchSettings(), None, None,
                  ConfirmationSettings(min_agreement=None))
    if right or free_space <= ConfirmationSettings().max_free_space:  # the car at 0.0452 is left to the cleaner-turn
        # rule (tests/test_cleaner_rival.py): its truth, a far hypothesis, contradicts the frame far less
        assert out.transform is not None, f"{run} t{trial} {category} {yaw} deg: a pose kept"
    else:
        assert out.transform is None and out.unconfirmed, f"{run} t{trial} {category} {yaw} deg: refused"


def test_off_and_a_looser_limit():
    out = confirm(_recorded(0.06), np.array([[0.0, 0.0, 1.0]]), None, None, PoseSearchSettings(), None, None,
                  ConfirmationSettings(min_agreement=None, max_free_space=None))
    assert out.transform is not None
    out = confirm(_recorded(0.06), np.array([[0.0, 0.0, 1.0]]), None, None, PoseSearchSettings(), None, None,
                  ConfirmationSettings(min_agreement=None, max_free_space=0.1))
    assert out.transform is not None


def test_stereo_depth_is_not_judged_by_free_space():
    """A stereo sensor's depth (noise, 1 mm steps, rims lost) puts right poses 4-16 % in free space (the +-30 deg
    bench with --depth-noise stereo): the free-space rule then gives no verdict; exact depth is judged."""
    from correspondence.pose_confirmation import rough_share
    from correspondence.world.depth_noise import DEPTH_NOISE, stereo_depth

    settings = PoseSearchSettings()
    points, live = _plane_scene(0.06)
    search = _searched(points, live, settings)
    assert rough_share(live) < 0.01
    assert confirm(search, points, None, live, settings, None, None, ConfirmationSettings()).transform is None
    noisy = stereo_depth(np.full((K.height, K.width), 0.7), K, DEPTH_NOISE["stereo"], np.random.default_rng(0))
    noisy_live = LiveFrame(np.where(noisy > 0, noisy + 0.3, 0.0), K, live.mask, live.cloud, None, None)
    assert rough_share(noisy_live) > 0.2
    out = confirm(search, points, None, noisy_live, settings, None, None, ConfirmationSettings())
    assert out.transform is not None and not out.unconfirmed
