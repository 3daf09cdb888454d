"""Object masks behind one interface, from several mask sources, always labelled with who made them.

Every mask source implements :class:`MaskSource`: ``segment(image, prompt, depth=None) -> MaskResult``. The
result carries the mask (HxW bool, the size of the image), a score, the source's name, the prompt used and
source-specific details, so a pipeline always knows whether a mask came from the user, from depth, from
GrabCut or from Segment Anything.

Mask sources
------------
``given``   :class:`GivenMask`: the caller's own mask (checked against the image size).
``depth``   :class:`DepthForeground`: the nearest depth-connected surface inside a depth range.
``grabcut`` :class:`GrabCutBox`: OpenCV GrabCut initialised with a box.
``sam``     :class:`SamMaskSource`: Segment Anything (``segment-anything`` package, official checkpoints resolved
            like every other pretrained weight: explicit path -> ``$SOCO_WEIGHTS_DIR`` -> torch hub cache ->
            download; ``weights_only=True`` loading).
``sam2``    :class:`~correspondence.sam2_source.Sam2MaskSource`: SAM 2.1 Hiera tiny / small / base_plus / large
            (Meta's ``sam2`` package), same prompts and weight resolution.

:func:`mask_source_from_name` builds one by name; :func:`auto_mask_source` picks the best available one (SAM 2.1 tiny
when its weights resolve, else SAM, else depth when a depth map is given, else GrabCut) and says why. Where the
pipeline has the demo's features, it prompts the source where the demo object is (:mod:`~correspondence.localise`);
the automatic rules below are the fallback when nothing matches.

Coordinates are continuous pixels: pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``. A point prompt must lie in
``[0, W) x [0, H)``, a box ``(x0, y0, x1, y1)`` in ``[0, W] x [0, H]`` with ``x0 < x1`` and ``y0 < y1``.
No mask source returns an empty mask: when nothing is found it raises :class:`NoMaskError` (an :class:`InputError`).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .deprecation import module_getattr
from .depth_mask import DepthForeground
from .errors import ConfigError, MissingDependencyError, WeightsNotFoundError
from .grabcut_mask import GrabCutBox
from .mask_types import (GivenMask, MaskResult, MaskSource, NoMaskError, Prompt, _float_tuple,  # noqa: F401
                         _nonempty, _prepare)
from .sam_source import (AUTO_GRID_OFFSETS, AUTO_MAX_AREA_FRACTION, SAM_SOURCES, SamMaskSource,  # noqa: F401
                         _torch_device, build_sam_model, choose_auto_mask, load_strict)


# ----------------------------------------------------------------------------------------------------------------
# Factory and fallback
# ----------------------------------------------------------------------------------------------------------------

MASK_SOURCES = ("given", "depth", "grabcut", "sam", "sam2")


def mask_source_from_name(name: str, **kwargs: Any) -> MaskSource:
    """Build a mask source by name: ``given`` (needs ``mask=``), ``depth``, ``grabcut``, ``sam`` (keyword
    arguments of :meth:`SamMaskSource.create`) or ``sam2`` (of :meth:`~correspondence.sam2_source.Sam2MaskSource.
    create`). Unknown names raise :class:`ConfigError`."""
    key = str(name).strip().lower()
    try:
        if key == "given":
            if "mask" not in kwargs:
                raise ConfigError("the 'given' mask source needs mask=...")
            return GivenMask(**kwargs)
        if key == "depth":
            return DepthForeground(**kwargs)
        if key == "grabcut":
            return GrabCutBox(**kwargs)
        if key == "sam":
            return SamMaskSource.create(**kwargs)
        if key == "sam2":
            from .sam2_source import Sam2MaskSource
            return Sam2MaskSource.create(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for mask source {key!r}: {exc}") from exc
    raise ConfigError(f"unknown mask source {name!r}; choose one of {', '.join(MASK_SOURCES)}")


def auto_mask_source(depth: np.ndarray | bool | None = None, *, sam_model_type: str = "vit_b",
                     sam_weights: str | os.PathLike | None = None, allow_download: bool = False, device: str = "cpu",
                     depth_range: tuple[float, float] = (0.1, 2.0), sam2_model_type: str = "tiny",
                     sam2_weights: str | os.PathLike | None = None, sam2_image_size: int = 1024
                     ) -> tuple[MaskSource, str]:
    """Best available mask source and a human-readable reason.

    SAM 2.1 (``sam2_model_type``, Hiera tiny by default: the fastest) when its checkpoint resolves (explicit
    ``sam2_weights``, ``$SOCO_WEIGHTS_DIR`` or the torch hub cache; a download only with ``allow_download=True``;
    its encoder at ``sam2_image_size``, see :mod:`~correspondence.sam2_source`);
    else SAM (``sam_model_type``) the same way; else :class:`DepthForeground` when a depth map is given (``depth`` an
    array, or True); else :class:`GrabCutBox`. A corrupt checkpoint is an error, not a fallback.
    """
    from .sam2_source import Sam2MaskSource

    reasons = []
    try:
        sam2 = Sam2MaskSource.create(sam2_model_type, weights=sam2_weights, allow_download=allow_download,
                                     device=device, image_size=sam2_image_size)
        return sam2, f"sam2: SAM 2.1 {sam2_model_type} weights resolved at {sam2.weights}"
    except (WeightsNotFoundError, MissingDependencyError) as exc:
        reasons.append(f"SAM 2 unavailable ({type(exc).__name__}: {exc})")
    try:
        sam = SamMaskSource.create(sam_model_type, weights=sam_weights, allow_download=allow_download, device=device)
        return sam, f"sam: {reasons[0]}; SAM {sam_model_type} weights resolved at {sam.weights}"
    except (WeightsNotFoundError, MissingDependencyError) as exc:
        reasons.append(f"SAM unavailable ({type(exc).__name__}: {exc})")
    why = "; ".join(reasons)
    has_depth = depth is not None and depth is not False
    if has_depth:
        return DepthForeground(depth_range=depth_range), f"depth: {why}; a depth map was given, using the nearest depth surface"
    return GrabCutBox(), f"grabcut: {why}; no depth map was given, using GrabCut"


__all__ = ["AUTO_MAX_AREA_FRACTION", "DepthForeground", "GivenMask", "GrabCutBox", "MASK_SOURCES", "MaskResult",
           "MaskSource", "NoMaskError", "Prompt", "SAM_SOURCES", "SamMaskSource", "auto_mask_source",
           "choose_auto_mask", "mask_source_from_name"]

# The names before "provider" came to mean only ONNX Runtime execution providers (removed in 0.2).
__getattr__ = module_getattr(__name__, globals(), {
    "MaskProvider": "MaskSource", "SamProvider": "SamMaskSource", "PROVIDERS": "MASK_SOURCES",
    "provider_from_name": "mask_source_from_name", "auto_provider": "auto_mask_source"})
