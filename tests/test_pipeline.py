"""The per-frame pipeline on the procedural world, where the demo-to-live transform is known exactly."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from correspondence.alignment import rotation_error_deg, similarity_2d, translation_error
from correspondence.api import Matcher
from correspondence.demo_spec import DemoSpec
from correspondence.dense_transfer import DenseSettings
from correspondence.errors import ConfigError, InputError
from correspondence.io import KeypointSet, NamedPoint
from correspondence.pipeline import PipelineSettings, TransferPipeline
from correspondence.segmentation import DepthForeground
from correspondence.world.families import make_instance
from correspondence.world.render import Renderer, RenderSettings, look_at_pose

SETTINGS = RenderSettings(width=224, height=224, background="plain")
# The oracle matcher has only keypoint matches (no features for dense matching), and tests the keypoint wiring
# exactly, so ICP must not hide a wiring error.
KEYPOINTS_ONLY = {"alignment_source": "keypoints", "refine": "none"}


def scene(shift=np.zeros(3)):
    """A car seen from one camera, then moved by ``shift`` (metres, object frame): the live frame."""
    car = make_instance("car", 3)
    renderer = Renderer(car)
    pose = look_at_pose(np.array([0.45, 0.35, 0.35]), car.center)
    moved = pose.copy()
    moved[:3, 3] += pose[:3, :3] @ shift
    return car, renderer.render(pose, SETTINGS, seed=1), renderer.render(moved, SETTINGS, seed=1), pose, moved


def demo_from(view, obj) -> DemoSpec:
    points = tuple(NamedPoint(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, view.keypoints_xy,
                                                                      view.keypoints_visible) if v)
    return DemoSpec(source=None, rgb=view.rgb, depth=view.depth, intrinsics=view.intrinsics, mask=view.mask,
                    keypoints=KeypointSet(points), function=None, function_mask=None)


class OracleMatcher:
    """Matches every demo keypoint to its true position in the live view (tests the pipeline's lifting and
    alignment wiring exactly; matching accuracy is a backbone's business)."""

    def __init__(self, obj, live_view):
        self.truth = {k.name: xy for k, xy in zip(obj.keypoints, live_view.keypoints_xy)}

    def __call__(self, demo, keypoints, live, live_mask=None, demo_mask=None):
        from correspondence.keypoint_matching import KeypointMatch, MatchResult
        matches = tuple(KeypointMatch(p.name, p.xy, tuple(self.truth[p.name]), 1.0, True, 0.0) for p in keypoints.points)
        return MatchResult(matches, {}, {"features": 0.0, "matching": 0.0})


def test_known_motion_is_recovered_exactly_with_true_matches():
    car, demo_view, live_view, pose, moved = scene(shift=np.array([0.03, -0.02, 0.01]))
    pipeline = TransferPipeline(demo_from(demo_view, car), OracleMatcher(car, live_view),
                                PipelineSettings(ransac_threshold=0.005, **KEYPOINTS_ONLY),
                                mask_source=DepthForeground((0.1, 2.0)))
    result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
    assert result.mask is not None and result.mask.source == "depth"
    assert result.alignment is not None and result.alignment.success, result.alignment.reason
    truth = moved @ np.linalg.inv(pose)  # demo camera frame -> live camera frame
    assert rotation_error_deg(result.alignment.transform, truth) < 1.0
    assert translation_error(result.alignment.transform, truth) < 0.005
    # support_plane: the table search runs on every RGB-D frame (here none is found: nothing removed)
    assert set(result.timings_s) == {"support_plane", "segmentation", "features", "matching", "alignment"}
    assert result.support_plane is not None and not result.support_plane.found


def test_a_real_backbone_recovers_the_known_motion():
    """DAISY's dense matches drive RANSAC and ICP refines: on this car, moved 3.6 cm, the pose is within 1 deg and
    5 mm of the truth (measured: 0.05 deg, 0.5 mm), and ICP says why it was kept."""
    car, demo_view, live_view, pose, moved = scene(shift=np.array([0.03, -0.02, 0.0]))
    pipeline = TransferPipeline(demo_from(demo_view, car), Matcher.create("daisy", size=224),
                                mask_source=DepthForeground((0.1, 2.0)))
    result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
    alignment = result.alignment
    assert alignment.success, alignment.reason
    truth = moved @ np.linalg.inv(pose)
    assert rotation_error_deg(alignment.transform, truth) < 1.0
    assert translation_error(alignment.transform, truth) < 0.005
    assert alignment.num_inliers >= 4 and result.refinement is not None and result.refinement.reason == "ok"


def test_without_depth_the_result_is_2d():
    car, demo_view, live_view, _, _ = scene(shift=np.array([0.02, 0.0, 0.0]))
    demo = demo_from(demo_view, car)
    demo = DemoSpec(None, demo.rgb, None, None, demo.mask, demo.keypoints, None, None)
    pipeline = TransferPipeline(demo, Matcher.create("daisy", size=224))
    result = pipeline.process(live_view.rgb, mask=live_view.mask)
    assert result.alignment is None and result.alignment_2d is not None
    truth = {k.name: xy for k, xy in zip(car.keypoints, live_view.keypoints_xy)}
    exact = similarity_2d(demo.keypoints.xy, np.array([truth[p.name] for p in demo.keypoints.points]), threshold=3)
    assert result.alignment_2d.success and result.alignment_2d.scale == pytest.approx(exact.scale, abs=0.1)
    assert abs(result.alignment_2d.angle_deg - exact.angle_deg) < 5
    assert np.isnan(result.live_points).all()


def test_rejection_rules_and_bad_frames():
    car, demo_view, live_view, _, _ = scene()
    pipeline = TransferPipeline(demo_from(demo_view, car), Matcher.create("daisy", size=224),
                                PipelineSettings(min_score=1.01, alignment_source="keypoints"))  # nothing can pass
    result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics, mask=live_view.mask)
    assert not result.accepted.any()
    assert not result.alignment.success and result.alignment.transform is None  # a reason, never a pose
    with pytest.raises(InputError, match="live depth is"):
        pipeline.process(live_view.rgb, live_view.depth[:100], live_view.intrinsics)


