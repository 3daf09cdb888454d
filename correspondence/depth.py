"""Raw depth -> metres, in one place, with one default scale per encoding.

Depth arrives in two forms (ROS REP 118 names them):

* ``16UC1`` -- integers in sensor units; ``metres = value * depth_scale``, default ``0.001`` (millimetres:
  RealSense, Kinect, every ROS ``16UC1`` driver). Other sensors need their own scale (TUM RGB-D: ``0.0002``).
* ``32FC1`` -- floats, already metres (default scale ``1.0``).

:func:`to_metres` is the conversion used by the pipeline (live depth), the demo loader (demo depth), depth
segmentation and the ROS node; invalid readings (NaN, inf, zero, negative) become ``0`` = "no measurement".
:func:`check_units` refuses depth that cannot be metres (a median beyond :data:`MAX_PLAUSIBLE_DEPTH_M`) with the
fix that applies to the encoding that arrived: for integer depth the scale; for float depth the publisher, which
is sending millimetres as float (a ``depth_scale`` that only applies to integer depth cannot fix that).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

INTEGER, FLOAT = "16UC1", "32FC1"
DEFAULT_SCALE_M = {INTEGER: 0.001, FLOAT: 1.0}  # metres per unit, per encoding
MAX_PLAUSIBLE_DEPTH_M = 50.0  # a median depth beyond this is a unit mistake (millimetres read as metres)


def encoding_of(raw: np.ndarray) -> str:
    """``"16UC1"`` for integer depth, ``"32FC1"`` for float depth."""
    dtype = np.asarray(raw).dtype
    if np.issubdtype(dtype, np.integer):
        return INTEGER
    if np.issubdtype(dtype, np.floating):
        return FLOAT
    raise InputError(f"depth must be numeric (integer sensor units or float metres), got dtype {dtype}")


def default_scale(encoding: str) -> float:
    """Metres per unit when nobody says otherwise: 0.001 for ``16UC1`` (millimetres), 1.0 for ``32FC1``."""
    try:
        return DEFAULT_SCALE_M[encoding]
    except KeyError:
        raise InputError(f"unknown depth encoding {encoding!r} (expected {INTEGER} or {FLOAT})") from None


def to_metres(raw: np.ndarray, scale: float | None = None, dtype=np.float32) -> np.ndarray:
    """Raw depth -> metres (``raw * scale``); ``scale=None`` uses the default of the array's encoding.

    Invalid readings (NaN, inf, zero, negative) become 0, which lifting and segmentation treat as "no
    measurement". Raises :class:`InputError` for a non-positive scale or non-numeric depth."""
    array = np.asarray(raw)
    encoding = encoding_of(array)
    scale = default_scale(encoding) if scale is None else float(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"depth_scale must be a positive finite number of metres per unit (0.001 for "
                         f"millimetres), got {scale}")
    metres = array.astype(dtype) * dtype(scale) if scale != 1.0 else array.astype(dtype, copy=True)
    with np.errstate(invalid="ignore"):
        metres[~(np.isfinite(metres) & (metres > 0))] = 0
    return metres


def unit_advice(encoding: str, median_m: float, scale: float, scale_applies: bool = True,
                what: str = "depth") -> str:
    """Why ``median_m`` cannot be metres and the fix for this encoding (the text of :func:`check_units`)."""
    head = f"{what} has a median of {median_m:g} m: it looks like millimetres"
    if encoding == INTEGER:
        return (f"{head}; {INTEGER} depth is value x depth_scale metres and depth_scale is {scale:g}: set it to "
                f"0.001 for millimetres")
    if scale_applies:
        return f"{head}; set depth_scale to 0.001 (now {scale:g})"
    return (f"{head} sent as float: {FLOAT} depth must be metres (REP 118) and depth_scale applies to {INTEGER} "
            f"only; fix the publisher (divide by 1000, or publish {INTEGER} millimetres)")


def check_units(metres: np.ndarray, encoding: str, scale: float, scale_applies: bool = True,
                what: str = "depth") -> None:
    """Refuse converted depth without a valid value, or whose median is beyond :data:`MAX_PLAUSIBLE_DEPTH_M`.

    ``scale_applies``: whether the caller's ``depth_scale`` multiplies this encoding (the library applies it to
    float depth too; the ROS node only to ``16UC1``), which decides the advice."""
    m = np.asarray(metres)
    sample = m[::4, ::4] if m.ndim == 2 and m.size > 4096 else m  # the median of a 1/16 grid is plenty
    valid = sample[sample > 0]
    if valid.size == 0:
        valid = m[m > 0]
        if valid.size == 0:
            raise InputError(f"{what} has no valid value (all zero or NaN): check the depth stream")
    median = float(np.median(valid))
    if median > MAX_PLAUSIBLE_DEPTH_M:
        raise InputError(unit_advice(encoding, median, scale, scale_applies, what))


def check_live_depth(depth, image: np.ndarray, intrinsics, depth_scale: float) -> np.ndarray | None:
    """Bad live depth gets a specific error here, not a numpy failure deep inside lifting."""
    if depth is None:
        return None
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise InputError(f"live depth must be a (H, W) map, got shape {depth.shape}")
    if depth.shape != image.shape[:2]:
        raise InputError(f"live depth is {depth.shape[1]}x{depth.shape[0]} but the RGB frame is "
                         f"{image.shape[1]}x{image.shape[0]}")
    if not (np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)):
        raise InputError(f"live depth must be numeric, got dtype {depth.dtype}")
    if intrinsics is not None and (intrinsics.width, intrinsics.height) != (image.shape[1], image.shape[0]):
        raise InputError(f"the intrinsics are for {intrinsics.width}x{intrinsics.height} but the frame is "
                         f"{image.shape[1]}x{image.shape[0]}")
    if np.issubdtype(depth.dtype, np.integer) and depth_scale == 1.0:
        raise InputError(f"live depth is {depth.dtype} (raw sensor units) but depth_scale is 1 m per unit: set "
                         f"depth_scale (0.001 for millimetres, as ROS 16UC1 depth is)")
    metres = to_metres(depth, depth_scale)
    check_units(metres, encoding_of(depth), depth_scale, what="live depth")
    return metres

