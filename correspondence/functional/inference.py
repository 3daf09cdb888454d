"""Dense functional embeddings at inference, and the two uses the paper evaluates: label transfer and
correspondence discovery.

Embeddings are computed on a regular pixel grid (``stride`` px in the processed image, 4 by default, i.e.
56 x 56 at 224 px) by sampling the fused backbone map bilinearly and running the head's MLP there, which is
what the head's per-pixel design is for; a plain backbone is evaluated the same way (its last-block map sampled
on the same grid), so base features and the trained head are compared on equal terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import LoadedBackbone
from ..backbones.contract import OutputKind
from ..coords import Convention, grid_to_normalised, pixel_to_grid
from ..device import to_numpy
from ..features import ExtractionSettings, FeatureExtractor, FeatureMap
from ..matching import mutual_nearest_neighbors, nearest_neighbors
from ..preprocessing import PreprocessSettings
from .checkpoint import HeadCheckpoint

DEFAULT_STRIDE = 4


def _centre_grid(fmap: FeatureMap, stride: int) -> tuple[torch.Tensor, int, int]:
    """[-1, 1] sampling coordinates of the centres of a ``stride``-px grid over the processed image."""
    width, height = fmap.processed_wh
    gw, gh = width // stride, height // stride
    ys, xs = np.meshgrid(np.arange(gh, dtype=np.float64), np.arange(gw, dtype=np.float64), indexing="ij")
    xy = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], -1).reshape(-1, 2)
    uv = pixel_to_grid(xy, fmap.grid_wh, fmap.processed_wh, Convention.PATCH_CENTER)
    grid = grid_to_normalised(uv, fmap.grid_wh)
    return torch.from_numpy(grid).float().to(fmap.features.device), gw, gh


def _as_stride_map(template: FeatureMap, values: torch.Tensor, stride: int) -> FeatureMap:
    return FeatureMap(values, template.geometry, stride, Convention.PATCH_CENTER)


def resample(fmap: FeatureMap, stride: int = DEFAULT_STRIDE) -> FeatureMap:
    """A backbone map bilinearly sampled at the centres of a ``stride``-px grid."""
    grid, gw, gh = _centre_grid(fmap, stride)
    values = F.grid_sample(fmap.features[None].float(), grid[None, None], mode="bilinear", align_corners=True)
    return _as_stride_map(fmap, values[0, :, 0].reshape(-1, gh, gw), stride)


@dataclass
class FunctionalEmbedder:
    """Backbone + trained head: image and function -> dense embeddings (and the predicted functional mask)."""

    checkpoint: HeadCheckpoint
    extractor: FeatureExtractor
    stride: int = DEFAULT_STRIDE

    @classmethod
    def create(cls, checkpoint: HeadCheckpoint, backbone: LoadedBackbone, image_size: int = 224,
               device: str = "cpu", stride: int = DEFAULT_STRIDE) -> "FunctionalEmbedder":
        settings = ExtractionSettings(PreprocessSettings(pad="center-pad", size=image_size, pad_color=(0, 0, 0)),
                                      kind=OutputKind.BLOCKS, layers=checkpoint.layers)
        extractor = FeatureExtractor(backbone, settings, device=device)
        checkpoint.head.to(extractor.device)
        return cls(checkpoint, extractor, stride)

    @torch.no_grad()
    def __call__(self, image, function: str) -> tuple[FeatureMap, np.ndarray | None]:
        fmap = self.extractor(image)
        head = self.checkpoint.head
        fused = head.fuse([b[None] for b in fmap.blocks()])
        grid, gw, gh = _centre_grid(fmap, self.stride)
        text = self.checkpoint.function_embedding(function)[None].to(fused.device)
        emb, logits = head.embed(fused, grid[None], text)
        values = emb[0].T.reshape(-1, gh, gw)
        mask = to_numpy(torch.sigmoid(logits[0]).reshape(gh, gw)) if logits is not None else None
        return _as_stride_map(fmap, values, self.stride), mask


@dataclass
class BaseEmbedder:
    """A frozen backbone's last-block features on the same pixel grid (the 'base features' row)."""

    extractor: FeatureExtractor
    stride: int = DEFAULT_STRIDE

    @classmethod
    def create(cls, backbone: LoadedBackbone, image_size: int = 224, device: str = "cpu",
               stride: int = DEFAULT_STRIDE) -> "BaseEmbedder":
        settings = ExtractionSettings(PreprocessSettings(pad="center-pad", size=image_size, pad_color=(0, 0, 0)),
                                      kind=OutputKind.LAST_RAW)
        return cls(FeatureExtractor(backbone, settings, device=device), stride)

    def __call__(self, image, function: str) -> tuple[FeatureMap, None]:
        return resample(self.extractor(image), self.stride), None


def valid_cells(fmap: FeatureMap, mask: np.ndarray, predicted: np.ndarray | None = None,
                threshold: float = 0.5) -> torch.Tensor:
    """Cells inside the object mask (and inside the predicted functional mask, when the head has one and it
    keeps at least one cell)."""
    valid = fmap.cell_mask(mask, min_fraction=0.5).flatten()
    if predicted is not None:
        restricted = valid & torch.from_numpy(predicted.flatten() >= threshold).to(valid.device)
        if restricted.any():
            valid = restricted
    return valid


def transfer(source: FeatureMap, source_xy: np.ndarray, target: FeatureMap, target_valid: torch.Tensor) -> np.ndarray:
    """Label transfer: each source pixel -> its best target cell (restricted), in original target pixels."""
    nn = nearest_neighbors(source.sample(source_xy), target.flat(), target_valid)
    return target.cell_to_original(target.index_to_uv(nn.index))


@dataclass(frozen=True)
class Discovered:
    src_xy: np.ndarray
    trg_xy: np.ndarray
    similarity: np.ndarray
    cycle_px: np.ndarray


def discover(source: FeatureMap, source_valid: torch.Tensor, target: FeatureMap, target_valid: torch.Tensor
             ) -> Discovered:
    """Every valid source cell matched forward and back; its similarity and cycle distance (source pixels)."""
    cells = torch.nonzero(torch.as_tensor(source_valid).to(source.features.device)).flatten()
    result = mutual_nearest_neighbors(source.flat()[cells], target.flat(), None, target_valid)
    back = nearest_neighbors(target.flat()[result.forward.index], source.flat(), source_valid)
    src_xy = source.cell_to_original(source.index_to_uv(cells))
    trg_xy = target.cell_to_original(target.index_to_uv(result.forward.index))
    back_xy = source.cell_to_original(source.index_to_uv(back.index))
    return Discovered(src_xy, trg_xy, to_numpy(result.forward.score), np.linalg.norm(back_xy - src_xy, axis=1))