def _write_frame(folder, view, keypoints=None, mask=True):
    import json

    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(view.rgb).save(folder / "rgb.png")
    Image.fromarray(np.round(view.depth * 1000).astype(np.uint16)).save(folder / "depth.png")
    cam = view.intrinsics
    (folder / "intrinsics.json").write_text(json.dumps({"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
                                                        "width": cam.width, "height": cam.height}))
    if mask:
        Image.fromarray(view.mask.astype(np.uint8) * 255).save(folder / "mask.png")
    if keypoints is not None:
        (folder / "keypoints.json").write_text(json.dumps({"keypoints": keypoints}))


def test_soco_transfer_end_to_end(tmp_path):
    import json

    from correspondence.cli import main
    car, demo_view, live_view, pose, moved = scene(shift=np.array([0.02, 0.0, 0.0]))
    kps = [{"name": k.name, "xy": list(map(float, xy))} for k, xy, v in
           zip(car.keypoints, demo_view.keypoints_xy, demo_view.keypoints_visible) if v]
    _write_frame(tmp_path / "demo", demo_view, kps)
    _write_frame(tmp_path / "live", live_view, mask=False)
    live = tmp_path / "live"
    out = tmp_path / "out"
    code = main(["transfer", "--demo", str(tmp_path / "demo"), "--live-rgb", str(live / "rgb.png"),
                 "--live-depth", str(live / "depth.png"), "--intrinsics", str(live / "intrinsics.json"),
                 "--segmentation", "depth", "--backbone", "daisy", "--size", "224", "--out", str(out)])
    assert code == 0
    record = json.loads((out / "transfer.json").read_text())
    assert record["mode"] == "keypoints" and record["alignment_kind"] == "3d" and record["segmentation"] == "depth" and len(record["matches"]) == len(kps)
    assert (out / "overlay.png").is_file()
    assert record["alignment"]["success"], record["alignment"]
    first = record["matches"][0]  # coarse and refined positions are recorded; no 2D model unless asked for
    assert first["coarse_xy"] is not None
    assert first["position"] in ("cell", "refined", "dense-field", "pose", "pose-hidden")
    assert record["keypoint_geometry"] is None
    assert first["refined_xy"] is not None  # refinement ran (default); with a 3D pose the pose places the keypoint
    if first["position"] == "refined":
        assert first["live_xy"] == first["refined_xy"]
    transform, truth = np.asarray(record["alignment"]["transform"]), moved @ np.linalg.inv(pose)
    assert rotation_error_deg(transform, truth) < 1.0 and translation_error(transform, truth) < 0.005
    assert (out / "aligned.ply").is_file() and (out / "aligned.png").is_file()
    code = main(["transfer", "--demo", str(tmp_path / "demo"), "--live-rgb", str(live / "rgb.png"),
                 "--live-depth", str(live / "depth.png"), "--backbone", "daisy", "--out", str(out)])
    assert code == 1  # depth without intrinsics: a clear error, not a crash
    code = main(["transfer", "--demo", str(tmp_path / "demo"), "--live-rgb", str(live / "rgb.png"),
                 "--segmentation", "grabcut", "--backbone", "daisy", "--size", "224", "--out", str(tmp_path / "o2")])
    assert code == 0 and json.loads((tmp_path / "o2" / "transfer.json").read_text())["alignment_kind"] == "2d"


