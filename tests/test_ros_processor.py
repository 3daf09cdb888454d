"""The node's ROS-free frame processor and message building without DDS: demos, runtimes, functional demos,
what ~/matches and ~/alignment_quality carry."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from std_msgs.msg import Header  # noqa: E402

from soco_ros import parameters as P  # noqa: E402
from soco_ros.conversions import cloud_to_array  # noqa: E402

HEADER = Header(frame_id="cam")


def test_processor_refuses_runtime_without_a_model():
    from correspondence.errors import ConfigError
    from soco_ros.processor import build_matcher

    params = {**P.defaults(), "backbone": "test_vit_tiny", "random_weights": True, "runtime": "onnxruntime"}
    with pytest.raises(ConfigError, match="needs runtime_model"):
        build_matcher(params)
    matcher = build_matcher({**params, "runtime": "torch"})
    assert matcher.extractor.cache_size == 2  # the live-frame feature cache cannot grow


def test_processor_keeps_previous_demo_on_a_bad_path(tmp_path):
    from correspondence.errors import InputError
    from soco_ros.processor import FrameProcessor, Frame
    from soco_ros.messages import build_outputs
    from soco_ros.synthetic import make_scene

    scene = make_scene(tmp_path / "demo", size=112, grid_points=8)
    processor = FrameProcessor({**P.defaults(), "backbone": "test_vit_tiny", "random_weights": True, "segmentation": "depth"})
    with pytest.raises(InputError, match="no demo loaded"):
        processor.process(Frame(scene.rgb, 0, "cam"))
    processor.set_demo(str(scene.demo_dir))
    with pytest.raises(InputError, match="does not exist"):
        processor.set_demo(str(tmp_path / "missing"))
    assert processor.demo_path == str(scene.demo_dir)
    processed = processor.process(Frame(scene.rgb, 0, "cam", scene.depth, scene.intrinsics))
    outputs = build_outputs(processed, HEADER, "demo_object", publish_debug=True)
    cloud = cloud_to_array(outputs.matches)
    accepted = np.flatnonzero(processed.result.accepted)
    assert cloud["index"].tolist() == accepted.tolist()
    np.testing.assert_allclose(cloud["u_live"], [processed.result.matches[i].live_xy[0] for i in accepted], rtol=1e-6)
    assert outputs.debug_image.encoding == "rgb8" and outputs.mask.encoding == "mono8"
    assert outputs.markers.markers[0].action == 3  # DELETEALL first
    processor.update({"min_score": 0.999})  # reconfigured: almost everything rejected now
    strict = processor.process(Frame(scene.rgb, 0, "cam", scene.depth, scene.intrinsics))
    assert strict.result.accepted.sum() <= processed.result.accepted.sum()


def test_processor_publishes_a_functional_demo_as_ranked_dense_matches(tmp_path):
    """A functional demo (function + part mask): ~/matches carries the part's dense matches, index = rank, score =
    discovery score (best first), 3D points lifted in the live frame; the names topic holds the function."""
    from PIL import Image as PILImage

    from soco_ros.processor import FrameProcessor, Frame
    from soco_ros.messages import build_outputs, quality_dict
    from soco_ros.synthetic import make_scene

    scene = make_scene(tmp_path / "kp", size=224, grid_points=0)
    functional = tmp_path / "functional"
    functional.mkdir()
    demo_files = {p.name: p for p in scene.demo_dir.iterdir()}
    rgb_name = next(n for n in demo_files if n.startswith("rgb"))
    for name in (rgb_name, "depth.npy", "intrinsics.json", "mask.png"):
        (functional / name).write_bytes(demo_files[name].read_bytes())
    part = np.asarray(PILImage.open(demo_files["mask.png"])) > 0
    part[:, : int(np.median(np.nonzero(part)[1]))] = False
    PILImage.fromarray(part.astype(np.uint8) * 255).save(functional / "function_mask.png")
    (functional / "function.txt").write_text("pour-with\n")
    processor = FrameProcessor({**P.defaults(), "backbone": "daisy", "image_size": 224, "segmentation": "depth"})
    processor.set_demo(str(functional))
    assert processor.keypoint_names == ("pour-with",)
    processed = processor.process(Frame(scene.rgb, 0, "cam", scene.depth, scene.intrinsics))
    assert processed.result.mode == "functional" and len(processed.result.dense) > 0
    outputs = build_outputs(processed, HEADER, "demo_object", publish_debug=True)
    cloud = cloud_to_array(outputs.matches)
    n = len(processed.result.dense)
    assert cloud["index"].tolist() == list(range(n))
    assert np.all(np.diff(cloud["score"]) <= 1e-6)
    np.testing.assert_allclose(cloud["u_demo"], processed.result.dense.demo_xy[:, 0], rtol=1e-6)
    assert np.isfinite(cloud["z"]).mean() > 0.8  # lifted with the live depth
    assert quality_dict(processed)["mode"] == "functional"
    assert outputs.debug_image.encoding == "rgb8"


def test_processor_runtime_parameter_selects_onnxruntime_with_the_same_matches(tmp_path):
    """The node's `runtime` / `runtime_model` / `runtime_provider` parameters run the exported model and give the
    torch runtime's matches on the same frame."""
    from correspondence.backbones import create_backbone
    from export.onnx_export import export_backbone
    from soco_ros.processor import FrameProcessor, Frame
    from soco_ros.synthetic import make_scene

    size = 112
    model = export_backbone(create_backbone("test_vit_tiny", random_init=True), size, tmp_path / "tiny.onnx",
                            log=lambda m: None)
    assert model.report.passed
    scene = make_scene(tmp_path / "demo", size=size, grid_points=8)
    base = {**P.defaults(), "backbone": "test_vit_tiny", "random_weights": True, "image_size": size,
            "segmentation": "depth"}
    results = {}
    for runtime in ("torch", "onnxruntime"):
        params = dict(base, runtime=runtime, runtime_model=str(model.path) if runtime != "torch" else "",
                      runtime_provider="cpu")
        processor = FrameProcessor(params)
        assert processor.matcher.extractor.describe()["runtime"]["name"] == runtime
        processor.set_demo(str(scene.demo_dir))
        results[runtime] = processor.process(Frame(scene.rgb, 0, "cam", scene.depth, scene.intrinsics)).result
    torch_matches, onnx_matches = results["torch"].matches, results["onnxruntime"].matches
    assert len(torch_matches) > 5
    # keypoints placed by the accepted 3D pose carry the pose's last-bit float differences between runtimes
    np.testing.assert_allclose([m.live_xy for m in torch_matches], [m.live_xy for m in onnx_matches], atol=1e-6)


