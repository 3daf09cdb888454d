"""The per-frame pipeline on the procedural world, where the demo-to-live transform is known exactly."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.alignment import rotation_error_deg, translation_error
from correspondence.api import Matcher
from correspondence.demo_spec import DemoSpec
from correspondence.errors import InputError
from correspondence.io import KeypointSet, NamedPoint
from correspondence.pipeline import PipelineSettings, TransferPipeline
from correspondence.segmentation import DepthForeground
from correspondence.world.families import make_instance
from correspondence.world.render import Renderer, RenderSettings, look_at_pose

SETTINGS = RenderSettings(width=224, height=224, background="plain")


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
                                PipelineSettings(ransac_threshold=0.005), segmenter=DepthForeground((0.1, 2.0)))
    result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
    assert result.mask is not None and result.mask.provider == "depth"
    assert result.alignment is not None and result.alignment.success, result.alignment.reason
    truth = moved @ np.linalg.inv(pose)  # demo camera frame -> live camera frame
    assert rotation_error_deg(result.alignment.transform, truth) < 1.0
    assert translation_error(result.alignment.transform, truth) < 0.005
    assert set(result.timings_s) == {"segmentation", "features", "matching", "alignment"}


def test_a_real_backbone_gives_a_pose_or_a_reason():
    """DAISY on a handful of keypoints is coarse (about one 14 px patch): either a pose with its inliers and
    RMSE, or an explicit failure without a transform — never a silent wrong answer."""
    car, demo_view, live_view, pose, moved = scene(shift=np.array([0.03, -0.02, 0.0]))
    pipeline = TransferPipeline(demo_from(demo_view, car), Matcher.create("daisy", size=224),
                                segmenter=DepthForeground((0.1, 2.0)))
    alignment = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics).alignment
    if alignment.success:
        assert alignment.transform.shape == (4, 4) and alignment.num_inliers >= 4 and alignment.rmse < 0.01
    else:
        assert alignment.transform is None and alignment.reason in ("not enough inliers", "degenerate",
                                                                    "not enough correspondences")


def test_without_depth_the_result_is_2d():
    car, demo_view, live_view, _, _ = scene(shift=np.array([0.02, 0.0, 0.0]))
    demo = demo_from(demo_view, car)
    demo = DemoSpec(None, demo.rgb, None, None, demo.mask, demo.keypoints, None, None)
    pipeline = TransferPipeline(demo, Matcher.create("daisy", size=224))
    result = pipeline.process(live_view.rgb, mask=live_view.mask)
    assert result.alignment is None and result.alignment_2d is not None
    assert result.alignment_2d.success and result.alignment_2d.scale == pytest.approx(1.0, abs=0.1)
    assert np.isnan(result.live_points).all()


def test_rejection_rules_and_bad_frames():
    car, demo_view, live_view, _, _ = scene()
    pipeline = TransferPipeline(demo_from(demo_view, car), Matcher.create("daisy", size=224),
                                PipelineSettings(min_score=1.01))  # nothing can pass
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
    car, demo_view, live_view, _, _ = scene(shift=np.array([0.02, 0.0, 0.0]))
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
    assert record["mode"] == "3d" and record["segmentation"] == "depth" and len(record["matches"]) == len(kps)
    assert (out / "overlay.png").is_file()
    if record["alignment"]["success"]:
        assert np.asarray(record["alignment"]["transform"]).shape == (4, 4)
        assert (out / "aligned.ply").is_file() and (out / "aligned.png").is_file()
    else:
        assert record["alignment"]["transform"] is None
    code = main(["transfer", "--demo", str(tmp_path / "demo"), "--live-rgb", str(live / "rgb.png"),
                 "--live-depth", str(live / "depth.png"), "--backbone", "daisy", "--out", str(out)])
    assert code == 1  # depth without intrinsics: a clear error, not a crash
    code = main(["transfer", "--demo", str(tmp_path / "demo"), "--live-rgb", str(live / "rgb.png"),
                 "--segmentation", "grabcut", "--backbone", "daisy", "--size", "224", "--out", str(tmp_path / "o2")])
    assert code == 0 and json.loads((tmp_path / "o2" / "transfer.json").read_text())["mode"] == "2d"


def test_aligned_clouds_overlap_when_the_transform_is_right(tmp_path):
    from scipy.spatial import cKDTree

    from correspondence.cli.transfer_cmd import write_aligned_clouds
    car, demo_view, live_view, pose, moved = scene(shift=np.array([0.03, -0.02, 0.01]))
    demo = demo_from(demo_view, car)
    pipeline = TransferPipeline(demo, OracleMatcher(car, live_view), segmenter=DepthForeground((0.1, 2.0)))
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
    from correspondence.benchmarks.alignment import (AlignmentBenchConfig, make_trial, object_translation_error,
                                                     run_alignment_benchmark)
    config = AlignmentBenchConfig(trials=3, size=160, categories=("car", "mug", "bus"))
    rng = np.random.default_rng(0)
    settings = RenderSettings(width=160, height=160)
    obj, demo_view, live_view, truth, centre = make_trial(rng, "car", 0, config, settings)
    pipeline = TransferPipeline(demo_from(demo_view, obj), OracleMatcher(obj, live_view),
                                segmenter=DepthForeground((0.05, 5.0)))
    alignment = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics).alignment
    assert alignment.success
    assert rotation_error_deg(alignment.transform, truth) < 1.5
    assert object_translation_error(alignment.transform, truth, centre) < 0.005
    assert object_translation_error(truth, truth, centre) == 0.0
    result = run_alignment_benchmark(Matcher.create("daisy", size=160), config, tmp_path, progress=False)
    assert result["summary"]["trials"] == 3
    assert all(r["success"] in (True, False) and r.get("reason") for r in result["rows"])
    for name in ("alignment.json", "alignment.md", "alignment_errors.png"):
        assert (tmp_path / name).is_file()
