"""The ray-casting renderer: ground truth agrees with pixels, occlusion, determinism, poses and speed.

Fixtures are built here with numpy (a box and a UV sphere, two parts each), independent of the families module.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("open3d")

from correspondence.camera import CameraIntrinsics  # noqa: E402
from correspondence.errors import ConfigError, InputError  # noqa: E402
from correspondence.taxonomy import Concept, Identity, Keypoint  # noqa: E402
from correspondence.world.render import (BACKGROUNDS, Renderer, RenderSettings, _shading_normals,  # noqa: E402
                                         look_at_pose, render_view, sample_pose)
from correspondence.world.types import Appearance, ObjectInstance, ObjectKeypoint  # noqa: E402

BOX_SIZE = (0.3, 0.2, 0.15)


def make_object(name: str, vertices: np.ndarray, faces: np.ndarray, face_parts: np.ndarray,
                part_names: tuple[str, ...], keypoints: list[tuple[str, dict, np.ndarray, str]],
                texture: str = "stripes") -> ObjectInstance:
    colors = {part_names[0]: (0.85, 0.25, 0.2), part_names[1]: (0.2, 0.45, 0.85)}
    kps = tuple(ObjectKeypoint(Keypoint(Concept(concept), Identity.of(identity)), np.asarray(pos, float), part)
                for concept, identity, pos, part in keypoints)
    return ObjectInstance(instance_id=name, category=name, family="test", vertices=vertices.astype(np.float64),
                          faces=faces.astype(np.int32), face_parts=face_parts.astype(np.int16), part_names=part_names,
                          keypoints=kps, functional_parts={}, seed=7,
                          appearance=Appearance(colors, texture=texture, texture_scale=0.03, texture_strength=0.3))


def box_object(texture: str = "stripes") -> ObjectInstance:
    """A box on the ground (z in [0, sz]); its top face is the 'lid', the rest the 'body'."""
    sx, sy, sz = BOX_SIZE
    v = np.array([[x, y, z] for z in (0, sz) for y in (-sy / 2, sy / 2) for x in (-sx / 2, sx / 2)])
    # corners: 0..3 bottom (x-,y-),(x+,y-),(x-,y+),(x+,y+); 4..7 top likewise. Outward (CCW) winding.
    faces = np.array([[0, 2, 1], [1, 2, 3],  # bottom (-z)
                      [4, 5, 6], [5, 7, 6],  # top (+z)
                      [1, 3, 5], [3, 7, 5],  # front (+x)
                      [0, 4, 2], [2, 4, 6],  # back (-x)
                      [0, 1, 4], [1, 5, 4],  # right (-y)
                      [2, 6, 3], [3, 6, 7]])  # left (+y)
    parts = np.array([1, 1, 0, 0] + [1] * 8)
    keypoints = [("lid_center", {}, (0, 0, sz), "lid"),
                 ("face_center", {"front_rear": "front"}, (sx / 2, 0, sz / 2), "body"),
                 ("face_center", {"front_rear": "rear"}, (-sx / 2, 0, sz / 2), "body")]
    return make_object("box", v, faces, parts, ("lid", "body"), keypoints, texture)


def sphere_object(radius: float = 0.1, n_lon: int = 50, n_lat: int = 50) -> ObjectInstance:
    """A UV sphere resting on the ground (2 * n_lon * (n_lat - 1) triangles: 4900 by default); upper half 'top'."""
    polar = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    ring = np.stack([np.sin(polar)[:, None] * np.cos(lon), np.sin(polar)[:, None] * np.sin(lon),
                     np.cos(polar)[:, None] * np.ones_like(lon)], -1).reshape(-1, 3)
    v = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]) * radius + [0, 0, radius]
    idx = lambda r, c: 1 + r * n_lon + c % n_lon  # noqa: E731
    south = len(v) - 1
    faces = [[0, idx(0, c), idx(0, c + 1)] for c in range(n_lon)]
    for r in range(n_lat - 2):
        for c in range(n_lon):
            faces += [[idx(r, c), idx(r + 1, c), idx(r + 1, c + 1)], [idx(r, c), idx(r + 1, c + 1), idx(r, c + 1)]]
    faces += [[idx(n_lat - 2, c), south, idx(n_lat - 2, c + 1)] for c in range(n_lon)]
    faces = np.array(faces)
    parts = (v[faces].mean(1)[:, 2] < radius).astype(int)  # 0 = top, 1 = bottom
    # keypoints on mesh vertices (exactly on the surface), away from the part boundary at the equator
    upper, lower = round(0.24 * n_lat) - 1, round(0.6 * n_lat) - 1  # rings at polar angles ~43 and ~108 deg
    keypoints = [("cap", {"front_rear": "front", "top_bottom": "top"}, v[idx(upper, 0)], "top"),
                 ("cap", {"front_rear": "front", "top_bottom": "bottom"}, v[idx(lower, 0)], "bottom"),
                 ("cap", {"front_rear": "rear", "top_bottom": "top"}, v[idx(upper, n_lon // 2)], "top")]
    return make_object("sphere", v, faces, parts, ("top", "bottom"), keypoints, "noise")


def orbit_pose(obj: ObjectInstance, distance: float, elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    el, az = np.radians(elevation_deg), np.radians(azimuth_deg)
    eye = obj.center + distance * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    return look_at_pose(eye, obj.center)


@pytest.fixture(scope="module")
def box() -> ObjectInstance:
    return box_object()


@pytest.fixture(scope="module")
def sphere() -> ObjectInstance:
    return sphere_object()


FRONT_VIEWS = {"box": (0.5, 45.0, 30.0), "sphere": (0.6, 20.0, 10.0)}
HI_RES = RenderSettings(width=512, height=512)


@pytest.mark.parametrize("name", ["box", "sphere"])
def test_keypoint_pixel_shows_its_part_at_its_depth(name, request):
    obj = request.getfixturevalue(name)
    view = Renderer(obj).render(orbit_pose(obj, *FRONT_VIEWS[name]), HI_RES)
    assert view.keypoints_visible.sum() >= 2
    for kp, xy, z, visible in zip(obj.keypoints, view.keypoints_xy, view.keypoints_depth, view.keypoints_visible):
        if not visible:
            continue
        col, row = np.floor(xy).astype(int)
        assert view.mask[row, col]
        assert obj.part_names[view.part_map[row, col]] == kp.part, kp.name
        assert abs(float(view.depth[row, col]) - z) < 1e-3, kp.name


@pytest.mark.parametrize("name", ["box", "sphere"])
def test_unprojected_depth_is_the_object_point(name, request):
    obj = request.getfixturevalue(name)
    view = render_view(obj, orbit_pose(obj, *FRONT_VIEWS[name]), seed=3)
    rows, cols = np.nonzero(view.mask)
    assert len(rows) > 1000
    cam = view.intrinsics.unproject(np.stack([cols + 0.5, rows + 0.5], -1), view.depth[rows, cols])
    T_inv = np.linalg.inv(view.pose)
    obj_points = cam @ T_inv[:3, :3].T + T_inv[:3, 3]
    assert np.abs(obj_points - view.points_object[rows, cols]).max() < 1e-4
    # background is empty in every ground-truth channel; object pixels are all filled
    bg = ~view.mask
    assert (view.depth[bg] == 0).all() and (view.face_map[bg] == -1).all() and (view.part_map[bg] == -1).all()
    assert np.isnan(view.points_object[bg]).all() and not np.isnan(view.points_object[view.mask]).any()
    assert (view.depth[view.mask] > 0).all() and (view.part_map[view.mask] >= 0).all()
    assert (obj.face_parts[view.face_map[view.mask]] == view.part_map[view.mask]).all()


@pytest.mark.parametrize("name", ["box", "sphere"])
def test_far_side_keypoint_is_occluded_but_in_frame(name, request):
    obj = request.getfixturevalue(name)
    view = render_view(obj, orbit_pose(obj, *FRONT_VIEWS[name]))
    H, W = view.mask.shape
    front, rear = {"box": (1, 2), "sphere": (0, 2)}[name]
    for k in (front, rear):
        x, y = view.keypoints_xy[k]
        assert 0 <= x < W and 0 <= y < H and view.keypoints_depth[k] > 0
    assert view.keypoints_visible[front] and not view.keypoints_visible[rear]
    # seen from behind, the roles swap
    behind = render_view(obj, orbit_pose(obj, FRONT_VIEWS[name][0], 20.0, 180.0))
    assert behind.keypoints_visible[rear] and not behind.keypoints_visible[front]


def test_same_seed_same_bytes_other_seed_other_pixels(box):
    pose = orbit_pose(box, 0.7, 30.0, 40.0)
    a = Renderer(box).render(pose, seed=11)
    b = Renderer(box).render(pose, seed=11)  # a second scene build must not change anything
    for field in ("rgb", "depth", "mask", "part_map", "face_map", "keypoints_xy", "keypoints_visible"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert np.array_equal(a.points_object, b.points_object, equal_nan=True)
    assert a.background == b.background and a.seed == 11
    c = render_view(box, pose, seed=12)
    assert not np.array_equal(a.rgb, c.rgb)
    assert np.array_equal(a.mask, c.mask) and np.array_equal(a.depth, c.depth)  # geometry does not depend on seed


def test_every_background_and_texture_renders(box):
    pose = orbit_pose(box, 0.7, 30.0, 40.0)
    for background in BACKGROUNDS:
        view = render_view(box, pose, RenderSettings(background=background, light="headlight"), seed=1)
        assert view.background == background and view.rgb.dtype == np.uint8 and view.rgb.shape == (256, 256, 3)
    seen = {render_view(box, pose, seed=s).background for s in range(40)}
    assert seen == set(BACKGROUNDS)
    for texture in ("plain", "stripes", "checker", "noise"):
        view = render_view(box_object(texture), pose, RenderSettings(background="plain"), seed=2)
        object_pixels = view.rgb[view.mask & (view.part_map == 0)]
        assert len(object_pixels) > 100
        if texture != "plain":  # a texture varies the colour within one flat face
            assert object_pixels.std(0).max() > 3


def test_shading_normals_are_smooth_on_curves_and_sharp_on_edges(box):
    sphere = sphere_object(radius=0.1, n_lon=24, n_lat=16)
    faces, corners = _shading_normals(sphere.vertices, sphere.faces.astype(np.int64))
    radial = sphere.vertices[sphere.faces] - [0, 0, 0.1]
    radial /= np.linalg.norm(radial, axis=-1, keepdims=True)
    assert np.einsum("fkj,fkj->fk", corners, radial).min() > 0.99
    faces, corners = _shading_normals(box.vertices, box.faces.astype(np.int64))
    assert np.allclose(corners, faces[:, None, :])  # 90 degree edges stay hard


def test_look_at_pose_geometry():
    intrinsics = CameraIntrinsics.from_fov(320, 240, 50.0)
    eye, target = np.array([0.8, -0.4, 0.6]), np.array([0.05, 0.02, 0.1])
    T = look_at_pose(eye, target)
    assert np.isclose(np.linalg.det(T[:3, :3]), 1.0) and np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3))
    assert np.allclose(T[:3, :3] @ eye + T[:3, 3], 0.0, atol=1e-12)
    target_cam = T[:3, :3] @ target + T[:3, 3]
    assert target_cam[2] > 0
    assert np.allclose(intrinsics.project(target_cam), [160.0, 120.0])
    above = T[:3, :3] @ (target + [0, 0, 0.1]) + T[:3, 3]
    assert intrinsics.project(above)[1] < 120.0  # object-frame up is image up
    down = look_at_pose([0, 0, 1.0], [0, 0, 0])  # looking along 'up' still gives a proper rotation
    assert np.isclose(np.linalg.det(down[:3, :3]), 1.0) and np.allclose(down[:3, 3], [0, 0, 1.0])
    with pytest.raises(InputError):
        look_at_pose(eye, eye)


def test_sample_pose_frames_the_object(sphere):
    rng = np.random.default_rng(0)
    for intrinsics in (None, CameraIntrinsics.from_fov(256, 256, 70.0)):
        for _ in range(8):
            pose = sample_pose(rng, sphere, intrinsics=intrinsics)
            view = render_view(sphere, pose, intrinsics=intrinsics)
            rows, cols = np.nonzero(view.mask)
            assert rows.min() > 0 and cols.min() > 0 and rows.max() < 255 and cols.max() < 255
            fill = max(np.ptp(rows), np.ptp(cols)) / 256
            assert 0.35 < fill < 0.9, fill
            assert np.isclose(np.linalg.det(pose[:3, :3]), 1.0)


def test_ground_plane_occludes_without_entering_the_mask(box):
    settings = RenderSettings(add_ground_plane=True, background="plain")
    above = orbit_pose(box, 0.7, 30.0, 40.0)
    plain, floor = render_view(box, above, seed=5), render_view(box, above, settings, seed=5)
    assert np.array_equal(plain.mask, floor.mask) and not np.array_equal(plain.rgb, floor.rgb)
    below = orbit_pose(box, 0.7, -30.0, 40.0)
    hidden = render_view(box, below, settings)
    assert not hidden.mask.any() and not hidden.keypoints_visible.any()
    assert render_view(box, below).mask.any()


def test_invalid_inputs_raise_clear_errors(box):
    renderer = Renderer(box)
    with pytest.raises(InputError, match="4x4"):
        renderer.render(np.eye(3))
    with pytest.raises(InputError, match="rigid"):
        renderer.render(np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="rigid"):
        renderer.render(np.diag([-1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ConfigError, match="background"):
        RenderSettings(background="sky")
    with pytest.raises(InputError, match="face indices"):
        Renderer(make_object("bad", box.vertices, box.faces + 100, box.face_parts, box.part_names, []))


@pytest.mark.slow
def test_render_speed_5k_triangles(sphere):
    renderer = Renderer(sphere)
    pose = orbit_pose(sphere, 0.5, 30.0, 20.0)
    timings = {}
    for size in (256, 512):
        settings = RenderSettings(width=size, height=size)
        renderer.render(pose, settings)  # warm-up: ray tables, lazy imports
        runs = []
        for seed in range(5):
            start = time.perf_counter()
            renderer.render(pose, settings, seed=seed)
            runs.append(time.perf_counter() - start)
        timings[size] = float(np.median(runs))
    print(f"\nrender {len(sphere.faces)} triangles: 256x256 {timings[256] * 1e3:.1f} ms, "
          f"512x512 {timings[512] * 1e3:.1f} ms (median of 5)")
    assert timings[256] < 1.0
