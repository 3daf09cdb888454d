"""Points through a 3x3 plane-to-plane map (an affine map or a homography), in one place: ``geometry2d`` (the
fitted 2D models) and ``photometric`` (the ECC refinement of a homography, which ``geometry2d`` imports) both
project, and a module of their own keeps them from importing each other."""
from __future__ import annotations

import numpy as np


def as_points(xy) -> np.ndarray:
    """(N, 2) float64 pixels from anything shaped like them."""
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


def homogeneous(xy) -> np.ndarray:
    """(N, 3): the points with a 1 appended."""
    xy = as_points(xy)
    return np.column_stack([xy, np.ones(len(xy))])


def project(matrix: np.ndarray, xy) -> np.ndarray:
    """(N, 2): where ``matrix`` (3x3) takes the points ``xy`` (the homogeneous product, divided by its last row)."""
    h = homogeneous(xy) @ np.asarray(matrix, dtype=np.float64).T
    return h[:, :2] / h[:, 2:3]
