"""ONNX Runtime with one explicitly chosen execution provider, and the provider actually in use reported.

A silent fall-back to the CPU provider (onnxruntime-gpu missing, CUDA/cuDNN libraries not found) is the most
common deployment bug: it keeps working, only 20x slower. So an unavailable provider is an error here, and a
session that ends up without the requested provider is refused.

Only verified exports deploy: a model whose verification record (``soco.verification``, written by
``soco export``) is missing or failed is refused before a session starts, unless ``allow_unverified``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..backbones.contract import OutputKind
from ..device import to_numpy
from ..errors import ConfigError, InputError, MissingDependencyError
from .base import BackboneRuntime
from .deps import import_onnxruntime
from .metadata import ModelMetadata, require_verified, verification_summary

PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "tensorrt": "TensorrtExecutionProvider"}


def session_providers(provider: str, device_id: int = 0) -> list:
    """The provider list handed to ONNX Runtime; TensorRT keeps CUDA behind it for the subgraphs it rejects."""
    if provider not in PROVIDER_NAMES:
        raise ConfigError(f"unknown onnxruntime provider {provider!r}; choose one of {', '.join(PROVIDER_NAMES)}")
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    if provider == "cuda":
        return [cuda]
    return [("TensorrtExecutionProvider", {"device_id": device_id}), cuda]


def create_session(path: str | Path, provider: str = "cpu", threads: int | None = None, device_id: int = 0,
                   optimized_model: str | Path | None = None):
    """An ``InferenceSession`` that really uses ``provider`` (MissingDependencyError otherwise)."""
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX model {str(path)!r} does not exist")
    wanted = PROVIDER_NAMES.get(provider)
    if wanted is None:
        raise ConfigError(f"unknown onnxruntime provider {provider!r}; choose one of {', '.join(PROVIDER_NAMES)}")
    available = ort.get_available_providers()
    if wanted not in available:
        raise MissingDependencyError(
            f"ONNX Runtime provider {provider!r} ({wanted}) is not available in this onnxruntime build "
            f"(available: {', '.join(available)}); install onnxruntime-gpu (pip install -e .[gpu]) or choose "
            "provider 'cpu' explicitly - refusing to fall back to the CPU silently")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.log_severity_level = 3
    if optimized_model is not None:
        options.optimized_model_filepath = str(optimized_model)
    try:
        session = ort.InferenceSession(str(path), sess_options=options,
                                       providers=session_providers(provider, device_id))
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, NotImplemented, ...)
        raise ConfigError(f"ONNX Runtime cannot load {str(path)!r} with the {wanted}: {exc}") from exc
    in_use = session.get_providers()
    if not in_use or in_use[0] != wanted:
        raise MissingDependencyError(
            f"ONNX Runtime did not start the {wanted} for {str(path)!r} (providers in use: {', '.join(in_use)}); "
            "its libraries (CUDA, cuDNN, TensorRT) are probably missing - refusing the silent CPU fall-back")
    return session


def read_metadata(path: str | Path) -> ModelMetadata:
    """Export metadata of an ONNX file, read with onnx when present (no session), else onnxruntime."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX model {str(path)!r} does not exist")
    try:
        import onnx
        model = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
    except ImportError:
        ort = import_onnxruntime()
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        props = dict(session.get_modelmeta().custom_metadata_map)
    except Exception as exc:
        raise InputError(f"{str(path)!r} is not a readable ONNX file: {exc}") from exc
    return ModelMetadata.from_props(props, f"ONNX model {str(path)!r}")


class OnnxRuntime(BackboneRuntime):
    name = "onnxruntime"

    def __init__(self, path: str | Path, provider: str = "cpu", threads: int | None = None, device_id: int = 0,
                 allow_unverified: bool = False) -> None:
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.verification = require_verified(self.metadata.verification, self.path, "ONNX model", allow_unverified)
        self.allow_unverified = bool(allow_unverified)
        self.provider = provider
        self.session = create_session(self.path, provider, threads, device_id)
        self.providers_in_use = tuple(self.session.get_providers())
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != self.metadata.input_name:
            raise ConfigError(f"{self.path}: expected one input {self.metadata.input_name!r}, "
                              f"found {[i.name for i in inputs]}")
        batch = inputs[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        self.output_names = list(self.metadata.outputs)

    def check(self, backbone: str, size: int, kind: OutputKind, layers: Sequence[int]) -> None:
        self.metadata.check(backbone=backbone, size=size, kind=OutputKind(kind).value,
                            layers=layers if OutputKind(kind) is OutputKind.BLOCKS else None,
                            source=f"ONNX model {str(self.path)!r}")

    def forward(self, images: torch.Tensor, kind: OutputKind, layers: Sequence[int]) -> list[torch.Tensor]:
        if OutputKind(kind).value != self.metadata.output_kind:
            raise ConfigError(f"{self.path} outputs {self.metadata.output_kind!r}, not {OutputKind(kind).value!r}")
        array = np.ascontiguousarray(to_numpy(images, np.float32))
        step = self.fixed_batch or len(array)
        parts = [self.session.run(self.output_names, {self.metadata.input_name: array[i:i + step]})
                 for i in range(0, len(array), step)]
        return [torch.from_numpy(np.concatenate([p[k] for p in parts]).astype(np.float32, copy=False))
                for k in range(len(self.output_names))]

    def describe(self) -> dict:
        return {"name": self.name, "model": str(self.path), "precision": self.metadata.precision,
                "provider_requested": PROVIDER_NAMES[self.provider], "providers_in_use": list(self.providers_in_use),
                "verification": verification_summary(self.verification, self.allow_unverified)}
