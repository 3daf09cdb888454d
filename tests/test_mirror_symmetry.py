"""The vertical mirror plane found from one view (correspondence/mirror_symmetry.py): a synthetic object of boxes,
rendered to depth with a point z-buffer from one side, whose true plane is known."""
import numpy as np
import pytest

from correspondence.camera import CameraIntrinsics
from correspondence.mirror_symmetry import complete_with_mirror, estimate_mirror_plane
from correspondence.pose_search import LiveFrame, PoseSearchSettings, score_pose
from correspondence.yaw_sweep import _axis_angle

K = CameraIntrinsics(220.0, 220.0, 80.0, 60.0, 160, 120)
BODY = ((-0.15, 0.15), (-0.06, 0.06), (0.0, 0.08))  # object frame: z up, symmetric about y = 0
CABIN = ((-0.09, 0.03), (-0.05, 0.05), (0.08, 0.13))  # off-centre along x: no plane x = const
BUMP = ((0.04, 0.14), (0.0, 0.06), (0.08, 0.12))  # on the top's +y half only, before the cabin: breaks y = 0


def _box_surface(box, step=0.0015) -> np.ndarray:
    (x0, x1), (y0, y1), (z0, z1) = box
    out = []
    for axis, (lo, hi) in enumerate(box):
        others = [b for i, b in enumerate(box) if i != axis]
        u, v = np.meshgrid(np.arange(others[0][0], others[0][1] + 1e-9, step),
                           np.arange(others[1][0], others[1][1] + 1e-9, step), indexing="ij")
        for value in (lo, hi):
            face = np.insert(np.stack([u.ravel(), v.ravel()], 1), axis, value, axis=1)
            out.append(face)
    return np.concatenate(out)


def _object(asymmetric: bool) -> np.ndarray:
    boxes = [BODY, CABIN] + ([BUMP] if asymmetric else [])
    return np.concatenate([_box_surface(b) for b in boxes])


def _pose(yaw_deg: float, elevation_deg: float = 35.0, distance: float = 0.7) -> np.ndarray:
    """Object -> camera: the camera on the object's +y side (turned by yaw about the vertical), looking down."""
    turn = _axis_angle(np.array([0.0, 0.0, 1.0]), np.radians(yaw_deg))
    # camera axes in the object frame: looking along -y (from +y), x to the right, y down the image
    e = np.radians(elevation_deg)
    forward = turn @ np.array([0.0, -np.cos(e), -np.sin(e)])
    right = turn @ np.array([-1.0, 0.0, 0.0])
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: camera axes -> maps object vectors to camera
    centre = np.array([0.0, 0.0, 0.06])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ (centre - distance * forward)
    return T


def _render(points_obj: np.ndarray, T: np.ndarray):
    """Depth (a wall 1.5 m away behind the object), mask, colour and the seen cloud of the object."""
    cam = points_obj @ T[:3, :3].T + T[:3, 3]
    xy = K.project(cam)
    col, row = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    ok = (col >= 0) & (col < K.width) & (row >= 0) & (row < K.height)
    depth = np.full((K.height, K.width), np.inf)
    np.minimum.at(depth, (row[ok], col[ok]), cam[ok, 2])
    mask = np.isfinite(depth)
    depth[~mask] = 1.5
    rows, cols = np.nonzero(mask)
    seen = K.unproject(np.stack([cols + 0.5, rows + 0.5], 1), depth[rows, cols])
    image = np.full((K.height, K.width, 3), 150, np.uint8)
    return depth, mask, image, seen


def _plane_in_object(plane, T):
    R, t = T[:3, :3], T[:3, 3]
    return R.T @ plane.normal, plane.offset - plane.normal @ t


@pytest.mark.parametrize("yaw", [-25.0, 10.0, 40.0])
def test_symmetric_object_seen_from_one_side_gives_its_plane(yaw):
    T = _pose(yaw)
    depth, mask, image, seen = _render(_object(False), T)
    view = LiveFrame(depth, K, mask, seen, None, image)
    up = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    plane = estimate_mirror_plane(seen, view, up)
    assert plane is not None
    normal, offset = _plane_in_object(plane, T)
    assert abs(abs(normal[1]) - 1.0) < 1 - np.cos(np.radians(2.0))  # the y = 0 plane, within 2 deg
    assert abs(offset) < 0.005
    assert plane.contradiction <= 0.03 and plane.hidden > 0.1


def test_asymmetric_object_gives_no_plane():
    """The bump on the top's +y half: its reflection lies on the top the camera sees, where nothing is."""
    T = _pose(10.0)
    depth, mask, image, seen = _render(_object(True), T)
    view = LiveFrame(depth, K, mask, seen, None, image)
    up = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    assert estimate_mirror_plane(seen, view, up) is None


