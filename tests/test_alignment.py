"""Pose from correspondences: depth lifting, Umeyama, RANSAC (numpy and Open3D), 2D similarity, end to end on
rendered views with exact ground truth."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.alignment import (
    REASON_DEGENERATE,
    REASON_FEW_INLIERS,
    REASON_OK,
    REASON_TOO_FEW,
    depth_from_uint16,
    estimate_alignment,
    lift,
    ransac_rigid,
    rotation_error_deg,
    similarity_2d,
    translation_error,
    umeyama,
)
from correspondence.camera import CameraIntrinsics
from correspondence.errors import ConfigError, InputError


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def rigid_pair(rng: np.random.Generator, n: int, noise: float = 0.0):
    R, t = random_rotation(rng), rng.uniform(-0.5, 0.5, 3)
    src = rng.uniform(-0.1, 0.1, (n, 3)) + np.array([0, 0, 0.6])
    dst = src @ R.T + t + rng.normal(0, noise, (n, 3)) if noise else src @ R.T + t
    return src, dst, R, t


# ---------------------------------------------------------------------------------------------------- umeyama


def test_umeyama_recovers_rigid_transform_exactly() -> None:
    rng = np.random.default_rng(1)
    src, dst, R_true, t_true = rigid_pair(rng, 30)
    for weights in (None, rng.uniform(0.1, 2.0, 30)):
        R, t, s = umeyama(src, dst, weights)
        np.testing.assert_allclose(R, R_true, atol=1e-9)
        np.testing.assert_allclose(t, t_true, atol=1e-9)
        assert s == 1.0


def test_umeyama_weights_matter_and_scale_is_recovered() -> None:
    rng = np.random.default_rng(2)
    src, dst, R_true, t_true = rigid_pair(rng, 20)
    corrupted = dst.copy()
    corrupted[:5] += 0.3
    weights = np.r_[np.zeros(5), np.ones(15)]
    R, t, _ = umeyama(src, corrupted, weights)  # zero weight: the corrupted rows must not count
    np.testing.assert_allclose(R, R_true, atol=1e-9)
    np.testing.assert_allclose(t, t_true, atol=1e-9)
    R_unweighted, _, _ = umeyama(src, corrupted)
    assert rotation_error_deg(R_unweighted, R_true) > 0.1
    R, t, s = umeyama(src, 2.5 * dst, with_scale=True)
    assert s == pytest.approx(2.5, abs=1e-9)
    np.testing.assert_allclose(R, R_true, atol=1e-9)


def test_umeyama_never_returns_a_reflection() -> None:
    rng = np.random.default_rng(3)
    src = rng.normal(size=(25, 3))
    mirrored = src * np.array([-1.0, 1.0, 1.0])  # the best orthogonal map is the mirror itself (det -1)
    R, _, _ = umeyama(src, mirrored)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    for seed in range(10):  # planar points: the out-of-plane axis is a coin flip without the correction
        rng = np.random.default_rng(seed)
        plane = np.c_[rng.uniform(-1, 1, (12, 2)), np.zeros(12)]
        R_true, t_true = random_rotation(rng), rng.normal(size=3)
        dst = plane @ R_true.T + t_true + rng.normal(0, 1e-4, (12, 3))
        R, _, _ = umeyama(plane, dst)
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-9)
        assert rotation_error_deg(R, R_true) < 0.1


def test_umeyama_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        umeyama(np.zeros((5, 3)), np.zeros((4, 3)))
    with pytest.raises(InputError):
        umeyama(np.full((5, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(InputError):
        umeyama(np.ones((5, 3)), np.ones((5, 3)), weights=-np.ones(5))


# ----------------------------------------------------------------------------------------------------- RANSAC


def test_ransac_recovers_pose_with_40_percent_outliers() -> None:
    rng = np.random.default_rng(4)
    n = 200
    src, dst, R_true, t_true = rigid_pair(rng, n, noise=0.001)
    outlier = rng.random(n) < 0.4
    dst[outlier] = rng.uniform(-0.5, 0.5, (outlier.sum(), 3)) + dst.mean(0)
    result = ransac_rigid(src, dst, threshold=0.005)
    assert result.success and result.reason == REASON_OK and result.solver == "ransac"
    assert rotation_error_deg(result.transform, R_true) < 1.0
    assert translation_error(result.transform, t_true) < 0.005
    assert np.linalg.det(result.rotation) == pytest.approx(1.0)
    assert not (result.inliers & outlier).any()
    assert (result.inliers | outlier).mean() > 0.97  # nearly every true inlier is kept (noise tails aside)
    assert result.num_inliers == result.inliers.sum()
    assert result.inlier_ratio == pytest.approx(result.num_inliers / n)
    assert 0 < result.rmse < 0.005


def test_ransac_skips_nan_rows_and_is_deterministic() -> None:
    rng = np.random.default_rng(5)
    src, dst, R_true, _ = rigid_pair(rng, 50, noise=0.0005)
    src[:10] = np.nan  # e.g. pixels without depth, as lift() reports them
    a, b = ransac_rigid(src, dst, seed=3), ransac_rigid(src, dst, seed=3)
    assert a.success and not a.inliers[:10].any()
    assert a.inlier_ratio == pytest.approx(1.0)  # ratio over the valid rows
    np.testing.assert_array_equal(a.transform, b.transform)
    assert rotation_error_deg(a.transform, R_true) < 0.5


def test_ransac_fails_without_a_transform() -> None:
    rng = np.random.default_rng(6)
    src, dst = rng.uniform(-1, 1, (60, 3)), rng.uniform(-1, 1, (60, 3))
    result = ransac_rigid(src, dst, threshold=0.01)
    assert not result.success and result.reason == REASON_FEW_INLIERS
    assert result.transform is None and result.rotation is None and result.translation is None

    two = ransac_rigid(src[:2], dst[:2])
    assert not two.success and two.reason == REASON_TOO_FEW and two.transform is None
    nan = src.copy()
    nan[2:] = np.nan
    assert ransac_rigid(nan, dst).reason == REASON_TOO_FEW

    line = np.c_[np.linspace(0, 1, 20), np.zeros(20), np.zeros(20)]  # collinear: rotation about it unknown
    collinear = ransac_rigid(line, line + 0.1)
    assert not collinear.success and collinear.reason == REASON_DEGENERATE and collinear.transform is None
    with pytest.raises(InputError):
        rotation_error_deg(result.transform, np.eye(3))


def test_ransac_refuses_a_nearly_collinear_consensus() -> None:
    rng = np.random.default_rng(11)
    R, t = random_rotation(rng), rng.normal(size=3)
    src = np.r_[np.c_[np.linspace(0, 0.5, 30), np.zeros((30, 2))], [[0.25, 0.015, 0.0]]]
    dst = src @ R.T + t  # exact, but one point 1.5 cm off the line cannot pin the roll at a 1 cm threshold
    result = ransac_rigid(src, dst, threshold=0.01)
    assert not result.success and result.reason == REASON_DEGENERATE and result.transform is None
    assert ransac_rigid(src, dst, threshold=0.001).success  # at 1 mm it can


def test_ransac_min_inlier_ratio() -> None:
    rng = np.random.default_rng(7)
    src, dst, _, _ = rigid_pair(rng, 100)
    dst[:80] = rng.uniform(-1, 1, (80, 3))
    assert ransac_rigid(src, dst, min_inlier_ratio=0.1).success
    strict = ransac_rigid(src, dst, min_inlier_ratio=0.5)
    assert not strict.success and strict.reason == REASON_FEW_INLIERS and strict.transform is None
    assert strict.num_inliers == 20  # diagnostics still say what was found


def test_estimate_alignment_dispatch() -> None:
    rng = np.random.default_rng(8)
    src, dst, R_true, _ = rigid_pair(rng, 30)
    assert rotation_error_deg(estimate_alignment(src, dst).transform, R_true) < 1e-6
    with pytest.raises(ConfigError):
        estimate_alignment(src, dst, solver="icp")
    with pytest.raises(InputError):
        ransac_rigid(src, dst[:, :2])


def test_open3d_solver_agrees_with_ransac() -> None:
    pytest.importorskip("open3d", reason="open3d is not installed: the optional open3d solver cannot run")
    rng = np.random.default_rng(9)
    src, dst, R_true, t_true = rigid_pair(rng, 150, noise=0.001)
    dst[:40] = rng.uniform(-0.5, 0.5, (40, 3))
    ours = estimate_alignment(src, dst, threshold=0.005)
    theirs = estimate_alignment(src, dst, solver="open3d", threshold=0.005)
    assert ours.success and theirs.success and theirs.solver == "open3d"
    assert rotation_error_deg(theirs.transform, ours.transform) < 0.1
    assert translation_error(theirs.transform, ours.transform) < 0.001
    assert rotation_error_deg(theirs.transform, R_true) < 1.0
    np.testing.assert_array_equal(theirs.inliers, ours.inliers)
    failed = estimate_alignment(src[:2], dst[:2], solver="open3d")
    assert not failed.success and failed.reason == REASON_TOO_FEW and failed.transform is None


# --------------------------------------------------------------------------------------------------- lifting

K = CameraIntrinsics(100.0, 110.0, 31.5, 23.5, 64, 48)


def test_lift_plane_zero_nan_and_range() -> None:
    depth = np.full((48, 64), 0.8)
    depth[10, 10], depth[20, 20] = 0.0, np.nan
    xy = np.array([[5.5, 5.5], [10.5, 10.5], [20.5, 20.5], [32.0, 24.0], [63.9, 47.9]])
    points, valid = lift(xy, depth, K, window=0)
    np.testing.assert_array_equal(valid, [True, False, False, True, True])
    np.testing.assert_allclose(points[valid, 2], 0.8)
    assert np.isnan(points[~valid]).all()
    np.testing.assert_allclose(K.project(points[valid]), xy[valid], atol=1e-9)  # rays through the exact xy
    np.testing.assert_allclose(points[3], [0, 0, 0.8], atol=1e-12)  # (32, 24) is the principal point
    _, valid = lift(xy, depth, K, window=0, depth_range=(0.1, 0.5))
    assert not valid.any()
    _, valid = lift(xy, depth, K, window=0, depth_range=(0.5, 1.0))
    assert valid[0]


def test_lift_neighbourhood_median_ignores_holes_and_outliers() -> None:
    depth = np.full((48, 64), 0.8)
    depth[10, 10] = 0.0  # hole under the point
    depth[30, 30] = 5.0  # flying pixel under the point
    depth[30, 31] = 0.0
    xy = np.array([[10.5, 10.5], [30.5, 30.5]])
    points, valid = lift(xy, depth, K, window=1)
    assert valid.all()
    np.testing.assert_allclose(points[:, 2], 0.8)
    points, valid = lift(xy, depth, K, window=0)
    assert not valid[0] and points[1, 2] == 5.0  # without the window the outlier goes through


def test_lift_drops_points_whose_neighbourhood_is_mostly_empty() -> None:
    depth = np.zeros((48, 64))
    depth[:, :10] = 0.8  # the point at column 10 sees 3 valid of 9 neighbours (column 9)
    points, valid = lift(np.array([[10.5, 5.5], [5.5, 5.5], [0.5, 0.5]]), depth, K, window=1)
    np.testing.assert_array_equal(valid, [False, True, False])  # corner: 4 of 9 (outside counts as missing)
    assert points[1, 2] == 0.8


def test_lift_keeps_the_pixels_own_depth_when_the_median_confirms_it() -> None:
    depth = np.tile(0.5 + 0.01 * np.arange(64.0), (48, 1))  # a slanted surface: 1 cm per column
    depth[:, 21:] = 0.0  # the surface ends at column 20 (a silhouette)
    xy = np.array([[20.5, 10.5]])
    points, valid = lift(xy, depth, K, window=1)
    assert valid[0] and points[0, 2] == pytest.approx(0.70)  # not the lopsided window's median (0.69)
    points, _ = lift(xy, depth, K, window=1, max_deviation=0.0)
    assert points[0, 2] == pytest.approx(0.69)


def test_lift_rejects_bad_input() -> None:
    depth = np.ones((48, 64))
    with pytest.raises(InputError, match="2-D"):
        lift(np.zeros((1, 2)), np.ones((48, 64, 1)), K)
    with pytest.raises(InputError, match="outside"):
        lift(np.array([[64.0, 1.0]]), depth, K)
    with pytest.raises(InputError, match="outside"):
        lift(np.array([[-0.1, 1.0]]), depth, K)
    with pytest.raises(InputError, match="depth_from_uint16"):
        lift(np.array([[1.0, 1.0]]), np.ones((48, 64), np.uint16), K)
    with pytest.raises(InputError, match="intrinsics"):
        lift(np.array([[1.0, 1.0]]), np.ones((64, 48)), K)
    with pytest.raises(InputError):
        lift(np.array([[1.0, 1.0]]), depth, K, depth_range=(1.0, 0.5))


def test_depth_from_uint16_millimetres() -> None:
    raw = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    metres = depth_from_uint16(raw, 0.001)
    np.testing.assert_allclose(metres, [[0.0, 1.0], [1.5, 65.535]])
    _, valid = lift(np.array([[0.5, 0.5], [1.5, 0.5]]), metres, CameraIntrinsics(1, 1, 0, 0, 2, 2), window=0)
    np.testing.assert_array_equal(valid, [False, True])
    with pytest.raises(InputError):
        depth_from_uint16(metres, 0.001)
    with pytest.raises(InputError):
        depth_from_uint16(raw, 0.0)


# --------------------------------------------------------------------------------------------- 2D similarity


def test_similarity_2d_recovers_known_transform() -> None:
    rng = np.random.default_rng(10)
    scale, angle, t = 1.7, np.radians(25.0), np.array([12.0, -30.0])
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = rng.uniform(0, 200, (100, 2))
    dst = scale * src @ R.T + t + rng.normal(0, 0.3, (100, 2))
    dst[:30] = rng.uniform(0, 300, (30, 2))
    result = similarity_2d(src, dst, threshold=2.0)
    assert result.success and result.reason == REASON_OK
    assert result.scale == pytest.approx(scale, rel=0.01)
    assert result.angle_deg == pytest.approx(25.0, abs=0.5)
    np.testing.assert_allclose(result.matrix[:2, 2], t, atol=1.0)
    np.testing.assert_allclose(result.matrix[2], [0, 0, 1])
    assert result.inliers[30:].mean() > 0.97 and not result.inliers[:30].any()
    failed = similarity_2d(src, rng.uniform(0, 300, (100, 2)), threshold=1.0)
    assert not failed.success and failed.matrix is None and failed.reason == REASON_FEW_INLIERS
    assert similarity_2d(src[:1], dst[:1]).reason == REASON_TOO_FEW


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def two_views():
    pytest.importorskip("open3d", reason="rendering the procedural world needs open3d")
    from correspondence.world.families import make_instance
    from correspondence.world.groundtruth import same_object_correspondences
    from correspondence.world.render import Renderer, RenderSettings, look_at_pose

    obj = make_instance("mug", 0)
    centre = np.asarray(obj.center)
    settings = RenderSettings(width=160, height=160)
    renderer = Renderer(obj)
    pose_a = look_at_pose(centre + np.array([0.25, 0.05, 0.12]), centre)
    pose_b = look_at_pose(centre + np.array([0.12, 0.22, 0.15]), centre)
    view_a, view_b = renderer.render(pose_a, settings, seed=1), renderer.render(pose_b, settings, seed=2)
    corr = same_object_correspondences(view_a, view_b, max_points=400, rng=np.random.default_rng(0))
    assert len(corr) > 150
    pick = np.random.default_rng(1).choice(len(corr), 200, replace=False)
    return view_a, view_b, corr.xy_a[pick], corr.xy_b[pick]


def test_end_to_end_camera_to_camera_pose(two_views) -> None:
    view_a, view_b, xy_a, xy_b = two_views
    truth = view_b.pose @ np.linalg.inv(view_a.pose)  # camera A -> camera B
    pa, valid_a = lift(xy_a, view_a.depth, view_a.intrinsics)
    pb, valid_b = lift(xy_b, view_b.depth, view_b.intrinsics)
    assert (valid_a & valid_b).mean() > 0.8
    for solver in ("ransac", "open3d"):
        result = estimate_alignment(pa, pb, solver=solver, threshold=0.005)
        assert result.success, result.reason
        assert rotation_error_deg(result.transform, truth) < 1.0
        assert translation_error(result.transform, truth) < 0.005
        assert result.inlier_ratio > 0.9

    rng = np.random.default_rng(2)
    bad = rng.random(len(xy_b)) < 0.3  # wrong matches: the B pixel lands somewhere else on the object
    rows, cols = np.nonzero(view_b.mask)
    other = rng.choice(len(rows), bad.sum())
    xy_wrong = xy_b.copy()
    xy_wrong[bad] = np.c_[cols[other] + 0.5, rows[other] + 0.5]
    pb_wrong, _ = lift(xy_wrong, view_b.depth, view_b.intrinsics)
    result = ransac_rigid(pa, pb_wrong, threshold=0.005)
    assert result.success, result.reason
    assert rotation_error_deg(result.transform, truth) < 1.0
    assert translation_error(result.transform, truth) < 0.005
    moved = np.linalg.norm(pb_wrong - (pa @ truth[:3, :3].T + truth[:3, 3]), axis=1)
    wrong = bad & (moved > 0.01)
    assert wrong.sum() > 40 and not result.inliers[wrong].any()  # truly wrong matches are rejected
