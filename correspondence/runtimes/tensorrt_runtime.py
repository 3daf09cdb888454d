"""Native TensorRT execution of a built engine on torch CUDA tensors (no extra CUDA bindings needed).

Only verified models deploy here too: the ONNX file an engine is built from must carry a passing verification
record, and the engine itself is verified against ONNX Runtime (CPU) on that ONNX file before its first use
(``soco export tensorrt`` does it when it builds; an engine this runtime builds or rebuilds is verified here, and
the result kept in its sidecar and ``<engine>.verify.json``). Either record missing or failed: refused, unless
``allow_unverified``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..backbones.contract import OutputKind
from ..errors import ConfigError, MissingDependencyError
from .base import BackboneRuntime
from .deps import import_tensorrt
from .metadata import ModelMetadata, VerificationRecord, report_path_for, require_verified, verification_summary
from .tensorrt_engine import default_engine_path, ensure_engine

ENGINE_REMEDY = "rebuild and verify it with `soco export tensorrt --onnx MODEL.onnx --out ENGINE --force`"


class TensorRTRuntime(BackboneRuntime):
    """``model``: an ``.onnx`` file (the engine is built or rebuilt next to it) or an ``.engine`` with its sidecar.

    ``allow_unverified``: load although the ONNX file's or the engine's verification record is missing or failed
    (with an :class:`UnverifiedModelWarning`). ``verify``: verify an engine that has no record yet before using it
    (False only for the verifier itself, which then checks the engine on its own)."""

    name = "tensorrt"

    def __init__(self, model: str | Path, fp16: bool = False, device: str | torch.device = "cuda",
                 allow_unverified: bool = False, verify: bool = True, log: Callable[[str], None] = print) -> None:
        trt = import_tensorrt()
        model = Path(model)
        self.allow_unverified = bool(allow_unverified)
        if model.suffix == ".onnx":
            engine_path = default_engine_path(model, fp16)
            record = ensure_engine(model, engine_path, fp16=fp16, allow_unverified=allow_unverified, log=log)
        else:
            engine_path = model
            record = ensure_engine(None, engine_path, fp16=None, allow_unverified=allow_unverified, log=log)
        self.engine_path, self.record = engine_path, record
        self.metadata = ModelMetadata.from_props(record.metadata, f"engine {str(engine_path)!r}")
        self.onnx_verification = require_verified(
            self.metadata.verification, Path(record.onnx_path), f"ONNX model (source of TensorRT engine "
            f"{str(engine_path)!r})", allow_unverified,
            remedy="export it again with `soco export onnx` until it passes, then rebuild the engine")
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ConfigError(f"the TensorRT runtime runs on a CUDA device, not {self.device}")
        with torch.cuda.device(self.device):
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise ConfigError(f"TensorRT could not deserialise {str(engine_path)!r}")
            self.context = self.engine.create_execution_context()
        self._trt = trt
        self.verification: VerificationRecord | None = None
        if verify:
            if not record.verification:
                self._verify_now(log)
            self.verification = require_verified(
                self.record.verification, engine_path, "TensorRT engine", allow_unverified, remedy=ENGINE_REMEDY,
                missing="its sidecar has no engine verification, and it could not be verified here against ONNX "
                        "Runtime on its ONNX file")

    def _verify_now(self, log: Callable[[str], None]) -> None:
        """Verify an engine without a record (just built or rebuilt here, or built before engines were verified)
        against ONNX Runtime on its ONNX file; the record goes into the sidecar, the report next to the engine."""
        onnx_path = Path(self.record.onnx_path)
        if not onnx_path.is_file():
            log(f"[soco] cannot verify {self.engine_path}: its ONNX file {onnx_path} is not available")
            return
        try:
            from .. import plugins  # export/ builds on the core: found by entry point, only when an engine is new
            verify_engine = plugins.load(plugins.EXPORTER_GROUP, "tensorrt_verify")
            if verify_engine is None:
                log(f"[soco] cannot verify {self.engine_path}: the export/ package of soco_ros is not installed")
                return
            report = verify_engine(self, onnx_path)
        except MissingDependencyError as exc:  # onnxruntime missing: the engine stays unverified
            log(f"[soco] cannot verify {self.engine_path} against ONNX Runtime: {exc}")
            return
        report_file = report_path_for(self.engine_path)
        self.record = replace(self.record, verification=report.record(report_file.name).as_dict())
        self.record.save(self.engine_path)
        report.save(report_file)
        log(f"[soco] verified {self.engine_path}: {'PASSED' if report.passed else 'FAILED'} (report {report_file})")

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
                "gpu": env.gpu_name, "compute_capability": env.compute_capability, "max_batch": self.record.max_batch,
                "verification": verification_summary(self.verification, self.allow_unverified),
                "onnx_verification": verification_summary(self.onnx_verification, self.allow_unverified)}
