"""HANDAL-layout and functional-training writers: round trips, schema checks and reader errors, on hand-made
fixtures (no renderer)."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from correspondence.camera import CameraIntrinsics
from correspondence.errors import InputError
from correspondence.world.groundtruth import PixelCorrespondences
from correspondence.world.types import Appearance, ObjectInstance, RenderedView
from correspondence.world.writers.handal import (check_handal_dataset, read_functional_pairs, read_handal_scene,
                                                 read_ply_model, write_functional_pair, write_handal_model,
                                                 write_handal_scene)
from correspondence.world.writers.training import (check_training_dataset, finalize_training_index,
                                                   read_training_pair, write_training_pair)

H, W = 32, 40
ROWS, COLS = slice(8, 24), slice(10, 30)
LID_ROWS = slice(8, 12)


def make_object(instance_id: str = "box-0", size=(0.1, 0.08, 0.06)) -> ObjectInstance:
    """A box whose two top triangles are the 'lid' part; everything else is 'body'."""
    hx, hy, hz = np.asarray(size) / 2
    vertices = np.array([[x, y, z] for x in (-hx, hx) for y in (-hy, hy) for z in (0, 2 * hz)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([f for a, b, c, d in quads for f in ((a, b, c), (a, c, d))], dtype=np.int32)
    face_parts = np.zeros(len(faces), dtype=np.int16)
    face_parts[10:] = 1  # quad (1, 5, 7, 3): the +z face
    return ObjectInstance(instance_id, "box", "test", vertices, faces, face_parts, ("body", "lid"), (),
                          {"open": ("lid",)}, Appearance({"body": (0.8, 0.2, 0.1), "lid": (0.1, 0.3, 0.9)}))


def make_view(angle: float = 0.3, shift: float = 0.0) -> RenderedView:
    cam = CameraIntrinsics.from_fov(W, H, 50.0)
    pose = np.eye(4)
    c, s = np.cos(angle), np.sin(angle)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = [0.01, -0.02 + shift, 0.5]
    mask = np.zeros((H, W), dtype=bool)
    mask[ROWS, COLS] = True
    depth = np.where(mask, 0.5, 0.0).astype(np.float32)
    part_map = np.full((H, W), -1, dtype=np.int16)
    part_map[mask] = 0
    part_map[LID_ROWS, COLS] = 1
    j, i = np.meshgrid(np.arange(W), np.arange(H))
    cam_points = cam.unproject(np.stack([j + 0.5, i + 0.5], -1), np.full((H, W), 0.5))
    points = ((cam_points - pose[:3, 3]) @ pose[:3, :3]).astype(np.float32)
    points[~mask] = np.nan
    rgb = np.stack([j * 6, i * 7, np.full((H, W), 90)], -1).astype(np.uint8)
    rgb[mask] = (200, 60, 40)
    return RenderedView(rgb, depth, mask, part_map, np.where(mask, 0, -1).astype(np.int32), points, cam, pose,
                        np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=bool))


def make_corr() -> PixelCorrespondences:
    xy_a = np.array([[10.5, 8.5], [29.5, 23.5], [15.5, 9.5]])
    xy_b = np.array([[11.5, 9.5], [28.5, 22.5], [16.5, 10.5]])
    return PixelCorrespondences(xy_a, xy_b, np.zeros((3, 3)))


@pytest.fixture
def handal_root(tmp_path):
    obj = make_object()
    write_handal_model(tmp_path, "box", 1, obj)
    scene = write_handal_scene(tmp_path, "box", 0, 1, [make_view(0.3), make_view(-0.5, 0.01)])
    image_a = "handal_dataset_box/test/000000/rgb/000000.jpg"
    image_b = "handal_dataset_box/test/000000/rgb/000001.jpg"
    write_functional_pair(tmp_path, "open", "box", image_a, "box", image_b, make_corr(), group=2, trial=1)
    return tmp_path, scene


# ---- HANDAL -----------------------------------------------------------------------------------------------------
def test_handal_scene_round_trip(handal_root):
    root, scene = handal_root
    views = [make_view(0.3), make_view(-0.5, 0.01)]
    assert scene == root / "handal_dataset_box" / "test" / "000000"
    frames = read_handal_scene(scene)
    assert [f.frame_id for f in frames] == [0, 1] and all(f.obj_id == 1 for f in frames)
    for frame, view in zip(frames, views):
        assert frame.rgb_path == scene / "rgb" / f"{frame.frame_id:06d}.jpg"
        assert np.abs(frame.depth_m - view.depth).max() <= 1e-4  # 0.1 mm
        assert frame.depth_m.dtype == np.float32
        np.testing.assert_allclose(frame.pose, view.pose, atol=1e-6)
        np.testing.assert_array_equal(frame.intrinsics.K, view.intrinsics.K)
        np.testing.assert_array_equal(frame.mask, view.mask)
        assert np.abs(frame.rgb.astype(float) - view.rgb).mean() < 3
    gt = json.loads((scene / "scene_gt.json").read_text())
    assert len(gt["1"][0]["cam_R_m2c"]) == 9 and gt["1"][0]["cam_t_m2c"][2] == pytest.approx(500.0)
    camera = json.loads((scene / "scene_camera.json").read_text())
    assert camera["0"]["depth_scale"] == 0.1 and (camera["0"]["width"], camera["0"]["height"]) == (W, H)
    from PIL import Image

    depth = np.asarray(Image.open(scene / "depth" / "000000.png"))
    assert depth.dtype == np.uint16 and depth.max() == 5000  # 500 mm in 0.1 mm units
    assert (scene / "mask" / "000001_000000.png").is_file()


def test_ply_round_trip_in_metres(handal_root):
    root, _ = handal_root
    obj = make_object()
    model = read_ply_model(root / "handal_dataset_box" / "models" / "obj_000001.ply")
    np.testing.assert_allclose(model.vertices, obj.vertices, atol=1e-6)
    np.testing.assert_array_equal(model.faces, obj.faces)
    assert model.part_names == ("body", "lid") and np.array_equal(model.face_parts, obj.face_parts)
    assert tuple(model.colors[0]) == (204, 51, 26)  # vertex 0 touches only body faces
    info = json.loads((root / "handal_dataset_box" / "models" / "models_info.json").read_text())
    assert info["1"]["diameter"] == pytest.approx(np.linalg.norm([100, 80, 60]), rel=1e-6)
    assert info["1"]["size_z"] == pytest.approx(60.0) and info["1"]["min_x"] == pytest.approx(-50.0)


def test_ascii_ply_with_a_quad_is_fan_triangulated(tmp_path):
    path = tmp_path / "quad.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 4\nproperty double x\nproperty double y\n"
                    "property double z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                    "0 0 0\n1000 0 0\n1000 1000 0\n0 1000 0\n4 0 1 2 3\n")
    model = read_ply_model(path)
    np.testing.assert_allclose(model.vertices[2], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(model.faces, [[0, 1, 2], [0, 2, 3]])
    assert model.colors is None and model.part_names is None


def test_functional_pair_round_trip_and_names(tmp_path):
    corr = make_corr()
    image_a, image_b = "handal_dataset_mug/test/000000/rgb/000003.jpg", "handal_dataset_kettle/test/000002/rgb/000000.jpg"
    path_a, path_b = write_functional_pair(tmp_path, "pour", "mug", image_a, "kettle", image_b, corr, group=7)
    trial = tmp_path / "functional_pairs" / "pour" / "mug|||kettle|||0007" / "trial_0"
    assert path_a == trial / "mug|||handal_dataset_mug+test+000000+rgb+000003.jpg.npy"
    assert path_b == trial / "kettle|||handal_dataset_kettle+test+000002+rgb+000000.jpg.npy"
    [pair] = read_functional_pairs(tmp_path)
    rc_a, rc_b = corr.rows_cols()
    assert (pair.function, pair.category_a, pair.category_b, pair.group, pair.trial) == ("pour", "mug", "kettle", 7, 0)
    assert (pair.image_a, pair.image_b) == (image_a, image_b)
    np.testing.assert_array_equal(pair.rc_a, rc_a)
    np.testing.assert_array_equal(pair.rc_b, rc_b)
    assert pair.rc_a.dtype == np.int64 and rc_a.tolist()[0] == [8, 10]


def test_same_category_pairs_are_stored_in_sorted_order(tmp_path):
    corr = make_corr()
    write_functional_pair(tmp_path, "open", "box", "x/b.jpg", "box", "x/a.jpg", corr)
    [pair] = read_functional_pairs(tmp_path)
    rc_a, rc_b = corr.rows_cols()
    assert (pair.image_a, pair.image_b) == ("x/a.jpg", "x/b.jpg")  # swapped, arrays too
    np.testing.assert_array_equal(pair.rc_a, rc_b)
    np.testing.assert_array_equal(pair.rc_b, rc_a)
    with pytest.raises(InputError, match="with itself"):
        write_functional_pair(tmp_path, "open", "box", "x/a.jpg", "box", "x/a.jpg", corr)
    with pytest.raises(InputError, match=r"\+"):
        write_functional_pair(tmp_path, "open", "box", "x/a+b.jpg", "cup", "x/a.jpg", corr)


def test_handal_check_accepts_good_data(handal_root):
    root, _ = handal_root
    assert check_handal_dataset(root) == []


def test_handal_check_names_a_missing_depth_png(handal_root):
    root, scene = handal_root
    (scene / "depth" / "000001.png").unlink()
    problems = check_handal_dataset(root)
    assert len(problems) == 1 and "000001.png" in problems[0] and "depth" in problems[0]


def test_handal_check_names_a_short_rotation(handal_root):
    root, scene = handal_root
    gt = json.loads((scene / "scene_gt.json").read_text())
    gt["0"][0]["cam_R_m2c"] = gt["0"][0]["cam_R_m2c"][:8]
    (scene / "scene_gt.json").write_text(json.dumps(gt))
    problems = check_handal_dataset(root)
    assert len(problems) == 1 and re.search(r"scene_gt\.json.*frame 0.*'cam_R_m2c'.*8 values", problems[0])
    with pytest.raises(InputError, match="cam_R_m2c"):
        read_handal_scene(scene)


def test_handal_check_flags_wrong_depth_dtype_and_out_of_bounds_pairs(handal_root):
    from PIL import Image

    root, scene = handal_root
    Image.fromarray(np.zeros((H, W), np.uint8)).save(scene / "depth" / "000000.png")
    trial = next((root / "functional_pairs").glob("*/*/*"))
    np.save(next(trial.glob("*.npy")), np.array([[H, 0], [0, 0], [1, 1]], dtype=np.int64))
    problems = check_handal_dataset(root)
    assert any("depth" in p and "mode L" in p for p in problems)
    assert any("outside" in p and ".npy" in p for p in problems)


def test_handal_readers_name_the_malformed_file(handal_root):
    root, scene = handal_root
    (scene / "scene_camera.json").write_text("{not json")
    with pytest.raises(InputError, match="scene_camera.json.*not valid JSON"):
        read_handal_scene(scene)
    assert any("scene_camera.json" in p for p in check_handal_dataset(root))
    models_info = root / "handal_dataset_box" / "models" / "models_info.json"
    models_info.write_text("[")
    assert any("models_info.json" in p for p in check_handal_dataset(root))
    trial = next((root / "functional_pairs").glob("*/*/*"))
    np.save(next(trial.glob("*.npy")), np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(InputError, match="2 rows"):
        read_functional_pairs(root)


# ---- training pairs ---------------------------------------------------------------------------------------------
@pytest.fixture
def training_root(tmp_path):
    obj, other = make_object(), make_object("box-1", size=(0.12, 0.09, 0.05))
    alignment = np.diag([1.2, 1.2, 1.2, 1.0])
    write_training_pair(tmp_path, "train", "p001", "functional", "open", make_view(0.3), obj, make_view(-0.2), other,
                        make_corr(), alignment)
    write_training_pair(tmp_path, "train", "p000", "multiview", "", make_view(0.3), obj, make_view(0.9, 0.01), obj,
                        make_corr())
    write_training_pair(tmp_path, "val", "p002", "multiview", "open", make_view(0.1), obj, make_view(0.2), obj,
                        make_corr())
    finalize_training_index(tmp_path)
    return tmp_path


def test_training_pair_round_trip(training_root):
    view_a, view_b, corr = make_view(0.3), make_view(-0.2), make_corr()
    pair = read_training_pair(training_root / "train" / "p001")
    assert (pair.pair_id, pair.kind, pair.function) == ("p001", "functional", "open")
    assert pair.meta["instance_b"] == "box-1" and pair.meta["functional_parts_a"] == ["lid"]
    np.testing.assert_array_equal(pair.rgb_a, view_a.rgb)  # PNG: lossless
    np.testing.assert_array_equal(pair.mask_b, view_b.mask)
    lid = np.zeros((H, W), bool)
    lid[LID_ROWS, COLS] = True
    np.testing.assert_array_equal(pair.function_a, lid)
    np.testing.assert_array_equal(pair.parts_a, view_a.part_map)
    np.testing.assert_allclose(pair.xy_a, corr.xy_a)
    np.testing.assert_allclose(pair.xy_b, corr.xy_b)
    assert pair.points_a.shape == (3, 3) and pair.xy_a.dtype == np.float32
    assert pair.intrinsics_a == view_a.intrinsics
    np.testing.assert_allclose(pair.pose_b, view_b.pose)
    np.testing.assert_allclose(pair.alignment, np.diag([1.2, 1.2, 1.2, 1.0]))
    multiview = read_training_pair(training_root / "train" / "p000")
    assert multiview.alignment is None and not multiview.function_a.any()


def test_training_index_and_check(training_root):
    index = json.loads((training_root / "index.json").read_text())
    assert index["splits"] == {"train": ["p000", "p001"], "val": ["p002"]}
    assert check_training_dataset(training_root) == []
    write_training_pair(training_root, "val", "p003", "multiview", "open", make_view(0.1), make_object(),
                        make_view(0.2), make_object(), make_corr())
    assert any("finalize_training_index" in p for p in check_training_dataset(training_root))
    finalize_training_index(training_root)
    assert check_training_dataset(training_root) == []


def test_training_check_names_corrupt_files(training_root):
    (training_root / "train" / "p000" / "b_mask.png").unlink()
    (training_root / "val" / "p002" / "meta.json").write_text("{oops")
    problems = check_training_dataset(training_root)
    assert any("b_mask.png" in p for p in problems)
    assert any("p002" in p and "meta.json" in p and "not valid JSON" in p for p in problems)
    with pytest.raises(InputError, match="meta.json"):
        read_training_pair(training_root / "val" / "p002")


def test_training_writer_rejects_bad_pairs(tmp_path):
    obj = make_object()
    with pytest.raises(InputError, match="kind"):
        write_training_pair(tmp_path, "train", "x", "mixed", "open", make_view(), obj, make_view(), obj, make_corr())
    with pytest.raises(InputError, match="two instances"):
        write_training_pair(tmp_path, "train", "x", "functional", "open", make_view(), obj, make_view(), obj,
                            make_corr())
    with pytest.raises(InputError, match="no functional part"):
        write_training_pair(tmp_path, "train", "x", "multiview", "pour", make_view(), obj, make_view(), obj,
                            make_corr())
