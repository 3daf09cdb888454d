"""DAISY dense descriptors in torch (Tola et al. 2010, as scikit-image computes them), sampled on a grid only.

scikit-image smooths every orientation map at full resolution for every call and then subsamples; here the
orientation maps are built once, each distinct Gaussian is applied once (separable, grouped convolutions), and
descriptors are gathered only at the grid points. Same numbers as ``skimage.feature.daisy`` (tested), about
ten times faster on a CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GAUSS_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default support


@dataclass(frozen=True)
class DaisyParams:
    radius: int
    rings: int = 2
    histograms: int = 6
    orientations: int = 8

    @property
    def sigmas(self) -> list[float]:
        """Centre histogram first (same sigma as the first ring), then one per ring (scikit-image's rule)."""
        rings = [self.radius * (i + 1) / float(2 * self.rings) for i in range(self.rings)]
        return [rings[0]] + rings

    @property
    def ring_radii(self) -> list[float]:
        return [self.radius * (i + 1) / float(self.rings) for i in range(self.rings)]

    @property
    def dim(self) -> int:
        return (self.rings * self.histograms + 1) * self.orientations


def orientation_maps(gray: torch.Tensor, orientations: int) -> torch.Tensor:
    """``(O, H, W)`` gradient magnitudes spread over orientation bins with a von Mises window."""
    dx = torch.zeros_like(gray)
    dy = torch.zeros_like(gray)
    dx[:, :-1] = gray[:, 1:] - gray[:, :-1]
    dy[:-1, :] = gray[1:, :] - gray[:-1, :]
    magnitude = torch.sqrt(dx * dx + dy * dy)
    angle = torch.atan2(dy, dx)
    kappa = orientations / math.pi
    centres = torch.tensor([2 * o * math.pi / orientations - math.pi for o in range(orientations)],
                           dtype=gray.dtype).view(-1, 1, 1)
    return torch.exp(kappa * torch.cos(angle[None] - centres)) * magnitude[None]


def _symmetric_pad(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """Half-sample symmetric padding ('abc|cba', scipy's 'reflect'), any width."""
    n = x.shape[dim]
    index = torch.arange(-pad, n + pad)
    period = 2 * n
    index = torch.remainder(index, period)
    index = torch.where(index >= n, period - 1 - index, index)
    return x.index_select(dim, index)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian on ``(C, H, W)`` with scipy's kernel and 'reflect' boundary."""
    half = int(GAUSS_TRUNCATE * sigma + 0.5)
    x = torch.arange(-half, half + 1, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = maps.shape[0]
    out = _symmetric_pad(maps, half, 2)[None]
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = _symmetric_pad(out[0], half, 1)[None]
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out[0]


def daisy_grid(gray: torch.Tensor, params: DaisyParams, step: int, maps: torch.Tensor | None = None,
               origin: tuple[int, int] | None = None, grid: tuple[int, int] | None = None,
               blurred: dict[float, torch.Tensor] | None = None) -> torch.Tensor:
    """DAISY descriptors ``(rows, cols, D)``, L2-normalised, at ``origin + step * (row, col)``.

    Defaults reproduce ``skimage.feature.daisy(gray, step, radius, rings, histograms, orientations, 'l2')``:
    origin ``(radius, radius)`` and as many points as fit ``radius`` px inside the border. ``maps`` and
    ``blurred`` let several radii share orientation maps and blurs.
    """
    height, width = gray.shape
    r = params.radius
    oy, ox = origin if origin is not None else (r, r)
    rows, cols = grid if grid is not None else (math.ceil((height - 2 * r) / step), math.ceil((width - 2 * r) / step))
    maps = orientation_maps(gray, params.orientations) if maps is None else maps
    blurred = {} if blurred is None else blurred
    ys = oy + step * torch.arange(rows)
    xs = ox + step * torch.arange(cols)
    parts = []
    sigma_index = [0] + list(range(1, params.rings + 1))
    offsets = [(0, 0)] + [(int(round(radius * math.sin(2 * math.pi * j / params.histograms))),
                            int(round(radius * math.cos(2 * math.pi * j / params.histograms))))
                           for radius in params.ring_radii for j in range(params.histograms)]
    ring_of = [0] + [1 + i for i in range(params.rings) for _ in range(params.histograms)]
    for (dy, dx), ring in zip(offsets, ring_of):
        sigma = params.sigmas[sigma_index[ring]]
        if sigma not in blurred:
            blurred[sigma] = gaussian_blur(maps, sigma)
        smooth = blurred[sigma]
        yy = (ys + dy).clamp(0, height - 1)
        xx = (xs + dx).clamp(0, width - 1)
        parts.append(smooth[:, yy][:, :, xx])  # (O, rows, cols)
    desc = torch.cat(parts, 0).permute(1, 2, 0) + 1e-10
    return desc / torch.linalg.vector_norm(desc, dim=-1, keepdim=True)
