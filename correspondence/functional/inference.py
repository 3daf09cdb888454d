"""Dense functional embeddings at inference.

Two granularities:

* **Every pixel** (:meth:`FunctionalEmbedder.pixels`, :meth:`DinoEmbedder.pixels`): the evaluation protocol of
  the reference. The image is a ``S x S`` crop (224); every pixel index ``(col, row)`` is sampled from the fused
  map with the reference's convention (:func:`~correspondence.functional.model.pixel_grid`) and, for the head,
  passed through the MLP in one batched call. The DINO baseline is the reference's ``get_DINO_feats``
  (:func:`reference_dino_map`): the last three raw blocks weighted by ``softmax(ones(3))`` and summed,
  L2-normalised per patch, sampled the same way and L2-normalised again, in the reference's order of operations.
* **A stride grid** (:meth:`FunctionalEmbedder.__call__`): the live pipeline's map (``stride`` px cells over the
  processed image, 4 by default), each cell embedded at its centre pixel with the same sampling convention; it
  returns a :class:`~correspondence.features.FeatureMap` and the predicted functional-part probability per cell,
  which is what dense matching on live frames consumes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones import LoadedBackbone
from ..backbones.contract import OutputKind
from ..coords import Convention
from ..device import to_numpy
from ..features import ExtractionSettings, FeatureExtractor, FeatureMap
from ..matching import mutual_nearest_neighbors, nearest_neighbors
from ..preprocessing import PreprocessSettings
from .checkpoint import HeadCheckpoint
from .model import pixel_grid

DEFAULT_STRIDE = 4
LAYERS = (-3, -2, -1)
MASK_THRESHOLD = 0.5  # the reference: sigmoid(logit) >= 0.5


@dataclass(frozen=True)
class PixelEmbedding:
    """Embeddings of every pixel of an ``S x S`` crop, row-major (index = row * S + col), L2-normalised, and the
    predicted functional-part mask (``sigmoid >= 0.5``) when the method predicts one."""

    emb: torch.Tensor  # (S * S, D) float32, on the method's device
    size: int
    part: np.ndarray | None = None  # (S, S) bool


def _block_extractor(backbone: LoadedBackbone, image_size: int, device, layers=LAYERS) -> FeatureExtractor:
    settings = ExtractionSettings(PreprocessSettings(pad="center-pad", size=image_size, pad_color=(0, 0, 0)),
                                  kind=OutputKind.BLOCKS, layers=tuple(layers))
    return FeatureExtractor(backbone, settings, device=device, cache_size=0)


def _square(image) -> int:
    shape = np.asarray(image).shape
    if len(shape) < 2 or shape[0] != shape[1]:
        raise ValueError(f"pixel embeddings need a square crop (the evaluation's 224 x 224), got {shape[:2]}")
    return int(shape[0])


def _stride_grid(fmap: FeatureMap, stride: int) -> tuple[torch.Tensor, int, int]:
    """Sampling coordinates of the centres of a ``stride``-px grid over the processed image: the cell spanning
    pixels ``[s g, s g + s)`` is read at pixel index ``s g + (s - 1) / 2`` (the mean of its pixel indices)."""
    width, height = fmap.processed_wh
    gw, gh = width // stride, height // stride
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                            indexing="ij")
    xy = torch.stack([(xs + 0.5) * stride - 0.5, (ys + 0.5) * stride - 0.5], -1).reshape(-1, 2)
    grid = torch.stack([xy[:, 0] * 2 / width - 1, xy[:, 1] * 2 / height - 1], -1)
    return grid.float().to(fmap.features.device), gw, gh


@dataclass
class FunctionalEmbedder:
    """Backbone + trained head: image and function -> dense embeddings (and the predicted functional mask)."""

    checkpoint: HeadCheckpoint
    extractor: FeatureExtractor
    stride: int = DEFAULT_STRIDE
    chunk: int | None = None  # pixels per MLP call in :meth:`pixels` (None: the whole crop in one pass)

    @classmethod
    def create(cls, checkpoint: HeadCheckpoint, backbone: LoadedBackbone, image_size: int = 224,
               device: str = "cpu", stride: int = DEFAULT_STRIDE, chunk: int | None = None) -> "FunctionalEmbedder":
        extractor = _block_extractor(backbone, image_size, device, checkpoint.layers)
        checkpoint.head.to(extractor.device)
        return cls(checkpoint, extractor, stride, chunk)

    @property
    def predicts_mask(self) -> bool:
        return self.checkpoint.head.mask_projection is not None

    def _fused_and_text(self, image, function: str) -> tuple[FeatureMap, torch.Tensor, torch.Tensor]:
        fmap = self.extractor(image)
        head = self.checkpoint.head
        fused = head.fuse([b[None] for b in fmap.blocks()])
        text = self.checkpoint.function_embedding(function)[None].to(fused.device)
        return fmap, fused, text

    @torch.no_grad()
    def pixels(self, image, function: str) -> PixelEmbedding:
        """Every pixel of a square crop, as the reference's ``get_heatmap`` / ``get_mask``."""
        size = _square(image)
        _, fused, text = self._fused_and_text(image, function)
        emb, logits = self.checkpoint.head.dense_pixels(fused, text, size, self.chunk)
        part = None
        if logits is not None:
            part = to_numpy(torch.sigmoid(logits[0]) >= MASK_THRESHOLD).reshape(size, size)
        return PixelEmbedding(emb[0].float(), size, part)

    @torch.no_grad()
    def __call__(self, image, function: str) -> tuple[FeatureMap, np.ndarray | None]:
        """The stride map of a live frame and the predicted part probability per cell (or None)."""
        fmap, fused, text = self._fused_and_text(image, function)
        grid, gw, gh = _stride_grid(fmap, self.stride)
        emb, logits = self.checkpoint.head.embed(fused, grid[None], text)
        values = emb[0].T.reshape(-1, gh, gw)
        mask = to_numpy(torch.sigmoid(logits[0]).reshape(gh, gw)) if logits is not None else None
        return FeatureMap(values, fmap.geometry, self.stride, Convention.PATCH_CENTER), mask


