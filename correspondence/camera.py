"""Pinhole camera intrinsics, with the pixel convention made explicit.

``fx, fy, cx, cy`` follow OpenCV / ROS ``CameraInfo`` / BOP ``cam_K``: the centre of pixel (row i, col j) is at
``(j, i)``. The rest of the library uses continuous coordinates in which pixel (i, j) covers ``[j, j+1) x [i, i+1)``
(its centre is ``(j + 0.5, i + 0.5)``). ``project`` and ``unproject`` speak the continuous convention and do the
half-pixel conversion here, in one place.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class CameraIntrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.fx > 0 and self.fy > 0 and np.isfinite([self.fx, self.fy, self.cx, self.cy]).all()):
            raise InputError(f"intrinsics need positive finite focal lengths, got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"intrinsics need a positive image size, got {self.width} x {self.height}")

    @classmethod
    def from_fov(cls, width: int, height: int, fov_y_deg: float) -> "CameraIntrinsics":
        f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_matrix(cls, K: np.ndarray | list, width: int, height: int) -> "CameraIntrinsics":
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))

    @property
    def K(self) -> np.ndarray:
        """3x3 matrix in the OpenCV convention (what BOP's ``cam_K`` and ROS ``CameraInfo.k`` hold)."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def scaled(self, sx: float, sy: float | None = None) -> "CameraIntrinsics":
        """Intrinsics of the image resized by (sx, sy) (continuous-coordinate scaling)."""
        sy = sx if sy is None else sy
        return CameraIntrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                                int(round(self.width * sx)), int(round(self.height * sy)))

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points ``(..., 3)`` -> continuous pixel coordinates ``(..., 2)``."""
        p = np.asarray(points_cam, dtype=np.float64)
        z = p[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = self.fx * p[..., 0] / z + self.cx + 0.5
            y = self.fy * p[..., 1] / z + self.cy + 0.5
        return np.stack([x, y], -1)

    def unproject(self, xy: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Continuous pixel coordinates ``(..., 2)`` and metric depth (z) ``(...)`` -> camera-frame points."""
        xy = np.asarray(xy, dtype=np.float64)
        z = np.asarray(depth, dtype=np.float64)
        x = (xy[..., 0] - 0.5 - self.cx) / self.fx * z
        y = (xy[..., 1] - 0.5 - self.cy) / self.fy * z
        return np.stack([x, y, z], -1)

    def pixel_rays(self) -> np.ndarray:
        """Unit-z ray directions through every pixel centre, ``(H, W, 3)``."""
        j, i = np.meshgrid(np.arange(self.width), np.arange(self.height))
        return self.unproject(np.stack([j + 0.5, i + 0.5], -1), np.ones((self.height, self.width)))

    def as_dict(self) -> dict:
        return asdict(self)
