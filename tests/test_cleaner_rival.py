"""A one-view pose is refused when a far turn that also lies on the live surface puts far fewer points where the
live camera sees through them (``ConfirmationSettings.cleaner_ratio``, correspondence/pose_confirmation.py): a
box-like object's 180-deg twin lays the demo's front on the live back (a cabin where the boot was), its truth lays
the seen side out of sight and contradicts nothing. Checked on a rendered two-box car (the scorer's own numbers)
and on the poses issue 26 recorded (docs/pose_search.md, "A cleaner turn")."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.camera import CameraIntrinsics
from correspondence.pose_confirmation import ConfirmationSettings, cleaner_rival, confirm
from correspondence.pose_search import Hypothesis, LiveFrame, PoseScore, PoseSearchResult, PoseSearchSettings, \
    score_pose
from correspondence.world.render import look_at_pose

K = CameraIntrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)


def _look_at(eye, target=(0.0, 0.0, 0.06)) -> np.ndarray:
    """World -> camera (x right, y down, z forward), world z up."""
    return look_at_pose(np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64))


def _box(lo, hi, step=0.002):
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    out = []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        A, B = np.meshgrid(np.arange(lo[a], hi[a] + 1e-9, step), np.arange(lo[b], hi[b] + 1e-9, step), indexing="ij")
        for value in (lo[axis], hi[axis]):
            p = np.zeros((A.size, 3))
            p[:, a], p[:, b], p[:, axis] = A.ravel(), B.ravel(), value
            out.append(p)
    return np.concatenate(out)


# a car: a body 36 x 16 x 6 cm and a cabin 16 x 14 x 5 cm on it, pushed 3 cm to the rear (x < 0)
CAR = np.concatenate([_box((-0.18, -0.08, 0.02), (0.18, 0.08, 0.08)), _box((-0.11, -0.07, 0.08), (0.05, 0.07, 0.13))])


def _render(world_to_camera):
    """(depth image, the car's points the camera sees, in its frame): a z-buffer of the dense surface points."""
    p = CAR @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    xy = K.project(p)
    col, row = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    depth = np.full((K.height, K.width), np.inf)
    np.minimum.at(depth, (row, col), p[:, 2])
    seen = p[:, 2] <= depth[row, col] + 0.002
    depth[~np.isfinite(depth)] = 0.0
    return depth, p[seen]


def _about_vertical(deg: float) -> np.ndarray:
    a = np.radians(deg)
    R = np.eye(4)
    R[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    return R


@pytest.fixture(scope="module")
def scene():
    demo_cam = _look_at((0.45, 0.35, 0.35))  # front-left, from above
    live_cam = _look_at((-0.42, -0.38, 0.33))  # the car turned by ~180 deg: the live camera sees its rear-right
    _, demo = _render(demo_cam)
    depth, live_points = _render(live_cam)
    rng = np.random.default_rng(0)
    demo = demo[rng.choice(len(demo), 2500, replace=False)]
    live = LiveFrame(depth, K, depth > 0, live_points[rng.choice(len(live_points), 2500, replace=False)], None, None)
    truth = live_cam @ np.linalg.inv(demo_cam)
    twin = live_cam @ _about_vertical(180.0) @ np.linalg.inv(demo_cam)  # the front laid on the rear
    settings = PoseSearchSettings()
    scored = {name: Hypothesis("upright", T, score_pose(T, demo, None, live, settings))
              for name, T in (("truth", truth), ("twin", twin))}
    return demo, live, scored


def test_the_twin_contradicts_the_frame_and_its_truth_does_not(scene):
    _, _, scored = scene
    truth, twin = scored["truth"].score, scored["twin"].score
    assert twin.score > truth.score and twin.agreement > truth.agreement  # the search would choose the twin
    assert truth.agreement > ConfirmationSettings().cleaner_agreement
    assert twin.free_space > ConfirmationSettings().cleaner_floor
    assert truth.free_space * ConfirmationSettings().cleaner_ratio < twin.free_space


def test_the_twin_is_refused_and_the_truth_kept(scene):
    demo, live, scored = scene
    settings, rule = PoseSearchSettings(), ConfirmationSettings(min_agreement=None, max_free_space=None)
    twin = PoseSearchResult(scored["twin"].transform, scored["twin"], (scored["twin"], scored["truth"]))
    out = confirm(twin, demo, None, live, settings, None, None, rule)
    assert out.transform is None and out.unconfirmed and "180 deg away" in out.reason
    truth = PoseSearchResult(scored["truth"].transform, scored["truth"], (scored["truth"], scored["twin"]))
    assert confirm(truth, demo, None, live, settings, None, None, rule).transform is not None
    off = confirm(twin, demo, None, live, settings, None, None, ConfirmationSettings(min_agreement=None,
                                                                                     max_free_space=None,
                                                                                     cleaner_ratio=None))
    assert off.transform is not None


def _result(chosen: tuple, rival: tuple, turn_deg: float = 179.0) -> PoseSearchResult:
    """Recorded PoseScores (free space, agreement[, colour mismatch]) of the chosen pose and its far rival."""
    def hyp(values, T):
        fs, agreement, *mismatch = values
        return Hypothesis("upright", T, PoseScore(agreement, 0.5, fs, 0.0, 0.5, mismatch[0] if mismatch else 0.0))
    best = hyp(chosen, np.eye(4))
    return PoseSearchResult(best.transform, best, (best, hyp(rival, _about_vertical(turn_deg))))


# the one-view +-180 deg runs (`soco bench alignment --backbone daisy --trials 32 --functional-trials 0
# --max-rotation 180 --distractors 2 --mask-source depth --seed S`): the chosen pose's and the cleanest far
# hypothesis's (free space, agreement[, colour mismatch])
@pytest.mark.parametrize("case, chosen, rival, turn, refused", [
    ("s0 t16 car, 180 deg off", (0.0396, 0.788), (0.0028, 0.240), 179, True),
    ("s1 t8 car, 180 deg off", (0.0232, 0.774), (0.0052, 0.448), 179, True),
    ("s2 t1 bus, 180 deg off", (0.0256, 0.936), (0.0052, 0.658), 180, True),
    ("s2 t9 bus, 180 deg off", (0.0348, 0.946), (0.0028, 0.528), 180, True),
    ("s0 t24 car, 180 deg off", (0.0592, 0.711), (0.0020, 0.156), 179, True),
    ("s0 t18 truck, right (1.6 deg)", (0.0404, 0.732), (0.0316, 0.193), 180, False),
    ("s1 t24 car, right: under the floor", (0.0028, 0.902), (0.0024, 0.264), 178, False),
    ("s2 t20 stool, right: its colours under the light are no contradiction", (0.0084, 0.878, 0.044),
     (0.0088, 0.441, 0.0068), 179, False),
    ("s0 t10 truck, right; its rival says too little", (0.0024, 0.078), (0.0276, 0.051), 140, False),
])
def test_recorded(case, chosen, rival, turn, refused):
    assert (cleaner_rival(_result(chosen, rival, turn), ConfirmationSettings()) is not None) == refused, case


def test_a_near_turn_is_no_rival():
    """A hypothesis within ``ambiguity_deg`` of the chosen one is the same turn placed differently."""
    assert cleaner_rival(_result((0.04, 0.8), (0.002, 0.5), 10.0), ConfirmationSettings()) is None
