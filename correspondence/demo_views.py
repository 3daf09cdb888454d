"""The extra views of a multi-view demo: the same object shown from other sides (turned on a table or turntable,
or the camera moved around it by the arm), each an RGB-D image with its camera and the view's pose in the
primary demo camera frame — which stays the demo object frame. Why: with one demo view, a live object turned by
90-180 deg shows the camera the side the demo never saw, and no weight-free descriptor matches what was never
seen; with views from several sides one of them faces the camera (docs/multiview_demo.md).

YAML (inside the demo's YAML, paths relative to the file)::

    views:
      - rgb: view1.png
        depth: view1_depth.png       # required: a view serves the 3D pose
        depth_scale: 0.001
        intrinsics: intrinsics.json  # required; a file name or inline {fx, fy, cx, cy, width, height}
        mask: view1_mask.png         # optional (else the view's depth foreground)
        pose:                        # T_primary_from_view: view camera frame -> primary demo camera frame
          translation: [0.3, 0.0, 0.3]
          quaternion: [0, 0.707, 0, 0.707]   # x, y, z, w (ROS order)
        # or pose: [[r11, r12, r13, tx], [..], [..], [0, 0, 0, 1]]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .camera import CameraIntrinsics
from .errors import InputError

ROTATION_TOLERANCE = 1e-3  # |R^T R - I| and |det R - 1| a pose's rotation may miss by (rounded YAML numbers)


@dataclass(frozen=True, eq=False)
class DemoView:
    """One view of the demo object: what its camera saw and where that camera was relative to the primary one."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 = unknown
    intrinsics: CameraIntrinsics
    mask: np.ndarray | None  # (H, W) bool
    T_primary_from_view: np.ndarray  # (4, 4) a point in this view's camera frame -> the primary demo camera frame
    name: str = ""

    def to_primary(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points of this view's camera frame in the primary demo frame."""
        T = self.T_primary_from_view
        return np.asarray(points, dtype=np.float64) @ T[:3, :3].T + T[:3, 3]


def check_pose(T: Any, where: str, tolerance: float = ROTATION_TOLERANCE) -> np.ndarray:
    """A 4x4 rigid transform, or an InputError that says what is wrong with it."""
    try:
        T = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: must be a 4x4 matrix of numbers ({exc})") from None
    if T.shape != (4, 4):
        raise InputError(f"{where}: must be a 4x4 matrix, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise InputError(f"{where}: has a non-finite entry")
    if not np.allclose(T[3], (0, 0, 0, 1), atol=tolerance):
        raise InputError(f"{where}: last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > tolerance or abs(np.linalg.det(R) - 1) > tolerance:
        raise InputError(f"{where}: not rigid: the upper-left 3x3 block is not a rotation (orthonormal, det +1)")
    return T


def parse_pose(value: Any, where: str) -> np.ndarray:
    """``pose``: a 4x4 list of rows, or {translation: [x, y, z], quaternion: [x, y, z, w]} (ROS order, metres)."""
    if isinstance(value, dict):
        unknown = set(value) - {"translation", "quaternion"}
        if unknown:
            raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r} (give translation and quaternion)")
        for key in ("translation", "quaternion"):
            if key not in value:
                raise InputError(f"{where}: missing {key!r}")
        try:
            t = np.asarray(value["translation"], dtype=np.float64)
            q = np.asarray(value["quaternion"], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{where}: translation and quaternion must be lists of numbers") from None
        if t.shape != (3,) or not np.isfinite(t).all():
            raise InputError(f"{where}: translation must be 3 finite numbers [x, y, z] (metres), got {value['translation']!r}")
        if q.shape != (4,) or not np.isfinite(q).all():
            raise InputError(f"{where}: quaternion must be 4 finite numbers [x, y, z, w], got {value['quaternion']!r}")
        norm = float(np.linalg.norm(q))
        if abs(norm - 1) > 0.01:
            raise InputError(f"{where}: quaternion must have unit length, got {norm:.4f}")
        from scipy.spatial.transform import Rotation
        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(q / norm).as_matrix()  # scipy's order is x, y, z, w, as ROS's
        T[:3, 3] = t
        return T
    if isinstance(value, (list, tuple)):
        return check_pose(value, where)
    raise InputError(f"{where}: must be a 4x4 matrix or {{translation, quaternion}}, got {type(value).__name__}")


def load_views(base: Path, value: Any, source: Path, load_depth: Callable, load_intrinsics: Callable,
               load_mask: Callable, path_of: Callable) -> tuple[DemoView, ...]:
    """The ``views:`` list of a demo YAML, every field checked (``path_of(base, value, source, field)`` resolves a
    file name as the primary fields are resolved)."""
    from .io import load_image

    if not isinstance(value, list) or not value:
        raise InputError(f"demo {str(source)!r}: views: must be a non-empty list of views (rgb, depth, intrinsics, "
                         f"pose, optional mask)")
    views = []
    for i, spec in enumerate(value):
        field = f"views[{i}]"
        where = f"demo {str(source)!r}: {field}"
        if not isinstance(spec, dict):
            raise InputError(f"{where}: must be a mapping (rgb, depth, intrinsics, pose, optional mask)")
        for key in ("rgb", "depth", "intrinsics", "pose"):
            if key not in spec:
                raise InputError(f"{where}: {key}: is required (a view serves the 3D pose)")
        unknown = set(spec) - {"rgb", "depth", "depth_scale", "intrinsics", "mask", "pose", "name"}
        if unknown:
            raise InputError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        rgb = np.asarray(load_image(path_of(base, spec["rgb"], source, f"{field}.rgb")))
        height, width = rgb.shape[:2]

        def same_size(array: np.ndarray, key: str) -> np.ndarray:
            if array.shape[:2] != (height, width):
                raise InputError(f"{where}: {key}: is {array.shape[1]}x{array.shape[0]} but the view's RGB image is "
                                 f"{width}x{height}")
            return array

        scale = spec.get("depth_scale", 0.001)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise InputError(f"{where}: depth_scale: must be a positive number of metres per unit, got {scale!r}")
        depth = same_size(load_depth(path_of(base, spec["depth"], source, f"{field}.depth"), scale), "depth")
        if not (depth > 0).any():
            raise InputError(f"{where}: depth: has no valid (non-zero, finite) value")
        try:
            intrinsics = load_intrinsics(base, spec["intrinsics"], source)
        except InputError as exc:  # its message names the field "intrinsics": say which view's
            raise InputError(f"{where}: {exc}") from exc
        if (intrinsics.width, intrinsics.height) != (width, height):
            raise InputError(f"{where}: intrinsics: are for {intrinsics.width}x{intrinsics.height} but the view's "
                             f"image is {width}x{height}")
        mask = None
        if "mask" in spec:
            mask = same_size(load_mask(path_of(base, spec["mask"], source, f"{field}.mask")), "mask")
            if not mask.any():
                raise InputError(f"{where}: mask: is empty")
        pose = parse_pose(spec["pose"], f"{where}: pose")
        views.append(DemoView(rgb, depth, intrinsics, mask, pose, str(spec.get("name", f"view{i + 1}"))))
    return tuple(views)


def pose_as_yaml(T: np.ndarray) -> dict:
    """A 4x4 rigid transform as the YAML ``pose`` mapping (translation, quaternion x, y, z, w)."""
    from scipy.spatial.transform import Rotation
    T = np.asarray(T, dtype=np.float64)
    return {"translation": [float(v) for v in T[:3, 3]],
            "quaternion": [float(v) for v in Rotation.from_matrix(T[:3, :3]).as_quat()]}