@dataclass
class DinoEmbedder:
    """The paper's "DINO" row as the reference computes it (``get_DINO_heatmap``): the mean of the last three raw
    blocks, L2-normalised per patch, sampled at every pixel with the head's convention, L2-normalised again."""

    extractor: FeatureExtractor
    stride: int = DEFAULT_STRIDE
    predicts_mask = False

    @classmethod
    def create(cls, backbone: LoadedBackbone, image_size: int = 224, device: str = "cpu",
               stride: int = DEFAULT_STRIDE) -> "DinoEmbedder":
        return cls(_block_extractor(backbone, image_size, device), stride)

    def _mean_map(self, image) -> tuple[FeatureMap, torch.Tensor]:
        fmap = self.extractor(image)
        return fmap, reference_dino_map(fmap.blocks())

    @torch.no_grad()
    def pixels(self, image, function: str) -> PixelEmbedding:
        size = _square(image)
        _, fused = self._mean_map(image)
        ys, xs = torch.meshgrid(torch.arange(size, device=fused.device), torch.arange(size, device=fused.device),
                                indexing="ij")
        grid = pixel_grid(torch.stack([xs.flatten(), ys.flatten()], -1), size)
        sampled = F.grid_sample(fused, grid[None, None], mode="bilinear", align_corners=False)
        # BilinearInterpolator's layout: (1, C, 1, N) -> (1, N, C), contiguous, normalised over its last axis
        return PixelEmbedding(F.normalize(sampled.permute(0, 3, 1, 2).squeeze(3).contiguous(), dim=-1)[0], size,
                              None)

    @torch.no_grad()
    def __call__(self, image, function: str) -> tuple[FeatureMap, None]:
        fmap, fused = self._mean_map(image)
        grid, gw, gh = _stride_grid(fmap, self.stride)
        sampled = F.grid_sample(fused, grid[None, None], mode="bilinear", align_corners=False)[0, :, 0]
        values = F.normalize(sampled, dim=0).reshape(-1, gh, gw)
        return FeatureMap(values, fmap.geometry, self.stride, Convention.PATCH_CENTER), None


BaseEmbedder = DinoEmbedder  # the "base features" row of earlier reports


def reference_dino_map(blocks: list[torch.Tensor]) -> torch.Tensor:
    """The reference's ``get_DINO_feats`` on ``(C, h, w)`` blocks, with its order of operations (every step in the
    token layout ``get_intermediate_layers`` returns, so each reduction runs over the same memory order): the
    blocks stacked as ``(1, n, P, C)``, each multiplied by ``softmax(ones(n))`` (fp32 ``1/3``, not a division by
    3), summed over the blocks, L2-normalised over the channels; then ``get_DINO_heatmap``'s
    ``permute(0, 2, 1).reshape(1, C, h, w)``."""
    c, h, w = blocks[0].shape
    tokens = torch.stack([b.float().flatten(1).T for b in blocks], dim=0)[None]  # (1, n, P, C)
    n = len(blocks)
    weights = torch.ones(n).softmax(-1).reshape(1, n, 1, 1).to(tokens.device)
    fused = F.normalize((tokens * weights).sum(1), dim=-1)  # (1, P, C)
    return fused.permute(0, 2, 1).reshape(1, c, h, w)


def valid_cells(fmap: FeatureMap, mask: np.ndarray, predicted: np.ndarray | None = None,
                threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """Cells of a stride map inside the object mask (and inside the predicted functional mask, when the head has
    one and it keeps at least one cell). Used on live frames; the evaluation works on every pixel."""
    valid = fmap.cell_mask(mask, min_fraction=0.5).flatten()
    if predicted is not None:
        restricted = valid & torch.from_numpy(predicted.flatten() >= threshold).to(valid.device)
        if restricted.any():
            valid = restricted
    return valid


def transfer(source: FeatureMap, source_xy: np.ndarray, target: FeatureMap, target_valid: torch.Tensor) -> np.ndarray:
    """Label transfer on stride maps: each source pixel -> its best target cell (restricted), original pixels."""
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
    """Every valid source cell of a stride map matched forward and back; its similarity and cycle distance
    (source pixels). Live frames use this; the evaluation's every-pixel version is in ``evaluate``."""
    cells = torch.nonzero(torch.as_tensor(source_valid).to(source.features.device)).flatten()
    result = mutual_nearest_neighbors(source.flat()[cells], target.flat(), None, target_valid)
    back = nearest_neighbors(target.flat()[result.forward.index], source.flat(), source_valid)
    src_xy = source.cell_to_original(source.index_to_uv(cells))
    trg_xy = target.cell_to_original(target.index_to_uv(result.forward.index))
    back_xy = source.cell_to_original(source.index_to_uv(back.index))
    return Discovered(src_xy, trg_xy, to_numpy(result.forward.score), np.linalg.norm(back_xy - src_xy, axis=1))
