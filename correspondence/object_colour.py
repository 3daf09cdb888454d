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


#: The encoding gamma undone before light is mixed (sRGB-like cameras and the procedural renderer: 2.2).
GAMMA = 2.2


def linear_chromaticity_histogram(rgb: np.ndarray, bins: int = 16) -> np.ndarray:
    """(bins, bins) histogram, summing to 1 (all 0 when no pixel is bright enough), of the chromaticity of the
    bright pixels of ``rgb`` (N x 3 or H x W x 3, gamma-encoded uint8) in *linear* light: there a highlight or a
    clipped channel mixes the surface's colour with the light's (white) along a straight line (the dichromatic
    reflection model), which :func:`white_mix_overlap` allows."""
    values = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    known = values.sum(-1) >= MIN_BRIGHTNESS
    linear = (values[known] / 255.0) ** GAMMA
    histogram = np.zeros((bins, bins))
    if len(linear):
        chroma = linear[:, :2] / np.maximum(linear.sum(-1, keepdims=True), 1e-12)
        index = np.clip((chroma * bins).astype(int), 0, bins - 1)
        np.add.at(histogram, (index[:, 0], index[:, 1]), 1.0)
        histogram /= len(linear)
    return histogram


def white_mix_reach(demo: np.ndarray, max_mix: float = 0.7, min_share: float = 0.01, steps: int = 15
                    ) -> np.ndarray:
    """(bins, bins): for every linear chromaticity bin, the largest share of a demo colour (``demo``: a
    :func:`linear_chromaticity_histogram`) that reaches it when mixed with up to ``max_mix`` white light (a
    highlight, a clipped channel: a lit face turns pale), a bin either way; 0 where no demo colour reaches. Demo
    colours under ``min_share`` are left out (stray pixels)."""
    from scipy import ndimage

    bins = demo.shape[0]
    reach = np.zeros_like(demo)
    white = np.full(2, 1.0 / 3.0)
    for i, j in zip(*np.nonzero(demo >= min_share)):
        colour = (np.array([i, j]) + 0.5) / bins
        for t in np.linspace(0.0, max_mix, steps):
            k = np.clip((((1.0 - t) * colour + t * white) * bins).astype(int), 0, bins - 1)
            reach[k[0], k[1]] = max(reach[k[0], k[1]], demo[i, j])
    return ndimage.maximum_filter(reach, size=3, mode="constant")


def white_mix_overlap(demo: np.ndarray, live: np.ndarray, max_mix: float = 0.7) -> float:
    """The share of the live colours (:func:`linear_chromaticity_histogram`) that the demo object shows, each bin
    up to the share of the demo colour reaching it (:func:`white_mix_reach`). A live view in the demo's colours,
    paled or not, scores near 1; one of a part alone, up to that part's share of the demo (a hidden part is forgiven
    only as far as the other colours are the demo's major ones); colours the demo does not show, of any paleness, 0."""
    return float(np.minimum(live, white_mix_reach(demo, max_mix)).sum())


def in_white_mix_reach(rgb: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """(...) bool: each pixel of ``rgb`` (..., 3) shows a demo colour, paled or not (:func:`white_mix_reach`), or
    is too dark to say."""
    values = np.asarray(rgb, dtype=np.float64)
    linear = (values / 255.0) ** GAMMA
    chroma = linear[..., :2] / np.maximum(linear.sum(-1, keepdims=True), 1e-12)
    bins = reach.shape[0]
    index = np.clip((chroma * bins).astype(int), 0, bins - 1)
    return (reach[index[..., 0], index[..., 1]] > 0) | (values.sum(-1) < MIN_BRIGHTNESS)


__all__ = ["ColourModel", "GAMMA", "MIN_BRIGHTNESS", "chromaticity", "linear_chromaticity_histogram",
           "in_white_mix_reach", "patch_chromaticity", "white_mix_overlap", "white_mix_reach"]
