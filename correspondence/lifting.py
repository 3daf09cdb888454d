"""Pixels + depth -> camera-frame points, robustly: what every 3D alignment starts from.

Pixels without trustworthy depth become NaN points flagged invalid, never wrong points; the solvers in
:mod:`correspondence.alignment` skip rows containing NaN, so ``lift`` output can be passed straight in. Pixel
coordinates are continuous (pixel (row i, col j) covers ``[j, j+1) x [i, i+1)``), as in :mod:`correspondence.camera`.
"""
from __future__ import annotations

import math

import numpy as np

from .camera import CameraIntrinsics
from .errors import InputError


def depth_from_uint16(array: np.ndarray, depth_scale: float) -> np.ndarray:
    """Raw integer depth (e.g. a ROS ``16UC1`` image) -> float metres: ``depth_m = value * depth_scale``.

    Why explicit: sensors store depth as integers in sensor units, and mixing millimetres with metres silently
    puts the robot's target 1000x too far. Common scales: ``0.001`` for millimetres (RealSense default,
    Kinect / ROS ``16UC1``), ``0.0002`` for TUM RGB-D (5000 units per metre). A ``32FC1`` image is already in
    metres and must not go through here. Zero stays zero, which :func:`lift` treats as "no measurement".
    """
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(f"depth_from_uint16 expects raw integer depth (e.g. uint16), got dtype {a.dtype}; "
                         "float depth is assumed to be in metres already")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise InputError("raw depth contains negative values")
    from .depth import to_metres  # the one raw -> metres conversion

    return to_metres(a, depth_scale, dtype=np.float64)


