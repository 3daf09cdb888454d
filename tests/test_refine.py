"""Coarse-to-fine refinement at the original resolution, on synthetic textures with an exactly known warp."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from correspondence.errors import ConfigError
from correspondence.refine import RefineSettings, global_affine, local_affines, prepare_image, refine_points


def texture(size: int = 240, seed: int = 0) -> np.ndarray:
    """Blob texture (band-limited noise) with structure at several scales, as RGB uint8."""
    rng = np.random.default_rng(seed)
    noise = sum(cv2.resize(rng.normal(0, 1, (size // s, size // s)).astype(np.float32), (size, size),
                           interpolation=cv2.INTER_CUBIC) for s in (4, 8, 16))
    gray = cv2.normalize(noise, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def warp_affine(image: np.ndarray, linear: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image under ``x -> linear x + shift`` (continuous pixels) and that map as a 2 x 3 matrix."""
    centre = np.array([0.5, 0.5])
    cv_matrix = np.hstack([linear, (shift + linear @ centre - centre)[:, None]])  # OpenCV pixel centres
    warped = cv2.warpAffine(image, cv_matrix, image.shape[1::-1], flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT)
    return warped, np.hstack([linear, shift[:, None]])


def rotation(deg: float, scale: float) -> np.ndarray:
    a = np.radians(deg)
    return scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def test_refinement_finds_the_true_position_to_a_fraction_of_a_pixel():
    demo = texture()
    linear = rotation(20.0, 1.15)
    live, model = warp_affine(demo, linear, np.array([-20.3, -5.7]))
    settings = RefineSettings()
    rng = np.random.default_rng(1)
    points = rng.uniform(70, 170, (40, 2))
    truth = points @ model[:, :2].T + model[:, 2]
    cell = 12.0
    coarse = truth + rng.uniform(-cell, cell, truth.shape)  # anywhere in the +-1 cell a coarse match allows
    result = refine_points(prepare_image(demo, settings), prepare_image(live, settings, levels=False), points, coarse,
                           np.repeat(linear[None], len(points), 0), cell, settings)
    error = np.linalg.norm(result.xy - truth, axis=1)
    assert result.refined.mean() >= 0.9
    assert np.median(error[result.refined]) < 0.2 and np.percentile(error[result.refined], 90) < 0.5
    # > 0.85, not 0.9: a point whose live position lies near the border (the warp mirrored the image there) is
    # now correlated through a mirrored window and found (0.16 px, NCC 0.88) where a clipped one refused it.
    assert (result.ncc[result.refined] > 0.85).all()


def test_a_plain_region_keeps_its_coarse_position():
    flat = np.full((100, 100, 3), 128, np.uint8)
    settings = RefineSettings()
    coarse = np.array([[50.0, 40.0]])
    result = refine_points(prepare_image(flat, settings), prepare_image(flat, settings, levels=False),
                           np.array([[50.0, 50.0]]), coarse, np.eye(2)[None], 10.0, settings)
    assert not result.refined[0] and np.allclose(result.xy, coarse)


def test_an_edge_is_not_a_position():
    """A straight edge matches anywhere along itself: the flat direction of its peak refuses the refinement."""
    edge = np.zeros((120, 120, 3), np.uint8)
    edge[:, 60:] = 255
    settings = RefineSettings()
    result = refine_points(prepare_image(edge, settings), prepare_image(edge, settings, levels=False),
                           np.array([[60.0, 60.0]]), np.array([[62.0, 70.0]]), np.eye(2)[None], 10.0, settings)
    assert not result.refined[0] and result.sharpness[0] < settings.min_sharpness


def test_the_live_mask_bounds_the_refined_position():
    demo = texture(seed=3)
    settings = RefineSettings()
    mask = np.zeros(demo.shape[:2], bool)
    mask[:, :100] = True  # the true position (130, 120) lies outside it
    result = refine_points(prepare_image(demo, settings), prepare_image(demo, settings, levels=False),
                           np.array([[130.0, 120.0]]), np.array([[95.0, 120.0]]), np.eye(2)[None], 20.0, settings,
                           live_mask=mask)
    x, y = result.xy[0]
    assert mask[int(y), int(x)]


def test_local_and_global_affine_maps_from_cell_quantised_matches():
    rng = np.random.default_rng(2)
    linear = rotation(-25.0, 0.8)
    demo = rng.uniform(0, 400, (300, 2))
    live = demo @ linear.T + [30.0, 60.0] + rng.uniform(-6, 6, demo.shape)  # 12 px cells
    live[:60] = rng.uniform(0, 400, (60, 2))  # a fifth are wrong
    assert np.allclose(global_affine(demo, live, threshold=12.0), linear, atol=0.05)
    local = local_affines(np.array([[200.0, 200.0], [-500.0, -500.0]]), demo, live, radius=80.0, threshold=12.0,
                          fallback=np.eye(2))
    assert np.allclose(local[0], linear, atol=0.2)
    assert np.allclose(local[1], np.eye(2))  # no neighbours: the fallback


def test_settings_are_checked():
    with pytest.raises(ConfigError):
        RefineSettings(min_radius_px=10, max_radius_px=5)
    with pytest.raises(ConfigError):
        RefineSettings(min_ncc=2.0)


def test_the_pipeline_refines_keypoints_and_records_both_positions(tmp_path):
    """Keypoint mode of the per-frame pipeline: coarse and refined positions recorded, every match in the frame;
    the soco protocol keeps cell positions."""
    from correspondence.api import Matcher
    from correspondence.demo_spec import load_demo
    from correspondence.pipeline import PipelineSettings, TransferPipeline
    from correspondence.pose_keypoints import KeypointPoseSettings
    from soco_ros.synthetic import make_scene
    scene = make_scene(tmp_path / "demo", size=224)
    demo = load_demo(tmp_path / "demo")
    for protocol in ("default", "soco"):
        matcher = Matcher.create("daisy", size=224, protocol=protocol)
        # the refinement stage alone: keypoints placed by an accepted 3D pose (position "pose") are tested in
        # test_pose_keypoints.py
        settings = PipelineSettings(depth_scale=1.0, keypoint_pose=KeypointPoseSettings(enabled=False))
        result = TransferPipeline(demo, matcher, settings).process(scene.rgb, scene.depth, scene.intrinsics,
                                                                   mask=scene.mask)
        assert all(0 <= m.live_xy[0] < 224 and 0 <= m.live_xy[1] < 224 and m.coarse_xy is not None
                   for m in result.matches)
        refined = [m for m in result.matches if m.refined]
        if protocol == "default":
            assert refined and all(m.position == "refined" and m.refined_xy == m.live_xy for m in refined)
        else:
            assert not refined and all(m.position == "cell" for m in result.matches)


def test_a_periodic_pattern_is_not_a_position():
    """A checkerboard correlates as well one period away: refused, even with the search centred off the truth."""
    yy, xx = np.mgrid[0:160, 0:160]
    board = ((((xx // 6) + (yy // 6)) % 2) * 255).astype(np.uint8)
    board = np.repeat(board[..., None], 3, axis=2)
    settings = RefineSettings()
    result = refine_points(prepare_image(board, settings), prepare_image(board, settings, levels=False),
                           np.array([[80.0, 80.0]]), np.array([[86.0, 83.0]]), np.eye(2)[None], 14.0, settings)
    assert not result.refined[0] and np.allclose(result.xy, [[86.0, 83.0]])
