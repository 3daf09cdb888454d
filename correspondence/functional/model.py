"""The function-conditioned dense head of Stojanov et al. (ICCV 2025) on a frozen backbone.

Backbone features of the last 3 blocks (raw, no final norm) -> a linear projection per block (768 -> 512 for
ViT-B; 2/3 of the width in general) -> a learned softmax-weighted sum -> L2 norm. Per pixel, that map is sampled
bilinearly, concatenated with the text embedding of the function and passed through a 3-layer MLP (hidden 1024,
output 256, L2-normalised). An optional linear mask head predicts whether the pixel belongs to the functional
part.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def projection_dim(feature_dim: int) -> int:
    """768 -> 512 as in the paper; other widths scaled by the same 2/3 (rounded to a multiple of 8)."""
    return max(8, int(round(feature_dim * 2 / 3 / 8)) * 8)


@dataclass(frozen=True)
class HeadConfig:
    feature_dim: int  # backbone width C
    text_dim: int  # text embedding width (384 MiniLM, 512 CLIP)
    num_blocks: int = 3
    projection: int = 0  # 0: projection_dim(feature_dim)
    hidden: int = 1024
    output: int = 256
    mask_head: bool = True

    def __post_init__(self) -> None:
        if self.feature_dim <= 0 or self.text_dim <= 0 or self.num_blocks <= 0:
            raise ConfigError(f"invalid head config {self}")
        if self.projection == 0:
            object.__setattr__(self, "projection", projection_dim(self.feature_dim))

    def as_dict(self) -> dict:
        return asdict(self)


class FunctionalHead(nn.Module):
    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.projections = nn.ModuleList(nn.Conv2d(config.feature_dim, config.projection, 1)
                                         for _ in range(config.num_blocks))
        self.block_logits = nn.Parameter(torch.zeros(config.num_blocks))
        width = config.projection + config.text_dim
        self.mlp = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(config.hidden, config.hidden), nn.ReLU(inplace=True),
                                 nn.Linear(config.hidden, config.output))
        self.mask = nn.Linear(width, 1) if config.mask_head else None

    def fuse(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """``num_blocks`` maps ``(B, C, h, w)`` -> fused, L2-normalised ``(B, P, h, w)``."""
        if len(blocks) != self.config.num_blocks:
            raise ConfigError(f"head expects {self.config.num_blocks} blocks, got {len(blocks)}")
        weights = torch.softmax(self.block_logits, dim=0)
        fused = sum(w * proj(b.float()) for w, proj, b in zip(weights, self.projections, blocks))
        return F.normalize(fused, dim=1)

    def embed(self, fused: torch.Tensor, grid: torch.Tensor, text: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings at points: ``fused (B, P, h, w)``, ``grid (B, N, 2)`` in [-1, 1] (align_corners=True),
        ``text (B, T)`` -> ``(B, N, output)`` L2-normalised and mask logits ``(B, N)`` (or None)."""
        sampled = F.grid_sample(fused, grid[:, None], mode="bilinear", align_corners=True)[:, :, 0].transpose(1, 2)
        x = torch.cat([sampled, text[:, None, :].expand(-1, sampled.shape[1], -1).to(sampled)], dim=-1)
        out = F.normalize(self.mlp(x), dim=-1)
        logits = self.mask(x)[..., 0] if self.mask is not None else None
        return out, logits

    def dense(self, fused: torch.Tensor, text: torch.Tensor, chunk: int = 4096
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings of every cell: ``(B, output, h, w)`` and mask logits ``(B, h, w)``."""
        b, p, h, w = fused.shape
        cells = fused.flatten(2).transpose(1, 2)
        outs, logits = [], []
        for start in range(0, h * w, chunk):
            part = cells[:, start:start + chunk]
            x = torch.cat([part, text[:, None, :].expand(-1, part.shape[1], -1).to(part)], dim=-1)
            outs.append(F.normalize(self.mlp(x), dim=-1))
            if self.mask is not None:
                logits.append(self.mask(x)[..., 0])
        out = torch.cat(outs, 1).transpose(1, 2).reshape(b, -1, h, w)
        mask = torch.cat(logits, 1).reshape(b, h, w) if logits else None
        return out, mask
