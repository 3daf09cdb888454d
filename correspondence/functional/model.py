"""The function-conditioned dense head of Stojanov et al. (ICCV 2025), laid out as the released reference
(``cond_corr/model/correspondence_conditioner.py``), minus the frozen backbone.

* ``image_embedder``: the raw outputs of the backbone's last ``num_blocks`` blocks (no final norm) go through one
  shared, bias-free ``lin_proj: Linear(C -> 512)``, are weighted by ``softmax(w)`` (``w`` initialised
  ``torch.rand``) and summed, then L2-normalised per patch.
* Sampling: a pixel with integer index ``(col, row)`` of the ``image_size`` (224) frame is read at
  ``x = col * 2 / 224 - 1`` with ``grid_sample(..., bilinear, align_corners=False)`` and zero padding, exactly
  as the reference's ``BilinearInterpolator`` (pixel index ``i`` sits at the left edge of pixel ``i``).
* ``mlp_conditioner.mlp``: ``Linear(512 + T -> 1024), ReLU, Linear(1024 -> 1024), ReLU, Linear(1024 -> 256,
  bias=False)`` on ``[sampled, text]``, then L2-normalised.
* ``mask_projection``: ``Linear(256 -> 1)`` on the normalised output (the functional-part logit).

The state-dict keys are the reference's (``image_embedder.lin_proj.weight``, ``image_embedder.w``,
``mlp_conditioner.mlp.{0,2,4}.*``, ``mask_projection.*``), so a released checkpoint loads with
:func:`load_reference_state_dict` once the backbone's own keys (``image_embedder.dino_vit.*``) are dropped.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, CorruptCheckpointError

REFERENCE_PROJECTION = 512  # the reference's image_embed_dim, whatever the backbone width
REFERENCE_IMAGE_SIZE = 224
BACKBONE_PREFIX = "image_embedder.dino_vit."


@dataclass(frozen=True)
class HeadConfig:
    feature_dim: int  # backbone width C
    text_dim: int  # text embedding width (512 CLIP ViT-B/32, 384 MiniLM)
    num_blocks: int = 3
    projection: int = REFERENCE_PROJECTION
    hidden: int = 1024
    output: int = 256
    mask_head: bool = True

    def __post_init__(self) -> None:
        if min(self.feature_dim, self.text_dim, self.num_blocks, self.projection, self.hidden, self.output) <= 0:
            raise ConfigError(f"invalid head config {self}")

    def as_dict(self) -> dict:
        return asdict(self)


class BlockFusion(nn.Module):
    """The trainable part of the reference's ``DINO_embedder``: shared projection + softmax block weights."""

    def __init__(self, feature_dim: int, projection: int, num_blocks: int) -> None:
        super().__init__()
        self.n_blocks = num_blocks
        self.lin_proj = nn.Linear(feature_dim, projection, bias=False)
        self.w = nn.Parameter(torch.rand(num_blocks))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, n_blocks, N, C)`` patch tokens -> ``(B, N, P)`` fused, L2-normalised (the reference's order)."""
        features = self.lin_proj(tokens)
        features = features * self.w.softmax(-1).reshape(1, self.n_blocks, 1, 1)
        return F.normalize(features.sum(1), dim=-1)


class MLPConditioner(nn.Module):
    def __init__(self, image_dim: int, text_dim: int, hidden: int, output: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(image_dim + text_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, output, bias=False))

    def forward(self, sampled: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """``sampled (B, N, P)``, ``text (B, T)`` -> ``(B, N, output)`` L2-normalised."""
        language = text[:, None, :].expand(-1, sampled.shape[1], -1).to(sampled)
        return F.normalize(self.mlp(torch.cat([sampled, language], dim=-1)), dim=-1)


class _ChannelLinear:
    """``lin_proj`` applied to a ``(B, C, h, w)`` map (a view for code that fuses block maps itself)."""

    def __init__(self, linear: nn.Linear) -> None:
        self.linear = linear

    def __call__(self, block: torch.Tensor) -> torch.Tensor:
        return F.linear(block.permute(0, 2, 3, 1), self.linear.weight).permute(0, 3, 1, 2)  # ONNX-friendly perms


def pixel_grid(xy_index: torch.Tensor, image_size: int = REFERENCE_IMAGE_SIZE) -> torch.Tensor:
    """Integer pixel indices ``(..., 2)`` as ``(col, row)`` -> the reference's [-1, 1] sampling coordinates
    (``map_to_range(uv, 0, 224, -1, 1)``; read with ``align_corners=False``)."""
    return xy_index.float() * 2 / image_size - 1


class FunctionalHead(nn.Module):
    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.image_embedder = BlockFusion(config.feature_dim, config.projection, config.num_blocks)
        self.mlp_conditioner = MLPConditioner(config.projection, config.text_dim, config.hidden, config.output)
        self.mask_projection = nn.Linear(config.output, 1) if config.mask_head else None

    # views used by code that fuses the blocks itself (the ONNX export wrapper)
    @property
    def projections(self) -> tuple[_ChannelLinear, ...]:
        return (_ChannelLinear(self.image_embedder.lin_proj),) * self.config.num_blocks

    @property
    def block_logits(self) -> nn.Parameter:
        return self.image_embedder.w

    def fuse(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """``num_blocks`` maps ``(B, C, h, w)`` -> fused, L2-normalised ``(B, P, h, w)``."""
        if len(blocks) != self.config.num_blocks:
            raise ConfigError(f"head expects {self.config.num_blocks} blocks, got {len(blocks)}")
        b, _, h, w = blocks[0].shape
        tokens = torch.stack([x.float().flatten(2).transpose(1, 2) for x in blocks], dim=1)  # (B, n, N, C)
        return self.image_embedder(tokens).transpose(1, 2).reshape(b, -1, h, w)

    def sample(self, fused: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """``fused (B, P, h, w)`` at ``grid (B, N, 2)`` ([-1, 1], align_corners=False, zeros) -> ``(B, N, P)``."""
        out = F.grid_sample(fused, grid[:, None].to(fused), mode="bilinear", align_corners=False)
        return out.permute(0, 3, 1, 2).squeeze(3)

    def condition(self, sampled: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.mlp_conditioner(sampled, text)
        logits = self.mask_projection(out)[..., 0] if self.mask_projection is not None else None
        return out, logits

    def embed(self, fused: torch.Tensor, grid: torch.Tensor, text: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings ``(B, N, output)`` and mask logits ``(B, N)`` (or None) at ``grid (B, N, 2)`` in the
        reference's [-1, 1] convention (:func:`pixel_grid`)."""
        return self.condition(self.sample(fused, grid), text)

    def embed_pixels(self, fused: torch.Tensor, xy_index: torch.Tensor, text: torch.Tensor,
                     image_size: int = REFERENCE_IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings at integer pixel indices ``(B, N, 2)`` ``(col, row)`` of the ``image_size`` frame."""
        return self.embed(fused, pixel_grid(xy_index, image_size), text)

    def dense_pixels(self, fused: torch.Tensor, text: torch.Tensor, image_size: int = REFERENCE_IMAGE_SIZE,
                     chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every pixel of the ``image_size`` frame, row-major: ``(B, S*S, output)`` and logits ``(B, S*S)``.

        ``chunk=None`` runs the whole frame as one pass (a 224 x 224 crop is one MLP call, as the reference's
        ``get_heatmap``); a chunk bounds memory on small devices without changing the result."""
        ys, xs = torch.meshgrid(torch.arange(image_size, device=fused.device),
                                torch.arange(image_size, device=fused.device), indexing="ij")
        grid = pixel_grid(torch.stack([xs.flatten(), ys.flatten()], -1), image_size)
        grid = grid[None].expand(fused.shape[0], -1, -1)
        step = grid.shape[1] if not chunk else chunk
        outs, logits = [], []
        for start in range(0, grid.shape[1], step):
            out, logit = self.embed(fused, grid[:, start:start + step], text)
            outs.append(out)
            if logit is not None:
                logits.append(logit)
        return torch.cat(outs, 1), (torch.cat(logits, 1) if logits else None)


def load_reference_state_dict(head: FunctionalHead, state: Mapping[str, torch.Tensor]) -> FunctionalHead:
    """Load a released ``ConditionedDino`` state dict (the ``model`` entry of an ``epoch_*.pt``, read with
    ``backbones.weights.load_state_dict``: ``weights_only=True``) into ``head``.

    The frozen backbone's keys (``image_embedder.dino_vit.*``) are dropped (the backbone is loaded on its own);
    every other key must match the head exactly (names and shapes), else CorruptCheckpointError."""
    own = {k: v for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}
    expected = set(head.state_dict())
    missing, unexpected = sorted(expected - set(own)), sorted(set(own) - expected)
    if missing or unexpected:
        raise CorruptCheckpointError(f"not a reference head state dict for this config: missing {missing}, "
                                     f"unexpected {unexpected}")
    try:
        head.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        raise CorruptCheckpointError(f"reference head state dict does not fit {head.config}: {exc}") from exc
    return head
