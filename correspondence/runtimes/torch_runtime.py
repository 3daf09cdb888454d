"""The reference runtime: the PyTorch module, eager, through ``torch.compile``, or replayed as CUDA graphs.

At batch 1 a ViT-S/14 on a large GPU is launch-bound: eager spends most of its time issuing ~200 small kernels,
not computing. ``cuda_graphs=True`` captures the whole forward once per input shape (static input buffer, fixed
positional embedding, autocast casts included) and replays it with one launch. Capture happens at
:meth:`TorchRuntime.prepare` (the extractor calls it at construction with the configured size), so the first
frame is not slow.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..backbones.contract import DenseBackbone, OutputKind
from ..device import resolve_device
from ..errors import ConfigError, DeviceError
from .base import BackboneRuntime

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
GRAPH_WARMUP_RUNS = 3  # eager runs on a side stream before capture (cuDNN/cuBLAS pick their kernels there)


class TorchRuntime(BackboneRuntime):
    name = "torch"

    def __init__(self, module: DenseBackbone, device: str | torch.device = "cpu", dtype: str = "float32",
                 compile: bool = False, compile_backend: str = "inductor", cuda_graphs: bool = False) -> None:
        self.device = resolve_device(device)
        if dtype == "float16" and self.device.type != "cuda":
            raise ConfigError("float16 extraction needs a CUDA device; use bfloat16 or float32 on CPU")
        if cuda_graphs and self.device.type != "cuda":
            raise DeviceError(f"CUDA graphs need a CUDA device, but this runtime runs on {self.device}; "
                              "drop --cuda-graphs or use --device cuda")
        self.module = module.to(self.device).eval()
        self.dtype = dtype
        self.compiled = bool(compile)
        self.compile_backend = compile_backend
        self.cuda_graphs = bool(cuda_graphs)
        # Compiled once per (kind, layers): they are Python constants the graph specialises on.
        self._run = torch.compile(self.module.forward_dense, backend=compile_backend) if compile else \
            self.module.forward_dense
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, list[torch.Tensor]]] = {}
        self._pool = None

    # ---- running -------------------------------------------------------------------------------------------
    def _forward(self, images: torch.Tensor, kind: OutputKind, layers: tuple[int, ...]) -> list[torch.Tensor]:
        dtype = DTYPES.get(self.dtype)
        # cache_enabled=False: under capture the weight casts must be part of the graph, not a cached tensor
        # made outside it; eager pays nothing for it at inference (no_grad).
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=False):
            return self._run(images, kind, layers)

    def forward(self, images: torch.Tensor, kind: OutputKind, layers: Sequence[int]) -> list[torch.Tensor]:
        images = images.to(self.device, torch.float32)
        layers = tuple(layers)
        if not self.cuda_graphs:
            return self._forward(images, kind, layers)
        graph, static_in, static_out = self._graph(tuple(images.shape), kind, layers)
        static_in.copy_(images)
        graph.replay()
        # The outputs live in the graph's pool and the next replay overwrites them: hand out copies.
        return [out.clone() for out in static_out]

    # ---- CUDA graphs ---------------------------------------------------------------------------------------
    def prepare(self, image_hw: tuple[int, int], kind: OutputKind, layers: Sequence[int], batch: int = 1) -> None:
        """Fix the input-size-dependent state of the module and, with CUDA graphs, capture batch ``batch`` now."""
        self.module.prepare(tuple(image_hw))
        if self.cuda_graphs:
            self._graph((batch, 3, *image_hw), kind, tuple(layers))

    def _graph(self, shape: tuple[int, ...], kind: OutputKind, layers: tuple[int, ...]):
        key = (shape, OutputKind(kind), layers)
        entry = self._graphs.get(key)
        if entry is not None:
            return entry
        self.module.prepare(tuple(shape[-2:]))
        static_in = torch.zeros(shape, device=self.device, dtype=torch.float32)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(GRAPH_WARMUP_RUNS):
                self._forward(static_in, kind, layers)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, pool=self._pool):
            static_out = list(self._forward(static_in, kind, layers))
        if self._pool is None:
            self._pool = graph.pool()  # every captured shape shares one memory pool
        entry = (graph, static_in, static_out)
        self._graphs[key] = entry
        return entry

    @property
    def captured_shapes(self) -> list[tuple[int, ...]]:
        return [key[0] for key in self._graphs]

    @property
    def output_device(self) -> torch.device:
        return self.device

    def describe(self) -> dict:
        return {"name": self.name, "device": str(self.device), "dtype": self.dtype,
                "compile": self.compile_backend if self.compiled else False, "cuda_graphs": self.cuda_graphs}
