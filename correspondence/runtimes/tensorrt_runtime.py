"""Native TensorRT execution of a built engine on torch CUDA tensors (no extra CUDA bindings needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..backbones.contract import OutputKind
from ..errors import ConfigError
from .base import BackboneRuntime
from .deps import import_tensorrt
from .metadata import ModelMetadata
from .tensorrt_engine import default_engine_path, ensure_engine


class TensorRTRuntime(BackboneRuntime):
    """``model``: an ``.onnx`` file (the engine is built or rebuilt next to it) or an ``.engine`` with its sidecar."""

    name = "tensorrt"

    def __init__(self, model: str | Path, fp16: bool = False, device: str | torch.device = "cuda") -> None:
        trt = import_tensorrt()
        model = Path(model)
        if model.suffix == ".onnx":
            onnx_path, engine_path = model, default_engine_path(model, fp16)
            self.record = ensure_engine(onnx_path, engine_path, fp16=fp16)
        else:
            engine_path = model
            self.record = ensure_engine(None, engine_path, fp16=None)
        self.engine_path = engine_path
        self.metadata = ModelMetadata.from_props(self.record.metadata, f"engine {str(engine_path)!r}")
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ConfigError(f"the TensorRT runtime runs on a CUDA device, not {self.device}")
        with torch.cuda.device(self.device):
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise ConfigError(f"TensorRT could not deserialise {str(engine_path)!r}")
            self.context = self.engine.create_execution_context()
        self._trt = trt

    def check(self, backbone: str, size: int, kind: OutputKind, layers: Sequence[int]) -> None:
        self.metadata.check(backbone=backbone, size=size, kind=OutputKind(kind).value,
                            layers=layers if OutputKind(kind) is OutputKind.BLOCKS else None,
                            source=f"TensorRT engine {str(self.engine_path)!r}")

    def _torch_dtype(self, name: str) -> torch.dtype:
        trt = self._trt
        mapping = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32}
        return mapping[self.engine.get_tensor_dtype(name)]

    def forward(self, images: torch.Tensor, kind: OutputKind, layers: Sequence[int]) -> list[torch.Tensor]:
        if OutputKind(kind).value != self.metadata.output_kind:
            raise ConfigError(f"{self.engine_path} outputs {self.metadata.output_kind!r}, not {OutputKind(kind).value!r}")
        record = self.record
        images = images.to(self.device, torch.float32).contiguous()
        results: list[list[torch.Tensor]] = [[] for _ in record.output_names]
        stream = torch.cuda.current_stream(self.device)
        for start in range(0, images.shape[0], record.max_batch):
            chunk = images[start:start + record.max_batch].contiguous()
            self.context.set_input_shape(record.input_name, tuple(chunk.shape))
            self.context.set_tensor_address(record.input_name, chunk.data_ptr())
            outputs = []
            for name in record.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                out = torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
                self.context.set_tensor_address(name, out.data_ptr())
                outputs.append(out)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise ConfigError(f"TensorRT execution of {self.engine_path} failed")
            stream.synchronize()
            for store, out in zip(results, outputs):
                store.append(out.float())
        return [torch.cat(parts) for parts in results]

    @property
    def output_device(self) -> torch.device:
        return self.device

    def describe(self) -> dict:
        env = self.record.environment
        return {"name": self.name, "model": str(self.engine_path), "onnx": self.record.onnx_path,
                "precision": "fp16" if self.record.fp16 else "fp32", "tensorrt_version": env.tensorrt_version,
                "gpu": env.gpu_name, "compute_capability": env.compute_capability}
