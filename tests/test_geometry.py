"""Preprocessing geometry and the two pixel <-> grid conventions: exact values and round trips."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correspondence.coords import Convention, cell_to_pixel, grid_to_pixel, pixel_to_grid
from correspondence.errors import InputError
from correspondence.preprocessing import (PadPolicy, PreprocessSettings, SizePolicy, effective_size,
                                          mask_to_processed, preprocess, to_rgb_array)


def test_size_policies():
    assert effective_size(800, 14, SizePolicy.NEAREST_MULTIPLE) == 798
    assert effective_size(60, 14, SizePolicy.FIXED_GRID) == 840
    assert effective_size(448, 14) == 448 and effective_size(224, 16) == 224


def test_soco_convention_reference_values():
    grid, size = (57, 57), (798, 798)
    # query: int(x), normalised by S, then grid_sample(align_corners=True) over the 57 cells
    assert np.allclose(pixel_to_grid([[0.0, 0.0]], grid, size, "soco"), 0.0)
    assert np.allclose(pixel_to_grid([[797.9, 797.0]], grid, size, "soco"), 797 * 56 / 798)
    assert np.allclose(pixel_to_grid([[398.7, 0]], grid, size, "soco")[0, 0], 398 * 56 / 798)
    # prediction: the cell's top-left corner idx / W * S
    assert np.allclose(cell_to_pixel([[56, 3]], grid, size, "soco"), [[784.0, 42.0]])


def test_soco_feature_map_truncates_twice_like_the_reference():
    """Reference: int(pos) in the original image, then int(pos * S / max(W, H)), then / S for grid_sample."""
    import torch
    from correspondence.features import FeatureMap
    _, geometry = preprocess(np.zeros((300, 500, 3), np.uint8), PreprocessSettings(size=800), 14)
    fmap = FeatureMap(torch.zeros(1, 57, 57), geometry, 14, Convention.SOCO)
    x = 333.9
    expected = int(int(x) * 798 / 500) / 798 * 56
    assert fmap.original_to_grid([[x, x / 2]])[0, 0] == pytest.approx(expected)


def test_patch_center_convention_reference_values():
    grid, size = (32, 32), (448, 448)
    assert np.allclose(pixel_to_grid([[7.0, 21.0]], grid, size, "patch-center"), [[0.0, 1.0]])
    assert np.allclose(cell_to_pixel([[0, 31]], grid, size, "patch-center"), [[7.0, 441.0]])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 797), st.integers(0, 797), st.sampled_from(list(Convention)))
def test_conventions_round_trip(x, y, convention):
    grid, size = (57, 57), (798, 798)
    xy = np.array([[x, y]], dtype=np.float64)
    back = grid_to_pixel(pixel_to_grid(xy, grid, size, convention), grid, size, convention)
    assert np.allclose(back, xy, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.integers(8, 300), st.integers(8, 300), st.sampled_from(list(PadPolicy)), st.floats(0, 1), st.floats(0, 1))
def test_geometry_round_trip(width, height, pad, fx, fy):
    _, geometry = preprocess(np.zeros((height, width, 3), np.uint8), PreprocessSettings(pad=pad, size=112), 14)
    xy = np.array([[fx * (width - 1), fy * (height - 1)]])
    assert np.allclose(geometry.to_original(geometry.to_processed(xy)), xy, atol=1e-9)


@pytest.mark.parametrize("pad", list(PadPolicy))
def test_geometry_maps_a_marked_pixel_to_where_it_is_drawn(pad):
    image = np.full((90, 160, 3), 40, np.uint8)
    image[60:66, 120:126] = (255, 0, 0)  # a red square centred at (123, 63) in continuous coords
    processed, geometry = preprocess(image, PreprocessSettings(pad=pad, size=224), 14)
    redness = processed[..., 0] - processed[..., 1]
    ys, xs = np.nonzero(redness > 0.5)
    found = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    assert np.allclose(found, geometry.to_processed([123.0, 63.0]), atol=1.0)


def test_pad_topleft_white_pads_right_and_bottom_white():
    processed, geometry = preprocess(np.zeros((50, 100, 3), np.uint8), PreprocessSettings(size=112), 14)
    assert processed.shape == (112, 112, 3)
    assert processed[:50].max() == 0 and processed[-20:].min() == 1.0  # image at the top, white below
    assert geometry.offset_x == geometry.offset_y == 0 and geometry.scale_x == pytest.approx(1.12)


def test_mask_follows_the_image_geometry():
    mask = np.zeros((90, 160), bool)
    mask[10:30, 100:140] = True
    for pad in PadPolicy:
        _, geometry = preprocess(np.zeros((90, 160, 3), np.uint8), PreprocessSettings(pad=pad, size=224), 14)
        processed = mask_to_processed(mask, geometry)
        ys, xs = np.nonzero(processed)
        corner = geometry.to_processed([100.0, 10.0])
        assert abs(xs.min() - corner[0]) <= 1.5 and abs(ys.min() - corner[1]) <= 1.5
    with pytest.raises(InputError, match="does not match"):
        mask_to_processed(np.zeros((10, 10), bool), geometry)


def test_image_conversions():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_rgb_array(gray).shape == (3, 4, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent -> white
    assert (to_rgb_array(rgba) == 255).all()
    assert to_rgb_array(np.ones((2, 2, 3), np.float32)).max() == 255
    with pytest.raises(InputError):
        to_rgb_array(np.zeros((2, 2, 5)))