def test_aligned_clouds_overlap_when_the_transform_is_right(tmp_path):
    from scipy.spatial import cKDTree

    from correspondence.frame_report import write_aligned_clouds
    car, demo_view, live_view, pose, moved = scene(shift=np.array([0.03, -0.02, 0.01]))
    demo = demo_from(demo_view, car)
    pipeline = TransferPipeline(demo, OracleMatcher(car, live_view), PipelineSettings(**KEYPOINTS_ONLY),
                                mask_source=DepthForeground((0.1, 2.0)))
    result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
    write_aligned_clouds(demo, live_view.rgb, live_view.depth, live_view.intrinsics, result, tmp_path)
    lines = (tmp_path / "aligned.ply").read_text().splitlines()
    count = int(next(l for l in lines if l.startswith("element vertex")).split()[-1])
    body = np.array([[float(v) for v in l.split()[:3]] for l in lines[lines.index("end_header") + 1:]])
    assert len(body) == count == demo_view.mask.sum() + result.mask.mask.sum()
    demo_part, live_part = body[:demo_view.mask.sum()], body[demo_view.mask.sum():]
    distance, _ = cKDTree(live_part).query(demo_part)
    assert np.median(distance) < 0.005  # the moved demo cloud lies on the live cloud
    assert (tmp_path / "aligned.png").is_file()


def test_alignment_benchmark_truth_is_consistent_and_reports_are_written(tmp_path):
    """The benchmark's ground truth agrees with the pipeline on true matches; the command writes its reports."""
    from correspondence.alignment import rotation_error_deg
    from correspondence.benchmarks.alignment import (KIND_FUNCTIONAL, KIND_SAME, AlignmentBenchConfig, make_trial,
                                                     object_translation_error, run_alignment_benchmark)
    config = AlignmentBenchConfig(trials=3, size=160, categories=("car", "mug", "bus"), functional_trials=2,
                                  functions=(("mug", "pour-with"), ("spatula", "lift-with")))
    rng = np.random.default_rng(0)
    settings = RenderSettings(width=160, height=160)
    obj, demo_view, live_view, truth, centre = make_trial(rng, "car", 0, config, settings)
    pipeline = TransferPipeline(demo_from(demo_view, obj), OracleMatcher(obj, live_view),
                                PipelineSettings(**KEYPOINTS_ONLY), mask_source=DepthForeground((0.05, 5.0)))
    alignment = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics).alignment
    assert alignment.success
    assert rotation_error_deg(alignment.transform, truth) < 1.5
    assert object_translation_error(alignment.transform, truth, centre) < 0.005
    assert object_translation_error(truth, truth, centre) == 0.0
    result = run_alignment_benchmark(Matcher.create("daisy", size=160), config, tmp_path, progress=False)
    assert result["summary"]["trials"] == 5
    assert [r["kind"] for r in result["rows"]] == [KIND_SAME] * 3 + [KIND_FUNCTIONAL] * 2
    assert set(result["summary"]["by_kind"]) == {KIND_SAME, KIND_FUNCTIONAL}
    assert KIND_FUNCTIONAL in result["markdown"]
    assert all(r["success"] in (True, False) and r.get("reason") for r in result["rows"])
    for name in ("alignment.json", "alignment.md", "alignment_errors.png"):
        assert (tmp_path / name).is_file()


