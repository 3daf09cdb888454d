"""The reference runtime: the PyTorch module, eager or through ``torch.compile``."""
from __future__ import annotations

from typing import Sequence

import torch

from ..backbones.contract import DenseBackbone, OutputKind
from ..errors import ConfigError
from .base import BackboneRuntime

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class TorchRuntime(BackboneRuntime):
    name = "torch"

    def __init__(self, module: DenseBackbone, device: str | torch.device = "cpu", dtype: str = "float32",
                 compile: bool = False, compile_backend: str = "inductor") -> None:
        self.device = torch.device(device)
        if dtype == "float16" and self.device.type != "cuda":
            raise ConfigError("float16 extraction needs a CUDA device; use bfloat16 or float32 on CPU")
        self.module = module.to(self.device).eval()
        self.dtype = dtype
        self.compiled = bool(compile)
        self.compile_backend = compile_backend
        # Compiled once per (kind, layers): they are Python constants the graph specialises on.
        self._run = torch.compile(self.module.forward_dense, backend=compile_backend) if compile else \
            self.module.forward_dense

    def forward(self, images: torch.Tensor, kind: OutputKind, layers: Sequence[int]) -> list[torch.Tensor]:
        dtype = DTYPES.get(self.dtype)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return self._run(images.to(self.device), kind, tuple(layers))

    @property
    def output_device(self) -> torch.device:
        return self.device

    def describe(self) -> dict:
        return {"name": self.name, "device": str(self.device), "dtype": self.dtype,
                "compile": self.compile_backend if self.compiled else False}
