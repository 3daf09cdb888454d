"""Keypoints predicted from the pose (correspondence/pose_keypoints.py), checked against the renderer's exact
keypoint projections and visibility, and against OpenCV's projection for a distorted camera."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.camera import CameraIntrinsics  # noqa: E402
from correspondence.keypoint_matching import KeypointMatch  # noqa: E402
from correspondence.lifting import lift  # noqa: E402
from correspondence.pose_keypoints import (POSITION_POSE, POSITION_POSE_HIDDEN, KeypointPoseSettings,  # noqa: E402
                                           keypoints_from_pose, predict)
from correspondence.world.families import make_instance  # noqa: E402
from correspondence.world.render import Renderer, RenderSettings, sample_pose  # noqa: E402
from correspondence.world.scene import table_motion  # noqa: E402


def _views(yaw: float):
    obj = make_instance("car", 2)
    settings = RenderSettings(width=224, height=224)
    rng = np.random.default_rng(4)
    pose = sample_pose(rng, obj, intrinsics=settings.intrinsics)
    renderer = Renderer(obj)
    live_pose = pose @ table_motion(yaw, np.array([0.02, -0.01]), obj.center)
    return obj, renderer.render(pose, settings), renderer.render(live_pose, settings), live_pose @ np.linalg.inv(pose)


def test_predictions_are_the_true_projections_and_visibility_follows_the_live_depth():
    obj, demo, live, truth = _views(150.0)
    seen = demo.keypoints_visible
    points = np.full((len(obj.keypoints), 3), np.nan)
    points[seen] = obj.keypoint_positions[seen] @ demo.pose[:3, :3].T + demo.pose[:3, 3]  # demo camera frame
    xy, z, visibility = predict(points, truth, live.depth, live.intrinsics, KeypointPoseSettings())
    np.testing.assert_allclose(xy[seen], live.keypoints_xy[seen], atol=1e-6)
    np.testing.assert_allclose(z[seen], live.keypoints_depth[seen], atol=1e-6)
    assert all(v == "no demo depth" for v, s in zip(visibility, seen) if not s)
    both = seen & live.keypoints_visible
    assert both.any() and all(visibility[i] == "visible" for i in np.flatnonzero(both))
    hidden = seen & ~live.keypoints_visible  # turned 150 deg: the demo's side is mostly hidden now
    assert hidden.any()
    assert sum(visibility[i] in ("hidden", "out of frame") for i in np.flatnonzero(hidden)) >= 0.8 * hidden.sum()


def test_a_match_that_disagrees_with_the_pose_is_flagged_and_replaced_by_the_prediction():
    obj, demo, live, truth = _views(10.0)
    i = int(np.flatnonzero(demo.keypoints_visible & live.keypoints_visible)[0])
    points, _ = lift(demo.keypoints_xy[i:i + 1], demo.depth, demo.intrinsics)
    true_xy = live.keypoints_xy[i]
    near = KeypointMatch("near", tuple(demo.keypoints_xy[i]), tuple(true_xy + 2.0), 0.9, True, 0.0)
    far = KeypointMatch("far", tuple(demo.keypoints_xy[i]), tuple(true_xy + 40.0), 0.9, True, 0.0)
    matches, poses = keypoints_from_pose([near, far], np.repeat(points, 2, 0), truth, live.depth, live.intrinsics)
    assert [p.disagrees for p in poses] == [False, True]
    assert poses[1].match_error_px == pytest.approx(40.0 * np.sqrt(2), abs=1.0)
    assert poses[1].matched_xy == tuple(true_xy + 40.0)
    for m in matches:  # lifted from the demo depth (3 x 3 median): within 2 px of the exact projection
        assert m.position == POSITION_POSE and np.hypot(*(np.asarray(m.live_xy) - true_xy)) < 2.0


def test_prediction_uses_the_camera_distortion_as_opencv_does():
    cv2 = pytest.importorskip("cv2")
    camera = CameraIntrinsics.from_matrix([[300.0, 0, 160.0], [0, 310.0, 120.0], [0, 0, 1]], 320, 240,
                                          distortion=(-0.28, 0.09, 0.001, -0.0015, -0.01))
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-0.3, 0.3, (20, 2)), rng.uniform(0.8, 1.2, 20)]
    T = np.eye(4)
    T[:3, 3] = (0.02, -0.01, 0.05)
    depth = np.full((240, 320), 5.0, np.float32)  # a far wall: everything in front of it is visible
    xy, _, visibility = predict(points, T, depth, camera, KeypointPoseSettings())
    expected, _ = cv2.projectPoints(points + T[:3, 3], np.zeros(3), np.zeros(3), camera.K,
                                    np.asarray(camera.distortion, dtype=np.float64))
    np.testing.assert_allclose(xy, expected[:, 0] + 0.5, atol=1e-6)  # OpenCV's pixel centres are integers
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < 320) & (xy[:, 1] >= 0) & (xy[:, 1] < 240)
    assert [v == "visible" for v in visibility] == list(inside)
    behind = np.zeros((240, 320), np.float32) + 0.5  # a wall in front of every point: all hidden
    _, _, hidden = predict(points, T, behind, camera, KeypointPoseSettings())
    assert all(v in ("hidden", "out of frame") for v in hidden) and "hidden" in hidden
    _, poses = keypoints_from_pose([KeypointMatch("k", (0, 0), tuple(xy[0]), 1.0, True, 0.0)], points[:1], T,
                                   behind, camera)
    assert poses[0].visibility == "hidden"
    assert POSITION_POSE_HIDDEN == "pose-hidden"


def test_silhouette_keypoints_get_a_surface_point_where_robust_lifting_refuses():
    from correspondence.pose_keypoints import surface_points
    obj, demo, _, _ = _views(0.0)
    seen = demo.keypoints_visible
    surface = surface_points(demo.keypoints_xy[seen], demo.depth, demo.intrinsics, demo.mask, (0.05, 5.0))
    assert np.isfinite(surface).all()  # every visible keypoint has a point, the refused ones included
    exact = obj.keypoint_positions[seen] @ demo.pose[:3, :3].T + demo.pose[:3, 3]
    assert np.median(np.linalg.norm(surface - exact, axis=1)) < 0.005
    np.testing.assert_allclose(demo.intrinsics.project(surface), demo.keypoints_xy[seen], atol=1e-6)  # same pixel
    far = surface_points(np.array([[1.0, 1.0]]), demo.depth, demo.intrinsics, demo.mask, (0.05, 5.0))
    assert np.isnan(far).all()  # nothing of the object near the corner


def _flat_camera() -> CameraIntrinsics:
    return CameraIntrinsics.from_matrix([[200.0, 0, 50.0], [0, 200.0, 50.0], [0, 0, 1]], 100, 100)


def test_a_keypoint_on_a_steep_surface_gets_the_depth_at_its_sub_pixel_position():
    """A surface rising 20 mm per pixel (a tyre or a rim seen at a grazing angle): the depth at the keypoint's own
    sub-pixel position, not its pixel centre's (10 mm off here, several px once the object turns 90 deg)."""
    from correspondence.pose_keypoints import SurfaceSettings, surface_points
    camera = _flat_camera()
    u = np.arange(100) + 0.5
    depth = np.tile(0.5 + 0.02 * u, (100, 1)).astype(np.float64)
    xy = np.array([[30.05, 40.5], [61.9, 12.3], [0.2, 99.7]])  # near a pixel's edge, inside, in the image corner
    points = surface_points(xy, depth, camera, None, (0.05, 5.0))
    np.testing.assert_allclose(points[:, 2], 0.5 + 0.02 * xy[:, 0], atol=1e-9)
    np.testing.assert_allclose(camera.project(points), xy, atol=1e-9)
    centre_only = surface_points(xy, depth, camera, None, (0.05, 5.0), settings=SurfaceSettings(0.0, 0.0))
    assert np.abs(centre_only[:, 2] - (0.5 + 0.02 * xy[:, 0])).max() > 0.008  # the old rule: the pixel's depth


