"""Pixel <-> feature-grid transforms in the two conventions used in the field.

``soco`` (the SOCO reference implementation): a query pixel is truncated to an integer in the original image
and again after scaling, normalised by the processed size ``S`` and sampled with bilinear
``grid_sample(align_corners=True)``, i.e. grid coordinate ``u = int(x) * (w - 1) / S``; a predicted cell ``j``
lands at its top-left corner ``x = j / w * S``.
``patch-center``: pixel ``x`` is at grid coordinate ``u = x / P - 0.5`` and cell ``j`` lands at its centre
``(j + 0.5) * P``. The first is needed to reproduce published numbers; the second is unbiased.

Grid coordinates ``(u, v)`` are continuous cell indices (column, row): cell ``j`` has its centre at ``u = j``.
"""
from __future__ import annotations

from enum import Enum

import numpy as np


class Convention(str, Enum):
    SOCO = "soco"
    PATCH_CENTER = "patch-center"


def _span(n: int) -> float:
    return float(max(n - 1, 1))


def _arrays(convention: Convention | str, points, grid_wh, image_wh):
    """The convention checked and every operand as float64 arrays (the three conversions below share it)."""
    return (Convention(convention), np.asarray(points, dtype=np.float64), np.asarray(grid_wh, dtype=np.float64),
            np.asarray(image_wh, dtype=np.float64))


def pixel_to_grid(xy: np.ndarray, grid_wh: tuple[int, int], image_wh: tuple[int, int],
                  convention: Convention | str) -> np.ndarray:
    """Processed-image pixels -> continuous grid coordinates where the query is sampled."""
    convention, xy, grid, size = _arrays(convention, xy, grid_wh, image_wh)
    if convention is Convention.SOCO:
        return np.trunc(xy) * (grid - 1) / size
    return xy * grid / size - 0.5


def grid_to_pixel(uv: np.ndarray, grid_wh: tuple[int, int], image_wh: tuple[int, int],
                  convention: Convention | str) -> np.ndarray:
    """Exact inverse of :func:`pixel_to_grid` (for ``soco``: on integer pixels)."""
    convention, uv, grid, size = _arrays(convention, uv, grid_wh, image_wh)
    if convention is Convention.SOCO:
        return uv * size / np.maximum(grid - 1, 1)
    return (uv + 0.5) * size / grid


def cell_to_pixel(uv: np.ndarray, grid_wh: tuple[int, int], image_wh: tuple[int, int],
                  convention: Convention | str) -> np.ndarray:
    """Where a predicted (possibly fractional, from soft-argmax) cell lands in processed-image pixels."""
    convention, uv, grid, size = _arrays(convention, uv, grid_wh, image_wh)
    if convention is Convention.SOCO:
        return uv / grid * size
    return (uv + 0.5) * size / grid


def grid_to_normalised(uv: np.ndarray, grid_wh: tuple[int, int]) -> np.ndarray:
    """Grid coordinates -> ``[-1, 1]`` coordinates for ``grid_sample(align_corners=True)``."""
    uv = np.asarray(uv, dtype=np.float64)
    return 2.0 * uv / np.array([_span(grid_wh[0]), _span(grid_wh[1])]) - 1.0
