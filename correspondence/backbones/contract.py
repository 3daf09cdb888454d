"""The backbone contract: what every dense-feature backbone promises to the rest of the library.

Matching, the functional head, export and benchmarks only rely on this contract (patch size, feature dim,
layers, output kinds), never on a concrete architecture, so a DINOv2 ViT, a DINOv3 ViT and a weight-free
DAISY extractor are interchangeable.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError


class OutputKind(str, Enum):
    """Which tokens a backbone returns.

    ``last_raw``: output of the last block *without* the final norm (the SOCO protocol);
    ``last_norm``: after the final norm (what most DINOv2 users take);
    ``blocks``: raw outputs of several blocks (the functional head uses the last three);
    ``dense_cls``: patch tokens concatenated with the CLS token (Probe3D's ``dense-cls``).
    """

    LAST_RAW = "last_raw"
    LAST_NORM = "last_norm"
    BLOCKS = "blocks"
    DENSE_CLS = "dense_cls"


@dataclass(frozen=True)
class Preprocessing:
    """Pixel normalisation a backbone was trained with (applied to RGB in [0, 1])."""

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    default_size: int = 448


IMAGENET = Preprocessing()
IDENTITY_NORM = Preprocessing(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@dataclass(frozen=True)
class BackboneContract:
    """The promise a backbone makes: one feature vector per ``patch_size`` x ``patch_size`` cell."""

    patch_size: int
    feature_dim: int
    num_blocks: int
    output_kinds: tuple[OutputKind, ...]
    has_cls_token: bool = True

    def feature_dim_for(self, kind: OutputKind, n_layers: int = 1) -> int:
        if kind is OutputKind.DENSE_CLS:
            return 2 * self.feature_dim
        if kind is OutputKind.BLOCKS:
            return n_layers * self.feature_dim
        return self.feature_dim

    def check_kind(self, kind: OutputKind | str) -> OutputKind:
        kind = OutputKind(kind)
        if kind not in self.output_kinds:
            raise ConfigError(f"output kind {kind.value!r} not offered; this backbone has {[k.value for k in self.output_kinds]}")
        return kind

    def check_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        resolved = tuple(layer % self.num_blocks if layer < 0 else layer for layer in layers)
        bad = [layer for layer in resolved if not 0 <= layer < self.num_blocks]
        if bad or not resolved:
            raise ConfigError(f"layers {list(layers)} out of range for {self.num_blocks} blocks")
        return resolved


class DenseBackbone(nn.Module):
    """Base class: ``forward_dense`` maps a normalised image batch to per-patch features.

    Returns a list of tensors of shape ``(B, C, H/patch, W/patch)``: one for most kinds, one per layer for
    ``blocks``. Input height and width must be multiples of ``contract.patch_size``.
    """

    contract: BackboneContract

    def forward_dense(self, images: torch.Tensor, kind: OutputKind = OutputKind.LAST_RAW,
                      layers: Sequence[int] = (-1,)) -> list[torch.Tensor]:
        raise NotImplementedError

    def prepare(self, image_hw: tuple[int, int]) -> None:
        """Precompute whatever depends on the input size (a ViT's resized positional embedding), so that a forward
        at that size allocates nothing new: CUDA-graph capture and compiled graphs rely on it. Default: nothing."""

    def check_input(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"expected a (B, 3, H, W) image batch, got shape {tuple(images.shape)}")
        p = self.contract.patch_size
        if images.shape[-1] % p or images.shape[-2] % p:
            raise ConfigError(f"image size {tuple(images.shape[-2:])} is not a multiple of the patch size {p}")

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - convenience
        return self.forward_dense(images)[0]
