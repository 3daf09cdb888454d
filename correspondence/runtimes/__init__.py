"""Backbone runtimes behind one contract: torch (eager or compiled), ONNX Runtime and native TensorRT.

``FeatureExtractor(backbone, settings, runtime=create_runtime(spec, backbone))`` or
``Matcher.create(..., runtime=RuntimeSpec(...))`` select one; everything downstream (matching, the pipeline,
the ROS node) is unchanged and gets the same matches. onnxruntime and tensorrt are imported only when used.

Only verified exports deploy: the onnxruntime and tensorrt runtimes refuse a model whose verification record is
missing or failed (:class:`UnverifiedModelError`, naming the report) unless ``spec.allow_unverified``.
"""
from __future__ import annotations

from pathlib import Path

from ..backbones.registry import LoadedBackbone, WeightsInfo, get_spec
from ..errors import ConfigError
from .base import ONNX_PROVIDERS, RUNTIME_NAMES, BackboneRuntime, ExportedModule, RuntimeSpec
from .metadata import ModelMetadata, UnverifiedModelError, UnverifiedModelWarning, VerificationRecord
from .torch_runtime import TorchRuntime

__all__ = ["BackboneRuntime", "ExportedModule", "ModelMetadata", "ONNX_PROVIDERS", "RUNTIME_NAMES", "RuntimeSpec",
           "TorchRuntime", "UnverifiedModelError", "UnverifiedModelWarning", "VerificationRecord", "create_runtime",
           "exported_backbone", "exported_metadata"]


def exported_metadata(spec: RuntimeSpec) -> ModelMetadata | None:
    """The export record of ``spec.model`` (None for the torch runtime), read without starting a session."""
    if spec.name == "torch":
        return None
    path = Path(spec.model)
    if spec.name == "tensorrt" and path.suffix != ".onnx":
        from .tensorrt_engine import EngineRecord
        return ModelMetadata.from_props(EngineRecord.load(path).metadata, f"engine {str(path)!r}")
    from .onnx_runtime import read_metadata
    return read_metadata(path)


def exported_backbone(metadata: ModelMetadata, model_path: str | Path, runtime: str) -> LoadedBackbone:
    """A LoadedBackbone for an exported model: the registry's contract and preprocessing, no torch weights."""
    spec = get_spec(metadata.backbone)
    if spec.contract.patch_size != metadata.patch_size:
        raise ConfigError(f"{model_path}: patch size {metadata.patch_size} but {spec.name} has {spec.contract.patch_size}")
    module = ExportedModule(spec.contract, model_path, runtime)
    return LoadedBackbone(spec, module, WeightsInfo(f"exported-{metadata.weights_kind}", str(model_path),
                                                    metadata.weights_sha256))


def create_runtime(spec: RuntimeSpec | str | dict | None, backbone: LoadedBackbone, device: str = "cpu",
                   dtype: str = "float32") -> BackboneRuntime:
    """Build the runtime ``spec`` names for ``backbone`` (the torch module is only used by the torch runtime).

    An exported model must carry a passing verification record (UnverifiedModelError otherwise) unless
    ``spec.allow_unverified``."""
    spec = RuntimeSpec.coerce(spec)
    if spec.name == "torch":
        return TorchRuntime(backbone.module, device=device, dtype=dtype, compile=spec.compile,
                            cuda_graphs=spec.cuda_graphs)
    if dtype != "float32":
        raise ConfigError(f"the {spec.name} runtime takes its precision from the exported model; keep dtype float32 "
                          "(export with --fp16 for half precision)")
    if spec.name == "onnxruntime":
        from .onnx_runtime import OnnxRuntime
        device_id = _cuda_index(device)
        return OnnxRuntime(spec.model, provider=spec.provider, threads=spec.threads, device_id=device_id,
                           allow_unverified=spec.allow_unverified)
    from .tensorrt_runtime import TensorRTRuntime
    return TensorRTRuntime(spec.model, fp16=spec.fp16, device=device if str(device).startswith("cuda") else "cuda",
                           allow_unverified=spec.allow_unverified)


def _cuda_index(device: str) -> int:
    text = str(device)
    return int(text.split(":", 1)[1]) if text.startswith("cuda:") else 0
