"""``soco export tensorrt``: build an engine from a verified ONNX export, then verify the engine against ONNX
Runtime (CPU) on the same image pair. The build itself lives in :mod:`correspondence.runtimes.tensorrt_engine`,
because a runtime rebuilds stale engines too (and verifies them with :func:`verify_engine`).

As for ONNX exports (:mod:`.staging`), the engine is built in a staging folder and reaches the requested path
only when its verification passes; otherwise it is kept as ``<stem>.rejected.engine`` with its report.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from correspondence.backbones.contract import OutputKind
from correspondence.device import to_numpy
from correspondence.preprocessing import PreprocessSettings, network_batch
from correspondence.runtimes.deps import import_tensorrt
from correspondence.runtimes.metadata import ModelMetadata, VerificationRecord, require_verified
from correspondence.runtimes.onnx_runtime import create_session, read_metadata
from correspondence.runtimes.tensorrt_engine import (DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE_GB, BuildEnvironment,
                                                     EngineRecord, build_engine, sidecar_path, stale_reason)

from .staging import Staging, finalise
from .verify import Check, VerificationReport, parity_checks

if TYPE_CHECKING:
    from correspondence.runtimes.tensorrt_runtime import TensorRTRuntime


@dataclass(frozen=True)
class EngineResult:
    """``path``: the requested path when the engine passed, else its rejected name (refused by the runtime)."""

    path: Path
    record: EngineRecord
    report: VerificationReport
    report_path: Path
    rebuilt: bool


def engine_io_check(record: EngineRecord, metadata: ModelMetadata, reference: Sequence[np.ndarray],
                    candidate: Sequence[np.ndarray]) -> tuple[Check, dict]:
    """The engine serves the ONNX model's interface: the same input and output names (in order), output shapes
    equal to ONNX Runtime's on the same batch, and only finite values. The value is the share of finite values."""
    names_ok = record.input_name == metadata.input_name and tuple(record.output_names) == tuple(metadata.outputs)
    shapes = [tuple(c.shape) for c in candidate]
    shapes_ok = len(candidate) == len(reference) and shapes == [tuple(r.shape) for r in reference]
    total = sum(c.size for c in candidate)
    finite = float(sum(int(np.isfinite(c).sum()) for c in candidate) / total) if total else 0.0
    passed = bool(names_ok and shapes_ok and total and finite == 1.0)
    details = {"input": record.input_name, "outputs": list(record.output_names), "output_shapes": shapes,
               "names_match_onnx": names_ok, "shapes_match_onnx": shapes_ok, "finite_share": finite}
    return Check("engine I/O names and output shapes match the ONNX model, outputs finite", finite, 1.0, passed), \
        details


def verify_engine(runtime: "TensorRTRuntime", onnx_path: str | Path,
                  verify_images: tuple[np.ndarray, np.ndarray] | None = None) -> VerificationReport:
    """Run the engine and ONNX Runtime (CPU) on the ONNX file on the image pair and compare them."""
    from .inputs import image_pair

    onnx_path = Path(onnx_path)
    metadata, record = runtime.metadata, runtime.record
    pair = verify_images or image_pair()
    batch, _ = network_batch(pair, PreprocessSettings(size=metadata.size), metadata.patch_size, metadata.mean,
                             metadata.std)
    batch = batch.contiguous()
    session = create_session(onnx_path, "cpu")
    feed = np.ascontiguousarray(to_numpy(batch, np.float32))
    reference = [np.asarray(o, dtype=np.float32) for o in session.run(list(metadata.outputs),
                                                                      {metadata.input_name: feed})]
    with torch.no_grad():
        candidate = [to_numpy(o, np.float32)
                     for o in runtime.forward(batch, OutputKind(metadata.output_kind), metadata.layers)]
    env = record.environment
    report = VerificationReport(str(runtime.engine_path), f"ONNX Runtime CPU on {onnx_path} ({metadata.precision})",
                                f"TensorRT {env.tensorrt_version} on {env.gpu_name} (sm {env.compute_capability}), "
                                f"fp16={record.fp16}, {record.layers_forced_fp32} normalisation layers in fp32",
                                "fp16" if record.fp16 or metadata.precision == "fp16" else "fp32")
    io_check, io_details = engine_io_check(record, metadata, reference, candidate)
    report.checks.append(io_check)
    report.details["engine_io"] = io_details
    if io_check.passed:
        checks, details = parity_checks(reference, candidate, list(metadata.outputs), report.precision)
        report.checks += checks
        report.details.update(details)
    report.details.update(engine=str(runtime.engine_path), build_seconds=record.build_seconds,
                          max_batch=record.max_batch)
    return report


def build_and_verify(onnx_path: str | Path, out: str | Path, fp16: bool = False, max_batch: int = DEFAULT_MAX_BATCH,
                     workspace_gb: float = DEFAULT_WORKSPACE_GB, force: bool = False,
                     verify_images: tuple[np.ndarray, np.ndarray] | None = None, allow_unverified: bool = False,
                     log: Callable[[str], None] = print) -> EngineResult:
    """Build (unless current and verified) and verify an engine; it reaches ``out`` only when it passes.

    ``allow_unverified``: build from an ONNX file whose verification record is missing or failed (the engine is
    still verified against it)."""
    import_tensorrt()  # MissingDependencyError (exit code 2) with what is missing: package and/or GPU
    from correspondence.runtimes.tensorrt_runtime import TensorRTRuntime

    onnx_path, out = Path(onnx_path), Path(out)
    metadata = read_metadata(onnx_path)
    require_verified(metadata.verification, onnx_path, "ONNX model", allow_unverified,
                     remedy="export it again with `soco export onnx` until it passes")
    reason = "forced" if force else stale_reason(out, onnx_path, fp16, BuildEnvironment.current())
    if reason is None:
        existing = EngineRecord.load(out)
        previous = VerificationRecord.parse(existing.verification)
        if existing.max_batch != max_batch and metadata.batch == "dynamic":
            reason = f"built for max batch {existing.max_batch}, requested {max_batch}"
        elif previous is None or not previous.passed:
            reason = "its last verification did not pass" if previous else "it was never verified"
    with Staging(out) as staged:
        if reason is not None:
            log(f"[soco] building {out} ({reason})")
            build_engine(onnx_path, staged, fp16=fp16, max_batch=max_batch, workspace_gb=workspace_gb,
                         allow_unverified=allow_unverified, log=log)
        else:
            log(f"[soco] {out} is current for this TensorRT version and GPU; not rebuilt (use --force), re-verifying")
            shutil.copy2(out, staged)
            shutil.copy2(sidecar_path(out), sidecar_path(staged))
        runtime = TensorRTRuntime(staged, device="cuda", allow_unverified=allow_unverified, verify=False, log=log)
        report = verify_engine(runtime, onnx_path, verify_images)
        record = runtime.record
        del runtime

        def store(path: Path, verification: VerificationRecord) -> None:
            nonlocal record
            record = replace(record, verification=verification.as_dict())
            record.save(path)

        path, saved = finalise(staged, out, report, store, log)
    return EngineResult(path, record, report, saved, reason is not None)
