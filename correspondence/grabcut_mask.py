"""The weight-free colour mask source: OpenCV GrabCut initialised with a box (see :class:`GrabCutBox`)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .mask_types import MaskResult, Prompt, _nonempty, _prepare


class GrabCutBox:
    """OpenCV GrabCut (colour GMMs + graph cut) initialised with a box.

    The box is the prompt box; without one, a centred box covering the middle 60 % of the width and height
    (20 % margin on every side). A prompt point, if given, is additionally marked as certain foreground
    (a disk of radius ``point_radius``). Outside the box is certain background, so the box must leave some image
    outside it. Images smaller than ``MIN_SIDE`` px on a side are refused. Deterministic (OpenCV RNG seeded).
    ``score`` is 1.0 (rule-based).
    """

    name = "grabcut"
    MIN_SIDE = 8
    DEFAULT_MARGIN = 0.2

    def __init__(self, iterations: int = 5, point_radius: int = 3):
        if int(iterations) < 1:
            raise ConfigError(f"GrabCut iterations must be >= 1, got {iterations}")
        self.iterations = int(iterations)
        self.point_radius = int(point_radius)

    def segment(self, image: Any, prompt: Prompt | None = None, depth: np.ndarray | None = None) -> MaskResult:
        import cv2

        rgb, prompt, _ = _prepare(image, prompt, depth)
        height, width = rgb.shape[:2]
        if height < self.MIN_SIDE or width < self.MIN_SIDE:
            raise InputError(f"image {width}x{height} px is too small for GrabCut (needs at least "
                             f"{self.MIN_SIDE}x{self.MIN_SIDE} px)")
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            box_source = "prompt"
        else:
            m = self.DEFAULT_MARGIN
            x0, y0, x1, y1 = m * width, m * height, (1 - m) * width, (1 - m) * height
            box_source = "centred 60% default"
        ix0, iy0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        ix1, iy1 = min(width, int(math.ceil(x1))), min(height, int(math.ceil(y1)))
        if ix1 - ix0 < 2 or iy1 - iy0 < 2:
            raise InputError(f"GrabCut box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is smaller than 2x2 px")
        if ix0 == 0 and iy0 == 0 and ix1 == width and iy1 == height:
            raise InputError("GrabCut box covers the whole image; it needs some background outside the box")
        gc_mask = np.full((height, width), cv2.GC_BGD, np.uint8)
        gc_mask[iy0:iy1, ix0:ix1] = cv2.GC_PR_FGD
        if prompt.point is not None:
            cv2.circle(gc_mask, (int(prompt.point[0]), int(prompt.point[1])), self.point_radius, int(cv2.GC_FGD), -1)
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        cv2.setRNGSeed(0)
        try:
            cv2.grabCut(bgr, gc_mask, None, bgd_model, fgd_model, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error as exc:
            raise InputError(f"GrabCut failed on this image and box ({ix0}, {iy0}, {ix1}, {iy1}): {exc}") from exc
        mask = (gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)
        _nonempty(mask, self.name, f"GrabCut found no foreground in the box ({ix0}, {iy0}, {ix1}, {iy1})")
        details = {"box": [ix0, iy0, ix1, iy1], "box_source": box_source, "iterations": self.iterations}
        return MaskResult(mask, 1.0, self.name, prompt, details)
