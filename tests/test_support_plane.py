"""The support plane (correspondence/support_plane.py) and the table under the scenes' objects (world/table.py),
checked against geometry the test holds: the table's true normal (the table frame's +z in the camera), the scene's
instance map (which pixels are objects, which the table), a plane with known noise, and frames without a table."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.camera import CameraIntrinsics  # noqa: E402
from correspondence.errors import ConfigError, InputError  # noqa: E402
from correspondence.support_plane import SupportPlaneSettings, find_support_plane  # noqa: E402
from correspondence.world.families import make_instance  # noqa: E402
from correspondence.world.render import Renderer, RenderSettings, sample_pose  # noqa: E402
from correspondence.world.scene import SceneSpec, sample_live_scene  # noqa: E402

SETTINGS = RenderSettings(width=160, height=160)
CATEGORIES = ("car", "bus", "truck", "chair", "stool", "mug", "kettle", "jug")


def _scene(category: str, seed: int, table: bool, distractors: int = 2):
    obj = make_instance(category, seed)
    rng = np.random.default_rng(seed)
    pose = sample_pose(rng, obj, intrinsics=SETTINGS.intrinsics)
    spec = SceneSpec(max_rotation_deg=180, max_translation_m=0.1, distractors=distractors, table=table)
    return sample_live_scene(rng, obj, pose, spec, SETTINGS, seed=seed)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def test_the_table_leaves_every_object_truth_unchanged_and_fills_the_rest():
    plain, table = _scene("mug", 1, False), _scene("mug", 1, True)  # the same draws: the table uses no rng
    a, b = plain.view, table.view
    np.testing.assert_array_equal(a.instance_map, b.instance_map)
    np.testing.assert_array_equal(a.target.mask, b.target.mask)
    np.testing.assert_array_equal(a.target.keypoints_visible, b.target.keypoints_visible)
    np.testing.assert_array_equal(a.target.depth, b.target.depth)
    np.testing.assert_allclose(plain.truth, table.truth)
    objects = a.instance_map >= 0
    np.testing.assert_array_equal(a.depth[objects], b.depth[objects])
    np.testing.assert_array_equal(a.rgb[objects], b.rgb[objects])
    off = ~objects
    assert (a.depth[off] == 0).all() and (b.depth[off] > 0).mean() > 0.9  # the table fills most of the rest
    # the table's depth is the plane z = level of the table frame, below every object (never in front of one)
    points = SETTINGS.intrinsics.pixel_rays()[off & (b.depth > 0)] * b.depth[off & (b.depth > 0)][:, None]
    in_table = (points - table.camera_pose[:3, 3]) @ table.camera_pose[:3, :3]
    assert np.ptp(in_table[:, 2]) < 1e-5 and in_table[:, 2].max() <= 0.0


@pytest.mark.parametrize("with_up", [True, False])
@pytest.mark.parametrize("category", ["mug", "truck"])
def test_the_table_is_found_and_removed_and_the_objects_stay(category, with_up):
    scene = _scene(category, 2, True)
    view = scene.view
    up = scene.camera_pose[:3, 2]
    plane = find_support_plane(view.depth, view.target.intrinsics, up if with_up else None)
    assert plane.found, plane.reason
    assert _angle_deg(plane.normal, up) < 1.0  # the table frame's +z, seen from the live camera
    table = (view.instance_map < 0) & (view.depth > 0)
    assert plane.removed[table].mean() > 0.99
    target = view.target_mask
    assert plane.removed[target].mean() < 0.05  # the band (3 mm here) takes the target's lowest rim only
    assert not plane.removed[view.depth == 0].any()
    # heights above the table: the target's top is its height (the table sits 0.1 % of its size under it)
    top = np.nanmax(np.where(target, plane.height, np.nan))
    assert abs(top - float(np.ptp(np.asarray(scene.view.objects[0].vertices)[:, 2]))) < 0.01
    cleaned = plane.without_plane(view.depth)
    assert (cleaned[table] == 0).mean() > 0.99 and (cleaned[target] == view.depth[target]).mean() > 0.95


@pytest.mark.parametrize("category", CATEGORIES)
def test_a_frame_without_a_table_comes_out_exactly_as_it_went_in(category):
    for seed in (0, 3):
        scene = _scene(category, seed, False, distractors=seed % 3)
        depth = scene.view.depth
        for up in (scene.camera_pose[:3, 2], None):
            plane = find_support_plane(depth, scene.view.target.intrinsics, up)
            assert not plane.found, plane.reason
            assert not plane.removed.any() and plane.height is None
            assert plane.without_plane(depth) is depth  # the very array: every later stage sees what it saw before


def test_the_band_follows_the_depth_noise_and_a_box_on_the_plane_survives():
    """A tilted plane seen with 2 mm of depth noise, a 5 cm box on it: the noise measured, the band ~3 sigma."""
    K = CameraIntrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)
    rng = np.random.default_rng(0)
    normal = np.array([0.0, -np.sin(np.radians(50)), -np.cos(np.radians(50))])  # up: a table seen from 50 deg above
    offset = 0.6  # the camera 60 cm above it
    rays = K.pixel_rays()
    depth = -offset / (rays @ normal)  # height n . (z ray) + d = 0 on the table
    box = (np.abs(np.arange(320) - 160)[None, :] < 30) & (np.abs(np.arange(240) - 120)[:, None] < 30)
    box_height = 0.05
    depth = np.where(box, -(offset - box_height) / (rays @ normal), depth)  # the box's top face, 5 cm up
    noisy = (depth + rng.normal(0, 0.002, depth.shape)).astype(np.float32)
    plane = find_support_plane(noisy, K, normal)
    assert plane.found, plane.reason
    assert _angle_deg(plane.normal, normal) < 1.0
    assert abs(plane.offset - offset) < 0.003
    # the height noise is the depth noise times the cosine between the ray and the normal (about 0.6-0.75 here)
    assert 0.001 < plane.noise < 0.0018 and plane.band == pytest.approx(3 * plane.noise)
    assert plane.removed[box].mean() < 0.01 and plane.removed[~box].mean() > 0.99
    assert np.nanmedian(plane.height[box]) == pytest.approx(box_height, abs=0.002)
    # without the vertical: the largest plane, the same one
    assert _angle_deg(find_support_plane(noisy, K).normal, normal) < 1.0


def test_a_floor_past_the_tables_edge_is_allowed_an_objects_face_is_not():
    K = CameraIntrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)
    up = np.array([0.0, -np.sin(np.radians(60)), -np.cos(np.radians(60))])
    rays, rows = K.pixel_rays(), np.arange(240)[:, None]

    def at_height(h):  # the depth of the surface ``h`` metres above a table 60 cm below the camera
        return ((h - 0.6) / (rays @ up)).astype(np.float32)

    depth = np.where(rows < 80, at_height(-0.7), at_height(0.0))  # the top third: the floor, 70 cm lower
    plane = find_support_plane(depth, K, up)
    assert plane.found and plane.removed.all()  # the table and, beneath it, the floor
    # a face with the object's body continuing just beyond it (a box's top and its sides): not a support
    face = np.where(rows < 160, at_height(0.0), at_height(-0.005 - 0.02 * (rows - 160) / 80.0))
    rejected = find_support_plane(face, K, up)
    assert not rejected.found and "beyond" in rejected.reason and not rejected.removed.any(), rejected.reason


def test_bad_settings_and_input_are_refused():
    with pytest.raises(ConfigError):
        SupportPlaneSettings(min_band=0.02, max_band=0.01)
    with pytest.raises(ConfigError):
        SupportPlaneSettings(max_tilt_deg=0)
    K = CameraIntrinsics(100.0, 100.0, 32.0, 32.0, 64, 64)
    with pytest.raises(InputError, match="does not match"):
        find_support_plane(np.ones((10, 10), np.float32), K)
    with pytest.raises(InputError, match="up"):
        find_support_plane(np.ones((64, 64), np.float32), K, np.zeros(3))


@pytest.fixture(scope="module")
def table_trial():
    """A bench trial on a table (bench alignment --table): a kettle's demo view and a live scene with two others."""
    from correspondence.world.table import view_on_table

    settings = RenderSettings(width=224, height=224)
    obj = make_instance("kettle", 0)
    rng = np.random.default_rng(0)
    pose = sample_pose(rng, obj, intrinsics=settings.intrinsics)
    demo = view_on_table(Renderer(obj).render(pose, settings, seed=1), obj, settings)
    spec = SceneSpec(max_rotation_deg=20, max_translation_m=0.05, distractors=2, table=True)
    return obj, demo, sample_live_scene(rng, obj, pose, spec, settings, seed=0)