def test_gravity_reaches_the_pose_search_and_the_outputs_carry_every_keypoints_flags(tmp_path):
    """``up`` reaches the pipeline: the pose search probes turns about the vertical alone (11 at 30 deg) instead of
    about the cloud's three principal axes (33), and the verticals are in ~/alignment_quality. Every keypoint's
    position source, acceptance and pose-disagreement flag are in ~/alignment_quality, and the accepted ones' in
    ~/matches, equal to the library's result; the pose-placed keypoints sit on their true projections."""
    from correspondence.errors import ConfigError
    from soco_ros.conversions import POSITIONS
    from soco_ros.messages import build_outputs, quality_dict
    from soco_ros.processor import Frame, FrameProcessor, gravity
    from soco_ros.synthetic import make_scene

    scene = make_scene(tmp_path / "demo", size=224)
    base = {**P.defaults(), "backbone": "daisy", "image_size": 224, "segmentation": "depth"}
    frame = Frame(scene.rgb, 0, "cam", scene.depth, scene.intrinsics)
    runs = {}
    for label, up in (("none", [0.0, 0.0, 0.0]), ("up", [float(v) * 3 for v in scene.up[1]])):
        processor = FrameProcessor({**base, "up": up, "demo_up": [float(v) for v in scene.up[0]]})
        processor.set_demo(str(scene.demo_dir))
        runs[label] = processor.process(frame)
    probes = {label: quality_dict(p)["pose_search"]["hypotheses"].get("probe") for label, p in runs.items()}
    assert probes == {"none": 33, "up": 11}, probes
    search = quality_dict(runs["up"])["pose_search"]
    np.testing.assert_allclose(search["up"]["live"], scene.up[1] / np.linalg.norm(scene.up[1]), atol=1e-6)
    assert quality_dict(runs["none"])["pose_search"]["up"] is None
    processed = runs["up"]
    result = processed.result
    assert result.alignment.success and result.pose_keypoints is not None
    quality = quality_dict(processed)
    records = quality["keypoints"]
    assert [k["name"] for k in records] == scene.names
    assert [k["accepted"] for k in records] == result.accepted.tolist()
    assert [k["position"] for k in records] == [m.position for m in result.matches]
    assert [k["pose_disagrees"] for k in records] == [p.disagrees for p in result.pose_keypoints]
    for k in records:  # the flag is the pose's prediction against the keypoint's own match
        if k["pose_error_px"] is not None:
            assert k["pose_disagrees"] == (k["pose_error_px"] > 10.0), k
    assert quality["pose_disagreements"] == sum(p.disagrees for p in result.pose_keypoints)
    assert quality["pose_ambiguous"] is False and search["ambiguous"] is False
    cloud = cloud_to_array(build_outputs(processed, HEADER, "demo_object").matches)
    idx = cloud["index"].astype(int)
    assert [POSITIONS[c] for c in cloud["position"]] == [records[i]["position"] for i in idx]
    assert cloud["pose_disagrees"].astype(bool).tolist() == [records[i]["pose_disagrees"] for i in idx]
    placed = np.array([records[i]["position"] == "pose" for i in idx]) & np.isfinite(scene.live_xy[idx]).all(1)
    assert placed.sum() >= 0.5 * len(idx)
    errors = np.linalg.norm(np.stack([cloud["u_live"], cloud["v_live"]], 1)[placed] - scene.live_xy[idx][placed], axis=1)
    assert np.median(errors) < 2.0, np.round(errors, 1)
    with pytest.raises(ConfigError, match="parameter 'up' must be 3 numbers"):
        gravity({"up": [0.0, 1.0]})
    assert gravity({"up": [0.0, 0.0, 0.0], "demo_up": [0.0, 1.0, 0.0]}) is None  # demo_up alone: no prior


