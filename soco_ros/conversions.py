"""ROS message <-> numpy conversions: pure functions, no node, no DDS.

Every reader validates the message before it touches the buffer (known encoding, ``step`` large enough for a row,
a data buffer of exactly ``step * height`` bytes, matching sizes, a usable camera matrix) and raises
:class:`FrameError` with a message that names the topic, the field and the numbers at fault. The node turns such an
error into one throttled warning and drops the frame; nothing is published for it.

Conventions: colour images come out as ``(H, W, 3) uint8`` RGB; depth as ``(H, W) float32`` metres with 0 meaning
"no measurement" (NaN, inf, negative and zero readings all become 0); masks as ``(H, W) bool``. ``CameraInfo.k``
is the OpenCV matrix (pixel centre (row i, col j) at (j, i)), which is what
:class:`correspondence.camera.CameraIntrinsics` expects; ``d`` and ``distortion_model`` (plumb_bob,
rational_polynomial, equidistant) come along, so matches in an unrectified image lift to the right 3D points.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from correspondence import depth as depth_units
from correspondence.camera import DISTORTION_MODELS, CameraIntrinsics
from correspondence.errors import InputError

# What cameras publish (sensor_msgs/image_encodings): 8- and 16-bit RGB/BGR with or without alpha, grey, packed
# YUV 4:2:2 (USB cameras) and raw Bayer mosaics; cv_bridge's conversions to RGB.
COLOR_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16", "mono16",
                   "yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")
DEPTH_ENCODINGS = ("16UC1", "32FC1")
MASK_ENCODINGS = ("mono8",)
# encoding -> (channels, numpy dtype of one channel)
_LAYOUT = {"rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "mono8": (1, np.uint8), "rgba8": (4, np.uint8),
           "bgra8": (4, np.uint8), "rgb16": (3, np.uint16), "bgr16": (3, np.uint16), "rgba16": (4, np.uint16),
           "bgra16": (4, np.uint16), "mono16": (1, np.uint16), "yuv422": (2, np.uint8),
           "yuv422_yuy2": (2, np.uint8), "bayer_rggb8": (1, np.uint8), "bayer_bggr8": (1, np.uint8),
           "bayer_gbrg8": (1, np.uint8), "bayer_grbg8": (1, np.uint8), "16UC1": (1, np.uint16),
           "32FC1": (1, np.float32)}
# OpenCV's name for each layout's conversion to RGB (cv_bridge's table: OpenCV names a Bayer pattern by its second
# row, so ROS rggb is OpenCV BG).
_CV_TO_RGB = {"yuv422": "COLOR_YUV2RGB_UYVY", "yuv422_yuy2": "COLOR_YUV2RGB_YUY2",
              "bayer_rggb8": "COLOR_BayerBG2RGB", "bayer_bggr8": "COLOR_BayerRG2RGB",
              "bayer_gbrg8": "COLOR_BayerGR2RGB", "bayer_grbg8": "COLOR_BayerGB2RGB"}


class FrameError(InputError):
    """A message the node cannot use; ``reason`` is a short stable key for counting and log throttling."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ================================================================================================ images in


def _image_array(msg, topic: str, allowed: Sequence[str]) -> np.ndarray:
    """Validated ``(H, W, C)`` view of an Image buffer with the row padding (``step``) stripped."""
    encoding = str(msg.encoding)
    if encoding not in allowed:
        raise FrameError("encoding", f"{topic}: unsupported encoding {encoding!r} (expected one of "
                                     f"{', '.join(allowed)})")
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if width <= 0 or height <= 0:
        raise FrameError("size", f"{topic}: empty image ({width}x{height})")
    channels, dtype = _LAYOUT[encoding]
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise FrameError("step", f"{topic}: step {step} is smaller than one {encoding} row of {width} px "
                                 f"({row_bytes} bytes)")
    if step % itemsize:
        raise FrameError("step", f"{topic}: step {step} is not a multiple of the {itemsize}-byte {encoding} sample")
    expected = step * height
    size = len(msg.data)
    if size != expected:
        what = "truncated" if size < expected else "too long"
        raise FrameError("buffer", f"{topic}: data buffer {what}: {size} bytes, expected step*height = "
                                   f"{step}*{height} = {expected}")
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=expected)
    big = bool(msg.is_bigendian)
    typed = np.dtype(dtype).newbyteorder(">" if big else "<") if itemsize > 1 else np.dtype(dtype)
    rows = raw.reshape(height, step)[:, :row_bytes]
    array = np.ascontiguousarray(rows).view(typed).reshape(height, width, channels)
    return array.astype(array.dtype.newbyteorder("="), copy=False) if itemsize > 1 else array


