"""The runtime contract: a normalised image batch in, the backbone's per-patch maps out.

``FeatureExtractor`` owns preprocessing and geometry; a runtime only runs the network. Every runtime returns
exactly what ``DenseBackbone.forward_dense`` returns (a list of ``(B, C, h, w)`` float maps, one per block for
the ``blocks`` kind), so torch, ONNX Runtime and TensorRT are interchangeable behind one extractor and give the
same matches.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..backbones.contract import DenseBackbone, OutputKind
from ..errors import ConfigError

RUNTIME_NAMES = ("torch", "onnxruntime", "tensorrt")
ONNX_PROVIDERS = ("cpu", "cuda", "tensorrt")


@dataclass(frozen=True)
class RuntimeSpec:
    """Which runtime runs the backbone; flat fields so a ROS node can expose each as a parameter.

    ``name``: torch | onnxruntime | tensorrt. ``model``: the exported ``.onnx`` (onnxruntime, tensorrt) or a
    built ``.engine`` (tensorrt). ``provider``: the ONNX Runtime execution provider, cpu | cuda | tensorrt
    (never a silent fall-back). ``compile``: wrap the torch runtime in ``torch.compile``. ``cuda_graphs``: the
    torch runtime captures the backbone once per input shape as a CUDA graph and replays it (CUDA only).
    ``fp16``: build the TensorRT engine with fp16 kernels (LayerNorm stays fp32). ``threads``: CPU threads for
    onnxruntime. ``allow_unverified``: load an exported model whose verification record is missing or failed
    (refused by default: only verified exports deploy).
    """

    name: str = "torch"
    model: str | None = None
    provider: str = "cpu"
    compile: bool = False
    fp16: bool = False
    threads: int | None = None
    cuda_graphs: bool = False
    allow_unverified: bool = False

    def __post_init__(self) -> None:
        if self.name not in RUNTIME_NAMES:
            raise ConfigError(f"unknown runtime {self.name!r}; choose one of {', '.join(RUNTIME_NAMES)}")
        if self.provider not in ONNX_PROVIDERS:
            raise ConfigError(f"unknown onnxruntime provider {self.provider!r}; choose one of {', '.join(ONNX_PROVIDERS)}")
        if self.name != "torch" and not self.model:
            raise ConfigError(f"runtime {self.name!r} needs model=PATH to an exported model "
                              "(make one with `soco export onnx`)")
        if self.model is not None:
            object.__setattr__(self, "model", str(self.model))

    @classmethod
    def coerce(cls, value: "RuntimeSpec | str | Mapping[str, Any] | None") -> "RuntimeSpec":
        """``None``/``"torch"`` -> eager torch; a name; a mapping of the fields; or a spec."""
        if value is None:
            return cls()
        if isinstance(value, RuntimeSpec):
            return value
        if isinstance(value, str):
            return cls(name=value)
        if isinstance(value, Mapping):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"unknown runtime option(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
            return cls(**value)
        raise ConfigError(f"runtime must be a name, a mapping or a RuntimeSpec, got {type(value).__name__}")

    def as_dict(self) -> dict:
        return asdict(self)


class BackboneRuntime(ABC):
    """Runs a backbone network on ``(B, 3, H, W)`` normalised float32 images."""

    name: str = "runtime"

    @abstractmethod
    def forward(self, images: torch.Tensor, kind: OutputKind, layers: Sequence[int]) -> list[torch.Tensor]:
        """Per-patch maps ``(B, C, H/p, W/p)`` as ``DenseBackbone.forward_dense`` returns them."""

    def check(self, backbone: str, size: int, kind: OutputKind, layers: Sequence[int]) -> None:
        """Raise ConfigError if this runtime cannot serve the request (exported models are fixed)."""

    def prepare(self, image_hw: tuple[int, int], kind: OutputKind, layers: Sequence[int], batch: int = 1) -> None:
        """Get ready for inputs of this size before the first frame (precompute, capture, warm up). Default: nothing."""

    cuda_graphs: bool = False  # replays captured CUDA graphs (the extractor then preprocesses on the device too)

    @abstractmethod
    def describe(self) -> dict:
        """Record for results: runtime name, model file, precision, and the device/providers actually used."""

    @property
    def output_device(self) -> torch.device:
        return torch.device("cpu")


class ExportedModule(DenseBackbone):
    """Stands in for the torch module when an exported model runs the backbone: no weights are loaded (an edge
    device only has the .onnx/.engine), and calling it by mistake says so instead of returning random features."""

    def __init__(self, contract, model_path: str | Path, runtime: str) -> None:
        super().__init__()
        self.contract = contract
        self.model_path = str(model_path)
        self.runtime = runtime

    def forward_dense(self, images, kind=OutputKind.LAST_RAW, layers=(-1,)):
        raise ConfigError(f"this backbone runs through the {self.runtime} runtime ({self.model_path}); "
                          "its torch weights were never loaded")
