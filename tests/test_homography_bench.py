"""``soco bench homography``: exact ground truth of the warps, the design, the baselines, a small end-to-end run."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from correspondence.benchmarks.homography import (HomographyBenchConfig, SourceImage, WarpSettings, make_pair,
                                                  project, run_homography_benchmark)
from correspondence.benchmarks.homography_methods import expert, sift_default
from correspondence.benchmarks.homography_pairs import design, unique, unrelated_pairs
from correspondence.errors import InputError
from test_refine import texture

QUIET = WarpSettings(brightness=0.0, contrast=(1.0, 1.0), gamma=(1.0, 1.0), noise_sigma=(0.0, 0.0),
                     blur_sigma=(0.0, 0.0), jpeg_quality=(100, 100))


def test_ground_truth_follows_the_continuous_pixel_convention():
    """A bright dot centred at a demo pixel lands, in the warped image, where the pair's homography says."""
    demo = np.zeros((200, 240, 3), np.uint8)
    xy = np.array([[120.5, 80.5]])  # the centre of pixel (row 80, col 120)
    cv2.circle(demo, (120, 80), 3, (255, 255, 255), -1)
    pair = make_pair(np.random.default_rng(0), SourceImage("dot", demo), 0, 20, QUIET, degrees=130.0, scale=1.2)
    gray = pair.live[..., 0].astype(np.float64)
    gray[gray < 8] = 0  # JPEG at quality 100 still rings a little
    rows, cols = np.nonzero(gray > 0)
    weights = gray[rows, cols]
    centroid = np.array([(cols * weights).sum(), (rows * weights).sum()]) / weights.sum() + 0.5
    assert np.linalg.norm(centroid - project(pair.homography, xy)[0]) < 0.25


@pytest.mark.parametrize("index", [0, 5, 18, 23])
def test_pairs_keep_enough_points_in_view_at_every_scale(index):
    """Even at 4x (a quarter of the photo in view) the grid covers the visible part: >= min_points land inside."""
    pair = make_pair(np.random.default_rng(1), SourceImage("t", texture(160)), index, 100, WarpSettings())
    h, w = pair.live.shape[:2]
    assert len(pair.query_xy) >= WarpSettings().min_points
    assert ((pair.truth_xy >= 0) & (pair.truth_xy < [w, h])).all()
    assert np.allclose(project(pair.homography, pair.query_xy), pair.truth_xy)
    rot_bin, scale_bin = design(index, WarpSettings())
    assert WarpSettings().rotation_bins[rot_bin] <= abs(pair.rotation_deg) <= WarpSettings().rotation_bins[rot_bin + 1]
    assert WarpSettings().scale_bins[scale_bin] <= pair.scale <= WarpSettings().scale_bins[scale_bin + 1]


def test_the_design_visits_every_rotation_and_scale_bin():
    cells = {design(i, WarpSettings()) for i in range(24)}
    assert len(cells) == 24  # 6 rotation bins x 4 scale bins, each once in 24 pairs


def test_duplicate_photos_count_once():
    a, b = texture(64, seed=1), texture(64, seed=2)
    names = [s.name for s in unique([SourceImage("a", a), SourceImage("b", b), SourceImage("umd/a", a.copy())])]
    assert names == ["a", "b"]


def test_the_expert_baselines_place_a_turned_textured_pair_and_small_images_get_features():
    pair = make_pair(np.random.default_rng(2), SourceImage("t", texture(320, seed=5)), 0, 100, WarpSettings(),
                     degrees=140.0, scale=0.8)
    for prediction in (expert(pair, "sift"), expert(pair, "orb"), sift_default(pair)):
        error = np.linalg.norm(prediction.xy - pair.truth_xy, axis=1)
        assert prediction.info["inliers"] >= 10 and np.median(error) < 2.0
    small = make_pair(np.random.default_rng(3), SourceImage("s", texture(150, seed=6)), 0, 60, WarpSettings(),
                      degrees=40.0, scale=1.0)
    assert expert(small, "sift").info["keypoints"][0] > sift_default(small).info["keypoints"][0]  # 2x, lower contrast


def test_end_to_end_rows_bins_unrelated_table_and_plots(tmp_path):
    images = [SourceImage("texture", texture(200, seed=7)), SourceImage("other", texture(200, seed=8))]
    config = HomographyBenchConfig(backbones=("daisy",), size=224, points=40, seed=3, pairs_per_image=1,
                                   world_pairs=0, fine_world_pairs=0, unrelated_pairs=1)
    result = run_homography_benchmark(images, config, tmp_path, progress=False)
    summary = result["summary"]
    assert list(summary)[0].startswith("OpenCV SIFT (defaults)")
    auto = summary["daisy, --geometry auto"]
    assert auto["pck@5"] >= 90.0 and auto["median_px"] < 2.0 and auto["pairs"] == 2
    for name in ("results.json", "results.md", "pck_curve.png", "pck5_by_rotation.png", "pck5_by_scale.png"):
        assert (tmp_path / name).is_file()
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["unrelated"]["daisy, --geometry auto"]["accepted"] == 0
    answered = record["unrelated"]["daisy, refined (default, no geometry)"]["accepted"]
    assert answered == len(unrelated_pairs(images, 1, 20)[0].query_xy)  # no model: every point answered (wrong)
    assert [p["kind"] for p in record["pairs"]] == ["warp", "warp", "unrelated"]
    table = (tmp_path / "results.md").read_text()
    assert "PCK@5 by |rotation|" in table and "PCK@5 by scale" in table and "Unrelated photo pairs" in table


def test_missing_sources_are_an_input_error(tmp_path):
    from correspondence.benchmarks.homography import collect_images
    with pytest.raises(InputError, match="does not exist"):
        collect_images([tmp_path / "nope"], None, 0)
    with pytest.raises(InputError, match="no photographs"):
        collect_images([tmp_path], None, 0)


def test_shared_photos_and_umd_frames_are_collected_once(shared_images):
    from correspondence.benchmarks.homography import collect_images, default_sources
    umd = default_sources()[1]
    images = collect_images([shared_images], umd, 0)
    names = [image.name for image in images]
    assert "sddino_cat0.jpg" in names and not any("Anno" in name for name in names)  # masks are not photos
    if umd is not None:
        assert "affc_cup_03_00000004_rgb.jpg" in names and "umd/cup_03_00000004_rgb.jpg" not in names