def test_a_keypoint_at_a_depth_edge_is_on_the_occluding_side():
    """The pixel behind a silhouette keypoint shows the surface behind the object's edge; the keypoint is on the
    edge, the nearer surface. Two pixels away from the edge the far surface is the keypoint's own."""
    from correspondence.pose_keypoints import surface_points
    camera = _flat_camera()
    depth = np.full((100, 100), 0.9)
    depth[:, :50] = 0.4
    points = surface_points(np.array([[50.2, 20.0], [49.7, 20.0], [52.6, 20.0]]), depth, camera, None, (0.05, 5.0))
    np.testing.assert_allclose(points[:, 2], [0.4, 0.4, 0.9])
    masked = surface_points(np.array([[50.2, 20.0]]), depth, camera, depth > 0.5, (0.05, 5.0))
    np.testing.assert_allclose(masked[:, 2], [0.9])  # the near surface is not the object's: not taken


def test_a_keypoint_in_a_gap_of_noisy_depth_reads_its_surface_without_bias():
    """A keypoint in a stereo camera's gap (no depth within 2 px) on a plane with 3 mm noise: every pixel on the
    gap's rim reads the plane at the keypoint. The nearest of those readings sat about two noise sigmas in front of
    the surface (the least of many noisy values); the median of the front surface's readings does not, and a far
    face behind a depth edge still never votes."""
    from correspondence.pose_keypoints import front_surface, surface_points
    camera = _flat_camera()
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:60, :60]
    gap = np.hypot(rows + 0.5 - 30.0, cols + 0.5 - 30.0) < 2.5
    biases, nearest = [], []
    for _ in range(60):
        noise = rng.normal(0.0, 0.003, (60, 60))
        depth = np.where(gap, 0.0, 1.0 + noise)
        biases.append(surface_points(np.array([[30.0, 30.0]]), depth, camera, None, (0.05, 5.0))[0, 2] - 1.0)
        rim = depth[(~gap) & (np.hypot(rows + 0.5 - 30.0, cols + 0.5 - 30.0) < 4.0)]
        nearest.append(rim.min() - 1.0)
    assert abs(np.mean(biases)) < 0.001 and np.mean(nearest) < -0.004  # the nearest rim reading: > 1 sigma in front
    assert front_surface([1.000, 1.002, 0.998, 1.090, 1.120], 0.03) == 1.0  # the far face (>= 3 cm back) is out


def test_a_silhouette_point_over_the_backdrop_is_judged_by_the_surface_beside_it():
    """The prediction of a keypoint on a roof corner lands on the backdrop (no depth): visible when the object's
    surface beside it is at its depth, hidden when every surface beside it is well in front, and "no live depth"
    only with no depth anywhere near."""
    camera = _flat_camera()
    depth = np.zeros((100, 100))
    depth[:, :50] = 1.0  # the object's surface; the backdrop beyond has no depth
    pixels, z = np.array([[50.8, 20.5], [51.3, 20.5], [80.5, 20.5], [40.5, 20.5]]), np.array([1.0, 1.2, 1.0, 1.2])
    points = camera.unproject(pixels, z)  # the second and the fourth 20 cm behind the surface
    xy, _, visibility = predict(points, np.eye(4), depth, camera, KeypointPoseSettings())
    np.testing.assert_allclose(xy[:, 0], [50.8, 51.3, 80.5, 40.5], atol=1e-9)
    assert visibility == ["visible", "hidden", "no live depth", "hidden"]
