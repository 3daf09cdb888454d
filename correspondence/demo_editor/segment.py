"""Click-and-box segmentation for the editor: a first prompt (a click or a box), refined by more clicks
(left = object, right/shift = background), recomputed from the whole click list every time so undo is exact.

SAM (``segment-anything``) when its weights resolve takes every click and the box at once, as the SAM predictor is
designed to (``point_coords`` / ``point_labels`` / ``box``). Without SAM the first prompt goes to the depth mask
source (a click on valid depth) or GrabCut (a box, or a box around the click), and further clicks refine it with
OpenCV GrabCut: the current mask is "probably object", each click a disk of certain object / background.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..segmentation import (DepthForeground, GrabCutBox, MaskResult, MaskSource, NoMaskError, Prompt, SamMaskSource,
                            auto_mask_source)

CLICK_RADIUS_FRACTION = 0.01  # refinement disks: 1 % of the image diagonal (at least 3 px)
CLICK_BOX_FRACTION = 0.5  # GrabCut around a lone click: a box this fraction of the image's sides


@dataclass(frozen=True)
class Clicks:
    """Object (label 1) and background (label 0) clicks, in order, and an optional box (continuous pixels)."""

    points: tuple[tuple[float, float, int], ...] = ()
    box: tuple[float, float, float, float] | None = None

    @staticmethod
    def parse(data: dict, width: int, height: int) -> "Clicks":
        """From the page's JSON ``{points: [[x, y, label], ...], box: [x0, y0, x1, y1] | null}``, checked."""
        try:
            points = tuple((float(x), float(y), int(label)) for x, y, label in data.get("points") or ())
        except (TypeError, ValueError):
            raise InputError(f"points must be [[x, y, label], ...], got {data.get('points')!r}") from None
        box = data.get("box")
        prompt = Prompt(box=tuple(box) if box else None)  # checks the box's numbers and order
        prompt.check_inside(width, height)
        for x, y, label in points:
            Prompt(point=(x, y)).check_inside(width, height)
            if label not in (0, 1):
                raise InputError(f"a click's label is 1 (object) or 0 (background), got {label}")
        if not any(label == 1 for *_, label in points) and prompt.box is None:
            raise InputError("click on the object (or drag a box around it) first; background clicks only refine")
        return Clicks(points, prompt.box)


class InteractiveSegmenter:
    """One image (and its depth), many prompts: SAM computes the image embedding once."""

    def __init__(self, rgb: np.ndarray, depth: np.ndarray | None = None, source: MaskSource | None = None,
                 reason: str = "") -> None:
        self.rgb, self.depth = rgb, depth
        if source is None:
            source, reason = auto_mask_source(depth)
        self.source, self.reason = source, reason
        self.radius = max(3, int(round(CLICK_RADIUS_FRACTION * math.hypot(*rgb.shape[:2]))))

    @property
    def name(self) -> str:
        return self.source.name

    def segment(self, clicks: Clicks, part: bool = False) -> MaskResult:
        """``part``: a functional part, not the whole object: never the depth surface (a part is rarely one)."""
        if isinstance(self.source, SamMaskSource):
            return self._sam(clicks)
        index = next((i for i, (_, _, label) in enumerate(clicks.points) if label == 1), None)
        first = None if index is None else clicks.points[index][:2]
        if (isinstance(self.source, DepthForeground) and self.depth is not None and first is not None
                and not part):
            try:
                result = self.source.segment(self.rgb, Prompt(point=first), self.depth)
            except NoMaskError:  # the click is on a depth hole: colour instead
                result = self._grabcut_start(first, clicks.box)
        else:
            result = self._grabcut_start(first, clicks.box)
        rest = clicks.points if index is None else clicks.points[:index] + clicks.points[index + 1:]
        if not rest:
            return result
        mask = self._refine(result.mask, rest)
        return MaskResult(mask, result.score, f"{result.source}+grabcut", result.prompt,
                          {**result.details, "refined_by": len(rest)})

    def _grabcut_start(self, point, box) -> MaskResult:
        height, width = self.rgb.shape[:2]
        if box is None:
            half_w, half_h = CLICK_BOX_FRACTION * width / 2, CLICK_BOX_FRACTION * height / 2
            box = (max(0.0, point[0] - half_w), max(0.0, point[1] - half_h), min(float(width), point[0] + half_w),
                   min(float(height), point[1] + half_h))
        return GrabCutBox().segment(self.rgb, Prompt(point=point, box=box))

    def _refine(self, mask: np.ndarray, clicks) -> np.ndarray:
        import cv2

        gc = np.where(mask, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        for x, y, label in clicks:
            cv2.circle(gc, (int(x), int(y)), self.radius, int(cv2.GC_FGD if label else cv2.GC_BGD), -1)
        if not ((gc == cv2.GC_PR_BGD) | (gc == cv2.GC_BGD)).any():
            return gc == cv2.GC_FGD
        cv2.setRNGSeed(0)
        bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.grabCut(np.ascontiguousarray(self.rgb[..., ::-1]), gc, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
        refined = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        if not refined.any():
            raise NoMaskError("grabcut: the background clicks removed the whole object; undo the last click")
        return refined

    def _sam(self, clicks: Clicks) -> MaskResult:
        source: SamMaskSource = self.source
        source.set_image(self.rgb)
        coords = np.array([(x, y) for x, y, _ in clicks.points], np.float64).reshape(-1, 2)
        labels = np.array([label for *_, label in clicks.points], np.int64)
        single = len(coords) == 1 and clicks.box is None  # one click is ambiguous: best of SAM's three masks
        masks, ious, _ = source.predictor.predict(point_coords=coords if len(coords) else None,
                                                  point_labels=labels if len(coords) else None,
                                                  box=None if clicks.box is None else np.array(clicks.box),
                                                  multimask_output=single)
        mask, score = source._best(masks, ious, "the clicks")
        return MaskResult(mask, score, source.name, Prompt(box=clicks.box), {"clicks": len(coords)})