# ------------------------------------------------------------------------------ dense alignment and functional mode

def _bench_trial(category: str, index: int, size: int = 224, seed: int = 1):
    from correspondence.benchmarks.alignment import AlignmentBenchConfig, make_trial
    config = AlignmentBenchConfig(size=size, max_rotation_deg=20)
    rng = np.random.default_rng(seed + index)
    return make_trial(rng, category, index, config, RenderSettings(width=size, height=size))


@pytest.fixture(scope="module")
def daisy_224():
    return Matcher.create("daisy", size=224)


@pytest.mark.parametrize("category,index", [("car", 0), ("truck", 1), ("chair", 3)])
def test_dense_matches_and_icp_recover_a_known_motion_with_a_real_backbone(daisy_224, category, index):
    """Weight-free features on a rotated and shifted object: dense matches give a coarse pose, ICP refines it."""
    from correspondence.alignment import rotation_error_deg
    from correspondence.benchmarks.alignment import object_translation_error
    obj, demo_view, live_view, truth, centre = _bench_trial(category, index)
    demo = demo_from(demo_view, obj)
    demo = DemoSpec(None, demo.rgb, demo.depth, demo.intrinsics, None, demo.keypoints, None, None)  # no demo mask
    result = TransferPipeline(demo, daisy_224, mask_source=DepthForeground((0.05, 5.0))).process(
        live_view.rgb, live_view.depth, live_view.intrinsics)
    assert result.alignment_source == "dense" and len(result.dense) >= 6
    assert result.alignment.success, result.alignment.reason
    assert result.refinement is not None and result.refinement.accepted, result.refinement
    assert result.alignment.solver == "ransac+icp"
    assert rotation_error_deg(result.alignment.transform, truth) < 1.0
    assert object_translation_error(result.alignment.transform, truth, centre) < 0.005
    # the dense matches start inside the demo object (found from the demo depth) and land inside the live mask
    demo_px = np.floor(result.dense.demo_xy).astype(int)
    live_px = np.floor(result.dense.live_xy).astype(int)
    assert demo_view.mask[demo_px[:, 1], demo_px[:, 0]].mean() > 0.9
    assert result.mask.mask[live_px[:, 1], live_px[:, 0]].mean() > 0.9


