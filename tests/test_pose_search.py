"""Pose at any yaw (correspondence/pose_search.py, correspondence/yaw_sweep.py): global hypotheses recover a large
turn from the two depth clouds alone, a turn that the data cannot fix (a plain cylinder) is reported as ambiguous
with no pose, and the score prefers the true pose to a shifted one, counting points moved into free space. With
gravity known, the upright yaw sweep and the colour term find a vehicle turned by 150 deg, whose seen side laid on
the live seen side (the 180 deg flip) fits the depth as well as the truth: before them (commit 831bd44) that case
came out 180 deg off."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.alignment import rotation_error_deg  # noqa: E402
from correspondence.icp import masked_pixels_and_cloud  # noqa: E402
from correspondence.pose_search import LiveFrame, PoseSearchSettings, score_pose, search_pose  # noqa: E402
from correspondence.world.families import make_instance  # noqa: E402
from correspondence.world.mesh import MeshBuilder  # noqa: E402
from correspondence.world.render import Renderer, RenderSettings, sample_pose  # noqa: E402
from correspondence.world.scene import table_motion  # noqa: E402
from correspondence.world.types import Appearance, ObjectInstance  # noqa: E402
from correspondence.yaw_sweep import upright_rotations  # noqa: E402

SETTINGS = RenderSettings(width=192, height=192)


def _pair(obj: ObjectInstance, yaw: float, seed: int = 3):
    rng = np.random.default_rng(seed)
    pose = sample_pose(rng, obj, elevation_deg=(35, 45), intrinsics=SETTINGS.intrinsics)
    renderer = Renderer(obj)
    live_pose = pose @ table_motion(yaw, np.array([0.03, 0.0]), np.asarray(obj.center))
    demo, live = renderer.render(pose, SETTINGS), renderer.render(live_pose, SETTINGS)
    xy, demo_points = masked_pixels_and_cloud(demo.depth, demo.intrinsics, demo.mask, (0.05, 5.0), 2500)
    colors = demo.rgb[xy[:, 1].astype(int), xy[:, 0].astype(int)]  # the demo points' colours (the colour term)
    _, cloud = masked_pixels_and_cloud(live.depth, live.intrinsics, live.mask, (0.05, 5.0), 2500)
    up = (pose[:3, 2], live_pose[:3, 2])  # the table's +z in each camera (a robot has it from TF)
    frame = LiveFrame(live.depth, live.intrinsics, live.mask, cloud, None, live.rgb)
    return demo_points, colors, frame, live_pose @ np.linalg.inv(pose), up


def test_a_large_turn_is_recovered_from_the_clouds_alone():
    demo_points, _, live, truth, up = _pair(make_instance("chair", 1), 135.0)
    result = search_pose(demo_points, None, live, None, PoseSearchSettings(), up=up)
    assert result.transform is not None, result.reason
    assert rotation_error_deg(result.transform, truth) < 2.0
    # the guarded ICP ran on it: kept, or undone because it lowered the score (with the sweep's placement the
    # chosen turn is 0.8 deg off at score 0.26; its ICP goes to 2.0 deg at 0.16, what c92b785 returned)
    assert result.chosen.source != "matches" and result.chosen.refinement is not None
    assert len(result.hypotheses) > 5


def _cylinder() -> ObjectInstance:
    b = MeshBuilder()
    b.frustum("body", [0, 0, 0], [0, 0, 0.2], 0.06, 0.06, 48)
    v, f, p, names = b.build()
    return ObjectInstance("cyl", "cyl", "test", v, f, p, names, (), {}, Appearance({"body": (0.6, 0.5, 0.4)}), seed=1)


def test_a_turn_the_data_cannot_fix_is_ambiguous_not_a_random_yaw():
    demo_points, _, live, truth, up = _pair(_cylinder(), 90.0)
    result = search_pose(demo_points, None, live, truth, PoseSearchSettings(), up=up)
    assert result.ambiguous and result.transform is None
    assert result.reason.startswith("ambiguous")
    assert result.chosen is not None  # the best candidate is still there to inspect
    # and the rivals that made it refuse, each turned at least ambiguity_deg from it: the bench judges both on the truth
    assert result.rivals and all(rotation_error_deg(h.transform, result.chosen.transform)
                                 >= PoseSearchSettings().ambiguity_deg for h in result.rivals)
    assert f"{result.rivals[0].score.score:.3f}" in result.reason


def test_the_score_prefers_the_truth_and_counts_free_space():
    demo_points, _, live, truth, _ = _pair(make_instance("car", 0), 40.0)
    settings = PoseSearchSettings()
    true_score = score_pose(truth, demo_points, None, live, settings)
    towards_camera = truth.copy()
    towards_camera[2, 3] -= 0.05
    shifted = score_pose(towards_camera, demo_points, None, live, settings)
    assert true_score.agreement > 0.9 and true_score.free_space < 0.05
    assert shifted.free_space > 0.5 and shifted.score < true_score.score - 0.5


def test_upright_rotations_keep_the_vertical_and_cover_every_turn():
    up_demo, up_live = np.array([0.1, -0.8, -0.5]), np.array([-0.3, -0.7, -0.6])
    rotations = upright_rotations(up_demo, up_live, 30.0)
    assert len(rotations) == 12
    for R in rotations:
        np.testing.assert_allclose(R @ up_demo / np.linalg.norm(up_demo), up_live / np.linalg.norm(up_live), atol=1e-9)
    turns = [rotation_error_deg(np.pad(a, ((0, 1), (0, 1))) + np.diag([0, 0, 0, 1.0]),
                                np.pad(b, ((0, 1), (0, 1))) + np.diag([0, 0, 0, 1.0]))
             for a, b in zip(rotations, rotations[1:])]
    np.testing.assert_allclose(turns, 30.0, atol=1e-6)


def test_a_150_degree_turn_of_an_asymmetric_object_is_found_by_the_yaw_sweep_and_colour():
    demo_points, colors, live, truth, up = _pair(make_instance("truck", 1), -150.0)
    result = search_pose(demo_points, None, live, None, PoseSearchSettings(), up=up, demo_colors=colors)
    assert result.transform is not None, result.reason
    assert rotation_error_deg(result.transform, truth) < 5.0
    # the flips (the seen side laid on the seen side) were proposed and lost: they put colours on other colours
    flips = [h for h in result.hypotheses if rotation_error_deg(h.transform, truth) > 150]
    assert flips and all(h.score.score < result.chosen.score.score for h in flips)
    assert max(h.score.color_mismatch for h in flips) > 0.05
    truth_score = score_pose(truth, demo_points, None, live, PoseSearchSettings(), colors)
    assert truth_score.color_mismatch is not None and truth_score.color_mismatch < 0.05


def test_a_plain_cylinder_stays_ambiguous_with_colours_and_the_sweep():
    demo_points, colors, live, truth, up = _pair(_cylinder(), 120.0)
    result = search_pose(demo_points, None, live, None, PoseSearchSettings(), up=up, demo_colors=colors)
    assert result.ambiguous and result.transform is None, result.reason
    assert result.reason.startswith("ambiguous")


def _with_demo_view(obj: ObjectInstance, yaw: float, seed: int = 3):
    """``_pair`` plus the demo view as the pose search sees it (its depth, mask and image) and the demo pose."""
    demo_points, colors, live, truth, up = _pair(obj, yaw, seed)
    pose = sample_pose(np.random.default_rng(seed), obj, elevation_deg=(35, 45), intrinsics=SETTINGS.intrinsics)
    demo = Renderer(obj).render(pose, SETTINGS)
    return demo_points, colors, live, truth, up, LiveFrame(demo.depth, demo.intrinsics, demo.mask, demo_points,
                                                           None, demo.rgb), pose


def test_a_2_fold_symmetric_stool_turned_is_returned_and_right_by_mssd_not_refused():
    """The stool's 180-deg rival puts its surface where the truth does: before (no demo view, commit 99dfe6e's rule)
    the search refused it as ambiguous; now it returns a pose that BOP's MSSD judges right."""
    from correspondence.world.symmetry import model_points, mssd, object_symmetry

    obj = make_instance("stool", 0)
    demo_points, colors, live, truth, up, demo_view, pose = _with_demo_view(obj, -114.0, seed=0)
    before = search_pose(demo_points, None, live, None, PoseSearchSettings(), up=up, demo_colors=colors)
    assert before.ambiguous and before.transform is None, before.reason
    after = search_pose(demo_points, None, live, None, PoseSearchSettings(), up=up, demo_colors=colors,
                        demo_view=demo_view)
    assert not after.ambiguous and after.transform is not None, after.reason
    assert after.equivalent and "same place" in after.reason
    symmetry = object_symmetry(obj)
    assert symmetry.order == 2
    error = mssd(after.transform @ pose, truth @ pose, model_points(obj), symmetry)
    assert error < 0.1 * symmetry.diameter


