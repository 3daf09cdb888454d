"""Stereo depth (world/depth_noise.py) against what a disparity camera's geometry says: the depth error of a
known disparity noise, edges and holes where they were put, and the bench's use of it."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from correspondence.camera import CameraIntrinsics
from correspondence.errors import ConfigError
from correspondence.world.depth_noise import StereoNoise, depth_noise_from_name, stereo_depth

K = CameraIntrinsics(fx=500.0, fy=500.0, cx=80.0, cy=60.0, width=160, height=120)
EXACT = StereoNoise(sigma_px=0.0, correlation_px=0.0, quantum_m=0.0, edge_px=0, hole_fraction=0.0)


def test_depth_error_grows_with_distance_squared_as_disparity_noise_says():
    noise = dataclasses.replace(EXACT, sigma_px=0.1)
    for z in (0.5, 1.0, 2.0):
        plane = np.full((120, 160), z, np.float32)
        out = stereo_depth(plane, K, noise, np.random.default_rng(0))
        expected = z * z * noise.sigma_px / (K.fx * noise.baseline_m)  # d(f b / d) = z^2 / (f b) dd
        assert np.std(out - z) == pytest.approx(expected, rel=0.1)
    assert np.array_equal(stereo_depth(plane, K, EXACT, np.random.default_rng(0)), plane)


def test_quantisation_edges_and_holes():
    depth = np.zeros((120, 160), np.float32)
    depth[:, :80] = 1.0004  # a near surface beside a far one: an occluding edge between columns 79 and 80
    depth[:, 80:] = 1.5
    depth[:10] = 0.0  # no depth at all there
    out = stereo_depth(depth, K, dataclasses.replace(EXACT, quantum_m=0.001, edge_px=2), np.random.default_rng(0))
    assert np.allclose(out[20:, :70], 1.0) and np.allclose(out[20:, 90:], 1.5)  # 1 mm steps
    assert (out[20:, 78:82] == 0).all() and (out[20:, 77] > 0).all() and (out[20:, 82] > 0).all()
    assert (out[:10] == 0).all() and (out[11, 20:60] == 0).all()  # the border of no depth is an edge too
    holes = stereo_depth(np.full((120, 160), 1.0, np.float32), K, dataclasses.replace(EXACT, hole_fraction=0.05),
                         np.random.default_rng(1))
    assert 0.05 <= (holes == 0).mean() <= 0.08


def test_presets_and_bad_settings():
    assert depth_noise_from_name("none") is None and isinstance(depth_noise_from_name("stereo"), StereoNoise)
    with pytest.raises(ConfigError, match="unknown depth noise 'lidar'"):
        depth_noise_from_name("lidar")
    with pytest.raises(ConfigError):
        StereoNoise(baseline_m=0.0)
    from correspondence.benchmarks.alignment import AlignmentBenchConfig
    with pytest.raises(ConfigError, match="unknown depth noise"):
        AlignmentBenchConfig(depth_noise="lidar")


def test_the_bench_gives_the_pipeline_stereo_depth_of_its_own_generator(tmp_path, monkeypatch):
    """Demo and live depth reach the pipeline as the stereo camera gives them, the same for the same trial, and the
    scenes are those of a run without noise."""
    import correspondence.benchmarks.alignment as bench
    from correspondence.api import Matcher

    seen = []
    real_process = bench.TransferPipeline.process

    def spy(self, rgb, depth, intrinsics, **kwargs):
        seen.append((self.demo.depth, depth))
        return real_process(self, rgb, depth, intrinsics, **kwargs)

    monkeypatch.setattr(bench.TransferPipeline, "process", spy)
    config = bench.AlignmentBenchConfig(trials=1, size=96, categories=("mug",), mask_sources=("oracle",),
                                        depth_noise="stereo")
    matcher = Matcher.create("daisy", size=96)
    noisy = bench.run_alignment_benchmark(matcher, config, tmp_path / "a", progress=False)["rows"][0]
    exact = bench.run_alignment_benchmark(matcher, dataclasses.replace(config, depth_noise="none"), tmp_path / "b",
                                          progress=False)["rows"][0]
    assert noisy["yaw_deg"] == exact["yaw_deg"]
    (demo_noisy, live_noisy), (demo_exact, live_exact) = seen
    for a, b in ((demo_noisy, demo_exact), (live_noisy, live_exact)):
        both = (a > 0) & (b > 0)
        assert (a[b > 0] == 0).any() and both.sum() > 0.5 * (b > 0).sum()  # edges and holes lost, most kept
        assert not np.array_equal(a[both], b[both]) and np.abs(a[both] - b[both]).max() < 0.01
    sense = bench._depth_sensor(config, 0)
    assert np.array_equal(sense(live_exact, K, bench.LIVE_IMAGE), bench._depth_sensor(config, 0)(live_exact, K, 0))
    # each image has its own generator: the live depth does not depend on how many demo views were sensed before
    assert not np.array_equal(sense(live_exact, K, bench.LIVE_IMAGE), sense(live_exact, K, bench.DEMO_IMAGE))
    four_views = bench.run_alignment_benchmark(matcher, dataclasses.replace(config, demo_views=4), tmp_path / "c",
                                               progress=False)["rows"][0]
    assert four_views["yaw_deg"] == noisy["yaw_deg"]
    demo_four, live_four = seen[-1]
    assert np.array_equal(live_four, live_noisy) and np.array_equal(demo_four, demo_noisy)
