"""``soco export tensorrt``: build an engine from a verified ONNX export, then verify the engine against ONNX
Runtime (CPU) on the same image pair. The build itself lives in :mod:`correspondence.runtimes.tensorrt_engine`,
because a runtime rebuilds stale engines too."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from correspondence.backbones.contract import OutputKind
from correspondence.preprocessing import PreprocessSettings, preprocess
from correspondence.runtimes.deps import import_tensorrt
from correspondence.runtimes.onnx_runtime import create_session, read_metadata
from correspondence.runtimes.tensorrt_engine import (DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE_GB, EngineRecord,
                                                     build_engine, stale_reason, BuildEnvironment)

from .verify import Check, VerificationReport, parity_checks, report_path


@dataclass(frozen=True)
class EngineResult:
    path: Path
    record: EngineRecord
    report: VerificationReport
    report_path: Path
    rebuilt: bool


def build_and_verify(onnx_path: str | Path, out: str | Path, fp16: bool = False, max_batch: int = DEFAULT_MAX_BATCH,
                     workspace_gb: float = DEFAULT_WORKSPACE_GB, force: bool = False,
                     verify_images: tuple[np.ndarray, np.ndarray] | None = None,
                     log: Callable[[str], None] = print) -> EngineResult:
    import_tensorrt()  # MissingDependencyError (exit code 2) with what is missing: package and/or GPU
    from correspondence.runtimes.tensorrt_runtime import TensorRTRuntime

    from .inputs import image_pair

    onnx_path, out = Path(onnx_path), Path(out)
    metadata = read_metadata(onnx_path)
    reason = "forced" if force else stale_reason(out, onnx_path, fp16, BuildEnvironment.current())
    if reason is not None:
        log(f"[soco] building {out} ({reason})")
        build_engine(onnx_path, out, fp16=fp16, max_batch=max_batch, workspace_gb=workspace_gb, log=log)
    else:
        log(f"[soco] {out} is current for this TensorRT version and GPU; not rebuilt (use --force)")
    runtime = TensorRTRuntime(out, device="cuda")
    record = runtime.record

    pair = verify_images or image_pair()
    arrays = [preprocess(image, PreprocessSettings(size=metadata.size), metadata.patch_size)[0] for image in pair]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    batch = (batch - torch.tensor(metadata.mean).view(1, 3, 1, 1)) / torch.tensor(metadata.std).view(1, 3, 1, 1)
    session = create_session(onnx_path, "cpu")
    reference = [np.asarray(o, dtype=np.float32) for o in session.run(list(metadata.outputs),
                                                                      {metadata.input_name: batch.numpy()})]
    with torch.no_grad():
        candidate = [o.cpu().numpy() for o in runtime.forward(batch, OutputKind(metadata.output_kind), metadata.layers)]
    env = record.environment
    report = VerificationReport(str(out), f"ONNX Runtime CPU on {onnx_path} ({metadata.precision})",
                                f"TensorRT {env.tensorrt_version} on {env.gpu_name} (sm {env.compute_capability}), "
                                f"fp16={record.fp16}, {record.layers_forced_fp32} normalisation layers in fp32",
                                "fp16" if record.fp16 or metadata.precision == "fp16" else "fp32")
    report.checks.append(Check("engine deserialised and ran", 1.0, None, True))
    checks, details = parity_checks(reference, candidate, list(metadata.outputs), report.precision)
    report.checks += checks
    report.details.update(details, engine=str(out), build_seconds=record.build_seconds)
    return EngineResult(out, record, report, report.save(report_path(out)), reason is not None)
