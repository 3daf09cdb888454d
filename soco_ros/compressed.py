"""``sensor_msgs/CompressedImage`` -> numpy, for cameras streamed through image_transport's ``compressed`` and
``compressedDepth`` transports (a robot's camera over Wi-Fi rarely sends raw frames).

Formats as the ROS 2 plugins write them (ros-perception/image_transport_plugins):

* ``compressed``: ``"<encoding>; <jpeg|png> compressed <target encoding>"`` (older publishers: just ``"jpeg"``);
  the payload is a JPEG or PNG file, decoded by OpenCV (BGR order, grey, or 16-bit PNG), then
  :func:`~soco_ros.conversions.channels_to_rgb` as for raw frames.
* ``compressedDepth``: ``"<16UC1|32FC1>; compressedDepth [png|rvl]"``; the payload is a 12-byte header (int32
  format, float32 ``depthQuantA``, ``depthQuantB``) and a 16-bit PNG. ``16UC1`` holds the raw depth (then scaled by
  ``depth_scale``, as for a raw 16UC1 frame); ``32FC1`` holds quantised inverse depth, ``depth = A / (v - B)``
  metres for ``v > 0`` (0 = no measurement). RVL payloads are refused with the fix (the publisher's
  ``format: png``).

Every failure is a :class:`~soco_ros.conversions.FrameError` naming the topic and what was wrong.
"""
from __future__ import annotations

import numpy as np

from correspondence import depth as depth_units
from .conversions import FrameError, channels_to_rgb, checked_depth

DEPTH_HEADER_BYTES = 12  # compressed_depth_image_transport::ConfigHeader: int32 format + float32 depthParam[2]


def _decode(data: bytes, topic: str, what: str) -> np.ndarray:
    import cv2

    buffer = np.frombuffer(bytes(data), dtype=np.uint8)
    if buffer.size == 0:
        raise FrameError("buffer", f"{topic}: empty {what} payload")
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FrameError("decode", f"{topic}: the {what} payload ({buffer.size} bytes) is not an image OpenCV can "
                                   "decode (expected JPEG or PNG)")
    return image


def compressed_to_rgb(msg, topic: str = "image/compressed") -> np.ndarray:
    """``compressed`` transport -> ``(H, W, 3) uint8`` RGB."""
    text = str(msg.format).lower()
    if "compresseddepth" in text:
        raise FrameError("encoding", f"{topic}: format {msg.format!r} is a depth stream; the colour image needs the "
                                     "'compressed' transport")
    image = _decode(msg.data, topic, "compressed")
    if image.ndim == 2:
        image = image[..., None]
    return channels_to_rgb(image, bgr=image.shape[2] >= 3)  # OpenCV decodes colour as BGR(A)


def _depth_encoding(fmt: str, topic: str) -> str:
    encoding, _, rest = str(fmt).partition(";")
    encoding = encoding.strip()
    if encoding not in ("16UC1", "32FC1"):
        raise FrameError("encoding", f"{topic}: compressedDepth format {fmt!r}: the depth encoding must be 16UC1 or "
                                     "32FC1")
    if "rvl" in rest.lower():
        raise FrameError("encoding", f"{topic}: compressedDepth 'rvl' is not supported; set the publisher's "
                                     "compressedDepth format parameter to png")
    return encoding


def compressed_depth_to_metres(msg, depth_scale: float = 0.001, topic: str = "depth/compressedDepth",
                               check: bool = True) -> np.ndarray:
    """``compressedDepth`` transport -> ``(H, W) float32`` metres, 0 where invalid (as
    :func:`~soco_ros.conversions.depth_to_metres` for raw frames)."""
    encoding = _depth_encoding(msg.format, topic)
    data = bytes(msg.data)
    if len(data) <= DEPTH_HEADER_BYTES:
        raise FrameError("buffer", f"{topic}: compressedDepth payload of {len(data)} bytes is shorter than its "
                                   f"{DEPTH_HEADER_BYTES}-byte header")
    quant_a, quant_b = np.frombuffer(data[4:DEPTH_HEADER_BYTES], dtype="<f4").astype(np.float64)
    values = _decode(data[DEPTH_HEADER_BYTES:], topic, "compressedDepth")
    if values.dtype != np.uint16 or values.ndim != 2:
        raise FrameError("decode", f"{topic}: compressedDepth must hold a one-channel 16-bit PNG, got "
                                   f"{values.dtype} with shape {values.shape}")
    if encoding == depth_units.INTEGER:
        scale = float(depth_scale)
        depth = depth_units.to_metres(values, scale)
    else:
        scale = depth_units.default_scale(encoding)
        inverse = values.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            metres = np.where(values > 0, quant_a / (inverse - quant_b), 0.0)
        depth = depth_units.to_metres(metres.astype(np.float32), scale)
    return checked_depth(depth, encoding, scale, f"{topic} ({encoding}, compressedDepth)") if check else depth


# ------------------------------------------------------------------------------------------------ encoders
# What the ROS 2 plugins publish, for tests and the synthetic publisher (the same layout as the C++ encoders).


def rgb_to_compressed(rgb: np.ndarray, header, fmt: str = "jpeg", quality: int = 95):
    import cv2
    from sensor_msgs.msg import CompressedImage

    ext = ".jpg" if fmt == "jpeg" else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buffer = cv2.imencode(ext, np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {fmt} image")
    return CompressedImage(header=header, format=f"rgb8; {fmt} compressed bgr8", data=buffer.tobytes())


def depth_to_compressed(depth_m: np.ndarray, header, encoding: str = "16UC1", depth_scale: float = 0.001,
                        depth_max: float = 10.0, depth_quantization: float = 100.0):
    """Metres -> ``compressedDepth`` PNG: 16UC1 ``round(m / depth_scale)``, or 32FC1 as quantised inverse depth
    with the plugin's parameters (``A = q (q + 1)``, ``B = 1 - A / depth_max``, ``v = A / d + B`` truncated)."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    depth = np.nan_to_num(np.asarray(depth_m, dtype=np.float64))
    header_values = [0.0, 0.0]
    if encoding == "16UC1":
        values = np.clip(np.round(depth / depth_scale), 0, 65535).astype(np.uint16)
    elif encoding == "32FC1":
        quant_a = np.float32(depth_quantization * (depth_quantization + 1.0))
        quant_b = np.float32(1.0 - quant_a / np.float32(depth_max))
        with np.errstate(divide="ignore"):
            inverse = np.where((depth > 0) & (depth < depth_max), quant_a / depth.astype(np.float32) + quant_b, 0)
        values = np.clip(inverse, 0, 65535).astype(np.uint16)
        header_values = [float(quant_a), float(quant_b)]
    else:
        raise ValueError(f"compressedDepth encoding must be 16UC1 or 32FC1, got {encoding!r}")
    ok, png = cv2.imencode(".png", values)
    if not ok:
        raise ValueError("OpenCV could not encode the depth PNG")
    head = np.array([0], "<i4").tobytes() + np.array(header_values, "<f4").tobytes()
    return CompressedImage(header=header, format=f"{encoding}; compressedDepth png", data=head + png.tobytes())
