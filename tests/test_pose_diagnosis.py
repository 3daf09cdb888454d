"""``soco bench alignment --diagnose-pose`` (correspondence/benchmarks/pose_diagnosis.py): each trial's true pose is
scored by the pose search's own scorer beside its choice, and the verdict follows from the two."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.api import Matcher  # noqa: E402
from correspondence.benchmarks.alignment import AlignmentBenchConfig  # noqa: E402
from correspondence.benchmarks.pose_diagnosis import run_pose_diagnosis, symmetric_errors  # noqa: E402
from correspondence.world.families import make_instance  # noqa: E402
from correspondence.world.symmetry import object_symmetry  # noqa: E402


def test_symmetric_errors_take_the_nearest_symmetric_pose():
    stool = make_instance("stool", 0)
    symmetry = object_symmetry(stool)
    assert symmetry.order == 2
    demo_pose = np.eye(4)
    demo_pose[2, 3] = 0.6
    truth = np.eye(4)
    turned = truth @ demo_pose @ symmetry.transforms[1] @ np.linalg.inv(demo_pose)  # the stool's other half-turn
    rotation, translation = symmetric_errors(turned, truth, demo_pose, symmetry, demo_pose[:3, 3])
    assert rotation < 1e-6 and translation < 1e-9


def test_the_diagnosis_scores_the_truth_beside_the_choice(tmp_path):
    config = AlignmentBenchConfig(trials=2, size=192, categories=("truck",), max_rotation_deg=20.0, seed=0)
    result = run_pose_diagnosis(Matcher.create("daisy", size=192), config, tmp_path, progress=False)
    rows = json.loads((tmp_path / "pose_diagnosis.json").read_text())
    assert len(rows) == 2 and "verdicts:" in result["markdown"]
    for row in rows:
        assert row["verdict"] in ("ok", "scorer", "generator", "fit", "ambiguous", "choice", "no search")
        if row["verdict"] == "ok":  # a right choice: the truth cannot outscore it by much (the same pose, refined)
            assert row["rotation_error_deg"] < 5 and row["hypotheses"] >= 1
            assert row["true_score"]["score"] <= row["chosen_score"]["score"] + 0.5
        if row["verdict"] == "scorer":
            assert row["true_score"]["score"] < row["chosen_score"]["score"]
    assert any(row["verdict"] == "ok" for row in rows)


def test_an_ambiguous_refusal_is_judged_on_the_truth():
    """The bench says whether a refusal kept a wrong pose away (the refused best wrong) or cost a success (right)."""
    from types import SimpleNamespace

    from correspondence.benchmarks.alignment_scoring import _refusal_errors
    from correspondence.benchmarks.alignment_report import summarise
    from correspondence.pose_search import Hypothesis, PoseScore
    from correspondence.yaw_sweep import _axis_angle

    symmetry = object_symmetry(make_instance("car", 0))
    assert len(symmetry.transforms) == 1  # no symmetry: only the truth itself is right
    demo_pose, truth = np.eye(4), np.eye(4)
    truth[:3, 3] = [0.02, 0.0, 0.1]
    centre = np.array([0.0, 0.0, 0.6])
    turned = np.eye(4)
    turned[:3, :3] = _axis_angle(np.array([0.0, -1.0, 0.0]), np.radians(177.0))
    turned[:3, 3] = centre - turned[:3, :3] @ centre
    score = PoseScore(0.5, 0.5, 0.0, None, 0.5)

    def refused(best, rival):
        search = SimpleNamespace(chosen=Hypothesis("upright", best, score), rivals=(Hypothesis("probe", rival, score),))
        return _refusal_errors(search, symmetry, demo_pose, truth, centre)

    kept_away = refused(truth @ turned, truth)  # the car's case: the best 177 deg off, its rival the truth
    assert not kept_away["refused_best_right"] and kept_away["rival_right"]
    assert kept_away["refused_best_error"][0] == pytest.approx(177.0, abs=1e-6)
    cost = refused(truth, truth @ turned)
    assert cost["refused_best_right"] and not cost["rival_right"] and cost["refused_best_error"][0] < 1e-6
    rows = [{"kind": "same", "ambiguous": True, "success": False, **kept_away},
            {"kind": "same", "ambiguous": True, "success": False, **cost}]
    assert summarise(rows)["ambiguous_refusals"] == {"trials": 2, "best_right": 1, "rival_right": 1}


def test_the_diagnosis_runs_the_benchs_trial_and_refuses_a_multiview_demo(tmp_path):
    """``--only-trials``, ``--depth-noise`` and the demo are the bench's own (``trial_demo``): trial 1 diagnosed
    alone meets the scene a full diagnosis meets (the same yaw), under stereo depth; a multi-view demo is refused
    before any work, since the search runs once per view there."""
    from correspondence.benchmarks.pose_diagnosis import check_diagnosable
    from correspondence.errors import ConfigError

    matcher = Matcher.create("daisy", size=160)
    base = dict(trials=2, size=160, categories=("mug",), max_rotation_deg=20.0, seed=3)
    full = run_pose_diagnosis(matcher, AlignmentBenchConfig(**base), tmp_path / "full", progress=False)["rows"]
    alone = run_pose_diagnosis(matcher, AlignmentBenchConfig(**base, only_trials=(1,), depth_noise="stereo"),
                               tmp_path / "alone", progress=False)["rows"]
    assert [r["trial"] for r in alone] == [1]
    assert alone[0]["yaw_deg"] == pytest.approx(full[1]["yaw_deg"])
    assert "true_score" in alone[0] and "true_score" in full[1]
    assert alone[0]["true_score"] != full[1]["true_score"]  # the truth scored on the stereo depth, not the rendered
    with pytest.raises(ConfigError, match="one-view"):
        check_diagnosable(AlignmentBenchConfig(**base, demo_views=4))
