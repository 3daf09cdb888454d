"""What cameras publish, read as RGB and metres: every colour encoding cv_bridge knows that a camera sends (alpha,
16-bit, packed YUV 4:2:2, Bayer mosaics) and image_transport's compressed and compressedDepth transports.

Ground truth comes from the definitions, not from our code: the BT.601 studio-range YUV equations and byte orders
(UYVY, YUY2), the Bayer layouts by name, lossless PNG, and the compressedDepth header and inverse-depth
quantisation of ros-perception/image_transport_plugins (``codec.cpp``)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from soco_ros.compressed import (compressed_depth_to_metres, compressed_to_rgb, depth_to_compressed,  # noqa: E402
                                 rgb_to_compressed)
from soco_ros.conversions import COLOR_ENCODINGS, FrameError, image_to_rgb  # noqa: E402

HEADER = Header(frame_id="cam")
RNG = np.random.default_rng(1)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def _image(array: np.ndarray, encoding: str, bigendian: bool = False) -> Image:
    a = np.ascontiguousarray(array)
    if bigendian:
        a = a.astype(a.dtype.newbyteorder(">"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    msg = Image(header=HEADER, height=a.shape[0], width=a.shape[1], encoding=encoding, is_bigendian=int(bigendian),
                step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize("bigendian", [False, True])
def test_alpha_and_16_bit_encodings(bigendian):
    alpha = RNG.integers(0, 256, RGB.shape[:2] + (1,), dtype=np.uint8)
    assert np.array_equal(image_to_rgb(_image(np.concatenate([RGB, alpha], 2), "rgba8")), RGB)
    assert np.array_equal(image_to_rgb(_image(np.concatenate([RGB[..., ::-1], alpha], 2), "bgra8")), RGB)
    wide = RGB.astype(np.uint16) * 257  # v * 257 spans 0..65535 and maps back to v exactly
    wide_alpha = np.full(RGB.shape[:2] + (1,), 65535, np.uint16)
    assert np.array_equal(image_to_rgb(_image(wide, "rgb16", bigendian)), RGB)
    assert np.array_equal(image_to_rgb(_image(wide[..., ::-1], "bgr16", bigendian)), RGB)
    assert np.array_equal(image_to_rgb(_image(np.concatenate([wide, wide_alpha], 2), "rgba16", bigendian)), RGB)
    assert np.array_equal(image_to_rgb(_image(np.concatenate([wide[..., ::-1], wide_alpha], 2), "bgra16",
                                              bigendian)), RGB)
    grey = image_to_rgb(_image(wide[..., 0], "mono16", bigendian))
    assert np.array_equal(grey, np.repeat(RGB[..., :1], 3, 2))
    assert image_to_rgb(_image(np.array([[300]], np.uint16), "mono16"))[0, 0, 0] == 1  # round(300 * 255 / 65535)


def _bt601(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Studio-range BT.601 (ITU-R BT.601-7): Y in 16..235, Cb / Cr in 16..240."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return tuple(np.clip(np.round(c), 0, 255).astype(np.uint8) for c in (y, cb, cr))


def test_packed_yuv422_in_both_byte_orders():
    pairs = RNG.integers(0, 256, (6, 4, 3), dtype=np.uint8)
    rgb = np.repeat(pairs, 2, axis=1)  # both pixels of a pair share their chroma: 4:2:2 loses nothing
    y, cb, cr = _bt601(rgb)
    uyvy = np.zeros(rgb.shape[:2] + (2,), np.uint8)
    uyvy[:, 0::2, 0], uyvy[:, 1::2, 0] = cb[:, 0::2], cr[:, 0::2]  # U Y0 V Y1
    uyvy[..., 1] = y
    yuy2 = np.zeros_like(uyvy)
    yuy2[..., 0] = y  # Y0 U Y1 V
    yuy2[:, 0::2, 1], yuy2[:, 1::2, 1] = cb[:, 0::2], cr[:, 0::2]
    for encoding, packed in (("yuv422", uyvy), ("yuv422_yuy2", yuy2)):
        got = image_to_rgb(_image(packed, encoding)).astype(int)
        assert np.abs(got - rgb).max() <= 3, encoding  # 8-bit rounding of the equations, both ways
    with pytest.raises(FrameError, match="needs an even width"):
        image_to_rgb(_image(uyvy[:, :7], "yuv422"))


@pytest.mark.parametrize("encoding, layout", [("bayer_rggb8", "RG/GB"), ("bayer_bggr8", "BG/GR"),
                                              ("bayer_gbrg8", "GB/RG"), ("bayer_grbg8", "GR/BG")])
def test_bayer_mosaics_by_their_names(encoding, layout):
    colour = np.array([200, 90, 30])  # distinct channels: a wrong pattern shows at once
    channel = {"R": 0, "G": 1, "B": 2}
    rows = layout.split("/")
    mosaic = np.zeros((8, 10), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = colour[channel[rows[dy][dx]]]
    got = image_to_rgb(_image(mosaic, encoding))
    assert np.abs(got[2:-2, 2:-2].astype(int) - colour).max() <= 1  # a flat colour demosaics to itself


def test_every_listed_colour_encoding_is_readable():
    for encoding in COLOR_ENCODINGS:
        channels = {"mono8": 1, "mono16": 1, "yuv422": 2, "yuv422_yuy2": 2}.get(encoding, 1 if "bayer" in encoding
                                                                                  else 4 if "a" in encoding[3:] else 3)
        dtype = np.uint16 if "16" in encoding else np.uint8
        array = np.zeros((4, 6, channels), dtype)
        assert image_to_rgb(_image(array[..., 0] if channels == 1 else array, encoding)).shape == (4, 6, 3), encoding
    with pytest.raises(FrameError, match="unsupported encoding 'nv21'"):
        image_to_rgb(_image(np.zeros((4, 6), np.uint8), "nv21"))


# ================================================================================================ compressed


def test_compressed_colour_png_is_lossless_and_jpeg_close():
    smooth = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(compressed_to_rgb(rgb_to_compressed(smooth, HEADER, "png")), smooth)
    jpeg = compressed_to_rgb(rgb_to_compressed(smooth, HEADER, "jpeg", quality=95)).astype(int)
    assert np.abs(jpeg - smooth).mean() < 4
    # grey and 16-bit PNGs, as the plugin sends mono8 / mono16 streams
    grey = smooth[..., 1]
    msg = CompressedImage(header=HEADER, format="mono8; png compressed mono8",
                          data=cv2.imencode(".png", grey)[1].tobytes())
    assert np.array_equal(compressed_to_rgb(msg), np.repeat(grey[..., None], 3, 2))
    msg.data = cv2.imencode(".png", grey.astype(np.uint16) * 257)[1].tobytes()
    assert np.array_equal(compressed_to_rgb(msg), np.repeat(grey[..., None], 3, 2))


def test_compressed_colour_errors():
    with pytest.raises(FrameError, match="not an image OpenCV can decode"):
        compressed_to_rgb(CompressedImage(header=HEADER, format="jpeg", data=b"\x00" * 64), "/cam/compressed")
    with pytest.raises(FrameError, match="empty compressed payload"):
        compressed_to_rgb(CompressedImage(header=HEADER, format="jpeg", data=b""))
    depth = depth_to_compressed(np.ones((4, 4)), HEADER)
    with pytest.raises(FrameError, match="is a depth stream"):
        compressed_to_rgb(depth)


def test_compressed_depth_16uc1_is_exact_in_millimetres():
    mm = RNG.integers(300, 4000, (12, 16)).astype(np.uint16)
    mm[0, 0] = 0
    head = np.array([0], "<i4").tobytes() + np.zeros(2, "<f4").tobytes()  # ConfigHeader: format, depthParam[2]
    msg = CompressedImage(header=HEADER, format="16UC1; compressedDepth png",
                          data=head + cv2.imencode(".png", mm)[1].tobytes())
    metres = compressed_depth_to_metres(msg, depth_scale=0.001)
    assert metres.dtype == np.float32 and metres[0, 0] == 0
    np.testing.assert_allclose(metres, mm.astype(np.float32) * np.float32(0.001), rtol=1e-6)
    assert np.array_equal(compressed_depth_to_metres(depth_to_compressed(metres, HEADER, "16UC1")), metres)
    # an older publisher wrote no transport after the encoding: png
    msg.format = "16UC1; compressedDepth"
    assert np.array_equal(compressed_depth_to_metres(msg), metres)


def test_compressed_depth_32fc1_inverse_depth_within_its_quantisation():
    depth = RNG.uniform(0.3, 4.0, (12, 16))
    depth[0, :3] = [0.0, np.nan, 12.0]  # no reading, NaN, beyond depth_max: all "no measurement"
    msg = depth_to_compressed(depth, HEADER, "32FC1", depth_max=10.0, depth_quantization=100.0)
    assert msg.format == "32FC1; compressedDepth png"
    quant_a, quant_b = np.frombuffer(bytes(msg.data)[4:12], "<f4")
    assert quant_a == np.float32(100 * 101) and np.isclose(quant_b, 1 - quant_a / 10.0)
    metres = compressed_depth_to_metres(msg)
    assert (metres[0, :3] == 0).all()
    valid = np.isfinite(depth) & (depth > 0) & (depth < 10)
    step = depth[valid] ** 2 / quant_a  # one inverse-depth level at that depth
    assert (np.abs(metres[valid] - depth[valid]) <= step * 1.01 + 1e-6).all()


def test_compressed_depth_errors_name_the_fix():
    with pytest.raises(FrameError, match="compressedDepth 'rvl' is not supported; set the publisher's"):
        compressed_depth_to_metres(CompressedImage(header=HEADER, format="16UC1; compressedDepth rvl",
                                                   data=b"\x00" * 40))
    with pytest.raises(FrameError, match="must be 16UC1 or 32FC1"):
        compressed_depth_to_metres(CompressedImage(header=HEADER, format="rgb8; jpeg compressed bgr8",
                                                   data=b"\x00" * 40))
    with pytest.raises(FrameError, match="shorter than its 12-byte header"):
        compressed_depth_to_metres(CompressedImage(header=HEADER, format="16UC1; compressedDepth png", data=b"\x00"))
    colour_png = cv2.imencode(".png", RGB)[1].tobytes()
    with pytest.raises(FrameError, match="one-channel 16-bit PNG"):
        compressed_depth_to_metres(CompressedImage(header=HEADER, format="16UC1; compressedDepth png",
                                                   data=b"\x00" * 12 + colour_png))
    metres_as_mm = depth_to_compressed(np.full((8, 8), 60.0), HEADER, "16UC1", depth_scale=0.001)
    with pytest.raises(FrameError, match="looks like millimetres") as info:
        compressed_depth_to_metres(metres_as_mm, depth_scale=1.0)
    assert info.value.reason == "depth_units"
