"""Precision of an accepted pose and of the keypoints published with it, against the ground truth of synthetic scenes:
the guarded ICP fits only the demo surface that faces the live camera (correspondence/icp.py), the pose score does
not count pixel rounding at a depth edge as a contradiction (correspondence/pose_search.py), and a demo keypoint in a
stereo camera's dropped edge band is lifted onto the occluding surface (correspondence/pose_keypoints.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.alignment import rotation_error_deg  # noqa: E402
from correspondence.camera import CameraIntrinsics  # noqa: E402
from correspondence.icp import FacingPart, IcpSettings, refine  # noqa: E402
from correspondence.pose_keypoints import surface_points  # noqa: E402
from correspondence.pose_search import LiveFrame, PoseSearchSettings, score_pose  # noqa: E402

K = CameraIntrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)


def _look_at(eye, target=(0.0, 0.0, 0.1)) -> np.ndarray:
    """World -> camera (x right, y down, z forward) for a camera at ``eye`` looking at ``target``, world z up."""
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward])
    T[:3, 3] = -T[:3, :3] @ eye
    return T


def _box_faces(lo, hi, step: float = 0.005):
    """(points, outward normals) on the faces of an axis-aligned box, a grid of ``step``."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    points, normals = [], []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        ga = np.arange(lo[a] + step / 2, hi[a], step)
        gb = np.arange(lo[b] + step / 2, hi[b], step)
        A, B = np.meshgrid(ga, gb, indexing="ij")
        for side, value in ((-1.0, lo[axis]), (1.0, hi[axis])):
            p = np.zeros((A.size, 3))
            p[:, a], p[:, b], p[:, axis] = A.ravel(), B.ravel(), value
            n = np.zeros_like(p)
            n[:, axis] = side
            points.append(p)
            normals.append(n)
    return np.concatenate(points), np.concatenate(normals)


def _seen(points, normals, world_to_camera) -> np.ndarray:
    """The points a camera sees of convex parts that do not hide each other: those whose face turns to it."""
    eye = -world_to_camera[:3, :3].T @ world_to_camera[:3, 3]
    seen = ((eye - points) * normals).sum(1) > 0
    p = points[seen]
    return p @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]


def test_icp_started_at_the_truth_stays_there_when_the_cameras_see_opposite_faces_of_a_thin_part():
    """A block with a 2 cm thin fin: the demo camera sees the fin's one face, the live camera, turned 150 deg about
    the object, its other face. Pulled onto the face it sees, the demo's fin slid 2 cm off the truth (the chair of
    issue 26's 1-view seed 1 trial 19: 0.1 deg but 2.7 cm off); fitted with the faces the live camera can see, the
    true pose stays put."""
    block = _box_faces((-0.1, -0.1, 0.0), (0.1, 0.1, 0.2))
    fin = _box_faces((0.1, -0.01, 0.0), (0.3, 0.01, 0.15))
    points, normals = np.concatenate([block[0], fin[0]]), np.concatenate([block[1], fin[1]])
    demo_cam = _look_at((0.25, 0.9, 0.7))
    angle = np.radians(150.0)
    turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    eye = turn @ [0.25, 0.9, 0.7]
    live_cam = _look_at(eye)
    demo, live = _seen(points, normals, demo_cam), _seen(points, normals, live_cam)
    truth = live_cam @ np.linalg.inv(demo_cam)
    centre = demo_cam[:3, :3] @ [0.1, 0.0, 0.1] + demo_cam[:3, 3]

    def off_cm(T):
        return 100 * np.linalg.norm(T[:3, :3] @ centre + T[:3, 3] - truth[:3, :3] @ centre - truth[:3, 3])

    facing = refine(demo, live, truth, viewpoint=np.zeros(3))
    assert off_cm(facing.transform) < 0.3 and rotation_error_deg(facing.transform, truth) < 0.3
    whole = refine(demo, live, truth)  # every demo point: the fin's seen face pulled onto its other face
    assert not whole.accepted or off_cm(whole.transform) > 1.0
    # the part that faces the live camera: the block's top and the faces both cameras see, not the fin's demo face
    part = FacingPart(demo, np.zeros(3), IcpSettings())
    fin_demo_face = np.abs((demo - demo_cam[:3, 3]) @ demo_cam[:3, :3][:, 1] - 0.01) < 1e-6  # world y = +0.01
    assert fin_demo_face.sum() > 100 and part.mask(truth)[fin_demo_face].mean() < 0.1  # (its rim: normals of two faces)


