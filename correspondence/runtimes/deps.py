"""Lazy imports of the optional deployment packages, each failing with the pip extra that provides it."""
from __future__ import annotations

from types import ModuleType

from ..errors import MissingDependencyError
from ..optional import require


def import_onnx() -> ModuleType:
    return require("onnx", "ONNX export and verification")


def import_onnxruntime() -> ModuleType:
    return require("onnxruntime", "the onnxruntime runtime")


def tensorrt_missing() -> list[str]:
    """What this machine lacks for TensorRT (empty when an engine can be built and run)."""
    missing = []
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        missing.append(f"the tensorrt Python package (not importable: {exc}; install it with pip install -e .[gpu])")
    import torch
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (none is visible: torch.cuda.is_available() is False)")
    return missing


def import_tensorrt() -> ModuleType:
    """The tensorrt module, after checking for a GPU too: a TensorRT engine is built for and runs on one GPU."""
    missing = tensorrt_missing()
    if missing:
        raise MissingDependencyError("TensorRT is not usable on this machine; it needs " + " and ".join(missing))
    import tensorrt
    return tensorrt
