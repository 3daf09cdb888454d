"""Building TensorRT engines from the exported ONNX files, and knowing when one must be rebuilt.

An engine is only valid for the TensorRT version and the GPU it was built on, so every engine has a JSON
sidecar (``model.engine.json``) recording both plus the ONNX file's hash, the export metadata (with the ONNX
file's verification record), the build settings (fp16, max batch, workspace) and the engine's own verification
record. A runtime that finds different versions rebuilds the engine from the ONNX file with the recorded build
settings (or says how to). Engines are only built from ONNX files that passed their verification, unless the
caller passes ``allow_unverified``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, InputError
from ..hashing import file_sha256
from .deps import import_tensorrt
from .metadata import require_verified

DEFAULT_MAX_BATCH = 8
DEFAULT_WORKSPACE_GB = 4.0


def sidecar_path(engine: str | Path) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def default_engine_path(onnx_path: str | Path, fp16: bool) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{'fp16' if fp16 else 'fp32'}.engine")


# Compute capabilities with full-rate fp16 arithmetic below Volta: Tegra X1 (5.3), P100 (6.0), Tegra X2 (6.2).
# Every architecture from Volta (7.0) on has it; consumer Pascal (6.1) runs fp16 at 1/64 of the fp32 rate.
_FAST_FP16_BEFORE_VOLTA = {(5, 3), (6, 0), (6, 2)}


def has_fast_fp16(compute_capability: str) -> bool:
    """Whether a GPU of this compute capability (``"8.6"``) has full-rate fp16 arithmetic. Replaces TensorRT's
    deprecated ``Builder.platform_has_fast_fp16``, which TensorRT 10 no longer maintains."""
    try:
        major, minor = (int(part) for part in str(compute_capability).split(".")[:2])
    except ValueError:
        return False
    return major >= 7 or (major, minor) in _FAST_FP16_BEFORE_VOLTA


@dataclass(frozen=True)
class BuildEnvironment:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    @classmethod
    def current(cls) -> "BuildEnvironment":
        trt = import_tensorrt()
        import torch
        major, minor = torch.cuda.get_device_capability()
        return cls(trt.__version__, torch.cuda.get_device_name(), f"{major}.{minor}")


@dataclass(frozen=True)
class EngineRecord:
    """The sidecar of one engine."""

    environment: BuildEnvironment
    onnx_path: str
    onnx_sha256: str
    fp16: bool
    max_batch: int
    input_name: str
    output_names: tuple[str, ...]
    metadata: dict = field(default_factory=dict)  # the ONNX export metadata (soco.* keys, its verification record)
    layers_forced_fp32: int = 0
    build_seconds: float = 0.0
    workspace_gb: float = DEFAULT_WORKSPACE_GB
    verification: dict = field(default_factory=dict)  # the engine's own VerificationRecord; {} until verified

    def save(self, engine: str | Path) -> Path:
        path = sidecar_path(engine)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, engine: str | Path) -> "EngineRecord":
        path = sidecar_path(engine)
        if not path.is_file():
            raise InputError(f"TensorRT engine {str(engine)!r} has no sidecar {path.name}; rebuild it with "
                             "`soco export tensorrt` so its TensorRT/GPU versions are known")
        data = json.loads(path.read_text(encoding="utf-8"))
        data["environment"] = BuildEnvironment(**data["environment"])
        data["output_names"] = tuple(data["output_names"])
        return cls(**data)


def stale_reason(engine: str | Path, onnx_path: str | Path | None, fp16: bool | None,
                 env: BuildEnvironment) -> str | None:
    """Why ``engine`` cannot be used as is (None when it can)."""
    engine = Path(engine)
    if not engine.is_file():
        return "no engine built yet"
    try:
        record = EngineRecord.load(engine)
    except (InputError, KeyError, TypeError, ValueError) as exc:
        return f"unreadable sidecar ({exc})"
    if record.environment != env:
        return f"built with {record.environment}, this machine is {env}"
    if fp16 is not None and record.fp16 != fp16:
        return f"built with fp16={record.fp16}, requested fp16={fp16}"
    if onnx_path is not None and Path(onnx_path).is_file() and file_sha256(onnx_path) != record.onnx_sha256:
        return "the ONNX file changed since the engine was built"
    return None


def build_engine(onnx_path: str | Path, engine_path: str | Path, fp16: bool = False,
                 max_batch: int = DEFAULT_MAX_BATCH, workspace_gb: float = DEFAULT_WORKSPACE_GB,
                 allow_unverified: bool = False, log: Callable[[str], None] = print) -> EngineRecord:
    """Parse the ONNX file, build and serialise an engine (fp16 kernels with normalisation layers held in fp32).
    The ONNX file must carry a passing verification record (UnverifiedModelError otherwise, before any build)
    unless ``allow_unverified``. The new engine's record has no verification of its own yet."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise InputError(f"ONNX model {str(onnx_path)!r} does not exist")
    from .onnx_runtime import read_metadata
    metadata = read_metadata(onnx_path)
    require_verified(metadata.verification, onnx_path, "ONNX model", allow_unverified,
                     remedy="export it again with `soco export onnx` until it passes, then build the engine")
    trt = import_tensorrt()
    env = BuildEnvironment.current()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"TensorRT cannot parse {str(onnx_path)!r}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    forced = 0
    if not fp16 and hasattr(trt.BuilderFlag, "TF32"):
        # TensorRT computes "fp32" matmuls in TF32 (10-bit mantissa) by default on Ampere and later; an fp32
        # engine is verified against fp32 thresholds, so it computes in fp32 (use fp16 for speed).
        config.clear_flag(trt.BuilderFlag.TF32)
    if fp16:
        if not has_fast_fp16(env.compute_capability):
            log(f"[soco] warning: {env.gpu_name} (compute capability {env.compute_capability}) has no full-rate fp16 "
                "arithmetic; an fp16 engine will gain little")
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if layer.type == trt.LayerType.NORMALIZATION:  # ONNX LayerNormalization (opset >= 17) is one layer
                layer.precision = trt.float32
                for out in range(layer.num_outputs):
                    layer.set_output_type(out, trt.float32)
                forced += 1
        if forced == 0:
            log("[soco] warning: no normalisation layer found to keep in fp32 (was the ONNX exported at opset >= 17?)")
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    if shape[0] == -1:
        profile = builder.create_optimization_profile()
        rest = shape[1:]
        profile.set_shape(tensor.name, (1, *rest), (1, *rest), (max_batch, *rest))
        config.add_optimization_profile(profile)
    else:
        max_batch = shape[0]
    log(f"[soco] building TensorRT {env.tensorrt_version} engine for {env.gpu_name} (sm {env.compute_capability}), "
        f"fp16={fp16}, max batch {max_batch}, {forced} normalisation layers kept in fp32 ...")
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(f"TensorRT failed to build an engine from {str(onnx_path)!r} (see the log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    outputs = tuple(network.get_output(i).name for i in range(network.num_outputs))
    record = EngineRecord(env, str(onnx_path.resolve()), file_sha256(onnx_path), fp16, int(max_batch), tensor.name,
                          outputs, metadata.to_props(), forced, time.perf_counter() - start, float(workspace_gb))
    record.save(engine_path)
    return record


def _recorded(engine_path: Path) -> EngineRecord | None:
    try:
        return EngineRecord.load(engine_path) if engine_path.is_file() else None
    except (InputError, KeyError, TypeError, ValueError):
        return None


def ensure_engine(onnx_path: str | Path | None, engine_path: str | Path, fp16: bool | None = None,
                  max_batch: int | None = None, workspace_gb: float | None = None, allow_unverified: bool = False,
                  log: Callable[[str], None] = print) -> EngineRecord:
    """The engine's record, rebuilding it first when it is missing or stale and the ONNX file is at hand.

    A rebuild keeps the engine's recorded build settings (fp16, max batch, workspace) for every one the caller
    leaves at None; without a readable record the defaults apply (fp32, batch 8, 4 GB)."""
    env = BuildEnvironment.current()
    engine_path = Path(engine_path)
    previous = _recorded(engine_path)
    if onnx_path is None and previous is not None:
        onnx_path = previous.onnx_path
    reason = stale_reason(engine_path, onnx_path, fp16, env)
    if reason is None:
        return EngineRecord.load(engine_path)
    if onnx_path is None or not Path(onnx_path).is_file():
        raise ConfigError(f"TensorRT engine {str(engine_path)!r} cannot be used ({reason}) and its ONNX file "
                          f"{'is unknown' if onnx_path is None else repr(str(onnx_path)) + ' is not available'} to "
                          "rebuild it: run `soco export tensorrt --onnx MODEL.onnx --out ENGINE`")
    settings = {"fp16": fp16 if fp16 is not None else (previous.fp16 if previous else False),
                "max_batch": max_batch if max_batch is not None else (previous.max_batch if previous
                                                                       else DEFAULT_MAX_BATCH),
                "workspace_gb": workspace_gb if workspace_gb is not None else (previous.workspace_gb if previous
                                                                                else DEFAULT_WORKSPACE_GB)}
    log(f"[soco] (re)building {engine_path}: {reason}; fp16={settings['fp16']}, max batch {settings['max_batch']}, "
        f"workspace {settings['workspace_gb']:g} GB{' (as recorded)' if previous else ''}")
    return build_engine(onnx_path, engine_path, allow_unverified=allow_unverified, log=log, **settings)