def test_functional_mode_transfers_the_part_and_aligns_it():
    """A functional demo (function + part mask): dense matches start inside the part, are ranked by the discovery
    score, and (same object, moved) align to the true motion; ICP pulls the part's cloud onto the live object."""
    from correspondence.alignment import rotation_error_deg
    from correspondence.benchmarks.alignment import object_translation_error
    matcher = Matcher.create("daisy", size=320)
    obj, demo_view, live_view, truth, centre = _bench_trial("car", 0, size=320)
    part = demo_view.mask.copy()
    part[:, : int(np.median(np.nonzero(part)[1]))] = False  # the right half of the car stands for the part
    demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, demo_view.mask, None, "pour-with",
                    part)
    mask_source = DepthForeground((0.05, 5.0))
    coarse = TransferPipeline(demo, matcher, PipelineSettings(refine="none"), mask_source=mask_source).process(
        live_view.rgb, live_view.depth, live_view.intrinsics)
    assert coarse.mode == "functional" and coarse.matches == () and len(coarse.dense) >= 10
    px = np.floor(coarse.dense.demo_xy).astype(int)
    assert part[px[:, 1], px[:, 0]].mean() > 0.9
    assert np.all(np.diff(coarse.dense.score) <= 0)  # best first
    assert coarse.alignment.success, coarse.alignment.reason
    assert rotation_error_deg(coarse.alignment.transform, truth) < 10.0
    assert object_translation_error(coarse.alignment.transform, truth, centre) < 0.02
    refined = TransferPipeline(demo, matcher, mask_source=mask_source).process(live_view.rgb, live_view.depth,
                                                                           live_view.intrinsics)
    assert refined.refinement.accepted, refined.refinement.reason
    assert rotation_error_deg(refined.alignment.transform, truth) < 1.0
    assert object_translation_error(refined.alignment.transform, truth, centre) < 0.005
    top3 = TransferPipeline(demo, matcher, PipelineSettings(dense=DenseSettings(top_k=3)),
                            mask_source=mask_source).process(live_view.rgb, live_view.depth, live_view.intrinsics)
    assert len(top3.dense) == 3
    np.testing.assert_allclose(top3.dense.score, coarse.dense.score[:3])


def test_functional_mode_uses_a_trained_head_when_given(daisy_224):
    """The head's embedder is called for demo (once) and live, with the demo's function."""
    obj, demo_view, live_view, _, _ = _bench_trial("car", 0)
    calls = []

    def embedder(image, function):
        calls.append(function)
        return daisy_224.extractor(image), None

    demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, None, None, "cut-with",
                    demo_view.mask)
    pipeline = TransferPipeline(demo, daisy_224, mask_source=DepthForeground((0.05, 5.0)), functional=embedder)
    for _ in range(2):
        pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
    assert calls == ["cut-with"] * 3  # demo once, then each live frame


# ---------------------------------------------------------------------------------------------- bad live input

@pytest.fixture(scope="module")
def car_pipeline(daisy_224):
    car, demo_view, live_view, _, _ = scene(shift=np.array([0.02, 0.0, 0.0]))
    return TransferPipeline(demo_from(demo_view, car), daisy_224, mask_source=DepthForeground((0.1, 2.0))), live_view


def test_depth_units_are_checked(car_pipeline, daisy_224):
    pipeline, live = car_pipeline
    millimetres = np.round(live.depth * 1000).astype(np.uint16)
    with pytest.raises(InputError, match="set depth_scale"):
        pipeline.process(live.rgb, millimetres, live.intrinsics)  # raw uint16 with the default 1 m per unit
    with pytest.raises(InputError, match="looks like millimetres"):
        pipeline.process(live.rgb, millimetres.astype(np.float32), live.intrinsics)  # float millimetres
    scaled = TransferPipeline(pipeline.demo, daisy_224, PipelineSettings(depth_scale=0.001),
                              mask_source=DepthForeground((0.1, 2.0)))
    in_mm = scaled.process(live.rgb, millimetres, live.intrinsics)
    in_m = pipeline.process(live.rgb, live.depth, live.intrinsics)
    assert in_mm.alignment.success == in_m.alignment.success
    if in_m.alignment.success:
        np.testing.assert_allclose(in_mm.alignment.transform, in_m.alignment.transform, atol=2e-3)
    with pytest.raises(ConfigError, match="depth_scale"):
        PipelineSettings(depth_scale=0)


@pytest.mark.parametrize("bad,message", [
    (lambda live: np.zeros_like(live.depth), "no valid value"),
    (lambda live: np.full_like(live.depth, np.nan), "no valid value"),
    (lambda live: live.depth[:, :100], "live depth is 100x224"),
    (lambda live: np.stack([live.depth] * 2, -1), "must be a \\(H, W\\) map"),
])
def test_bad_live_depth_gives_a_specific_error(car_pipeline, bad, message):
    pipeline, live = car_pipeline
    with pytest.raises(InputError, match=message):
        pipeline.process(live.rgb, bad(live), live.intrinsics)


