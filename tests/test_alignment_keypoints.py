"""The alignment bench's keypoint metric (correspondence/benchmarks/alignment.py): each keypoint's error against
the truth success was judged on (a symmetric object's turn included) and the cause of each error over 5 px."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.benchmarks.alignment import AlignmentBenchConfig, make_scene_trial  # noqa: E402
from correspondence.benchmarks.alignment_scoring import (_keypoint_errors, symmetric_counterparts,  # noqa: E402
                                                         symmetric_target)
from correspondence.keypoint_matching import KeypointMatch  # noqa: E402
from correspondence.world.render import RenderSettings  # noqa: E402
from correspondence.world.symmetry import object_symmetry  # noqa: E402


def _trial(category: str, yaw: float = 180.0):
    config = AlignmentBenchConfig(trials=1, size=160, categories=(category,), max_rotation_deg=yaw, distractors=1)
    settings = RenderSettings(width=160, height=160)
    obj, demo_view, scene = make_scene_trial(np.random.default_rng(3), category, 0, config, settings)
    return obj, demo_view, scene, settings


def test_a_symmetric_turn_moves_each_keypoint_to_its_counterpart():
    """A 2-fold stool turned half a turn is the same image: each corner's truth is then the opposite corner's
    position and visibility (occlusion by the distractor included)."""
    stool, _, scene, _ = _trial("stool")
    symmetry = object_symmetry(stool)
    assert len(symmetry.transforms) == 2
    counterpart = symmetric_counterparts(stool, symmetry.transforms[1])
    names = [k.name for k in stool.keypoints]
    swapped = {"front-left": "rear-right", "front-right": "rear-left", "rear-left": "front-right",
               "rear-right": "front-left"}
    for i, name in enumerate(names):
        part, side = name.split("/")
        assert names[counterpart[i]] == f"{part}/{swapped[side]}"
    live = scene.view.target
    turned = symmetric_target(live, stool, symmetry.transforms[1])
    np.testing.assert_array_equal(turned.keypoints_xy, live.keypoints_xy[counterpart])
    np.testing.assert_array_equal(turned.keypoints_visible, live.keypoints_visible[counterpart])
    assert symmetric_target(live, stool, symmetry.transforms[0]).keypoints_xy.tolist() == live.keypoints_xy.tolist()
    far = np.eye(4)
    far[:3, 3] = (0.5, 0.0, 0.0)
    assert not symmetric_target(live, stool, far).keypoints_visible.any()  # no counterpart: not scored


def test_keypoint_errors_name_their_cause():
    """Exact pose and exact 3D point: no error. A pose 3 cm off: "pose". The right pose but a point moved along
    its ray: "demo point". A published match: "match"."""
    car, demo_view, scene, _ = _trial("car", yaw=30.0)
    live = scene.view.target
    seen = np.flatnonzero(demo_view.keypoints_visible & live.keypoints_visible)
    assert len(seen) >= 4
    names = [car.keypoints[i].name for i in seen[:4]]
    off = scene.truth.copy()
    off[0, 3] += 0.03  # 3 cm to the side

    def result(T, xy, position):
        matches = [KeypointMatch(n, (0.0, 0.0), tuple(p), 1.0, True, 0.0, position=position)
                   for n, p in zip(names, xy)]
        return SimpleNamespace(alignment=SimpleNamespace(success=True, transform=T), matches=matches)

    exact = live.keypoints_xy[seen[:4]]
    report = _keypoint_errors(result(scene.truth, exact, "pose"), car, live, demo_view.pose)
    assert max(report["keypoint_errors_px"]) < 1e-6
    assert not any("cause" in d for d in report["keypoint_detail"].values())
    shifted = exact + 8.0
    causes = {d["cause"] for d in _keypoint_errors(result(scene.truth, shifted, "pose"), car, live,
                                                   demo_view.pose)["keypoint_detail"].values()}
    assert causes == {"demo point"}
    report = _keypoint_errors(result(off, shifted, "pose"), car, live, demo_view.pose)
    assert {d["cause"] for d in report["keypoint_detail"].values()} == {"pose"}
    report = _keypoint_errors(result(scene.truth, shifted, "cell"), car, live, demo_view.pose)
    assert {d["cause"] for d in report["keypoint_detail"].values()} == {"match"}


def test_visibility_verdicts_are_counted_against_the_truth():
    car, demo_view, scene, _ = _trial("car", yaw=180.0)
    live = scene.view.target
    from correspondence.pose_keypoints import KeypointPose
    names = [k.name for k in car.keypoints]
    verdicts = ["visible" if v else "hidden" for v in live.keypoints_visible]
    verdicts[0] = "no live depth"
    poses = [KeypointPose(n, (1.0, 1.0), 1.0, v, (0.0, 0.0), 0.0, False) for n, v in zip(names, verdicts)]
    matches = [KeypointMatch(n, (0.0, 0.0), (1.0, 1.0), 1.0, True, 0.0, position="pose") for n in names]
    result = SimpleNamespace(alignment=SimpleNamespace(success=False), matches=matches, pose_keypoints=poses)
    counts = _keypoint_errors(result, car, live, demo_view.pose)["keypoint_visibility"]
    first = f"true {'visible' if live.keypoints_visible[0] else 'hidden'} / no live depth"
    seen = int(live.keypoints_visible[1:].sum())
    expected = {first: 1, "true visible / visible": seen, "true hidden / hidden": len(names) - 1 - seen}
    assert counts == {k: n for k, n in expected.items() if n}


def test_the_mask_iou_share_counts_trials_without_a_mask_as_below_the_bar():
    """Issue 26's mask target is a share of trials: 'object not found' (no mask) and a mask source's InputError
    are failures of it, not trials left out (the summary once said 100 % where 3 of 32 found no mask)."""
    from correspondence.benchmarks.alignment_report import summarise

    rows = [{"success": True, "mask_iou": 0.9}, {"success": True, "mask_iou": 0.85},
            {"success": False, "mask_iou": None, "reason": "object not found"},
            {"success": False, "reason": "InputError: the mask source found nothing"},
            {"success": False, "mask_iou": 0.5}]
    summary = summarise(rows)
    assert summary["mask_iou_at_least_0.8"] == 40.0
    assert summary["median_mask_iou"] == 0.85  # the median is of the masks there are
    assert summarise([{"success": True}])["mask_iou_at_least_0.8"] is None  # no mask asked for: no figure


def test_a_wrong_published_pose_is_counted_apart_from_a_refusal():
    """A refusal and a wrong pose are both failures, but only the wrong pose misleads a robot: the summary
    counts it as its own share of trials."""
    from correspondence.benchmarks.alignment_report import markdown, summarise

    rows = [{"kind": "same instance, keypoints", "mask_source": "depth", "success": True, "rotation_error_deg": 1.0,
             "translation_error_cm": 0.5},
            {"kind": "same instance, keypoints", "mask_source": "depth", "success": False,
             "rotation_error_deg": 179.0, "translation_error_cm": 3.0},
            {"kind": "same instance, keypoints", "mask_source": "depth", "success": False, "reason": "ambiguous"},
            {"kind": "same instance, keypoints", "mask_source": "depth", "success": False, "reason": "ambiguous"}]
    summary = summarise(rows)
    assert summary["alignment_returned"] == 50.0 and summary["wrong_pose_returned"] == 25.0
    table = markdown(rows, "daisy", 448, {}, {}).splitlines()
    header, row = [c.strip() for c in table[0].split("|")], [c.strip() for c in table[2].split("|")]
    assert row[header.index("wrong pose returned")] == "25.0 %"