def test_free_space_ignores_pixel_rounding_at_a_depth_edge():
    """A near box (0.8 m) in front of a far one (1.0 m), both the object: points on the near box's right edge at the
    true pose project a fraction of a pixel past the edge, onto the far surface, 20 cm behind them. Those are no
    contradiction: at the truth nothing is in free space."""
    depth = np.full((K.height, K.width), 1.0)
    depth[:, :160] = 0.8
    mask = np.ones_like(depth, dtype=bool)
    rows = np.arange(60.5, 180.0, 2.0)
    edge = np.stack([np.full_like(rows, 160.3), rows], 1)  # 0.3 px right of the edge: the pixel shows the far box
    inner = np.stack([np.full_like(rows, 150.5), rows], 1)
    points = K.unproject(np.concatenate([edge, inner]), np.full(2 * len(rows), 0.8))
    cloud = K.unproject(np.array([[100.5, 100.5], [200.5, 100.5]]), np.array([0.8, 1.0]))
    live = LiveFrame(depth, K, mask, cloud, None, None)
    assert score_pose(np.eye(4), points, None, live, PoseSearchSettings()).free_space == 0.0
    # the pixel alone (the rule before): half the true points contradict the frame
    assert score_pose(np.eye(4), points, None, live, PoseSearchSettings(free_space_window_px=0)).free_space == 0.5


def test_a_keypoint_in_a_stereo_edge_band_is_lifted_onto_the_occluding_surface():
    """A roof corner: the near face (0.77 m) ends at x = 160, a far face (0.85 m) lies behind it; a stereo camera
    dropped two pixels on each side of the jump. The keypoint, on the near face's edge, sits in the band nearer a
    far pixel than a near one: its 3D point is on the near face (the far pixel only shows what is behind the edge)."""
    depth = np.full((K.height, K.width), 0.85)
    depth[:, :160] = 0.77
    depth[:, 158:162] = 0.0  # the dropped band, columns 158-161
    xy = np.array([[160.6, 100.5]])  # 1.9 px from the far face's pixel 162, 3.1 px from the near face's pixel 157
    point = surface_points(xy, depth, K, None, (0.1, 2.0))[0]
    assert np.isfinite(point).all()
    assert point[2] == pytest.approx(0.77, abs=0.005)


def test_a_fit_refused_only_by_the_point_fitness_is_handed_on_for_the_pose_score_to_judge():
    """The point fitness can prefer a wrong pose (a mug 6.5 deg off had more points within 8 mm than its truth), so
    a converged fit refused only by it carries the fit (``unguarded``) for the pose search to judge by its score;
    the start still stands in ``transform``. A fit refused for another reason carries none."""
    block = _box_faces((-0.1, -0.1, 0.0), (0.1, 0.1, 0.2))
    demo_cam = _look_at((0.5, 0.7, 0.6))
    demo = _seen(*block, demo_cam)
    angle = np.radians(3.0)
    truth = np.eye(4)
    truth[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    truth[:3, 3] = [0.01, -0.005, 0.008]
    live = demo @ truth[:3, :3].T + truth[:3, 3]
    strict = IcpSettings(fitness_tolerance=-1.0)  # any fit "lowers" the fitness
    refused = refine(demo, live, np.eye(4), strict, viewpoint=np.zeros(3))
    assert not refused.accepted and "lowered the surface agreement" in refused.reason
    np.testing.assert_array_equal(refused.transform, np.eye(4))
    assert refused.unguarded is not None and np.abs(refused.unguarded - truth).max() < 1e-3
    too_far = refine(demo, live, np.eye(4), IcpSettings(max_correction_deg=0.5), viewpoint=np.zeros(3))
    assert not too_far.accepted and too_far.unguarded is None
