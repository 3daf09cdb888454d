"""DINO-family Vision Transformers (DINO v1, DINOv2, DINOv2+registers) on timm architectures.

We run the timm modules ourselves instead of calling timm's ``forward``: the positional embedding is resized
with the official DINO/DINOv2 rule of each model (:class:`PosEmbedInterpolation`: the plain models scale by
``(n + 0.1) / M`` without antialias, the register models resize to ``n`` with antialias, as the official hub
builders set them) so features match the reference code at every size, and the resized embedding is cached per
grid (and can be frozen as a constant for ONNX export or CUDA-graph capture).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import CorruptCheckpointError
from .contract import BackboneContract, DenseBackbone, OutputKind

VIT_OUTPUT_KINDS = (OutputKind.LAST_RAW, OutputKind.LAST_NORM, OutputKind.BLOCKS, OutputKind.DENSE_CLS)


@dataclass(frozen=True)
class PosEmbedInterpolation:
    """How a model resizes its positional embedding (DINOv2's ``interpolate_offset`` / ``interpolate_antialias``).

    ``offset > 0``: bicubic with ``scale_factor = (n + offset) / M`` (the historical kludge of DINO v1 and the plain
    DINOv2 models); ``offset == 0``: bicubic to ``size = n`` (the register models)."""

    offset: float = 0.1
    antialias: bool = False


PLAIN_INTERPOLATION = PosEmbedInterpolation(0.1, False)  # dinov2_vit*14 (hub defaults), dino_vitb16
REGISTER_INTERPOLATION = PosEmbedInterpolation(0.0, True)  # dinov2_vit*14_reg (hub builders set both)


def resize_patch_pos_embed(patch_pos: torch.Tensor, grid_h: int, grid_w: int,
                           interpolation: PosEmbedInterpolation = PLAIN_INTERPOLATION) -> torch.Tensor:
    """Resize a ``(1, M*M, C)`` patch positional embedding to ``grid_h x grid_w`` as the DINOv2 reference does."""
    n, dim = patch_pos.shape[1], patch_pos.shape[2]
    side = int(math.sqrt(n))
    if side * side != n:
        raise CorruptCheckpointError(f"positional embedding with {n} patch positions is not a square grid")
    if (grid_h, grid_w) == (side, side):
        return patch_pos
    grid = patch_pos.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    if interpolation.offset:
        scale = ((grid_h + interpolation.offset) / side, (grid_w + interpolation.offset) / side)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=interpolation.antialias)
    else:
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", antialias=interpolation.antialias)
    if tuple(grid.shape[-2:]) != (grid_h, grid_w):  # the offset guarantees this; keep the reference's check
        raise RuntimeError(f"pos-embed resize gave {tuple(grid.shape[-2:])}, expected {(grid_h, grid_w)}")
    return grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim).to(patch_pos.dtype)


class DinoViT(DenseBackbone):
    """A timm ``VisionTransformer`` driven block by block, exposing every output kind of the contract."""

    def __init__(self, model: torch.nn.Module, contract: BackboneContract,
                 interpolation: PosEmbedInterpolation = PLAIN_INTERPOLATION) -> None:
        super().__init__()
        self.model = model
        self.contract = contract
        self.interpolation = interpolation
        self._pos_cache: dict[tuple[int, int, torch.dtype, str], torch.Tensor] = {}
        self._pos_fixed: dict[tuple[int, int], torch.Tensor] = {}

    # ---- weights ---------------------------------------------------------------------------------------------
    def load_official(self, state: dict[str, torch.Tensor], layout: str, source: str = "checkpoint") -> None:
        """Load an official checkpoint (``dinov2`` or ``dino`` key layout) or a timm one (``timm``)."""
        remapped = remap_official_dinov2(state, self.model) if layout == "dinov2" else dict(state)
        remapped = {k: v for k, v in remapped.items() if not k.startswith("head.")}
        own = self.model.state_dict()
        missing = sorted(set(own) - set(remapped))
        unexpected = sorted(set(remapped) - set(own))
        wrong = [f"{k}: {tuple(remapped[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in remapped and remapped[k].shape != own[k].shape]
        if missing or unexpected or wrong:
            raise CorruptCheckpointError(
                f"{source} does not fit this architecture: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, shape mismatches {wrong[:3]}")
        self.model.load_state_dict(remapped, strict=True)
        self._pos_cache.clear()
        for grid in list(self._pos_fixed):  # new weights, same buffers: captured graphs read the new values
            self._fix_pos(grid)

    def prepare(self, image_hw: tuple[int, int]) -> None:
        """Compute the resized positional embedding for one input size now, on the weights' device, so that
        ``forward`` at that size creates nothing (what CUDA-graph capture and ``torch.compile`` need)."""
        p = self.contract.patch_size
        self._fix_pos((image_hw[0] // p, image_hw[1] // p))

    def _fix_pos(self, grid: tuple[int, int]) -> None:
        """(Re)compute the fixed embedding for ``grid`` *in place* when one exists: a CUDA graph captured earlier
        holds its address, not a reference, and would read freed memory if a second ``prepare`` (another
        extractor on the same module, new weights) replaced the tensor."""
        pos = self.model.pos_embed
        with torch.no_grad():
            fresh = self._resized_pos(*grid).detach().to(pos.device, pos.dtype)
            held = self._pos_fixed.get(grid)
            if held is not None and (held.shape, held.device, held.dtype) == (fresh.shape, fresh.device, fresh.dtype):
                held.copy_(fresh)
            else:
                self._pos_fixed[grid] = fresh

    def _resized_pos(self, grid_h: int, grid_w: int) -> torch.Tensor:
        prefix = 0 if getattr(self.model, "no_embed_class", False) else self.model.num_prefix_tokens
        prefix = min(prefix, 1)  # only the CLS token ever carries a position in DINO checkpoints
        return resize_patch_pos_embed(self.model.pos_embed[:, prefix:], grid_h, grid_w, self.interpolation)

    # ---- forward ---------------------------------------------------------------------------------------------
    def patch_pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        if not self.training:
            fixed = self._pos_fixed.get((grid_h, grid_w))
            if fixed is not None and fixed.device == self.model.pos_embed.device:
                return fixed
        pos = self.model.pos_embed
        key = (grid_h, grid_w, pos.dtype, str(pos.device))
        cached = self._pos_cache.get(key)
        if cached is None or self.training:
            cached = self._resized_pos(grid_h, grid_w)
            if not self.training and not torch.is_grad_enabled():
                self._pos_cache[key] = cached
        return cached

    def tokens(self, images: torch.Tensor, last_block: int) -> tuple[list[torch.Tensor], int, int]:
        """Run blocks ``0..last_block``; return every block's output tokens and the grid size."""
        self.check_input(images)
        model = self.model
        x = model.patch_embed.proj(images)
        grid_h, grid_w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        x = model.patch_embed.norm(x) + self.patch_pos_embed(grid_h, grid_w)
        cls = model.cls_token.expand(x.shape[0], -1, -1)
        if not getattr(model, "no_embed_class", False):
            cls = cls + model.pos_embed[:, :1]
        prefix = [cls]
        if getattr(model, "reg_token", None) is not None:
            prefix.append(model.reg_token.expand(x.shape[0], -1, -1))
        x = model.norm_pre(torch.cat(prefix + [x], dim=1))
        outputs = []
        for index, block in enumerate(model.blocks):
            if index > last_block:
                break
            x = block(x)
            outputs.append(x)
        return outputs, grid_h, grid_w

    def forward_dense(self, images: torch.Tensor, kind: OutputKind = OutputKind.LAST_RAW,
                      layers: Sequence[int] = (-1,)) -> list[torch.Tensor]:
        kind = self.contract.check_kind(kind)
        wanted = self.contract.check_layers(layers) if kind is OutputKind.BLOCKS else (self.contract.num_blocks - 1,)
        outputs, grid_h, grid_w = self.tokens(images, max(wanted))
        n_prefix = self.model.num_prefix_tokens

        def to_grid(tokens: torch.Tensor) -> torch.Tensor:
            patches = tokens[:, n_prefix:]
            return patches.transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w)

        if kind is OutputKind.BLOCKS:
            return [to_grid(outputs[i]) for i in wanted]
        last = outputs[-1]
        if kind is OutputKind.LAST_RAW:
            return [to_grid(last)]
        normed = self.model.norm(last)
        if kind is OutputKind.LAST_NORM:
            return [to_grid(normed)]
        dense = to_grid(normed)
        cls = normed[:, 0, :, None, None].expand(-1, -1, grid_h, grid_w)
        return [torch.cat([dense, cls], dim=1)]


_CHUNKED_BLOCK = re.compile(r"^blocks\.\d+\.(\d+)\.")


def remap_official_dinov2(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Official DINOv2 key layout (``dinov2_vits14_pretrain.pth``) -> timm ``VisionTransformer`` keys.

    timm's own DINOv2 checkpoint filter does the conversion (``mask_token`` dropped, SwiGLU ``w12``/``w3`` ->
    ``fc1``/``fc2``, ``register_tokens`` -> ``reg_token`` with the CLS position folded into the CLS token). Two
    things are ours: chunked blocks ``blocks.<chunk>.<i>`` (``block_chunks > 0`` in the official code) are
    flattened first, and a checkpoint stripped of its training-only ``mask_token`` (by which timm recognises the
    layout) gets a placeholder that the filter drops again.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    flat = {_CHUNKED_BLOCK.sub(r"blocks.\1.", key): value for key, value in state.items()}
    if "mask_token" not in flat:
        flat["mask_token"] = torch.zeros(1)
    return checkpoint_filter_fn(flat, model)
