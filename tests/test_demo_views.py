"""Multi-view demos: the ``views:`` list of a demo YAML loads (4x4 or translation + quaternion poses), every field
is checked with a message naming the view and the field, and a single-view demo is what it always was."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from correspondence.demo_spec import load_demo
from correspondence.demo_views import DemoView, check_pose, parse_pose, pose_as_yaml
from correspondence.errors import InputError
from test_demo_spec import write_demo


def _pose(yaw_deg: float, t=(0.1, -0.2, 0.3)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
    T[:3, 3] = t
    return T


def _view(**overrides) -> dict:
    view = {"rgb": "rgb.png", "depth": "depth.png", "depth_scale": 0.001, "intrinsics": "intrinsics.json",
            "mask": "mask.png", "pose": _pose(90).tolist(), **overrides}
    return {k: v for k, v in view.items() if v is not None}


def test_views_load_with_both_pose_forms_and_round_trip(tmp_path):
    T2 = _pose(-135, (0.0, 0.05, 0.6))
    demo = load_demo(write_demo(tmp_path / "d", views=[_view(), _view(pose=pose_as_yaml(T2), mask=None,
                                                                      name="back")]))
    assert len(demo.views) == 2 and demo.views[1].name == "back" and demo.views[1].mask is None
    np.testing.assert_allclose(demo.views[0].T_primary_from_view, _pose(90), atol=1e-12)
    np.testing.assert_allclose(demo.views[1].T_primary_from_view, T2, atol=1e-9)  # quaternion x, y, z, w round trip
    assert demo.views[0].depth[20, 30] == pytest.approx(0.8) and demo.views[0].intrinsics.fx == 50
    views = demo.all_views
    assert len(views) == 3 and views[0].name == "primary" and np.array_equal(views[0].T_primary_from_view, np.eye(4))
    assert views[0].rgb is demo.rgb and views[0].depth is demo.depth
    # a view's camera-frame point lands where its pose says in the primary frame
    p = np.array([[0.0, 0.0, 0.5]])
    np.testing.assert_allclose(demo.views[1].to_primary(p)[0], T2[:3, :3] @ p[0] + T2[:3, 3])


def test_a_single_view_demo_is_unchanged(tmp_path):
    demo = load_demo(write_demo(tmp_path / "d"))
    assert demo.views == () and len(demo.all_views) == 1
    # the positional constructor of before (8 fields) still builds a demo
    from correspondence.demo_spec import DemoSpec
    old = DemoSpec(None, demo.rgb, demo.depth, demo.intrinsics, demo.mask, demo.keypoints, None, None)
    assert old.views == () and old.mode == "keypoints"


@pytest.mark.parametrize("views, message", [
    ("v.png", r"views: must be a non-empty list"),
    ([], r"views: must be a non-empty list"),
    (["v.png"], r"views\[0\]: must be a mapping"),
    ([{"rgb": "rgb.png"}], r"views\[0\]: depth: is required"),
    ([_view(pose=None)], r"views\[0\]: pose: is required"),
    ([_view(), _view(colour="red")], r"views\[1\]: unknown field 'colour'"),
    ([_view(rgb="missing.png")], r"views\[0\].rgb: file"),
    ([_view(depth_scale=0)], r"views\[0\]: depth_scale: must be a positive"),
    ([_view(intrinsics={"fx": 50, "cx": 1, "cy": 1, "width": 60, "height": 40})],
     r"views\[0\]: .*intrinsics: missing 'fy'"),
    ([_view(intrinsics={"fx": 50, "fy": 50, "cx": 1, "cy": 1, "width": 64, "height": 40})],
     r"views\[0\]: intrinsics: are for 64x40 but the view's image is 60x40"),
    ([_view(pose=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])], r"views\[0\]: pose: must be a 4x4 matrix, got shape \(3, 3\)"),
    ([_view(pose=(2 * np.eye(4)).tolist())], r"views\[0\]: pose: last row must be \[0, 0, 0, 1\]"),
    ([_view(pose=np.diag([2.0, 1, 1, 1]).tolist())], r"views\[0\]: pose: not rigid: the upper-left 3x3 block is not a rotation"),
    ([_view(pose={"translation": [0, 0, 0], "quaternion": [0, 0, 0, 2]})], r"quaternion must have unit length"),
    ([_view(pose={"translation": [0, 0], "quaternion": [0, 0, 0, 1]})], r"translation must be 3 finite numbers"),
    ([_view(pose={"translation": [0, 0, 0]})], r"pose: missing 'quaternion'"),
    ([_view(pose={"translation": [0, 0, 0], "quaternion": [0, 0, 0, 1], "frame": "x"})], r"unknown key 'frame'"),
    ([_view(pose="identity")], r"pose: must be a 4x4 matrix or \{translation, quaternion\}, got str"),
])
def test_each_view_field_is_checked(tmp_path, views, message):
    with pytest.raises(InputError, match=message):
        load_demo(write_demo(tmp_path / "bad", views=views))


def test_view_sizes_and_the_primary_depth_are_checked(tmp_path):
    from PIL import Image
    folder = write_demo(tmp_path / "s", views=[_view(depth="small.png")])
    Image.fromarray(np.full((30, 60), 800, np.uint16)).save(folder / "small.png")
    with pytest.raises(InputError, match=r"views\[0\]: depth: is 60x30 but the view's RGB image is 60x40"):
        load_demo(folder)
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(folder / "empty.png")
    with pytest.raises(InputError, match=r"views\[0\]: mask: is empty"):
        load_demo(write_demo(folder, views=[_view(mask="empty.png")]))
    with pytest.raises(InputError, match="views: extra views need the primary view's depth and intrinsics"):
        load_demo(write_demo(tmp_path / "n", depth=None, views=[_view()]))
    with pytest.raises(InputError, match="views: extra views serve a same-object keypoint demo"):
        load_demo(write_demo(tmp_path / "f", keypoints=None, function="pour-with", function_mask="mask.png",
                             views=[_view()]))


def test_pose_helpers():
    T = _pose(33.0)
    np.testing.assert_allclose(parse_pose(pose_as_yaml(T), "p"), T, atol=1e-12)
    assert check_pose(T.tolist(), "p") is not None
    with pytest.raises(InputError, match="p: has a non-finite entry"):
        check_pose(np.full((4, 4), np.nan), "p")
    view = DemoView(np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), np.float32), None, None, T)
    np.testing.assert_allclose(view.to_primary(np.zeros((1, 3)))[0], T[:3, 3])