def _check_depth(depth: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """Depth must be a float metric 2-D map matching the intrinsics, or the lifted points are silently wrong."""
    d = np.asarray(depth)
    if d.ndim != 2:
        raise InputError(f"depth must be a 2-D (H, W) map, got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.floating):
        raise InputError(f"depth must be float metres, got dtype {d.dtype}; convert raw sensor depth with "
                         "depth_from_uint16(array, depth_scale) (depth_scale=0.001 for millimetres)")
    if d.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f"depth map is {d.shape[1]} x {d.shape[0]} (W x H) but the intrinsics are for "
                         f"{intrinsics.width} x {intrinsics.height}; rescale the intrinsics with .scaled()")
    return d.astype(np.float64, copy=False)


def _check_pixels(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    p = np.asarray(xy, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise InputError(f"xy must be an (N, 2) array of continuous pixel coordinates, got shape {p.shape}")
    bad = ~(np.isfinite(p).all(1) & (p[:, 0] >= 0) & (p[:, 0] < width) & (p[:, 1] >= 0) & (p[:, 1] < height))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(f"{int(bad.sum())} of {len(p)} points lie outside the {width} x {height} image "
                         f"(continuous coordinates in [0, W) x [0, H)); first: row {first}, xy={p[first].tolist()}")
    return p


def _check_range(depth_range: tuple[float, float] | None) -> tuple[float, float]:
    if depth_range is None:
        return 0.0, math.inf
    try:
        lo, hi = (float(v) for v in depth_range)
    except (TypeError, ValueError) as exc:
        raise InputError(f"depth_range must be (min, max) in metres, got {depth_range!r}") from exc
    if not (lo >= 0 and hi > lo):
        raise InputError(f"depth_range must satisfy 0 <= min < max, got {depth_range!r}")
    return lo, hi


def _lower_median(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise lower median ignoring NaN, and the count of non-NaN values. The *lower* median is always a
    measured depth, never an average of two surfaces across a depth edge."""
    count = np.isfinite(values).sum(1)
    ordered = np.sort(values, axis=1)  # NaN sorts last
    index = np.maximum(count - 1, 0) // 2
    return ordered[np.arange(len(values)), index], count


class DepthMap:
    """A metric depth map checked once and lifted from many times: one frame's localisation (each view's rigid
    check), dense matches and keypoints all lift from the same live map, and each demo view's map serves every
    frame. :func:`lift` accepts one in place of the array; the filtered, padded map it samples is built once per
    ``(depth_range, window)``, so lifting from a ``DepthMap`` gives bit-identical points to lifting from the array."""

    def __init__(self, depth: np.ndarray, intrinsics: CameraIntrinsics) -> None:
        self.depth = _check_depth(depth, intrinsics)
        self.intrinsics = intrinsics
        self._padded: dict[tuple[float, float, int], np.ndarray] = {}

    def padded(self, lo: float, hi: float, window: int) -> np.ndarray:
        """The valid depths (finite, > 0, inside ``[lo, hi]``; NaN elsewhere) padded by ``window`` with NaN."""
        key = (lo, hi, int(window))
        if key not in self._padded:
            d = self.depth
            with np.errstate(invalid="ignore"):
                good = np.isfinite(d) & (d > 0) & (d >= lo) & (d <= hi)
            self._padded[key] = np.pad(np.where(good, d, np.nan), window, constant_values=np.nan)
        return self._padded[key]


def depth_map(depth: "np.ndarray | DepthMap", intrinsics: CameraIntrinsics) -> DepthMap:
    """``depth`` as a :class:`DepthMap` (itself when it is one; its intrinsics must be ``intrinsics``)."""
    if isinstance(depth, DepthMap):
        if depth.intrinsics is not intrinsics and depth.intrinsics != intrinsics:
            raise InputError(f"the depth map was prepared with intrinsics {depth.intrinsics} but is lifted with "
                             f"{intrinsics}")
        return depth
    return DepthMap(depth, intrinsics)


def lift(xy: np.ndarray, depth: "np.ndarray | DepthMap", intrinsics: CameraIntrinsics,
         depth_range: tuple[float, float] | None = None, window: int = 1,
         min_valid_fraction: float = 0.5, max_deviation: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates + a metric depth map -> camera-frame points ``(N, 3)`` and ``valid (N,)``.

    Per point, the depth is the median of the valid depths (finite, > 0, inside ``depth_range``) in the
    ``(2*window+1)^2`` neighbourhood of its pixel, so a lone hole or flying pixel does not move it. A point is
    invalid (NaN row, ``valid=False``) when fewer than ``min_valid_fraction`` of that neighbourhood is valid:
    a median is only robust while the good values are the majority, so near holes and silhouettes we drop the
    point rather than risk a wrong one. When the pixel's own depth is valid and within ``max_deviation``
    (relative) of that median, the pixel's own depth is kept: the median of a lopsided window (at a silhouette,
    on a slanted surface) is biased by up to a pixel's depth step, the confirmed measurement is not. The ray
    goes through the exact (sub-pixel) ``xy``. ``depth``: the HxW map or a :class:`DepthMap` of it (lifting many
    times from one map: the map is checked and filtered once).
    """
    source = depth_map(depth, intrinsics)
    h, w = source.depth.shape
    p = _check_pixels(xy, w, h)
    lo, hi = _check_range(depth_range)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise InputError(f"window must be a non-negative integer, got {window!r}")
    if not 0.0 <= float(min_valid_fraction) <= 1.0:
        raise InputError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction}")
    if not (np.isfinite(max_deviation) and max_deviation >= 0):
        raise InputError(f"max_deviation must be a non-negative fraction of depth, got {max_deviation}")
    padded = source.padded(lo, hi, window)
    rows, cols = np.floor(p[:, 1]).astype(np.int64), np.floor(p[:, 0]).astype(np.int64)
    offsets = np.arange(-window, window + 1)
    dr, dc = (o.ravel() for o in np.meshgrid(offsets, offsets, indexing="ij"))
    samples = padded[rows[:, None] + window + dr, cols[:, None] + window + dc]  # (N, K)
    median, count = _lower_median(samples)
    own = samples[:, samples.shape[1] // 2]  # the centre offset is (0, 0)
    with np.errstate(invalid="ignore"):
        confirmed = np.abs(own - median) <= float(max_deviation) * median  # False when own is NaN
    z = np.where(confirmed, own, median)
    needed = max(1, math.ceil(float(min_valid_fraction) * samples.shape[1]))
    valid = count >= needed
    points = intrinsics.unproject(p, np.where(valid, z, np.nan))
    points[~valid] = np.nan
    return points, valid
