"""Complete a depth mask with the object's other depth surfaces, within the demo object's height and footprint.

Why: the depth source's mask is the depth-connected surfaces under the localisation votes
(:func:`~correspondence.localised_mask.depth_component_under`), and one object can be several surfaces. A chair seen
from behind shows its back panel in front of its seat with a depth step between them; a stool's thin legs under
stereo depth lose the pixels that join them to the seat; the colour cut (:func:`~correspondence.localised_mask.
split_by_colour`) can take the half of a surface whose colours a highlight has changed. The votes land on one of
these parts, and the mask is that part alone (seed 1's chair at -71 deg: IoU 0.17, the seat without the back).

Rule: with the vertical and the demo object's signature (:class:`~correspondence.object_signature.SignatureCue`),
a piece of the frame touching the mask (a neighbouring depth component, or the part of a chosen component the colour
cut took; within ``reach_px``) is added when

- at least ``min_colour_share`` of its pixels show the demo object's colours (or are too dark to say; a colour
  paled by a highlight counts: :func:`~correspondence.object_colour.white_mix_reach`), and
- the mask with it stays within the demo object's size: its height and each sorted footprint extent at most ``grow``
  times the demo object's (or the mask's own before, when that is already larger: a turn shows a longer side).

Pieces are tried largest first, in rounds, until none is added. A neighbouring object fails one test or the other:
its colours, or the extent it adds (it stands beside the object, so the union is wider or taller than the demo
object). Extents here trim less (``trim``) than the signature's comparison: a small far piece must widen them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .errors import ConfigError, InputError
from .object_colour import ColourModel, in_white_mix_reach, white_mix_reach
from .object_signature import ObjectSignature, SignatureCue


@dataclass(frozen=True)
class CompletionSettings:
    """``grow``: how much larger than the demo object's height and footprint the completed mask may measure.
    ``min_colour_share``: the share of a piece's pixels that must show the demo object's colours. ``min_pixels``:
    smaller pieces are left (depth speckle). ``reach_px``: a piece touches the mask when it comes this near (stereo depth
    loses a few pixels along the edge where a thin leg meets a seat). ``trim``: the share of points left out at each end of an extent.
    ``max_rounds``: rounds of adding pieces (each round may add several)."""

    grow: float = 1.15
    min_colour_share: float = 0.5
    min_pixels: int = 20
    trim: float = 0.005
    max_rounds: int = 4
    max_pieces: int = 40
    reach_px: int = 6

    def __post_init__(self) -> None:
        if not (math.isfinite(self.grow) and self.grow >= 1.0):
            raise ConfigError(f"completion grow must be >= 1, got {self.grow}")
        if not 0.0 <= self.min_colour_share <= 1.0 or not 0.0 <= self.trim < 0.5:
            raise ConfigError("completion min_colour_share must be in [0, 1] and trim in [0, 0.5)")


def complete_mask(mask: np.ndarray, labels: np.ndarray, cue: SignatureCue, colours: ColourModel | None = None,
                  settings: CompletionSettings | None = None) -> tuple[np.ndarray, dict]:
    """``mask`` with the touching pieces of ``labels`` (depth components, 0: no depth) that keep it within the demo
    object's size (module docstring); ``colours``: the demo object's (None: no colour test, the size alone). Returns the
    mask and a record (pieces added, pixels added, the extents)."""
    from scipy import ndimage

    settings = settings or CompletionSettings()
    mask = np.asarray(mask, bool)
    record = {"added": 0, "pixels_added": 0}
    if not mask.any():
        return mask, record
    measure_settings = replace(cue.settings, trim=settings.trim)
    own = None if colours is None else colours.matches(cue.live_rgb)
    if own is not None and cue.demo.linear_colours is not None:  # a lit face turned pale is still the object's
        own = own | in_white_mix_reach(cue.live_rgb, white_mix_reach(cue.demo.linear_colours,
                                                                      cue.settings.max_white_mix))

    def measure(region: np.ndarray) -> ObjectSignature | None:
        try:
            return ObjectSignature.measure(cue.live_rgb, cue.live_depth, cue.live_intrinsics, region, cue.live_up,
                                           measure_settings)
        except InputError:
            return None

    current = measure(mask)
    if current is None:
        return mask, record
    demo = cue.demo
    start = int(mask.sum())
    for _ in range(settings.max_rounds):
        ring = ndimage.binary_dilation(mask, np.ones((3, 3), bool), iterations=settings.reach_px) & ~mask & (labels > 0)
        pieces = _pieces(labels, mask, ring, settings.min_pixels)
        added = False
        for piece in pieces[:settings.max_pieces]:
            if own is not None and float(own[piece].mean()) < settings.min_colour_share:
                continue
            union = mask | piece
            grown = measure(union)
            if grown is None or not _within(grown, current, demo, settings.grow):
                continue
            mask, current, added = union, grown, True
            record["added"] += 1
        if not added:
            break
    record["pixels_added"] = int(mask.sum()) - start
    record.update(height_m=round(current.height, 4), footprint_m=[round(v, 4) for v in current.footprint])
    return mask, record


def _pieces(labels: np.ndarray, mask: np.ndarray, ring: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """The connected parts outside ``mask`` of each depth component reaching into ``ring``, those touching the ring
    and of at least ``min_pixels``, largest first. Per component: two objects side by side in the image are two
    pieces (their depth components differ), never one."""
    from scipy import ndimage

    out = []
    for label in np.unique(labels[ring]):
        parts, count = ndimage.label((labels == label) & ~mask, np.ones((3, 3), bool))
        sizes = np.bincount(parts.ravel(), minlength=count + 1)
        out += [parts == p for p in np.unique(parts[ring]) if p > 0 and sizes[p] >= min_pixels]
    return sorted(out, key=lambda piece: -int(piece.sum()))


def _within(grown: ObjectSignature, before: ObjectSignature, demo: ObjectSignature, grow: float) -> bool:
    """The grown mask measures no more than ``grow`` x the demo object (or than the mask before, when larger)."""
    if grown.height > max(before.height, grow * demo.height):
        return False
    return all(g <= max(b, grow * d) for g, b, d in zip(grown.footprint, before.footprint, demo.footprint))


__all__ = ["CompletionSettings", "complete_mask"]
