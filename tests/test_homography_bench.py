"""``soco bench homography``: exact ground truth of the warps, the OpenCV baseline, a small end-to-end run."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from correspondence.benchmarks.homography import (HomographyBenchConfig, SourceImage, WarpSettings, make_pair,
                                                  project, query_grid, run_homography_benchmark, sift_ransac)
from correspondence.errors import InputError
from test_refine import texture


def test_ground_truth_follows_the_continuous_pixel_convention():
    """A bright dot centred at a demo pixel lands, in the warped image, where the pair's homography says."""
    demo = np.zeros((200, 240, 3), np.uint8)
    xy = np.array([[120.5, 80.5]])  # the centre of pixel (row 80, col 120)
    cv2.circle(demo, (120, 80), 3, (255, 255, 255), -1)
    quiet = WarpSettings(brightness=0.0, contrast=(1.0, 1.0), noise_sigma=(0.0, 0.0), blur_sigma=(0.0, 0.0),
                         scale_range=(1.0, 1.3))
    pair = make_pair(np.random.default_rng(0), SourceImage("dot", demo), 0, 20, quiet)
    gray = pair.live[..., 0].astype(np.float64)
    rows, cols = np.nonzero(gray > 0)
    weights = gray[rows, cols]
    centroid = np.array([(cols * weights).sum(), (rows * weights).sum()]) / weights.sum() + 0.5
    assert np.linalg.norm(centroid - project(pair.homography, xy)[0]) < 0.15


def test_pairs_keep_only_points_that_land_in_the_live_image():
    pair = make_pair(np.random.default_rng(1), SourceImage("t", texture(160)), 0, 100, WarpSettings())
    h, w = pair.live.shape[:2]
    assert len(pair.query_xy) >= 0.4 * len(query_grid(160, 160, 100))
    assert ((pair.truth_xy >= 0) & (pair.truth_xy < [w, h])).all()
    assert np.allclose(project(pair.homography, pair.query_xy), pair.truth_xy)


def test_the_opencv_baseline_places_a_textured_pair():
    pair = make_pair(np.random.default_rng(2), SourceImage("t", texture(320, seed=5)), 0, 100, WarpSettings())
    prediction = sift_ransac(pair)
    error = np.linalg.norm(prediction.xy - pair.truth_xy, axis=1)
    assert prediction.info["inliers"] >= 10 and np.median(error) < 2.0


def test_end_to_end_rows_table_and_plots(tmp_path):
    images = [SourceImage("texture", texture(200, seed=7))]
    config = HomographyBenchConfig(backbones=("daisy",), size=224, points=40, seed=3)
    result = run_homography_benchmark(images, config, tmp_path, progress=False)
    summary = result["summary"]
    assert list(summary)[0].startswith("OpenCV SIFT")
    assert [label.split(", ", 1)[1] for label in list(summary)[1:]] == [
        "coarse (argmax)", "coarse (soft-argmax, SOCO reference: w 7, beta 0.02)",
        "coarse (soft-argmax, relative temperature: w 1, beta 0.1)", "refined (default: best cell, +-1 cell)",
        "refined, re-ranked (8 candidates, +-2 cells)", "refined + homography verification"]
    verified = summary["daisy, refined + homography verification"]
    assert verified["pck@5"] >= 90.0 and verified["median_px"] < 2.0
    assert summary["daisy, refined (default: best cell, +-1 cell)"]["pck@5"] >= summary["daisy, coarse (argmax)"]["pck@5"]
    for name in ("results.json", "results.md", "pck_curve.png", "example_0.png"):
        assert (tmp_path / name).is_file()
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["pairs"][0]["methods"]["daisy, refined + homography verification"]["geometry"]["success"]
    assert "| OpenCV SIFT" in (tmp_path / "results.md").read_text()


def test_missing_sources_are_an_input_error(tmp_path):
    from correspondence.benchmarks.homography import collect_images
    with pytest.raises(InputError, match="does not exist"):
        collect_images([tmp_path / "nope"], None, 0)
    with pytest.raises(InputError, match="no photographs"):
        collect_images([tmp_path], None, 0)


def test_shared_photos_and_umd_frames_are_collected(shared_images):
    from correspondence.benchmarks.homography import collect_images, default_sources
    umd = default_sources()[1]
    images = collect_images([shared_images], umd, 3)
    names = [image.name for image in images]
    assert "sddino_cat0.jpg" in names and not any("Anno" in name for name in names)  # masks are not photos
    if umd is not None:
        assert sum(name.startswith("umd/") for name in names) == 3
