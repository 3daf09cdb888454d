"""The weight-free depth mask source: the nearest depth-connected surface (see :class:`DepthForeground`)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .depth import to_metres
from .errors import ConfigError, InputError
from .mask_types import MaskResult, NoMaskError, Prompt, _float_tuple, _prepare


class DepthForeground:
    """The nearest depth-connected surface within ``depth_range`` (metres after ``depth * depth_scale``).

    Rule:

    1. A pixel is *valid* when its depth is finite, > 0 and within ``[near, far]`` (zeros and NaN are holes).
    2. Valid 4-neighbours are *connected* when their depths differ by at most
       ``max(step_abs, step_rel * min(d1, d2))`` (default 1 cm or 3 %), so an object standing in front of a
       background that is also in range is a separate component (a plain threshold would merge them).
    3. Choice: with a prompt point, the component containing that pixel (the point must hit valid depth);
       otherwise, among components of at least ``min_area`` pixels, the one with the smallest median depth.
       With a prompt box (and no point), only pixels inside the box are considered, so the mask is clipped to
       the box.

    ``score`` is 1.0 (rule-based); ``details`` hold the median depth, area and number of components.
    ``depth_scale=0.001`` reads ROS ``16UC1`` millimetre depth.

    An object standing on a table in view touches it with no depth step, so the two are one component: the pipeline
    takes the table out of the live depth before this source runs (:mod:`~correspondence.support_plane`); used on its
    own, pass ``find_support_plane(depth_m, intrinsics, up).without_plane(depth_m)``.
    """

    name = "depth"

    def __init__(self, depth_range: tuple[float, float] = (0.1, 2.0), min_area: int = 100, step_abs: float = 0.01,
                 step_rel: float = 0.03, depth_scale: float = 1.0):
        near, far = _float_tuple(depth_range, 2, "depth_range")
        if not 0 <= near < far:
            raise ConfigError(f"depth_range must satisfy 0 <= near < far, got {depth_range}")
        if int(min_area) < 1:
            raise ConfigError(f"min_area must be >= 1 pixel, got {min_area}")
        if step_abs < 0 or step_rel < 0 or depth_scale <= 0:
            raise ConfigError("step_abs and step_rel must be >= 0 and depth_scale > 0")
        self.depth_range = (near, far)
        self.min_area = int(min_area)
        self.step_abs = float(step_abs)
        self.step_rel = float(step_rel)
        self.depth_scale = float(depth_scale)

    def segment(self, image: Any, prompt: Prompt | None = None, depth: np.ndarray | None = None) -> MaskResult:
        if depth is None:
            raise InputError("the depth mask source needs a depth map (depth=None was given)")
        _, prompt, depth = _prepare(image, prompt, depth)
        z, valid = self._valid(depth)
        near, far = self.depth_range
        if prompt.point is None and prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            inside = np.zeros_like(valid)
            inside[int(math.floor(y0)):int(math.ceil(y1)), int(math.floor(x0)):int(math.ceil(x1))] = True
            valid &= inside
        if not valid.any():
            where = " inside the prompt box" if prompt.box is not None and prompt.point is None else ""
            raise InputError(f"no valid depth in range [{near:g}, {far:g}] m{where} "
                             f"(depth map {z.shape[0]}x{z.shape[1]}, {int(np.count_nonzero(np.isfinite(z) & (z > 0)))}"
                             f" pixels with depth > 0; check depth_range and depth_scale)")
        labels, count = self._components(z, valid)
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        if prompt.point is not None:
            px, py = int(math.floor(prompt.point[0])), int(math.floor(prompt.point[1]))
            chosen = labels[py, px]
            if chosen == 0:
                raise NoMaskError(f"depth: the prompt point ({prompt.point[0]:g}, {prompt.point[1]:g}) has no valid "
                                  f"depth in range [{near:g}, {far:g}] m (depth there: {z[py, px]:g})")
            rule = "component containing the prompt point"
        else:
            big = [k for k in range(1, count + 1) if areas[k] >= self.min_area]
            if not big:
                raise NoMaskError(f"depth: no depth-connected surface of at least {self.min_area} px in range "
                                  f"[{near:g}, {far:g}] m (largest has {int(areas[1:].max())} px)")
            from scipy import ndimage

            medians = ndimage.median(z, labels, big)
            chosen = big[int(np.argmin(medians))]
            rule = f"nearest (smallest median depth) component of >= {self.min_area} px"
        mask = labels == chosen
        details = {"rule": rule, "median_depth": float(np.median(z[mask])), "area": int(areas[chosen]),
                   "components": int(count), "depth_range": [near, far]}
        return MaskResult(mask, 1.0, self.name, prompt, details)

    def checked_depth(self, image: Any, depth: np.ndarray) -> np.ndarray:
        """``depth`` checked against ``image`` (size, dtype) as :meth:`segment` checks it."""
        return _prepare(image, None, depth)[2]

    def _valid(self, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth in metres and the pixels within ``depth_range``."""
        z = to_metres(depth, self.depth_scale, dtype=np.float64)  # the one raw -> metres conversion
        near, far = self.depth_range
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(z) & (z > 0) & (z >= near) & (z <= far)
        return z, valid

    def _components(self, z: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
        """Label depth-connected components (4-neighbours, depth jumps cut edges); background label 0."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        height, width = z.shape
        index = np.arange(height * width).reshape(height, width)
        zz = np.where(valid, z, 0.0)
        rows, cols = [], []
        for a, b, za, zb, va, vb in (
                (index[:, :-1], index[:, 1:], zz[:, :-1], zz[:, 1:], valid[:, :-1], valid[:, 1:]),
                (index[:-1, :], index[1:, :], zz[:-1, :], zz[1:, :], valid[:-1, :], valid[1:, :])):
            tolerance = np.maximum(self.step_abs, self.step_rel * np.minimum(za, zb))
            keep = va & vb & (np.abs(za - zb) <= tolerance)
            rows.append(a[keep])
            cols.append(b[keep])
        rows_all, cols_all = np.concatenate(rows), np.concatenate(cols)
        graph = coo_matrix((np.ones(rows_all.size, dtype=np.int8), (rows_all, cols_all)),
                           shape=(height * width, height * width))
        _, raw = connected_components(graph, directed=False)
        raw = raw.reshape(height, width)
        # Renumber valid components 1..n; invalid pixels -> 0.
        unique, inverse = np.unique(raw[valid], return_inverse=True)
        labels = np.zeros((height, width), dtype=np.int64)
        labels[valid] = inverse + 1
        return labels, int(unique.size)
