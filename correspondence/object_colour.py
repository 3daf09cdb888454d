"""The demo object's colours, brightness removed: what tells it from a look-alike a weight-free descriptor confuses.

Colour here is *chromaticity*, ``(r, g) / (r + g + b)``: the light of each view (its direction and strength) changes
brightness and shading far more than this ratio, so the same surface under another light keeps it, while another
instance of the category (its colours drawn anew) does not. Pixels too dark for a stable ratio (``r + g + b`` below
:data:`MIN_BRIGHTNESS`) are *unknown*: they never vote against a colour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

#: r + g + b (0..765) below which chromaticity is noise (a dark or shadowed pixel).
MIN_BRIGHTNESS = 60.0


def chromaticity(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 2) r and g chromaticity of RGB values (..., 3), and where it is known (bright enough)."""
    values = np.asarray(rgb, dtype=np.float64)
    total = values.sum(-1, keepdims=True)
    return values[..., :2] / np.maximum(total, 1.0), total[..., 0] >= MIN_BRIGHTNESS


def patch_chromaticity(rgb: np.ndarray, xy: np.ndarray, radius: int = 2) -> np.ndarray:
    """(N, 2) chromaticity of the mean colour of the (2 radius + 1)^2 pixels around each continuous pixel ``xy``."""
    height, width = rgb.shape[:2]
    cols = np.clip(np.floor(xy[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.floor(xy[:, 1]).astype(int), 0, height - 1)
    offsets = np.arange(-radius, radius + 1)
    rr = np.clip(rows[:, None, None] + offsets[None, :, None], 0, height - 1)
    cc = np.clip(cols[:, None, None] + offsets[None, None, :], 0, width - 1)
    return chromaticity(rgb[rr, cc].astype(np.float64).reshape(len(xy), -1, 3).mean(1))[0]


@dataclass(frozen=True, eq=False)
class ColourModel:
    """Which chromaticities the demo object shows: a ``bins`` x ``bins`` histogram of its bright pixels over
    r, g in [0, 1], each bin grown by ``spread`` bins (a nearby colour under another light is still the object's)."""

    present: np.ndarray  # (bins, bins) bool
    bins: int

    @classmethod
    def from_image(cls, rgb: np.ndarray, mask: np.ndarray, bins: int = 20, spread: int = 1,
                   min_share: float = 0.002) -> "ColourModel":
        """The colours covering at least ``min_share`` of the object's bright pixels (stray pixels do not count)."""
        from scipy import ndimage

        mask = np.asarray(mask, bool)
        if mask.shape != np.asarray(rgb).shape[:2]:
            raise InputError(f"colour model: mask {mask.shape} does not match the image {np.asarray(rgb).shape[:2]}")
        chroma, known = chromaticity(np.asarray(rgb)[mask])
        chroma = chroma[known]
        histogram = np.zeros((bins, bins))
        if len(chroma):
            index = np.clip((chroma * bins).astype(int), 0, bins - 1)
            np.add.at(histogram, (index[:, 0], index[:, 1]), 1.0)
            histogram /= len(chroma)
        present = histogram >= min_share
        if spread:
            present = ndimage.binary_dilation(present, np.ones((3, 3), bool), iterations=spread)
        return cls(present, bins)

    def matches(self, rgb: np.ndarray) -> np.ndarray:
        """HxW bool: the pixel shows one of the object's colours, or is too dark to say."""
        chroma, known = chromaticity(rgb)
        index = np.clip((chroma * self.bins).astype(int), 0, self.bins - 1)
        return self.present[index[..., 0], index[..., 1]] | ~known


__all__ = ["ColourModel", "MIN_BRIGHTNESS", "chromaticity", "patch_chromaticity"]