def _counting_demo_features(monkeypatch, extractor) -> list:
    """Calls of ``extractor(image)`` (the demo path: the pipeline extracts live frames with ``extract_batch``)."""
    calls, original = [], type(extractor).__call__

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(type(extractor), "__call__", counted)
    return calls


def test_the_demo_is_prepared_when_it_loads_not_on_the_first_frame(tmp_path, monkeypatch):
    """set_demo (and a settings change that rebuilds the pipeline) computes the demo's features then: the first
    frame extracts only its own features and its timings hold no demo set-up."""
    from soco_ros.processor import Frame, FrameProcessor
    from soco_ros.synthetic import make_scene

    scene = make_scene(tmp_path / "demo", size=112, grid_points=8)
    processor = FrameProcessor({**P.defaults(), "backbone": "test_vit_tiny", "random_weights": True,
                                "segmentation": "depth"})
    calls = _counting_demo_features(monkeypatch, processor.matcher.extractor)
    processor.set_demo(str(scene.demo_dir))
    assert len(calls) == 1 and processor._pipeline._demo_fmap is not None  # at load
    processor.process(Frame(scene.rgb, 0, "cam", scene.depth, scene.intrinsics))
    assert len(calls) == 1  # the first frame did not compute the demo's features
    processor.update({"min_score": 0.5})  # a rebuilt pipeline is prepared before it serves
    assert len(calls) == 2 and processor._pipeline._demo_fmap is not None
    processor.process(Frame(scene.rgb, 1, "cam", scene.depth, scene.intrinsics))
    assert len(calls) == 2


def test_the_support_plane_parameters_reach_the_pipeline():
    from correspondence.support_plane import SupportPlaneSettings
    from soco_ros.processor import pipeline_settings

    assert pipeline_settings(P.defaults()).support_plane == SupportPlaneSettings()  # the library's defaults
    assert pipeline_settings({**P.defaults(), "support_plane_min_area": 0.1}).support_plane.min_area == 0.1
    assert pipeline_settings({**P.defaults(), "support_plane": False}).support_plane is None
    assert P.validate("support_plane_min_area", 0.0) is not None


def test_the_mask_completion_parameters_reach_the_pipeline():
    from correspondence.mask_completion import CompletionSettings
    from soco_ros.processor import PIPELINE_KEYS, pipeline_settings
    assert pipeline_settings(P.defaults()).mask_completion == CompletionSettings()  # the library's defaults
    assert pipeline_settings({**P.defaults(), "mask_completion_grow": 1.3}).mask_completion.grow == 1.3
    assert pipeline_settings({**P.defaults(), "mask_completion": False}).mask_completion is None
    assert {"mask_completion", "mask_completion_grow"} <= set(PIPELINE_KEYS)  # a change rebuilds the pipeline


def test_the_view_schedule_parameters_reach_the_pipeline():
    from correspondence.view_schedule import ViewScheduleSettings
    from soco_ros.processor import pipeline_settings

    assert pipeline_settings(P.defaults()).view_schedule == ViewScheduleSettings()
    settings = pipeline_settings({**P.defaults(), "view_schedule_every": 3, "view_schedule_keep": 0.6})
    assert settings.view_schedule == ViewScheduleSettings(keep=0.6, every=3)
    assert pipeline_settings({**P.defaults(), "view_schedule_every": 0}).view_schedule is None
