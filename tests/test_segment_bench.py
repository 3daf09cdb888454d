"""`soco bench localisation` and `soco bench tracking` on a few small frames: reports written, figures consistent
with the rows, the scene's truth exact (the target's mask is what no distractor hides)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from correspondence.benchmarks.localisation import LocalisationBenchConfig, _distractors, make_scene
from correspondence.cli import main
from correspondence.world.families import make_instance
from correspondence.world.render import Renderer, RenderSettings


def test_composited_scene_truth_is_the_targets_unhidden_pixels():
    config = LocalisationBenchConfig(size=96)
    settings = RenderSettings(width=96, height=96)
    rng = np.random.default_rng(3)
    target = make_instance("mug", 0)
    scene = make_scene(rng, target, _distractors(rng, "mug", 0, config, target), True, 0.0, config, settings)
    assert scene.mask.any() and scene.depth[scene.mask].min() > 0
    # the distractors can only hide the target: rendered alone from the same camera it covers the truth
    view = Renderer(target).render(scene.camera, settings, seed=0)
    assert not (scene.mask & ~view.mask).any() and np.allclose(scene.depth[scene.mask], view.depth[scene.mask])


def test_localisation_and_tracking_benches_write_reports(tmp_path):
    out = tmp_path / "loc"
    assert main(["bench", "localisation", "--backbone", "daisy", "--trials", "3", "--size", "112", "--sources",
                 "depth", "--out", str(out)]) == 0
    record = json.loads((out / "localisation.json").read_text())
    present = [r for r in record["rows"] if r["present"]]
    if present:
        assert record["summary"]["masks"]["depth/localised"]["mean_iou"] == np.mean([r["depth/localised"]
                                                                                      for r in present])
    assert (out / "localisation.md").exists() and (out / "localisation_iou.png").exists()
    out = tmp_path / "track"
    assert main(["bench", "tracking", "--backbone", "daisy", "--mask-source", "depth", "--frames", "3",
                 "--baseline-frames", "1", "--size", "112", "--out", str(out)]) == 0
    record = json.loads((out / "tracking.json").read_text())
    tracked = [r for r in record["rows"] if r["mode"] == "tracked"]
    assert len(tracked) == 3 and tracked[0]["segmented"]
    assert record["summary"]["tracked"]["segmentations"] == sum(r["segmented"] for r in tracked)
    assert "backbone only" in (out / "tracking.md").read_text()


@pytest.mark.slow
def test_tracking_bench_counts_one_encoder_pass_per_segmentation(tmp_path):
    """SAM 2 (random weights, a 64 px encoder input to keep it fast): the tracked stream encodes once per full
    segmentation, and the segment-every-frame baseline encodes every one of its frames, its first one too (the same
    image as the stream's first frame: its cached embedding must not make that frame look cheap)."""
    pytest.importorskip("sam2")
    out = tmp_path / "track"
    assert main(["bench", "tracking", "--backbone", "daisy", "--mask-source", "sam2", "--sam2-random-weights",
                 "--sam2-image-size", "64", "--frames", "3", "--baseline-frames", "2", "--size", "112",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "tracking.json").read_text())["summary"]
    assert summary["tracked"]["encoder_passes"] == summary["tracked"]["segmentations"] >= 1
    assert summary["segmented every frame"]["encoder_passes"] == 2
    assert summary["demo_features_ms"] > 0 and "at 64 px" in (out / "tracking.md").read_text()


@pytest.mark.slow  # 28 s on the loaded 2-core machine
def test_tracking_bench_with_a_multi_view_demo_runs_the_stream_with_and_without_the_view_schedule(tmp_path):
    """--demo-views 2: every frame runs twice, alternately, tracked with the view schedule and with every view
    localising; the first frame has no last pose, so both localise with both views, and the all-views mode always
    does. Pose correctness against the renderer's truth is reported per mode."""
    out = tmp_path / "track"
    assert main(["bench", "tracking", "--backbone", "daisy", "--mask-source", "depth", "--frames", "3",
                 "--baseline-frames", "0", "--size", "224", "--yaw-step", "10", "--demo-views", "2",
                 "--out", str(out)]) == 0
    record = json.loads((out / "tracking.json").read_text())
    tracked = [r for r in record["rows"] if r["mode"] == "tracked"]
    every = [r for r in record["rows"] if r["mode"] == "all views every frame"]
    assert len(tracked) == len(every) == 3
    assert tracked[0]["views_localised"] == 2 and all(r["views_localised"] == 2 for r in every)
    assert all(1 <= r["views_localised"] <= 2 for r in tracked)
    summary = record["summary"]
    assert summary["all views every frame"]["mean_views_localised"] == 2.0
    assert summary["tracked"]["pose_correct"] == 100.0 * np.mean([r["pose_correct"] for r in tracked])
    assert "all views every frame" in (out / "tracking.md").read_text()
