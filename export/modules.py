"""Export-ready copies of the backbone and the functional head.

Why wrappers rather than exporting the live modules: the export needs a static grid (the positional embedding
resized once, here, with the official bicubic rule, and stored as a constant: ``F.interpolate`` with
``scale_factor`` does not export faithfully), plain attention (no fused/xformers kernels), a tuple of named
outputs, and for fp16 a half-precision body whose LayerNorms still compute in fp32 and whose inputs and
outputs stay float32, so every runtime feeds and reads the same tensors.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from correspondence.backbones.contract import OutputKind
from correspondence.backbones.registry import LoadedBackbone
from correspondence.backbones.vit import DinoViT
from correspondence.errors import ConfigError
from correspondence.functional.model import FunctionalHead


class FrozenGridViT(DinoViT):
    """A DinoViT for one grid: its patch positional embedding is a buffer (an ONNX initializer), not a resize."""

    def __init__(self, vit: DinoViT, grid_h: int, grid_w: int) -> None:
        super().__init__(vit.model, vit.contract)
        with torch.no_grad():
            pos = vit.patch_pos_embed(grid_h, grid_w).detach().clone()
        self.register_buffer("frozen_patch_pos", pos)
        self.grid = (grid_h, grid_w)

    def patch_pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        return self.frozen_patch_pos


class Fp32LayerNorm(nn.Module):
    """LayerNorm computed in fp32 inside an fp16 graph (Cast -> LayerNormalization -> Cast in ONNX)."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.normalized_shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().float().clone(), requires_grad=False) \
            if norm.weight is not None else None
        self.bias = nn.Parameter(norm.bias.detach().float().clone(), requires_grad=False) \
            if norm.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


def to_fp16_keep_norms(module: nn.Module) -> nn.Module:
    """Half-precision copy with every LayerNorm replaced by an fp32 one."""
    module = module.half()
    for name, child in list(module.named_children()):
        if isinstance(child, nn.LayerNorm):
            setattr(module, name, Fp32LayerNorm(child))
        else:
            to_fp16_keep_norms(child)
    return module


def plain_attention(module: nn.Module) -> None:
    """Switch timm attention to the explicit softmax(QK^T)V path (no fused SDPA kernels in the graph)."""
    for child in module.modules():
        if hasattr(child, "fused_attn"):
            child.fused_attn = False


class ExportableBackbone(nn.Module):
    """``images (B, 3, S, S) float32`` -> tuple of ``(B, C, S/p, S/p) float32`` maps."""

    def __init__(self, loaded: LoadedBackbone, size: int, kind: OutputKind, layers: Sequence[int],
                 fp16: bool = False) -> None:
        super().__init__()
        module = loaded.module
        if not isinstance(module, DinoViT):
            raise ConfigError(f"backbone {loaded.spec.name!r} ({type(module).__name__}) cannot be exported: only the "
                              "DINO-family ViTs are (the weight-free 'daisy' descriptor is not a network to export)")
        grid = size // loaded.spec.contract.patch_size
        body = FrozenGridViT(copy.deepcopy(module).to("cpu").float().eval(), grid, grid)
        plain_attention(body)
        self.body = to_fp16_keep_norms(body) if fp16 else body
        self.kind = OutputKind(kind)
        self.layers = tuple(layers)
        self.fp16 = fp16

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.half() if self.fp16 else images
        outputs = self.body.forward_dense(x, self.kind, self.layers)
        return tuple(o.float() for o in outputs)


class ExportableHead(nn.Module):
    """The functional head as the inference code runs it (fuse the blocks, sample at points, MLP).

    Inputs: one ``(B, C, h, w)`` map per block, ``grid (B, N, 2)`` in [-1, 1] (the reference convention: pixel p
    at ``p * 2 / size - 1``, align_corners=False) and, unless a function is baked in, ``text (B, T)``. Outputs: ``embeddings (B, N, D)`` L2-normalised and, with a mask head,
    ``mask_logits (B, N)``.
    """

    def __init__(self, head: FunctionalHead, text: torch.Tensor | None = None, fp16: bool = False) -> None:
        super().__init__()
        self.head = copy.deepcopy(head).to("cpu").float().eval()
        if fp16:
            self.head = self.head.half()
        self.fp16 = fp16
        if text is not None:
            self.register_buffer("baked_text", text.detach().float().reshape(1, -1).clone())
        else:
            self.baked_text = None

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = self.head.config.num_blocks
        blocks, grid = list(inputs[:n]), inputs[n]
        if self.baked_text is not None:
            text = self.baked_text.expand(grid.shape[0], -1)
        else:
            text = inputs[n + 1]
        dtype = torch.float16 if self.fp16 else torch.float32
        head = self.head
        weights = torch.softmax(head.block_logits.float(), dim=0).to(dtype)
        fused = sum(w * proj(b.to(dtype)) for w, proj, b in zip(weights, head.projections, blocks))
        fused = F.normalize(fused.float(), dim=1).to(dtype)
        emb, logits = head.embed(fused, grid.to(dtype), text.to(dtype))
        emb = F.normalize(emb.float(), dim=-1)
        return (emb,) if logits is None else (emb, logits.float())