def test_bad_live_frames_give_specific_errors_or_documented_results(car_pipeline, tmp_path):
    from correspondence.camera import CameraIntrinsics
    from correspondence.io import load_image
    from correspondence.segmentation import NoMaskError
    pipeline, live = car_pipeline
    wrong_k = CameraIntrinsics(200.0, 200.0, 50.0, 50.0, 100, 100)
    with pytest.raises(InputError, match="intrinsics are for 100x100"):
        pipeline.process(live.rgb, live.depth, wrong_k)
    with pytest.raises(InputError, match="mask has no foreground pixel"):
        pipeline.process(live.rgb, mask=np.zeros(live.rgb.shape[:2], dtype=bool))
    # a one-pixel object: matches are restricted to the cell that holds it; too few for any pose -> a reason
    one = np.zeros(live.rgb.shape[:2], dtype=bool)
    one[120, 110] = True
    result = pipeline.process(live.rgb, live.depth, live.intrinsics, mask=one)
    assert not result.alignment.success and result.alignment.transform is None and result.alignment.reason
    assert all(abs(m.live_xy[0] - 110.5) < 14 and abs(m.live_xy[1] - 120.5) < 14 for m in result.matches)
    # grayscale and RGBA frames are converted, not rejected
    gray = live.rgb.mean(-1).astype(np.uint8)
    rgba = np.dstack([live.rgb, np.full(live.rgb.shape[:2], 255, np.uint8)])
    for frame in (gray, rgba):
        out = pipeline.process(frame, live.depth, live.intrinsics)
        assert len(out.matches) == len(pipeline.demo.keypoints.points)
    corrupt = tmp_path / "frame.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(InputError, match="frame.png"):
        load_image(corrupt)
    with pytest.raises(InputError):
        pipeline.process(np.zeros((4, 4, 5), dtype=np.uint8))
    assert issubclass(NoMaskError, InputError)


def test_functional_truth_of_the_benchmark_is_the_part_alignment():
    """The functional trial's truth maps the demo part onto the live part: demo part pixels lifted and moved by
    it land on the live instance's part surface."""
    from scipy.spatial import cKDTree

    from correspondence.benchmarks.alignment import AlignmentBenchConfig, make_functional_trial
    settings = RenderSettings(width=160, height=160)
    a, b, demo_view, live_view, truth, centre, part = make_functional_trial(
        np.random.default_rng(0), "mug", "pour-with", 0, AlignmentBenchConfig(), settings)
    assert a.instance_id != b.instance_id and part.sum() > 20
    rows, cols = np.nonzero(part)
    demo_pts = demo_view.intrinsics.unproject(np.stack([cols + 0.5, rows + 0.5], 1), demo_view.depth[rows, cols])
    moved = demo_pts @ truth[:3, :3].T + truth[:3, 3]
    live_part = np.isin(live_view.part_map, [b.part_id(p) for p in b.functional_parts["pour-with"]]) & live_view.mask
    r, c = np.nonzero(live_part)
    live_pts = live_view.intrinsics.unproject(np.stack([c + 0.5, r + 0.5], 1), live_view.depth[r, c])
    distance, _ = cKDTree(live_pts).query(moved)
    assert np.median(distance) < 0.01