def _table_pipeline(demo, plane: bool):
    from correspondence.api import Matcher
    from correspondence.demo_spec import DemoSpec
    from correspondence.io import KeypointSet, NamedPoint
    from correspondence.pipeline import PipelineSettings, TransferPipeline
    from correspondence.segmentation import DepthForeground

    visible = [(f"k{i}", tuple(xy)) for i, (xy, v) in enumerate(zip(demo.keypoints_xy, demo.keypoints_visible)) if v]
    spec = DemoSpec(None, demo.rgb, demo.depth, demo.intrinsics, demo.mask,
                    KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None)
    settings = PipelineSettings(refine="none", support_plane=SupportPlaneSettings() if plane else None)
    return TransferPipeline(spec, Matcher.create("daisy", size=224, cache_size=2), settings,
                            DepthForeground((0.05, 5.0)))


def test_the_pipeline_finds_the_object_on_a_table_with_the_depth_mask_source(table_trial):
    obj, demo, scene = table_trial
    live, truth = scene.view, scene.view.target_mask
    up = (demo.pose[:3, 2], scene.camera_pose[:3, 2])
    result = _table_pipeline(demo, True).process(live.rgb, live.depth, live.target.intrinsics, up=up)
    assert result.support_plane is not None and result.support_plane.found, result.support_plane
    assert "support_plane" in result.timings_s
    from correspondence.benchmarks.alignment_report import stage_latency  # the bench's latency table shows its cost
    latency = stage_latency([{"timings_s": result.timings_s}, {"timings_s": result.timings_s}])
    assert latency["support_plane"]["median_ms"] == pytest.approx(1e3 * result.timings_s["support_plane"])
    assert list(latency)[0] == "support_plane"  # first: it runs before everything else
    import json

    from correspondence.frame_report import frame_record
    record = json.loads(json.dumps(frame_record(result)))["support_plane"]  # the frame's JSON says what was removed
    assert record["found"] and record["removed_px"] == int(result.support_plane.removed.sum())
    iou = (result.mask.mask & truth).sum() / (result.mask.mask | truth).sum()
    assert iou >= 0.8, (iou, result.mask.details)
    # without the removal the table joins the object's surface: the mask is mostly table
    joined = _table_pipeline(demo, False).process(live.rgb, live.depth, live.target.intrinsics, up=up)
    assert joined.support_plane is None
    assert joined.mask is None or (joined.mask.mask & truth).sum() / (joined.mask.mask | truth).sum() < 0.5


