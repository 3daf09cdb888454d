"""Lens distortion as CameraInfo carries it: our project / unproject against OpenCV's own projection functions
(the definition of plumb_bob, rational_polynomial and equidistant), and lifting a match found in an unrectified
image to the right 3D point."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from correspondence.alignment import lift
from correspondence.camera import CameraIntrinsics
from correspondence.errors import InputError

K = np.array([[610.0, 0, 318.5], [0, 612.0, 243.2], [0, 0, 1]])
MODELS = {"plumb_bob": (0.12, -0.25, 0.001, -0.0015, 0.09),
          "rational_polynomial": (0.2, -0.1, 0.0008, 0.0004, 0.02, 0.15, -0.05, 0.01),
          "equidistant": (0.05, -0.01, 0.003, -0.001)}


def _points(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.3, 3.0, n)
    xy = rng.uniform(-0.45, 0.45, (n, 2)) * z[:, None]  # inside a ~50 deg field of view
    return np.column_stack([xy, z])


def _opencv_pixels(points: np.ndarray, model: str) -> np.ndarray:
    """OpenCV's projection (pixel centres at integers) in our continuous convention (+0.5)."""
    zero = np.zeros(3)
    if model == "equidistant":
        pixels = cv2.fisheye.projectPoints(points.reshape(-1, 1, 3), zero, zero, K, np.array(MODELS[model]))[0]
    else:
        pixels = cv2.projectPoints(points, zero, zero, K, np.array(MODELS[model]))[0]
    return pixels.reshape(-1, 2) + 0.5


@pytest.mark.parametrize("model", list(MODELS))
def test_project_and_unproject_follow_opencv(model):
    camera = CameraIntrinsics.from_matrix(K, 640, 480, MODELS[model], model)
    points = _points()
    pixels = camera.project(points)
    np.testing.assert_allclose(pixels, _opencv_pixels(points, model), atol=1e-6)
    np.testing.assert_allclose(camera.unproject(pixels, points[:, 2]), points, atol=1e-6)
    pinhole = CameraIntrinsics.from_matrix(K, 640, 480)
    assert np.abs(pinhole.project(points) - pixels).max() > 1.0  # the distortion is not negligible here


def test_lifting_a_match_in_an_unrectified_image():
    camera = CameraIntrinsics.from_matrix(K, 640, 480, MODELS["plumb_bob"])
    points = _points(seed=1)
    points[:, 2] = 1.25  # a wall facing the camera: depth is 1.25 m at every pixel
    pixels = camera.project(points)
    inside = (pixels >= 0).all(1) & (pixels[:, 0] < 640) & (pixels[:, 1] < 480)
    pixels, points = pixels[inside], points[inside]
    assert len(points) > 100
    wall = np.full((480, 640), 1.25, np.float32)
    lifted, valid = lift(pixels, wall, camera, (0.1, 5.0))
    assert valid.all()
    np.testing.assert_allclose(lifted, points, atol=1e-6)
    naive, _ = lift(pixels, wall, CameraIntrinsics.from_matrix(K, 640, 480), (0.1, 5.0))
    assert np.abs(naive - points).max() > 0.005  # ignoring d puts points near the border centimetres off


def test_zero_coefficients_are_the_pinhole_model_and_scaling_keeps_distortion():
    assert CameraIntrinsics.from_matrix(K, 640, 480, (0.0,) * 5).distortion == ()
    camera = CameraIntrinsics.from_matrix(K, 640, 480, MODELS["plumb_bob"])
    half = camera.scaled(0.5)
    assert half.distortion == camera.distortion and half.distortion_model == "plumb_bob"
    points = _points(seed=2)
    np.testing.assert_allclose(half.project(points), camera.project(points) * 0.5, atol=1e-9)
    assert CameraIntrinsics(**camera.as_dict()) == camera  # the JSON record round-trips


def test_bad_distortion_is_refused():
    with pytest.raises(InputError, match="distortion model 'fancy' is not supported"):
        CameraIntrinsics.from_matrix(K, 640, 480, (0.1,), "fancy")
    with pytest.raises(InputError, match="must be finite"):
        CameraIntrinsics.from_matrix(K, 640, 480, (np.nan, 0, 0, 0, 0))
    with pytest.raises(InputError, match="equidistant takes 4 coefficients, got 5"):
        CameraIntrinsics.from_matrix(K, 640, 480, (0.1, 0, 0, 0, 0.2), "equidistant")
    # ROS drivers often send plumb_bob with 5 zeros or 8-long vectors padded with zeros: both fine
    assert CameraIntrinsics.from_matrix(K, 640, 480, (0.1, 0, 0, 0, 0, 0, 0, 0)).distortion[0] == 0.1


def test_demo_intrinsics_files_may_carry_distortion():
    from pathlib import Path

    from correspondence.demo_spec import load_intrinsics

    value = {"K": K.tolist(), "width": 640, "height": 480, "D": list(MODELS["plumb_bob"]),
             "distortion_model": "plumb_bob"}
    camera = load_intrinsics(Path("."), value, Path("demo.yaml"))
    assert camera.distortion == MODELS["plumb_bob"]
    with pytest.raises(InputError, match="demo 'demo.yaml': intrinsics: distortion model 'fancy' is not supported"):
        load_intrinsics(Path("."), {**value, "distortion_model": "fancy"}, Path("demo.yaml"))
