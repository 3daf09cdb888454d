"""The live mask of a localised object (:mod:`~correspondence.localise`): the chosen candidate prompts the mask
source. Why apart from the voting: how a source is prompted (a point and a box for SAM, a box for GrabCut, the
depth-connected surfaces under the votes for the depth source) is one job; finding where the object is, another."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .localise import Localisation, ObjectNotFound
from .mask_completion import CompletionSettings, complete_mask
from .object_colour import ColourModel
from .object_signature import SignatureCue
from .preprocessing import to_rgb_array
from .segmentation import DepthForeground, MaskResult, MaskSource, NoMaskError, Prompt


def segment_localised(source: MaskSource, image: np.ndarray, depth: np.ndarray | None,
                      localisation: Localisation | None, colours: ColourModel | None = None,
                      signature: SignatureCue | None = None,
                      completion: CompletionSettings | None = CompletionSettings()) -> MaskResult:
    """Segment the localised object: the chosen candidate prompts ``source``; without votes the source's own
    automatic rule runs (the image-centre fallback). A localisation that found nothing is the caller's to report
    (:class:`ObjectNotFound`), not segmented. ``details["localised"]`` says which path was taken. ``colours``: the
    demo object's colours, to cut a touching object of other colours off a depth component. ``signature``: the demo
    object's height and footprint and the live vertical, to complete a depth mask with the object's other surfaces
    (:mod:`~correspondence.mask_completion`, with ``completion``; None: not completed)."""
    if localisation is None or not localisation.matched:
        result = source.segment(image, Prompt.auto(), depth)
        return _with(result, localised="fallback: image-centre rule (no demo cell matched)")
    if not localisation.found:
        raise ObjectNotFound(localisation)
    candidate = localisation.best
    if isinstance(source, DepthForeground):
        if depth is None:
            raise InputError("the depth mask source needs a depth map (depth=None was given)")
        return _with(depth_component_under(source, image, candidate.votes_xy, depth, colours, signature=signature,
                                           completion=completion),
                     localised="depth component under votes")
    result = source.segment(image, candidate.prompt, depth)
    return _with(result, localised="prompted with the candidate's point and box")


def depth_component_under(source: DepthForeground, image: np.ndarray, votes_xy: np.ndarray,
                          depth: np.ndarray, colours: ColourModel | None = None,
                          min_foreign: float = 0.1, min_share: float = 0.2,
                          signature: SignatureCue | None = None,
                          completion: CompletionSettings | None = CompletionSettings()) -> MaskResult:
    """The depth-connected components (``source``'s rule for components) each holding at least ``min_share`` of
    ``votes_xy`` (and 2), else the one holding most: surfaces, not a box, so a neighbouring object stays out.

    An object touching it at the same depth joins the component (no depth step between them). With ``colours``
    (the demo object's), when at least ``min_foreign`` of the component shows colours the demo object does not have,
    those pixels are cut (:func:`split_by_colour`); the votes' side is kept. With ``signature``, the touching pieces
    (other components, the part the cut took) that keep the mask within the demo object's size and colours are
    added (:func:`~correspondence.mask_completion.complete_mask` with ``completion``, None: not completed: a chair's
    back in front of its seat)."""
    height, width = np.asarray(depth).shape[:2]
    z, valid = source._valid(source.checked_depth(image, depth))
    labels, count = source._components(z, valid)
    xy = np.asarray(votes_xy, dtype=np.float64).reshape(-1, 2)
    cols = np.clip(np.floor(xy[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.floor(xy[:, 1]).astype(int), 0, height - 1)
    hits = np.bincount(labels[rows, cols], minlength=count + 1)
    hits[0] = 0
    if not hits.any():
        where = "anywhere" if not valid.any() else f"under the {len(xy)} matched pixels"
        raise NoMaskError(f"depth: no valid depth in range [{source.depth_range[0]:g}, {source.depth_range[1]:g}] m "
                          f"{where} (check depth_range and depth_scale)")
    # Every component holding a real share of the votes: an object's parts at different depths (a truck's cab
    # behind its cargo box) are separate components, each with votes on it.
    chosen = np.flatnonzero(hits >= max(min_share * hits.sum(), 2))
    chosen = chosen if chosen.size else np.array([int(np.argmax(hits))])
    mask = np.isin(labels, chosen)
    details = {"rule": f"components holding >= {min_share:.0%} of the matched pixels",
               "votes_inside": int(hits[chosen].sum()), "parts": int(chosen.size),
               "votes": int(len(xy)), "components": int(count), "depth_range": list(source.depth_range)}
    if colours is not None:
        mask, details["colour_cut"] = split_by_colour(mask, to_rgb_array(image), colours, rows, cols, min_foreign)
    if signature is not None and completion is not None:
        mask, details["completion"] = complete_mask(mask, labels, signature, colours, completion)
    details.update(median_depth=float(np.median(z[mask])), area=int(mask.sum()))
    return MaskResult(mask, 1.0, source.name, Prompt.auto(), details)


def split_by_colour(mask: np.ndarray, rgb: np.ndarray, colours: ColourModel, rows: np.ndarray, cols: np.ndarray,
                    min_foreign: float = 0.1, keep_votes: float = 0.5) -> tuple[np.ndarray, float]:
    """``mask`` less its pixels of colours the object does not show, when they are at least ``min_foreign`` of it:
    the object-coloured pixels, opened (thin bridges go), the connected part holding most of the votes (``rows``,
    ``cols``), holes filled (dark or specular spots inside stay). Kept unchanged when that part would hold less than
    ``keep_votes`` of the votes inside ``mask``. Returns the mask and the share of it cut."""
    from scipy import ndimage

    area = int(mask.sum())
    own = colours.matches(rgb) & mask
    if area == 0 or (area - int(own.sum())) < min_foreign * area:
        return mask, 0.0
    own = ndimage.binary_opening(own, np.ones((3, 3), bool), iterations=2)
    labels, count = ndimage.label(own)
    inside = mask[rows, cols]
    hits = np.bincount(labels[rows, cols][inside], minlength=count + 1)
    hits[0] = 0
    if count == 0 or hits.max() < keep_votes * max(int(inside.sum()), 1):
        return mask, 0.0
    kept = ndimage.binary_fill_holes(labels == int(np.argmax(hits))) & mask
    return kept, 1.0 - float(kept.sum()) / area


def _with(result: MaskResult, **details: Any) -> MaskResult:
    return MaskResult(result.mask, result.score, result.source, result.prompt, {**result.details, **details})


__all__ = ["depth_component_under", "segment_localised", "split_by_colour"]
