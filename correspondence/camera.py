"""Pinhole camera intrinsics, with the pixel convention made explicit.

``fx, fy, cx, cy`` follow OpenCV / ROS ``CameraInfo`` / BOP ``cam_K``: the centre of pixel (row i, col j) is at
``(j, i)``. The rest of the library uses continuous coordinates in which pixel (i, j) covers ``[j, j+1) x [i, i+1)``
(its centre is ``(j + 0.5, i + 0.5)``). ``project`` and ``unproject`` speak the continuous convention and do the
half-pixel conversion here, in one place.

Lens distortion, as ``CameraInfo`` carries it (``distortion_model`` + ``d``): ``plumb_bob`` (k1 k2 p1 p2 k3),
``rational_polynomial`` (k1 k2 p1 p2 k3 k4 k5 k6) and ``equidistant`` (fisheye k1..k4), with OpenCV's equations.
``project`` distorts and ``unproject`` undistorts, so a keypoint found in an unrectified image (a camera's
``image_raw``) lifts to the right 3D point. All-zero coefficients are the pinhole model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError

# ROS distortion_model -> how many coefficients OpenCV takes for it
DISTORTION_MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}


@dataclass(frozen=True)
class CameraIntrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: tuple[float, ...] = ()  # CameraInfo.d; empty or all zero: none
    distortion_model: str = "plumb_bob"

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0 and np.isfinite([self.fx, self.fy, self.cx, self.cy]).all()):
            raise InputError(f"intrinsics need positive finite focal lengths, got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"intrinsics need a positive image size, got {self.width} x {self.height}")
        coefficients = tuple(float(c) for c in self.distortion)
        if not np.isfinite(coefficients).all():
            raise InputError(f"distortion coefficients must be finite, got {list(coefficients)}")
        if not any(coefficients):
            coefficients = ()
        elif self.distortion_model not in DISTORTION_MODELS:
            raise InputError(f"distortion model {self.distortion_model!r} is not supported (choose one of "
                             f"{', '.join(DISTORTION_MODELS)}, or rectify the image first)")
        elif len(coefficients) > DISTORTION_MODELS[self.distortion_model] and any(
                coefficients[DISTORTION_MODELS[self.distortion_model]:]):
            raise InputError(f"{self.distortion_model} takes {DISTORTION_MODELS[self.distortion_model]} "
                             f"coefficients, got {len(coefficients)}: {list(coefficients)}")
        object.__setattr__(self, "distortion", coefficients)

    @property
    def distorted(self) -> bool:
        return bool(self.distortion)

    def _coefficients(self) -> np.ndarray:
        """The coefficient vector OpenCV expects for the model (padded with zeros, extra zeros dropped)."""
        n = DISTORTION_MODELS[self.distortion_model]
        return np.array((self.distortion + (0.0,) * n)[:n], dtype=np.float64)

    @classmethod
    def from_fov(cls, width: int, height: int, fov_y_deg: float) -> "CameraIntrinsics":
        f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_matrix(cls, K: np.ndarray | list, width: int, height: int, distortion: tuple | list = (),
                    distortion_model: str = "plumb_bob") -> "CameraIntrinsics":
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height),
                   tuple(distortion), distortion_model)

    @property
    def K(self) -> np.ndarray:
        """3x3 matrix in the OpenCV convention (what BOP's ``cam_K`` and ROS ``CameraInfo.k`` hold)."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def scaled(self, sx: float, sy: float | None = None) -> "CameraIntrinsics":
        """Intrinsics of the image resized by (sx, sy) (continuous-coordinate scaling)."""
        sy = sx if sy is None else sy
        return CameraIntrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                                int(round(self.width * sx)), int(round(self.height * sy)), self.distortion,
                                self.distortion_model)  # distortion acts on normalised coordinates: unchanged

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points ``(..., 3)`` -> continuous pixel coordinates ``(..., 2)`` (distorted when the
        camera has distortion)."""
        p = np.asarray(points_cam, dtype=np.float64)
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            normalised = np.stack([p[..., 0] / z, p[..., 1] / z], -1)
        if self.distorted:
            normalised = self._distort(normalised)
        x = self.fx * normalised[..., 0] + self.cx + 0.5
        y = self.fy * normalised[..., 1] + self.cy + 0.5
        return np.stack([x, y], -1)

    def unproject(self, xy: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Continuous pixel coordinates ``(..., 2)`` and metric depth (z) ``(...)`` -> camera-frame points (the
        pixel undistorted first when the camera has distortion)."""
        xy = np.asarray(xy, dtype=np.float64)
        z = np.asarray(depth, dtype=np.float64)
        if self.distorted:
            normalised = self._undistort(xy)
            return np.stack([normalised[..., 0] * z, normalised[..., 1] * z, z], -1)
        x = (xy[..., 0] - 0.5 - self.cx) / self.fx * z
        y = (xy[..., 1] - 0.5 - self.cy) / self.fy * z
        return np.stack([x, y, z], -1)

    def _distort(self, normalised: np.ndarray) -> np.ndarray:
        """Ideal normalised coordinates ``(..., 2)`` -> distorted normalised coordinates (OpenCV's model)."""
        import cv2

        shape = normalised.shape
        flat = np.ascontiguousarray(normalised.reshape(-1, 1, 2), dtype=np.float64)
        finite = np.isfinite(flat).all(-1)[:, 0]
        out = np.full_like(flat, np.nan)
        if finite.any():
            points = np.concatenate([flat[finite], np.ones((int(finite.sum()), 1, 1))], -1)
            zero = np.zeros(3)
            if self.distortion_model == "equidistant":
                out[finite] = cv2.fisheye.distortPoints(flat[finite], np.eye(3), self._coefficients())
            else:
                out[finite] = cv2.projectPoints(points, zero, zero, np.eye(3), self._coefficients())[0]
        return out.reshape(shape)

    def _undistort(self, xy: np.ndarray) -> np.ndarray:
        """Continuous (distorted) pixel coordinates ``(..., 2)`` -> ideal normalised coordinates (OpenCV's
        iterative inverse; pixel-centre convention inside)."""
        import cv2

        shape = xy.shape
        flat = np.ascontiguousarray(xy.reshape(-1, 1, 2) - 0.5, dtype=np.float64)
        finite = np.isfinite(flat).all(-1)[:, 0]
        out = np.full_like(flat, np.nan)
        if finite.any():
            if self.distortion_model == "equidistant":
                out[finite] = cv2.fisheye.undistortPoints(flat[finite], self.K, self._coefficients())
            else:
                out[finite] = _undistort_points(flat[finite], self.K, self._coefficients())
        return out.reshape(shape)

    def pixel_rays(self) -> np.ndarray:
        """Unit-z ray directions through every pixel centre, ``(H, W, 3)``."""
        j, i = np.meshgrid(np.arange(self.width), np.arange(self.height))
        return self.unproject(np.stack([j + 0.5, i + 0.5], -1), np.ones((self.height, self.width)))

    def as_dict(self) -> dict:
        return asdict(self)


def _undistort_points(points: np.ndarray, K: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """OpenCV's iterative undistortion run to convergence (its default stops after 5 iterations, which leaves
    sub-pixel errors at strong distortion): ``undistortPoints(..., criteria=)`` in OpenCV 5,
    ``undistortPointsIter`` in OpenCV 4."""
    import cv2

    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)
    if hasattr(cv2, "undistortPointsIter"):
        return cv2.undistortPointsIter(points, K, coefficients, None, None, criteria)
    return cv2.undistortPoints(points, K, coefficients, R=None, P=None, criteria=criteria)
