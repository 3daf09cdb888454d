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
                                        sample_live_scene)
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
