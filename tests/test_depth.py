"""correspondence.depth: the one raw-depth -> metres conversion, its per-encoding defaults and the unit advice."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence import depth as D
from correspondence.alignment import depth_from_uint16
from correspondence.errors import InputError


def test_defaults_per_encoding():
    assert D.default_scale("16UC1") == 0.001 and D.default_scale("32FC1") == 1.0
    assert D.encoding_of(np.zeros(2, np.uint16)) == "16UC1" and D.encoding_of(np.zeros(2, np.float32)) == "32FC1"
    with pytest.raises(InputError, match="unknown depth encoding"):
        D.default_scale("mono16")
    with pytest.raises(InputError, match="numeric"):
        D.encoding_of(np.array(["a"]))


def test_to_metres_uses_the_encodings_default_and_zeroes_invalid_readings():
    raw = np.array([[0, 1000], [2500, 65535]], dtype=np.uint16)
    np.testing.assert_allclose(D.to_metres(raw), [[0, 1.0], [2.5, 65.535]], rtol=1e-6)  # default: millimetres
    np.testing.assert_allclose(D.to_metres(raw, 0.0002), raw * 0.0002, rtol=1e-6)  # TUM: 5000 units per metre
    floats = np.array([[np.nan, 1.5], [-1.0, np.inf]], dtype=np.float32)
    out = D.to_metres(floats)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 1.5], [0, 0]])
    assert np.isnan(floats[0, 0])  # the input is not modified
    assert D.to_metres(raw, dtype=np.float64).dtype == np.float64
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="depth_scale must be a positive"):
            D.to_metres(raw, bad)


def test_every_caller_converts_the_same_way(tmp_path):
    from PIL import Image

    from correspondence.demo_spec import load_depth
    from correspondence.segmentation import DepthForeground

    raw = np.full((40, 40), 2000, np.uint16)
    raw[10:30, 10:30] = 800
    Image.fromarray(raw).save(tmp_path / "d.png")
    np.testing.assert_allclose(load_depth(tmp_path / "d.png", 0.001), D.to_metres(raw), rtol=1e-6)
    np.save(tmp_path / "d.npy", D.to_metres(raw))
    np.testing.assert_allclose(load_depth(tmp_path / "d.npy", 0.001), D.to_metres(raw), rtol=1e-6)
    np.testing.assert_allclose(depth_from_uint16(raw, 0.001), D.to_metres(raw, dtype=np.float64))
    rgb = np.zeros((40, 40, 3), np.uint8)
    mm = DepthForeground((0.5, 1.0), min_area=10, depth_scale=0.001).segment(rgb, depth=raw).mask
    m = DepthForeground((0.5, 1.0), min_area=10).segment(rgb, depth=D.to_metres(raw)).mask
    assert np.array_equal(mm, m) and mm[15, 15] and not mm[0, 0]


def test_unit_advice_names_the_fix_for_the_encoding_that_arrived():
    mm = np.full((64, 64), 1200.0, np.float32)
    # 32FC1 in the ROS node: depth_scale does not apply, the publisher must send metres
    with pytest.raises(InputError) as info:
        D.check_units(mm, "32FC1", 0.001, scale_applies=False, what="/camera/depth")
    text = str(info.value)
    assert "looks like millimetres sent as float" in text and "fix the publisher" in text
    assert "set depth_scale" not in text
    # 16UC1 with a wrong scale: the scale is the fix
    with pytest.raises(InputError, match=r"16UC1 depth is value x depth_scale metres and depth_scale is 1: set it "
                                         r"to 0.001"):
        D.check_units(D.to_metres(np.full((8, 8), 1200, np.uint16), 1.0), "16UC1", 1.0)
    # the library applies its depth_scale to float depth too
    with pytest.raises(InputError, match=r"looks like millimetres; set depth_scale to 0.001 \(now 1\)"):
        D.check_units(mm, "32FC1", 1.0, scale_applies=True)
    with pytest.raises(InputError, match="no valid value"):
        D.check_units(np.zeros((8, 8), np.float32), "32FC1", 1.0)
    D.check_units(np.full((64, 64), 1.2, np.float32), "32FC1", 1.0)  # metres: fine
    sparse = np.zeros((64, 64), np.float32)
    sparse[1, 1] = 2.0  # one valid pixel off the sampling grid is still found
    D.check_units(sparse, "32FC1", 1.0)
