"""The mask interface shared by every mask source: the prompt, the labelled result, the input checks.

Split from :mod:`~correspondence.segmentation` (which re-exports every name here) so each mask source lives in its own
module and imports only this one. Coordinates are continuous pixels (see :mod:`~correspondence.segmentation`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .deprecation import warn_renamed
from .errors import InputError
from .preprocessing import to_rgb_array


class NoMaskError(InputError):
    """The mask source ran but found no usable object mask for this image and prompt."""


# ----------------------------------------------------------------------------------------------------------------
# Prompt and result
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prompt:
    """What to segment: an optional point ``(x, y)`` and/or an optional box ``(x0, y0, x1, y1)``, continuous pixels.

    Neither given (:meth:`auto`) means "the main object": each mask source documents its automatic rule.
    """

    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.point is not None:
            point = _float_tuple(self.point, 2, "prompt point")
            object.__setattr__(self, "point", point)
        if self.box is not None:
            box = _float_tuple(self.box, 4, "prompt box")
            if not (box[0] < box[2] and box[1] < box[3]):
                raise InputError(f"prompt box {box} must satisfy x0 < x1 and y0 < y1")
            object.__setattr__(self, "box", box)

    @classmethod
    def auto(cls) -> "Prompt":
        return cls()

    @property
    def is_auto(self) -> bool:
        return self.point is None and self.box is None

    def check_inside(self, width: int, height: int) -> None:
        """Raise :class:`InputError` if the prompt does not lie inside a ``width x height`` image."""
        if self.point is not None:
            x, y = self.point
            if not (0 <= x < width and 0 <= y < height):
                raise InputError(f"prompt point ({x:g}, {y:g}) is outside the image ({width}x{height} px; "
                                 f"x must be in [0, {width}), y in [0, {height}))")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height):
                raise InputError(f"prompt box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the image "
                                 f"({width}x{height} px; boxes must lie in [0, {width}] x [0, {height}])")

    def as_dict(self) -> dict:
        return {"point": None if self.point is None else list(self.point),
                "box": None if self.box is None else list(self.box)}


def _float_tuple(values: Any, n: int, what: str) -> tuple:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be {n} numbers, got {values!r}") from exc
    if len(out) != n:
        raise InputError(f"{what} must be {n} numbers, got {len(out)}: {values!r}")
    if not all(math.isfinite(v) for v in out):
        raise InputError(f"{what} must be finite, got {out}")
    return out


@dataclass(frozen=True)
class MaskResult:
    """An object mask and where it came from.

    ``mask``: HxW bool, same size as the image. ``score``: the source's confidence (SAM: predicted IoU;
    rule-based sources: 1.0). ``source``: the mask source's name. ``details``: source-specific facts.
    """

    mask: np.ndarray
    score: float
    source: str
    prompt: Prompt
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2:
            raise InputError(f"a mask must be HxW, got shape {mask.shape}")
        object.__setattr__(self, "mask", mask.astype(bool, copy=False))
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def provider(self) -> str:
        """Deprecated: :attr:`source` ("provider" now means only an ONNX Runtime execution provider)."""
        warn_renamed("MaskResult.provider", "MaskResult.source", "attribute")
        return self.source

    def bbox(self) -> tuple[int, int, int, int] | None:
        """Tight box ``(x0, y0, x1, y1)`` (exclusive end) of the mask, None if empty."""
        ys, xs = np.nonzero(self.mask)
        if xs.size == 0:
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@runtime_checkable
class MaskSource(Protocol):
    """Anything that turns an image (plus optional prompt and depth) into a labelled object mask."""

    name: str

    def segment(self, image: Any, prompt: Prompt = ..., depth: np.ndarray | None = None) -> MaskResult:
        ...


# ----------------------------------------------------------------------------------------------------------------
# Input checks shared by all mask sources
# ----------------------------------------------------------------------------------------------------------------

def _prepare(image: Any, prompt: Prompt | None, depth: np.ndarray | None = None
             ) -> tuple[np.ndarray, Prompt, np.ndarray | None]:
    """Image -> HxWx3 uint8 RGB (grayscale/RGBA via :func:`to_rgb_array`), prompt checked, depth checked."""
    if image is None:
        raise InputError("no image given")
    rgb = to_rgb_array(image)
    height, width = rgb.shape[:2]
    if height < 1 or width < 1:
        raise InputError(f"image is empty (shape {rgb.shape})")
    if prompt is None:
        prompt = Prompt.auto()
    if not isinstance(prompt, Prompt):
        raise InputError(f"prompt must be a Prompt, got {type(prompt).__name__}")
    prompt.check_inside(width, height)
    if depth is not None:
        depth = np.asarray(depth)
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise InputError(f"depth map must be HxW, got shape {depth.shape}")
        if depth.shape != (height, width):
            raise InputError(f"depth map shape {depth.shape[0]}x{depth.shape[1]} (HxW) does not match the image "
                             f"{height}x{width}")
        if not (np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)):
            raise InputError(f"depth map must be numeric, got dtype {depth.dtype}")
    return rgb, prompt, depth


def _nonempty(mask: np.ndarray, source: str, what: str) -> np.ndarray:
    if not mask.any():
        raise NoMaskError(f"{source}: {what}")
    return mask


# ----------------------------------------------------------------------------------------------------------------
# Given mask
# ----------------------------------------------------------------------------------------------------------------

class GivenMask:
    """The caller's own mask, passed through unchanged (any nonzero value is foreground).

    The prompt is ignored; the mask must have the image's height and width and at least one pixel.
    """

    name = "given"

    def __init__(self, mask: Any):
        array = np.asarray(mask)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise InputError(f"given mask must be HxW, got shape {array.shape}")
        if array.size == 0:
            raise InputError(f"given mask is empty (shape {array.shape})")
        array = array.astype(bool) if array.dtype != bool else array
        if not array.any():
            raise InputError("given mask has no foreground pixel")
        self.mask = array

    def segment(self, image: Any, prompt: Prompt | None = None, depth: np.ndarray | None = None) -> MaskResult:
        rgb, prompt, _ = _prepare(image, prompt, depth)
        if self.mask.shape != rgb.shape[:2]:
            raise InputError(f"given mask is {self.mask.shape[0]}x{self.mask.shape[1]} (HxW) but the image is "
                             f"{rgb.shape[0]}x{rgb.shape[1]}")
        return MaskResult(self.mask.copy(), 1.0, self.name, prompt, {"from": "caller"})
