"""A weight-free dense descriptor backbone (DAISY + colour) under the same contract as the ViTs.

Pretrained weights cannot always be had (air-gapped robots, CI). This backbone needs none, so the whole
pipeline still runs and is measurable; it is a geometric/appearance baseline, not a semantic one. Each
patch gets two DAISY descriptors (a local and a context radius, both centred on the patch centre) and the
mean Lab colour of the patch and of its 3x3 neighbourhood.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color import rgb2gray, rgb2lab

from ..device import to_numpy
from .contract import BackboneContract, DenseBackbone, OutputKind
from .daisy_torch import DaisyParams, daisy_grid, orientation_maps

DAISY_RINGS, DAISY_HISTOGRAMS, DAISY_ORIENTATIONS = 2, 6, 8
DAISY_DIM = (DAISY_RINGS * DAISY_HISTOGRAMS + 1) * DAISY_ORIENTATIONS  # 104
COLOUR_DIM = 6
RADII_IN_PATCHES = (1.0, 2.5)
COLOUR_WEIGHT = 0.5


def daisy_contract(patch_size: int) -> BackboneContract:
    return BackboneContract(
        patch_size=patch_size,
        feature_dim=len(RADII_IN_PATCHES) * DAISY_DIM + COLOUR_DIM,
        num_blocks=1,
        output_kinds=(OutputKind.LAST_RAW, OutputKind.LAST_NORM, OutputKind.BLOCKS),
        has_cls_token=False,
    )


class DaisyBackbone(DenseBackbone):
    """Classical dense descriptors; expects RGB in [0, 1] (identity normalisation)."""

    def __init__(self, patch_size: int = 14) -> None:
        super().__init__()
        self.contract = daisy_contract(patch_size)

    def _one_image(self, rgb: np.ndarray) -> np.ndarray:
        p = self.contract.patch_size
        height, width = rgb.shape[:2]
        grid_h, grid_w = height // p, width // p
        radii = [max(int(round(k * p)), p // 2 + 1) for k in RADII_IN_PATCHES]
        # Pad once so every radius has full support: descriptor centres sit on patch centres (p // 2 + k p).
        pad = max(radii) - p // 2
        gray = np.pad(rgb2gray(rgb), ((pad, pad + p), (pad, pad + p)), mode="reflect")
        gray_t = torch.from_numpy(gray.astype(np.float32))
        maps = orientation_maps(gray_t, DAISY_ORIENTATIONS)
        blurred: dict[float, torch.Tensor] = {}
        origin = (pad + p // 2, pad + p // 2)
        parts = [to_numpy(daisy_grid(gray_t, DaisyParams(radius, DAISY_RINGS, DAISY_HISTOGRAMS, DAISY_ORIENTATIONS),
                                     p, maps=maps, origin=origin, grid=(grid_h, grid_w), blurred=blurred), np.float32)
                 for radius in radii]
        lab = rgb2lab(rgb).astype(np.float32) / np.array([100.0, 128.0, 128.0], dtype=np.float32)
        lab_t = torch.from_numpy(lab).permute(2, 0, 1)[None]
        local = F.avg_pool2d(lab_t, p)
        context = F.avg_pool2d(local, 3, stride=1, padding=1, count_include_pad=False)
        colour = to_numpy(torch.cat([local, context], 1)[0].permute(1, 2, 0)) * COLOUR_WEIGHT
        return np.concatenate(parts + [colour], axis=-1)

    def forward_dense(self, images: torch.Tensor, kind: OutputKind = OutputKind.LAST_RAW,
                      layers: Sequence[int] = (-1,)) -> list[torch.Tensor]:
        kind = self.contract.check_kind(kind)
        self.check_input(images)
        rgb = to_numpy(images.float().clamp(0, 1).permute(0, 2, 3, 1))
        feats = torch.from_numpy(np.stack([self._one_image(im) for im in rgb])).permute(0, 3, 1, 2)
        feats = feats.to(images.device)
        n = len(self.contract.check_layers(layers)) if kind is OutputKind.BLOCKS else 1
        return [feats] * n