def test_completion_adds_the_hidden_side_where_it_is():
    from scipy.spatial import cKDTree

    T = _pose(10.0)
    truth = _object(False)
    depth, mask, image, seen = _render(truth, T)
    view = LiveFrame(depth, K, mask, seen, None, image)
    up = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    colors = np.full((len(seen), 3), 150, np.uint8)
    plane = estimate_mirror_plane(seen, view, up)
    completion = complete_with_mirror(seen, np.ones((len(seen), 4), np.float32), colors, view, plane)
    added = completion.points[completion.inferred]
    assert len(added) > 0.1 * len(seen)
    assert np.isnan(completion.descriptors[completion.inferred]).all()
    assert not np.isnan(completion.descriptors[~completion.inferred]).any()
    on_truth = cKDTree(truth @ T[:3, :3].T + T[:3, 3]).query(added)[0]
    assert np.mean(on_truth < 0.01) > 0.9  # the reflected points lie on the object's hidden side
    # and that side was hidden: none of them is where the camera saw the object's near surface
    assert cKDTree(seen).query(added)[0].min() > 0.003 or np.mean(cKDTree(seen).query(added)[0] < 0.005) < 0.05


def test_completed_cloud_explains_the_turned_view():
    """Seen from the other side (turned 180 deg), the true pose explains the live view with the completed cloud
    and hardly at all with the seen side alone."""
    truth = _object(False)
    T_demo, T_live = _pose(10.0), _pose(190.0)
    depth, mask, image, seen = _render(truth, T_demo)
    live_depth, live_mask, live_image, live_seen = _render(truth, T_live)
    view = LiveFrame(depth, K, mask, seen, None, image)
    up = T_demo[:3, :3] @ np.array([0.0, 0.0, 1.0])
    colors = np.full((len(seen), 3), 150, np.uint8)
    completion = complete_with_mirror(seen, None, colors, view, estimate_mirror_plane(seen, view, up))
    live = LiveFrame(live_depth, K, live_mask, live_seen, None, live_image)
    true_motion = T_live @ np.linalg.inv(T_demo)
    s = PoseSearchSettings()
    alone = score_pose(true_motion, seen, None, live, s, colors)
    completed = score_pose(true_motion, completion.points, None, live, s, completion.colors, completion.inferred)
    assert completed.coverage > 0.8 and alone.coverage < 0.5
    assert completed.score > alone.score + 0.3


@pytest.mark.slow  # the whole search: ~30 s alone, 110 s on a loaded 2-core machine
def test_search_with_the_completed_cloud_still_finds_the_turn_from_the_other_side():
    """The whole search (upright sweep, turns, ICP, ambiguity) on the demo seen from +y and the live view from -y
    (turned 180 deg): with the completed cloud the published pose is the truth. A guard, not the completion's
    benefit: on this box-built car the search without the completion finds the truth too (checked by hand, 0.0 deg);
    the benefit is measured on the bench (docs/pose_search.md), and the completion is off by default."""
    from correspondence.alignment import rotation_error_deg
    from correspondence.pose_search import search_pose

    truth_points = _object(False)
    T_demo, T_live = _pose(10.0), _pose(190.0)
    T_live[:3, 3] += np.array([0.02, -0.01, 0.03])  # and moved
    depth, mask, image, seen = _render(truth_points, T_demo)
    live_depth, live_mask, live_image, live_seen = _render(truth_points, T_live)
    view = LiveFrame(depth, K, mask, seen, None, image)
    up = (T_demo[:3, :3] @ np.array([0.0, 0.0, 1.0]), T_live[:3, :3] @ np.array([0.0, 0.0, 1.0]))
    colors = np.full((len(seen), 3), 150, np.uint8)
    completion = complete_with_mirror(seen, None, colors, view, estimate_mirror_plane(seen, view, up[0]))
    live = LiveFrame(live_depth, K, live_mask, live_seen, None, live_image)
    truth = T_live @ np.linalg.inv(T_demo)
    result = search_pose(completion.points, None, live, None, up=up, demo_colors=completion.colors, demo_view=view,
                         inferred=completion.inferred)
    assert result.transform is not None, result.reason
    assert rotation_error_deg(result.transform, truth) < 5.0
    centre = seen.mean(0)
    moved = lambda T: T[:3, :3] @ centre + T[:3, 3]  # noqa: E731
    assert np.linalg.norm(moved(result.transform) - moved(truth)) < 0.02
