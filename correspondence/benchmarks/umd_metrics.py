"""UMD-i metrics: IoU and the weighted F-measure (``WFb.m``, Margolin et al. 2014) on boolean maps, and the box
they are computed in; the protocol is in :mod:`correspondence.benchmarks.umd`."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .umd_data import F_KERNEL_RADIUS

# ----------------------------------------------------------------------------------------------- metrics


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two boolean maps; 1.0 when both are empty."""
    pred, gt = _binary_pair(pred, gt)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def _binary_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    return pred.astype(bool), gt.astype(bool)


def _matlab_gaussian(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """``fspecial('gaussian', size, sigma)``."""
    half = (size - 1) / 2
    y, x = np.ogrid[-half:half + 1, -half:half + 1]
    kernel = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(kernel.dtype).eps * kernel.max()] = 0
    return kernel / kernel.sum()


_KERNEL = _matlab_gaussian(2 * F_KERNEL_RADIUS + 1, 5.0)
_EPS = np.finfo(np.float64).eps


def f_measure(pred: np.ndarray, gt: np.ndarray, beta: float = 1.0) -> float:
    """Weighted F-measure ``F^w_beta`` (Margolin, Zelnik-Manor, Tal, "How to Evaluate Foreground Maps?",
    CVPR 2014), line by line as their ``WFb.m`` (beta = 1, the value the UMD papers use).

    ``pred`` is a boolean map or a foreground map in [0, 1]; ``gt`` a boolean map of the same shape.
    Errors are spread by a 7 x 7 Gaussian (sigma 5) inside the ground truth (pixel dependency), and false
    positives weigh ``2 - 0.5 ** (d / 5)`` at distance ``d`` from the ground truth (pixel importance);
    ``R = 1 - mean(Ew[gt])``, ``P = TPw / (TPw + FPw)``, ``F = (1 + b^2) P R / (b^2 P + R)``.
    An empty ground truth (undefined in ``WFb.m``) gives 1.0 for an empty prediction, else 0.0.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    fg = pred.astype(np.float64)
    if fg.size and (fg.min() < 0 or fg.max() > 1):
        raise InputError("the foreground map must lie in [0, 1]")
    if not gt.any():
        return 1.0 if not fg.any() else 0.0
    dgt = gt.astype(np.float64)
    error = np.abs(fg - dgt)
    # [Dst, IDXT] = bwdist(dGT): distance to, and index of, the nearest ground-truth pixel
    dist, (iy, ix) = ndimage.distance_transform_edt(~gt, return_indices=True)
    spread = error.copy()
    spread[~gt] = error[iy[~gt], ix[~gt]]  # edges of the foreground handled as in the reference
    blurred = ndimage.correlate(spread, _KERNEL, mode="constant", cval=0.0)  # imfilter: zero padding
    dependent = error.copy()
    lower = gt & (blurred < error)
    dependent[lower] = blurred[lower]
    importance = np.ones_like(dgt)
    importance[~gt] = 2.0 - np.exp(np.log(1 - 0.5) / 5.0 * dist[~gt])
    weighted = dependent * importance
    tp_w = dgt.sum() - weighted[gt].sum()
    fp_w = weighted[~gt].sum()
    recall = 1.0 - weighted[gt].mean()
    precision = tp_w / (_EPS + tp_w + fp_w)
    b2 = beta * beta
    return float((1 + b2) * recall * precision / (_EPS + recall + b2 * precision))


def metric_box(*maps: np.ndarray, margin: int = F_KERNEL_RADIUS) -> tuple[slice, slice]:
    """Bounding box of the union of ``maps`` grown by ``margin`` (clipped to the image). The weighted F-measure
    on this crop equals the full-image value when every predicted and true pixel lies inside the union: errors
    are zero outside it, and the 7 x 7 filter around a true pixel never reaches past the margin."""
    union = np.zeros(maps[0].shape, bool)
    for m in maps:
        union |= np.asarray(m, bool)
    if not union.any():
        return slice(0, 0), slice(0, 0)
    ys, xs = np.nonzero(union)
    h, w = union.shape
    return (slice(max(0, ys.min() - margin), min(h, ys.max() + margin + 1)),
            slice(max(0, xs.min() - margin), min(w, xs.max() + margin + 1)))
