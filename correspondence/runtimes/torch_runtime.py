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
        if dtype not in ("float32", *DTYPES):
            raise ConfigError(f"the torch runtime runs float32, float16 or bfloat16, not {dtype!r} (resolve 'auto' "
                              "first: correspondence.runtimes.precision.resolve_precision)")
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
        self._graphs: dict[tuple, CapturedGraph] = {}

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
        outputs = self._graph(tuple(images.shape), kind, layers)(images)
        # The outputs live in the graph's pool and the next replay overwrites them: hand out copies.
        return [out.clone() for out in outputs]

    # ---- CUDA graphs ---------------------------------------------------------------------------------------
    def prepare(self, image_hw: tuple[int, int], kind: OutputKind, layers: Sequence[int], batch: int = 1) -> None:
        """Fix the input-size-dependent state of the module and, with CUDA graphs, capture batch ``batch`` now."""
        self.module.prepare(tuple(image_hw))
        if self.cuda_graphs:
            self._graph((batch, 3, *image_hw), kind, tuple(layers))

    def _graph(self, shape: tuple[int, ...], kind: OutputKind, layers: tuple[int, ...]) -> "CapturedGraph":
        key = (shape, OutputKind(kind), layers)
        entry = self._graphs.get(key)
        if entry is None:
            self.module.prepare(tuple(shape[-2:]))
            entry = self.capture(lambda images: self._forward(images, kind, layers),
                                 [torch.zeros(shape, device=self.device)])
            self._graphs[key] = entry
        return entry

    def capture(self, fn, example_inputs: Sequence[torch.Tensor]) -> "CapturedGraph":
        """Capture ``fn`` (which may call :meth:`forward_eager`) as a graph with its own memory pool: callers fold
        their own pre- and post-processing into the backbone's graph (see ``frame_graph``)."""
        if not self.cuda_graphs:
            raise ConfigError("this torch runtime was created without cuda_graphs=True")
        # Each graph gets a private memory pool. A shared pool is only safe when graphs replay in the order they
        # were captured; here the backbone graph and a frame graph replay in any order (a frame with a mask takes
        # the step-by-step path). A few tens of MB per graph buy independence. (On an H200 the two disagreed once
        # after a frame-graph capture; besides the shared pool, the frame graph's normalisation constants were
        # then freed after capture and the fixed positional embedding was replaced by a second prepare: both
        # now stay alive and in place, see CapturedGraph and DinoViT._fix_pos.)
        return CapturedGraph(fn, example_inputs, self.device, None)

    def forward_eager(self, images: torch.Tensor, kind: OutputKind, layers: Sequence[int]) -> list[torch.Tensor]:
        """The network itself (autocast included), for code that captures it inside a larger graph."""
        return self._forward(images, kind, tuple(layers))

    @property
    def captured_shapes(self) -> list[tuple[int, ...]]:
        """Input shapes of the backbone graphs captured so far (each costs one capture, then replays)."""
        return [key[0] for key in self._graphs]

    @property
    def output_device(self) -> torch.device:
        return self.device

    def describe(self) -> dict:
        return {"name": self.name, "device": str(self.device), "dtype": self.dtype,
                "compile": self.compile_backend if self.compiled else False, "cuda_graphs": self.cuda_graphs}


class CapturedGraph:
    """A function of fixed-shape CUDA tensors, captured once and replayed.

    Warm-up runs on a side stream first (kernel selection, lazy allocations), then one capture. ``__call__`` copies
    the inputs into the static input buffers, replays, and returns the static outputs: the next call overwrites them,
    so keep a copy of anything that must outlive it.

    A graph records addresses, not references: every tensor it reads that was made outside the capture (constants
    a caller's ``fn`` closes over, such as normalisation means) must outlive it. Keeping ``fn`` keeps them alive;
    without it they were freed after capture and their memory handed to the next allocation of that size."""

    def __init__(self, fn, example_inputs: Sequence[torch.Tensor], device: torch.device, pool=None,
                 warmup: int = GRAPH_WARMUP_RUNS) -> None:
        self.fn = fn  # holds the closure's tensors (see the class docstring)
        self.inputs = [t.detach().clone() for t in example_inputs]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph, pool=pool):
            out = fn(*self.inputs)
        self.outputs = list(out) if isinstance(out, (list, tuple)) else [out]
        self.pool = self.graph.pool()

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        for static, value in zip(self.inputs, inputs):
            static.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.outputs