def test_equivalent_poses_tells_a_symmetry_from_a_flip_by_the_demo_view_alone():
    """The stool's true 2-fold turn maps the demo view onto itself; a car turned by 180 deg (bonnet where the boot
    was) and a mug turned by 30 deg (its handle in the air) put the surface elsewhere."""
    from correspondence.pose_equivalence import equivalent_poses
    from correspondence.world.symmetry import object_symmetry

    settings = PoseSearchSettings()
    stool = make_instance("stool", 0)
    demo_points, _, _, truth, _, demo_view, pose = _with_demo_view(stool, 40.0, seed=0)
    turn = object_symmetry(stool).transforms[1]  # object frame
    assert equivalent_poses(truth, truth @ pose @ turn @ np.linalg.inv(pose), demo_points, demo_view, settings)
    assert not equivalent_poses(truth, truth, demo_points, None, settings)  # no demo view: nothing to judge by
    for category, yaw in (("car", 180.0), ("mug", 30.0)):
        obj = make_instance(category, 0)
        demo_points, _, _, truth, _, demo_view, pose = _with_demo_view(obj, 40.0, seed=0)
        turned_obj = table_motion(yaw, np.zeros(2), np.asarray(obj.center))
        rival = truth @ pose @ turned_obj @ np.linalg.inv(pose)
        assert not equivalent_poses(truth, rival, demo_points, demo_view, settings), category