def image_to_rgb(msg, topic: str = "image") -> np.ndarray:
    """``sensor_msgs/Image`` in any of :data:`COLOR_ENCODINGS` -> ``(H, W, 3) uint8`` RGB (a copy, independent of
    ``msg``). Alpha is dropped, 16-bit samples are scaled onto 0..255, YUV 4:2:2 and Bayer go through OpenCV."""
    array = _image_array(msg, topic, COLOR_ENCODINGS)
    encoding = str(msg.encoding)
    if encoding in _CV_TO_RGB:
        if encoding.startswith("yuv422") and array.shape[1] % 2:
            raise FrameError("size", f"{topic}: {encoding} needs an even width (two pixels share U and V), got "
                                     f"{array.shape[1]}")
        import cv2

        return cv2.cvtColor(np.ascontiguousarray(array if array.shape[2] > 1 else array[..., 0]),
                            getattr(cv2, _CV_TO_RGB[encoding]))
    return channels_to_rgb(array, bgr=encoding.startswith("bgr"))


def channels_to_rgb(array: np.ndarray, bgr: bool = False) -> np.ndarray:
    """``(H, W, C)`` grey / RGB(A) / BGR(A) samples, 8 or 16 bit -> ``(H, W, 3) uint8`` RGB (a copy): the one
    place channel order, alpha and 16-bit scaling (``round(v * 255 / 65535)``) are decided."""
    if array.dtype == np.uint16:
        array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise FrameError("encoding", f"colour samples must be 8 or 16 bit, got {array.dtype}")
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    rgb = array[..., 2::-1] if bgr else array[..., :3]
    return np.ascontiguousarray(rgb)


def depth_to_metres(msg, depth_scale: float = 0.001, topic: str = "depth", check: bool = True) -> np.ndarray:
    """``16UC1`` (``value * depth_scale`` metres; 0.001 for millimetres) or ``32FC1`` (metres, never scaled) ->
    float32 metres through :func:`correspondence.depth.to_metres`, 0 where invalid.

    ``check``: refuse depth without a valid value (reason ``depth_empty``) or that cannot be metres (``depth_units``,
    with the fix for the encoding that arrived: ``depth_scale`` for 16UC1, the publisher for 32FC1)."""
    array = _image_array(msg, topic, DEPTH_ENCODINGS)[..., 0]
    encoding = str(msg.encoding)
    scale = float(depth_scale) if encoding == depth_units.INTEGER else depth_units.default_scale(encoding)
    depth = depth_units.to_metres(array, scale)
    return checked_depth(depth, encoding, scale, f"{topic} ({encoding})") if check else depth


def checked_depth(depth: np.ndarray, encoding: str, scale: float, what: str) -> np.ndarray:
    """``depth`` if it holds a valid value and can be metres, else a FrameError (``depth_empty`` / ``depth_units``)
    with the fix for ``encoding`` (raw and compressed depth alike)."""
    try:
        depth_units.check_units(depth, encoding, scale, scale_applies=encoding == depth_units.INTEGER, what=what)
    except InputError as exc:
        raise FrameError("depth_empty" if "no valid value" in str(exc) else "depth_units", str(exc)) from None
    return depth


def mask_to_bool(msg, topic: str = "mask") -> np.ndarray:
    """``mono8`` mask -> ``(H, W) bool`` (any non-zero pixel is object)."""
    return _image_array(msg, topic, MASK_ENCODINGS)[..., 0] > 0


