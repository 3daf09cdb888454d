"""The object-centred crop of the dense functional correspondence reference (``3_pseudo_label/resize_images.py``,
``4_eval_curation/resize_annotations.py``): the frame the reference evaluates and trains in.

Its own module because two layers use it: the procedural world's HANDAL writer (``world/writers/handal.py``) writes
the reference layout with it, and the functional evaluator and training data (``functional/``) crop full frames
with it; neither may import the other's package for it.

The object is composited on white, the image padded by 60 px on every side (white; the mask with 0), the box is
``[int(c - s // 2), int(c + s // 2)]`` per axis with ``c = (min + max) / 2`` and ``s = 1.2 * max(x_max - x_min,
y_max - y_min)`` (inclusive extremes, floor-halved side), cropped with PIL (black beyond the padded image), resized
to 224 with LANCZOS (the mask with NEAREST); points ``round((p + 60 - box_origin) * 224 / box_width)`` (numpy's
half-to-even), clipped to [0, 223].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from .errors import InputError

CROP_SIZE = 224
PAD_PX = 60
PAD_RATIO = 1.2


def square_box(mask: np.ndarray, pad_ratio: float = PAD_RATIO) -> tuple[int, int, int, int]:
    """The reference's ``create_square_bbox`` on a boolean mask (already padded): ``[x0, y0, x1, y1]``."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        raise InputError("cannot crop around an empty mask")
    x0, x1, y0, y1 = int(cols.min()), int(cols.max()), int(rows.min()), int(rows.max())
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = pad_ratio * max(x1 - x0, y1 - y0)
    return int(cx - side // 2), int(cy - side // 2), int(cx + side // 2), int(cy + side // 2)


@dataclass(frozen=True)
class Crop:
    """Original pixel index ``p`` ([row, col]) -> ``clip(round((p + pad - (y0, x0)) * ratio), 0, size - 1)``."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the padded image
    pad: int = PAD_PX
    size: int = CROP_SIZE

    @property
    def ratio(self) -> float:
        return self.size / (self.box[2] - self.box[0])  # the reference uses the width for both axes

    def points(self, rc) -> np.ndarray:
        rc = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
        moved = rc + self.pad - np.array([self.box[1], self.box[0]], dtype=np.float64)
        out = np.round(moved * self.ratio).astype(int)
        out[out >= self.size] = self.size - 1
        out[out < 0] = 0
        return out


def reference_crop(image: np.ndarray, mask: np.ndarray, size: int = CROP_SIZE, pad: int = PAD_PX,
                   pad_ratio: float = PAD_RATIO) -> tuple[np.ndarray, np.ndarray, Crop]:
    """The reference's processed image and object mask (``resize_images.py``) and the point transform."""
    mask_img = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L")
    rgb = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    rgb = Image.composite(rgb, Image.new("RGB", rgb.size, (255, 255, 255)), mask_img)
    rgb = ImageOps.expand(rgb, border=(pad, pad), fill=(255, 255, 255))
    mask_img = ImageOps.expand(mask_img, border=(pad, pad), fill=0)
    box = square_box(np.asarray(mask_img) // 255 > 0.5, pad_ratio)
    crop_rgb = rgb.crop(box).resize((size, size), Image.LANCZOS)
    crop_mask = mask_img.crop(box).resize((size, size), Image.NEAREST)
    return np.asarray(crop_rgb), np.asarray(crop_mask) // 255 == 1, Crop(box, pad, size)