def test_when_the_icp_refuses_every_proposal_the_best_upright_pose_still_stands(monkeypatch):
    """Issue 26 (one view, seed 2, a stool): the ICP refused the fits of the top-ranked proposals (FPFH, FGR and
    turns count only once verified) and the search returned no pose, though upright poses, which stand without the
    ICP, were scored lower down. The best of those is now the pose (and the ambiguity and confirmation rules judge
    it as any)."""
    import correspondence.pose_search as module
    from correspondence.icp import IcpResult

    demo_points, colors, live, truth, up = _pair(make_instance("truck", 2), 40.0)
    proposals = [("fpfh-ransac", truth @ module._about(np.diag([-1.0, -1.0, 1.0]), demo_points.mean(0)))]  # a flip
    # the ICP is tried on the proposals only (on the bench they ranked above the upright poses) and refuses them
    monkeypatch.setattr(module, "_distinct", lambda candidates, k, centre: [
        h for h in candidates if h.source == "fpfh-ransac"][:k])
    monkeypatch.setattr(module, "global_hypotheses", lambda *a, **k: proposals)
    monkeypatch.setattr(module, "refine", lambda points, target, start, *a, **k: IcpResult(
        False, start, 0.0, 0.0, float("nan"), 0.0, 0.0, "refused (test)"))
    settings = PoseSearchSettings(refine_top=1, turn_step_deg=0.0, early_stop_score=None)
    scored = search_pose(demo_points, None, live, None, settings, up=up, demo_colors=colors)
    assert scored.chosen is not None and scored.chosen.source == "upright", scored.reason
    assert rotation_error_deg(scored.transform, truth) < 5.0  # the best upright pose: the nearest turn, placed
    no_sweep = search_pose(demo_points, None, live, None, PoseSearchSettings(refine_top=1, turn_step_deg=0.0,
                                                                             sweep_step_deg=0.0), up=up)
    assert no_sweep.transform is None and "refused the fits of all 1 best proposals" in no_sweep.reason
