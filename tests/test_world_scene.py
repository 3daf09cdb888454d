"""Table-top live scenes (world/scene.py) and symmetry-aware pose errors (world/symmetry.py), checked against
geometry the test computes itself: projections of the demo's keypoints through the drawn motion, depths, and
turns of meshes whose symmetry is known by construction."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.world.families import make_instance  # noqa: E402
from correspondence.world.mesh import MeshBuilder, rot_z  # noqa: E402
from correspondence.world.render import Renderer, RenderSettings, sample_pose  # noqa: E402
from correspondence.world.scene import (SceneNotVisible, SceneSpec, composite, distractor_objects,  # noqa: E402
                                        in_view_fraction, sample_live_scene, table_point_at_pixel)
from correspondence.world.symmetry import add_s, model_points, mssd, object_symmetry  # noqa: E402
from correspondence.world.types import Appearance, ObjectInstance  # noqa: E402
from correspondence.errors import ConfigError  # noqa: E402

SETTINGS = RenderSettings(width=160, height=160)


def _demo(category: str, index: int, seed: int):
    obj = make_instance(category, index)
    rng = np.random.default_rng(seed)
    return obj, sample_pose(rng, obj, intrinsics=SETTINGS.intrinsics), rng


def _apply(T, points):
    return points @ T[:3, :3].T + T[:3, 3]


def test_truth_moves_demo_keypoints_onto_their_live_projections():
    obj, pose, rng = _demo("car", 0, 3)
    spec = SceneSpec(max_rotation_deg=180, max_translation_m=0.15, distance_range=(0.8, 1.4), distractors=2)
    scene = sample_live_scene(rng, obj, pose, spec, SETTINGS, seed=0)
    demo_cam = _apply(pose, obj.keypoint_positions)
    live_xy = SETTINGS.intrinsics.project(_apply(scene.truth, demo_cam))
    np.testing.assert_allclose(live_xy, scene.view.target.keypoints_xy, atol=1e-6)
    np.testing.assert_allclose(scene.truth @ pose, scene.view.poses[0], atol=1e-9)
    assert abs(scene.yaw_deg) <= 180 and scene.shift_m <= 0.15 * np.sqrt(2) + 1e-9
    assert 0.8 <= scene.distance_factor <= 1.4
    assert len(scene.view.objects) == 3
    # other instances of the category and another category of the family
    assert {o.category for o in scene.view.objects[1:]} == {"car", distractor_objects(obj, 2, 0, 0)[1].category}
    assert distractor_objects(obj, 2, 0, 0)[1].category != "car"


def test_composite_keeps_the_nearest_surface_and_hides_occluded_keypoints():
    obj, pose, rng = _demo("mug", 1, 5)
    spec = SceneSpec(max_rotation_deg=180, max_translation_m=0.05, occluders=1, min_visible=0.2)
    scene = sample_live_scene(rng, obj, pose, spec, SETTINGS, seed=1)
    view = scene.view
    alone = [Renderer(o).render(p, SETTINGS, seed=0) for o, p in zip(view.objects, view.poses)]
    stack = np.stack([np.where(a.mask, a.depth, np.inf) for a in alone])
    expected = np.where(np.isfinite(stack.min(0)), stack.argmin(0), -1)
    np.testing.assert_array_equal(view.instance_map, expected)
    np.testing.assert_allclose(view.depth[expected >= 0], stack.min(0)[expected >= 0], atol=1e-6)
    assert (view.target.mask <= alone[0].mask).all() and view.target.mask.sum() == (expected == 0).sum()
    assert view.unoccluded_pixels == alone[0].mask.sum()
    for (x, y), visible in zip(view.target.keypoints_xy, view.target.keypoints_visible):
        if visible:  # a visible keypoint lies on the target's own pixels (or within a pixel of its silhouette)
            r, c = int(y), int(x)
            assert (view.instance_map[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] == 0).any()
    assert view.visible_fraction == pytest.approx(view.target.mask.sum() / alone[0].mask.sum())


def test_camera_distance_factor_scales_the_target_depth():
    obj, pose, rng = _demo("jug", 0, 2)
    scene = sample_live_scene(rng, obj, pose, SceneSpec(max_rotation_deg=0, max_translation_m=0,
                                                        distance_range=(1.5, 1.5), min_in_view=0.5), SETTINGS, seed=0)
    centre = np.asarray(obj.center)[None]
    assert _apply(scene.view.poses[0], centre)[0, 2] == pytest.approx(1.5 * _apply(pose, centre)[0, 2])


def test_a_target_out_of_view_is_reported_not_crashed():
    obj, pose, rng = _demo("mug", 0, 1)
    with pytest.raises(SceneNotVisible, match="not in view in 3 draws") as info:
        sample_live_scene(rng, obj, pose, SceneSpec(max_translation_m=20.0, max_draws=3), SETTINGS, seed=0)
    assert info.value.in_view < 0.9
    with pytest.raises(ConfigError):
        SceneSpec(max_rotation_deg=200)


def test_table_point_at_pixel_lies_on_the_table_under_that_pixel():
    _, pose, _ = _demo("car", 0, 3)
    xy = np.array([17.25, 140.5])
    point = table_point_at_pixel(xy, pose, SETTINGS)
    assert point[2] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(SETTINGS.intrinsics.project(_apply(pose, point[None]))[0], xy, atol=1e-9)
    looking_up = pose.copy()
    looking_up[:3, :3] = pose[:3, :3] @ np.diag([1.0, -1.0, -1.0])  # the camera turned to face away from the table
    assert table_point_at_pixel(np.array([80.0, 80.0]), looking_up, SETTINGS) is None


def test_a_target_that_fills_the_view_still_gets_its_distractors_in_view():
    """A mug at half the demo's distance leaves no draw of its distractors around it in view (one draw allowed):
    they are placed on the free table in view instead, apart from the mug and each partly in the frame."""
    spec = SceneSpec(max_rotation_deg=0, max_translation_m=0, distance_range=(0.5, 0.5), distractors=2,
                     min_in_view=0.5, max_draws=1)
    obj, pose, rng = _demo("mug", 0, 4)
    scene = sample_live_scene(rng, obj, pose, spec, SETTINGS, seed=0)
    assert scene.conditions["distractors_placed"] == "in view"
    view = scene.view
    for k, (other, placed) in enumerate(zip(view.objects[1:], view.poses[1:]), start=1):
        assert in_view_fraction(np.asarray(other.vertices), placed, SETTINGS) >= 0.3
        assert (view.instance_map == k).any()
    # the same draw again: the pass has its own generator, so the same draw gives the same scene
    obj, pose, rng = _demo("mug", 0, 4)
    again = sample_live_scene(rng, obj, pose, spec, SETTINGS, seed=0)
    np.testing.assert_array_equal(again.view.instance_map, view.instance_map)
    obj, pose, rng = _demo("mug", 0, 1)  # here not even the free table in view has room for them: said so
    with pytest.raises(SceneNotVisible, match="distractors found no free place on the table in view"):
        sample_live_scene(rng, obj, pose, spec, SETTINGS, seed=0)


def _cylinder(segments: int = 64, with_handle: bool = False) -> ObjectInstance:
    b = MeshBuilder()
    b.frustum("body", [0, 0, 0], [0, 0, 0.2], 0.05, 0.05, segments)
    if with_handle:
        b.box("handle", [0.06, 0, 0.1], [0.02, 0.01, 0.08])
    v, f, p, names = b.build()
    return ObjectInstance("cyl", "cyl", "test", v, f, p, names, (), {}, Appearance({}), seed=1)


def test_symmetries_found_from_the_mesh_and_bop_errors():
    assert object_symmetry(_cylinder()).order == 0  # continuous
    assert object_symmetry(_cylinder(segments=6)).order == 6
    handled = object_symmetry(_cylinder(with_handle=True))
    assert handled.order == 1 and not handled.symmetric
    cylinder = _cylinder()
    sym, points = object_symmetry(cylinder), model_points(cylinder)
    pose = np.eye(4)
    pose[:3, 3] = (0.1, 0.0, 1.0)
    turned = pose.copy()
    turned[:3, :3] = rot_z(np.radians(77.0))
    assert mssd(turned, pose, points, sym) < 0.01 * sym.diameter  # a turn of a cylinder is no error
    assert add_s(turned, pose, points) < 0.03 * sym.diameter  # the samples' own spacing (1000 on the surface)
    mug = _cylinder(with_handle=True)
    assert mssd(turned, pose, model_points(mug), object_symmetry(mug)) > 0.1 * object_symmetry(mug).diameter
    shifted = pose.copy()
    shifted[0, 3] += 0.03
    assert mssd(shifted, pose, points, sym) == pytest.approx(0.03, abs=1e-6)
    assert object_symmetry(make_instance("car", 0)).order == 1


def test_composite_of_one_object_is_its_render():
    obj, pose, _ = _demo("cup", 0, 4)
    view = composite([Renderer(obj)], [pose], SETTINGS, seed=9)
    alone = Renderer(obj).render(pose, SETTINGS, seed=9)
    np.testing.assert_array_equal(view.rgb, alone.rgb)
    np.testing.assert_array_equal(view.target.mask, alone.mask)
    np.testing.assert_array_equal(view.target.keypoints_visible, alone.keypoints_visible)


def test_a_trial_whose_scene_cannot_be_drawn_gets_a_new_demo_view_without_moving_the_shared_stream(monkeypatch):
    """The bench redraws the demo's camera when no live scene can be drawn around the first one, from a generator of
    its own: the shared stream is left where the first attempt left it, so every later trial's scene is unchanged."""
    import correspondence.benchmarks.alignment as bench

    real, calls = bench.sample_live_scene, []

    def first_fails(rng, *args, **kwargs):
        calls.append(rng)
        if len(calls) == 1:
            raise SceneNotVisible("no room", 0.9, 0.0)
        return real(rng, *args, **kwargs)

    monkeypatch.setattr(bench, "sample_live_scene", first_fails)
    config = bench.AlignmentBenchConfig(trials=1, size=64, max_rotation_deg=180, seed=3)
    rng, twin = np.random.default_rng(7), np.random.default_rng(7)
    obj, _, scene = bench.make_scene_trial(rng, "mug", 0, config, RenderSettings(width=64, height=64))
    assert scene.conditions["demo_redraws"] == 1 and calls[1] is not rng
    sample_pose(twin, obj, intrinsics=RenderSettings(width=64, height=64).intrinsics)
    twin.integers(1 << 30)  # what the first attempt drew from the shared stream: its demo camera and view seed
    assert rng.bit_generator.state == twin.bit_generator.state