def test_a_demo_on_a_table_without_a_mask_gets_its_object_not_the_table(table_trial):
    """The demo's own depth foreground (a demo recorded without a mask) takes the table out too (no gravity)."""
    from dataclasses import replace

    obj, demo, _ = table_trial
    unmasked = replace(demo, mask=np.zeros_like(demo.mask))
    pipeline = _table_pipeline(unmasked, True)
    pipeline.demo = replace(pipeline.demo, mask=None)
    found = pipeline._depth_foreground()
    assert (found & demo.mask).sum() / (found | demo.mask).sum() >= 0.9
    pipeline.settings = replace(pipeline.settings, support_plane=None)
    joined = pipeline._depth_foreground()
    assert (joined & demo.mask).sum() / (joined | demo.mask).sum() < 0.5


def test_bench_alignment_table_puts_the_demo_and_the_live_scene_on_the_table():
    from correspondence.benchmarks.alignment import AlignmentBenchConfig, make_scene_trial

    settings = RenderSettings(width=128, height=128)
    trials = {}
    for table in (False, True):
        config = AlignmentBenchConfig(size=128, max_rotation_deg=180, distractors=1, table=table)
        assert config.scene.table is table
        trials[table] = make_scene_trial(np.random.default_rng(4), "jug", 0, config, settings)
    (_, demo, scene), (_, demo_t, scene_t) = trials[False], trials[True]
    np.testing.assert_array_equal(demo.mask, demo_t.mask)  # the same draws, the same truth
    np.testing.assert_array_equal(scene.view.instance_map, scene_t.view.instance_map)
    assert (demo.depth[~demo.mask] == 0).all() and (demo_t.depth[~demo_t.mask] > 0).mean() > 0.9
    assert (scene_t.view.depth[scene_t.view.instance_map < 0] > 0).mean() > 0.9


def test_a_big_box_top_that_fails_leaves_the_table_around_it_to_be_found():
    """The largest level plane is a box's top seen close (its side continues just beyond it): the next plane, the
    table, is the support; the box stays whole."""
    K = CameraIntrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)
    up = np.array([0.0, -np.sin(np.radians(60)), -np.cos(np.radians(60))])
    rays, rows = K.pixel_rays(), np.arange(240)[:, None] + np.zeros((1, 320))
    height = np.where(rows < 80, 0.0, np.where(rows < 180, 0.17, 0.165 - 0.065 * (rows - 180) / 60.0))
    depth = ((height - 0.6) / (rays @ up)).astype(np.float32)
    plane = find_support_plane(depth, K, up)
    assert plane.found, plane.reason
    assert abs(plane.offset - 0.6) < 1e-3 and _angle_deg(plane.normal, up) < 0.5
    assert plane.removed[:80].all() and not plane.removed[80:].any()
    only_first = find_support_plane(depth, K, up, SupportPlaneSettings(planes=1))
    assert not only_first.found and "beyond" in only_first.reason
