"""Pose at any yaw (correspondence/pose_search.py): global hypotheses recover a large turn from the two depth clouds
alone, a turn that the data cannot fix (a plain cylinder) is reported as ambiguous with no pose, and the score
prefers the true pose to a shifted one, counting points moved into free space."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.alignment import rotation_error_deg  # noqa: E402
from correspondence.icp import masked_cloud  # noqa: E402
from correspondence.pose_search import LiveFrame, PoseSearchSettings, score_pose, search_pose  # noqa: E402
from correspondence.world.families import make_instance  # noqa: E402
from correspondence.world.mesh import MeshBuilder  # noqa: E402
from correspondence.world.render import Renderer, RenderSettings, sample_pose  # noqa: E402
from correspondence.world.scene import table_motion  # noqa: E402
from correspondence.world.types import Appearance, ObjectInstance  # noqa: E402

SETTINGS = RenderSettings(width=192, height=192)


def _pair(obj: ObjectInstance, yaw: float, seed: int = 3):
    rng = np.random.default_rng(seed)
    pose = sample_pose(rng, obj, elevation_deg=(35, 45), intrinsics=SETTINGS.intrinsics)
    renderer = Renderer(obj)
    live_pose = pose @ table_motion(yaw, np.array([0.03, 0.0]), np.asarray(obj.center))
    demo, live = renderer.render(pose, SETTINGS), renderer.render(live_pose, SETTINGS)
    demo_points = masked_cloud(demo.depth, demo.intrinsics, demo.mask, (0.05, 5.0), 2500)
    cloud = masked_cloud(live.depth, live.intrinsics, live.mask, (0.05, 5.0), 2500)
    up = (pose[:3, 2], live_pose[:3, 2])  # the table's +z in each camera (a robot has it from TF)
    return demo_points, LiveFrame(live.depth, live.intrinsics, live.mask, cloud), live_pose @ np.linalg.inv(pose), up


def test_a_large_turn_is_recovered_from_the_clouds_alone():
    demo_points, live, truth, up = _pair(make_instance("chair", 1), 135.0)
    result = search_pose(demo_points, None, live, None, PoseSearchSettings(), up=up)
    assert result.transform is not None, result.reason
    assert rotation_error_deg(result.transform, truth) < 2.0
    assert result.chosen.source != "matches" and result.chosen.refinement.accepted
    assert len(result.hypotheses) > 5


def _cylinder() -> ObjectInstance:
    b = MeshBuilder()
    b.frustum("body", [0, 0, 0], [0, 0, 0.2], 0.06, 0.06, 48)
    v, f, p, names = b.build()
    return ObjectInstance("cyl", "cyl", "test", v, f, p, names, (), {}, Appearance({"body": (0.6, 0.5, 0.4)}), seed=1)


def test_a_turn_the_data_cannot_fix_is_ambiguous_not_a_random_yaw():
    demo_points, live, truth, up = _pair(_cylinder(), 90.0)
    result = search_pose(demo_points, None, live, truth, PoseSearchSettings(), up=up)
    assert result.ambiguous and result.transform is None
    assert result.reason.startswith("ambiguous")
    assert result.chosen is not None  # the best candidate is still there to inspect


def test_the_score_prefers_the_truth_and_counts_free_space():
    demo_points, live, truth, _ = _pair(make_instance("car", 0), 40.0)
    settings = PoseSearchSettings()
    true_score = score_pose(truth, demo_points, None, live, settings)
    towards_camera = truth.copy()
    towards_camera[2, 3] -= 0.05
    shifted = score_pose(towards_camera, demo_points, None, live, settings)
    assert true_score.agreement > 0.9 and true_score.free_space < 0.05
    assert shifted.free_space > 0.5 and shifted.score < true_score.score - 0.5