def test_soco_transfer_functional_demo(tmp_path):
    import json

    from PIL import Image

    from correspondence.cli import main
    obj, demo_view, live_view, _, _ = _bench_trial("car", 0)
    _write_frame(tmp_path / "demo", demo_view)
    part = demo_view.mask.copy()
    part[:, : int(np.median(np.nonzero(part)[1]))] = False
    Image.fromarray(part.astype(np.uint8) * 255).save(tmp_path / "demo" / "function_mask.png")
    (tmp_path / "demo" / "function.txt").write_text("pour-with\n")
    _write_frame(tmp_path / "live", live_view, mask=False)
    live = tmp_path / "live"
    code = main(["transfer", "--demo", str(tmp_path / "demo"), "--live-rgb", str(live / "rgb.png"),
                 "--live-depth", str(live / "depth.png"), "--intrinsics", str(live / "intrinsics.json"),
                 "--segmentation", "depth", "--backbone", "daisy", "--size", "224", "--top-k", "5",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    record = json.loads((tmp_path / "out" / "transfer.json").read_text())
    assert record["mode"] == "functional" and record["matches"] == [] and 0 < record["dense"]["count"] <= 5
    assert (tmp_path / "out" / "overlay.png").is_file()


def test_features_are_computed_once_per_frame_and_once_for_the_demo():
    """Even with the extractor's cache off (a live stream), dense alignment does not re-extract either image."""
    car, demo_view, live_view, _, _ = scene(shift=np.array([0.02, 0.0, 0.0]))
    matcher = Matcher.create("daisy", size=224, cache_size=0)
    pipeline = TransferPipeline(demo_from(demo_view, car), matcher, mask_source=DepthForeground((0.1, 2.0)))
    for _ in range(2):
        result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
        assert result.alignment_source == "dense" and len(result.dense) > 0
    assert matcher.extractor.cache_misses == 3  # the demo once, then one per live frame
    with pytest.raises(ConfigError, match="alignment_source='keypoints'"):
        TransferPipeline(demo_from(demo_view, car), OracleMatcher(car, live_view))


def test_the_pipeline_states_what_a_matcher_must_be():
    """A Matcher gives dense matching; any keypoint-matcher callable gives keypoints only; anything else is refused
    at construction, not on the first frame."""
    car, demo_view, live_view, _, _ = scene()
    demo = demo_from(demo_view, car)
    with pytest.raises(ConfigError, match="must be a correspondence.Matcher or a callable keypoint matcher"):
        TransferPipeline(demo, object())
    with pytest.raises(ConfigError, match="dense alignment needs a Matcher"):
        TransferPipeline(demo, OracleMatcher(car, live_view))
    TransferPipeline(demo, OracleMatcher(car, live_view), PipelineSettings(**KEYPOINTS_ONLY))


def test_pipeline_takes_the_old_segmenter_keyword_with_a_warning():
    car, demo_view, live_view, _, _ = scene()
    demo, matcher, source = demo_from(demo_view, car), OracleMatcher(car, live_view), DepthForeground((0.1, 2.0))
    settings = PipelineSettings(**KEYPOINTS_ONLY)
    with pytest.warns(DeprecationWarning, match="keyword argument 'segmenter' is renamed 'mask_source'"):
        pipeline = TransferPipeline(demo, matcher, settings, segmenter=source)
    assert pipeline.mask_source is source
    assert pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics).mask.source == "depth"
    with pytest.raises(TypeError, match="got both 'segmenter' and its new name 'mask_source'"):
        TransferPipeline(demo, matcher, settings, mask_source=source, segmenter=source)


def test_alignment_benchmark_on_table_top_scenes_counts_unseen_objects_and_scores_by_condition(tmp_path):
    """Scenes with a distractor and a turn up to 180 deg, each trial with the depth mask and the true mask; a
    shift that takes the object out of view is counted, not raised; the report breaks success down by condition."""
    import dataclasses

    from correspondence.benchmarks.alignment import AlignmentBenchConfig, run_alignment_benchmark
    config = AlignmentBenchConfig(trials=2, size=128, categories=("car", "stool"), max_rotation_deg=180,
                                  max_translation_m=0.1, distractors=1, distance_range=(0.9, 1.3),
                                  mask_sources=("depth", "oracle"))
    matcher = Matcher.create("daisy", size=128)
    result = run_alignment_benchmark(matcher, config, tmp_path, progress=False)
    rows = result["rows"]
    assert [(r["trial"], r["mask_source"]) for r in rows] == [(0, "depth"), (0, "oracle"), (1, "depth"), (1, "oracle")]
    for r in rows:
        assert r["distractors"] == 1 and abs(r["yaw_deg"]) <= 180 and 0.9 <= r["distance_factor"] <= 1.3
        assert r["symmetry"] == ("2-fold" if r["category"] == "stool" else "none")
        if "rotation_error_deg" in r:
            assert {"mssd_m", "adds_m", "mssd_ok", "adds_ok"} <= set(r)
    assert all(r["mask_iou"] == 1.0 for r in rows if r["mask_source"] == "oracle" and "mask_iou" in r)
    assert "true mask (oracle)" in result["markdown"] and "By yaw" in result["markdown"]
    assert set(result["summary"]["by_condition"]["distractors"]) == {"depth", "oracle"}
    for name in ("alignment.json", "alignment.md", "alignment_errors.png", "alignment_by_condition.png"):
        assert (tmp_path / name).is_file()
    # one trial rerun alone meets the scene the full run drew for it, and gets the same outcome
    alone = run_alignment_benchmark(matcher, dataclasses.replace(config, only_trials=(1,), mask_sources=("oracle",)),
                                    tmp_path / "alone", progress=False)["rows"]
    full = next(r for r in rows if r["trial"] == 1 and r["mask_source"] == "oracle")
    assert [r["trial"] for r in alone] == [1]
    assert (alone[0]["yaw_deg"], alone[0]["success"]) == (full["yaw_deg"], full["success"])
    with pytest.raises(ConfigError, match="outside the 2 trials"):
        dataclasses.replace(config, only_trials=(2,))
    far = dataclasses.replace(config, trials=1, max_translation_m=30.0, distractors=0, mask_sources=("oracle",),
                              max_draws=2)
    lost = run_alignment_benchmark(matcher, far, tmp_path / "far", progress=False)
    assert lost["rows"][0]["reason"] == "object not in view" and lost["summary"]["not_in_view"] == 1


def test_bench_alignment_cli_refuses_bad_scene_options_before_loading_a_model(capsys):
    from correspondence.cli import main
    assert main(["bench", "alignment", "--backbone", "daisy", "--max-rotation", "200"]) != 0
    assert "max_rotation_deg must be in [0, 180]" in capsys.readouterr().err
    assert main(["bench", "alignment", "--backbone", "daisy", "--distance-range", "2,1"]) != 0
    assert "distance_range" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "alignment", "--distance-range", "near,far"])


