"""Backbones driven through timm's ``forward_intermediates`` (DINOv3: RoPE, no positional table to resize)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import CorruptCheckpointError
from .contract import BackboneContract, DenseBackbone, OutputKind


class TimmIntermediatesViT(DenseBackbone):
    def __init__(self, model: torch.nn.Module, contract: BackboneContract) -> None:
        super().__init__()
        self.model = model
        self.contract = contract

    def load_official(self, state: dict[str, torch.Tensor], layout: str, source: str = "checkpoint") -> None:
        """Official DINOv3 checkpoints go through timm's own key conversion (storage tokens, biases, RoPE)."""
        if layout == "dinov3":
            import contextlib
            import io

            from timm.models.eva import checkpoint_filter_fn
            with contextlib.redirect_stdout(io.StringIO()):  # timm prints when a model has no q/v bias
                state = checkpoint_filter_fn(state, self.model)
        result = self.model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if "rope" not in k]
        if missing or result.unexpected_keys:
            raise CorruptCheckpointError(f"{source} does not fit this architecture: missing {missing[:5]}, "
                                         f"unexpected {list(result.unexpected_keys)[:5]}")

    def forward_dense(self, images: torch.Tensor, kind: OutputKind = OutputKind.LAST_RAW,
                      layers: Sequence[int] = (-1,)) -> list[torch.Tensor]:
        kind = self.contract.check_kind(kind)
        self.check_input(images)
        wanted = list(self.contract.check_layers(layers)) if kind is OutputKind.BLOCKS else [self.contract.num_blocks - 1]
        norm = kind in (OutputKind.LAST_NORM, OutputKind.DENSE_CLS)
        outs = self.model.forward_intermediates(images, indices=wanted, norm=norm, stop_early=True,
                                                intermediates_only=True, return_prefix_tokens=True)
        grids = [spatial for spatial, _ in outs]
        if kind is OutputKind.DENSE_CLS:
            spatial, prefix = outs[-1]
            cls = prefix[:, 0, :, None, None].expand(-1, -1, *spatial.shape[-2:])
            return [torch.cat([spatial, cls], dim=1)]
        return grids