def camera_info_to_intrinsics(msg, topic: str = "camera_info") -> CameraIntrinsics:
    """``sensor_msgs/CameraInfo`` -> intrinsics, refusing a zero / non-finite K or an empty size."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9 or not np.isfinite(k).all():
        raise FrameError("camera_info", f"{topic}: K must hold 9 finite numbers, got {k.tolist()}")
    if not (k[0] > 0 and k[4] > 0):
        raise FrameError("camera_info", f"{topic}: K has no positive focal length (fx={k[0]:g}, fy={k[4]:g}); "
                                        "an uncalibrated camera publishes a zero K")
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise FrameError("camera_info", f"{topic}: image size is {width}x{height}")
    try:  # an unrectified image (image_raw): matches are undistorted when they are lifted to 3D
        return CameraIntrinsics.from_matrix(k.reshape(3, 3), width, height, tuple(msg.d),
                                            str(msg.distortion_model) or "plumb_bob")
    except InputError as exc:
        raise FrameError("camera_info", f"{topic}: {exc}") from None


def check_same_size(rgb: np.ndarray, other: np.ndarray, what: str) -> None:
    if other.shape[:2] != rgb.shape[:2]:
        raise FrameError("size_mismatch", f"{what} is {other.shape[1]}x{other.shape[0]} but the RGB image is "
                                          f"{rgb.shape[1]}x{rgb.shape[0]}")


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


# ================================================================================================ images out


def rgb_to_image(rgb: np.ndarray, header, encoding: str = "rgb8"):
    """``(H, W, 3) uint8`` -> ``sensor_msgs/Image`` (rgb8 or bgr8), or ``(H, W)`` uint8/bool -> mono8."""
    from sensor_msgs.msg import Image

    array = np.asarray(rgb)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        encoding = "mono8"
    elif encoding == "bgr8":
        array = array[..., ::-1]
    array = np.ascontiguousarray(array, dtype=np.uint8)
    msg = Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0,
                step=array.shape[1] * (1 if array.ndim == 2 else 3))
    msg.data = array.tobytes()
    return msg


def depth_to_image(depth_m: np.ndarray, header, encoding: str = "32FC1", depth_scale: float = 0.001):
    """Metres -> ``32FC1`` or ``16UC1`` (``round(m / depth_scale)``) ``sensor_msgs/Image`` (used by the tests and the
    benchmark publisher)."""
    from sensor_msgs.msg import Image

    depth = np.asarray(depth_m, dtype=np.float64)
    if encoding == "16UC1":
        array = np.clip(np.round(np.nan_to_num(depth) / depth_scale), 0, 65535).astype("<u2")
    elif encoding == "32FC1":
        array = depth.astype("<f4")
    else:
        raise ValueError(f"depth encoding must be 16UC1 or 32FC1, got {encoding!r}")
    msg = Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0,
                step=array.shape[1] * array.itemsize)
    msg.data = array.tobytes()
    return msg


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header):
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(header=header, width=int(intrinsics.width), height=int(intrinsics.height),
                     distortion_model=intrinsics.distortion_model)
    msg.k = [float(v) for v in intrinsics.K.ravel()]
    msg.d = list(intrinsics.distortion) or [0.0] * DISTORTION_MODELS[intrinsics.distortion_model]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(intrinsics.fx), 0.0, float(intrinsics.cx), 0.0, 0.0, float(intrinsics.fy), float(intrinsics.cy),
             0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


# ================================================================================================ matches cloud

# (name, offset, PointField datatype) — FLOAT32 = 7, UINT32 = 6, UINT8 = 2; 2 bytes of padding keep points 4-aligned
MATCH_FIELDS = (("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("u_live", 12, 7), ("v_live", 16, 7), ("u_demo", 20, 7),
                ("v_demo", 24, 7), ("score", 28, 7), ("index", 32, 6), ("position", 36, 2), ("pose_disagrees", 37, 2))
MATCH_DTYPE = np.dtype({"names": [f[0] for f in MATCH_FIELDS],
                        "formats": ["<f4"] * 8 + ["<u4", "u1", "u1"], "offsets": [f[1] for f in MATCH_FIELDS],
                        "itemsize": 40})
# ``position`` in ~/matches: where a match's live pixel comes from (the library's KeypointMatch.position; "dense" for
# a functional demo's dense matches), as the index into this tuple; POSITION_UNKNOWN for a name not listed here.
POSITIONS = ("cell", "soft-argmax", "refined", "model", "epipolar", "pose", "pose-hidden", "dense", "interpolated",
             "dense-field")
POSITION_UNKNOWN = 255


def position_code(position: str) -> int:
    """A ``KeypointMatch.position`` name -> its ``position`` code in ~/matches."""
    return POSITIONS.index(position) if position in POSITIONS else POSITION_UNKNOWN


def matches_to_cloud(header, live_points: np.ndarray, live_xy: np.ndarray, demo_xy: np.ndarray, scores: np.ndarray,
                     indices: np.ndarray, positions: np.ndarray | None = None, disagrees: np.ndarray | None = None):
    """One point per match: ``x y z`` (live camera frame, NaN without depth), ``u_live v_live u_demo v_demo``
    (continuous pixels), ``score`` (float32), ``index`` (uint32, into the demo keypoint list), ``position`` (uint8,
    :data:`POSITIONS` code; default 0) and ``pose_disagrees`` (uint8, 1: the keypoint's own match lies off the
    accepted 3D pose's prediction)."""
    from sensor_msgs.msg import PointCloud2, PointField

    n = len(indices)
    data = np.zeros(n, dtype=MATCH_DTYPE)
    if n:
        live_points = np.asarray(live_points, dtype=np.float64).reshape(n, 3)
        data["x"], data["y"], data["z"] = live_points[:, 0], live_points[:, 1], live_points[:, 2]
        data["u_live"], data["v_live"] = np.asarray(live_xy).reshape(n, 2).T
        data["u_demo"], data["v_demo"] = np.asarray(demo_xy).reshape(n, 2).T
        data["score"] = np.asarray(scores).reshape(n)
        data["index"] = np.asarray(indices).reshape(n)
        if positions is not None:
            data["position"] = np.asarray(positions).reshape(n)
        if disagrees is not None:
            data["pose_disagrees"] = np.asarray(disagrees, dtype=bool).reshape(n)
    msg = PointCloud2(header=header, height=1, width=n, is_bigendian=False, point_step=MATCH_DTYPE.itemsize,
                      row_step=MATCH_DTYPE.itemsize * n, is_dense=bool(n == 0 or np.isfinite(live_points).all()))
    msg.fields = [PointField(name=name, offset=offset, datatype=datatype, count=1)
                  for name, offset, datatype in MATCH_FIELDS]
    msg.data = data.tobytes()
    return msg


_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def cloud_to_array(msg) -> np.ndarray:
    """Any ``PointCloud2`` -> a structured numpy array keyed by field name (reads the declared layout)."""
    order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [order + _POINTFIELD_DTYPES[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    count = msg.width * msg.height
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=count)


# ================================================================================================ transforms


def rotation_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """3x3 rotation -> unit quaternion ``(x, y, z, w)`` (Shepperd's method, w >= 0)."""
    R = np.asarray(R, dtype=np.float64)
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = ((R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s)
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = (0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s)
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = ((R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = ((R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s)
    q = np.array(q)
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return tuple(float(v) for v in q)


def quaternion_to_rotation(x: float, y: float, z: float, w: float) -> np.ndarray:
    q = np.array([x, y, z, w], dtype=np.float64)
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def transform_to_msg(T: np.ndarray, header, child_frame_id: str):
    """4x4 ``T`` mapping points of ``child_frame_id`` (the demo object frame) into ``header.frame_id`` (the live
    camera frame) -> ``geometry_msgs/TransformStamped`` (tf convention: parent = header.frame_id)."""
    from geometry_msgs.msg import TransformStamped

    T = np.asarray(T, dtype=np.float64)
    msg = TransformStamped(header=header, child_frame_id=child_frame_id)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (float(v) for v in T[:3, 3])
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = rotation_to_quaternion(T[:3, :3])
    return msg


def msg_to_transform(msg) -> np.ndarray:
    r, t = msg.transform.rotation, msg.transform.translation
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation(r.x, r.y, r.z, r.w)
    T[:3, 3] = (t.x, t.y, t.z)
    return T