def test_keypoints_follow_the_pose_and_a_wrong_match_is_flagged():
    """With a pose, every demo keypoint is published where the pose puts it (its true projection here) and marked
    as a pose prediction; a match 40 px off is replaced and flagged as disagreeing with the pose."""
    car, demo_view, live_view, pose, moved = scene(shift=np.array([0.03, -0.02, 0.01]))

    class OneWrong(OracleMatcher):
        def __call__(self, *args, **kwargs):
            result = super().__call__(*args, **kwargs)
            first = result.matches[0]
            wrong = dataclasses.replace(first, live_xy=(first.live_xy[0] + 40.0, first.live_xy[1]))
            return dataclasses.replace(result, matches=(wrong,) + tuple(result.matches[1:]))

    pipeline = TransferPipeline(demo_from(demo_view, car), OneWrong(car, live_view),
                                PipelineSettings(ransac_threshold=0.005, alignment_source="keypoints"),
                                mask_source=DepthForeground((0.1, 2.0)))
    result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
    assert result.alignment.success, result.alignment.reason
    truth = {k.name: (xy, v) for k, xy, v in zip(car.keypoints, live_view.keypoints_xy, live_view.keypoints_visible)}
    checked = 0
    for match, predicted in zip(result.matches, result.pose_keypoints):
        xy, visible = truth[match.name]
        if predicted.visibility in ("no demo depth", "out of frame"):  # nothing to predict: the match stands
            assert match.position == "cell"
            continue
        assert match.position in ("pose", "pose-hidden") and match.live_xy == predicted.xy
        if visible and predicted.visible:
            assert np.hypot(*(np.asarray(match.live_xy) - xy)) < 2.0
            checked += 1
    assert checked >= 3
    assert result.pose_keypoints[0].disagrees and result.pose_keypoints[0].match_error_px > 30
    assert not any(p.disagrees for p in result.pose_keypoints[1:] if p.visible)
