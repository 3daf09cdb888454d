"""Every export checks itself: the ONNX checker, then the exported model against PyTorch on an image pair.

Per output: the largest absolute difference relative to the feature scale (the largest reference magnitude of
that output: <= 1e-3 in fp32, <= 5e-2 in fp16), the cosine similarity of every patch feature vector (the minimum
must reach 0.9999 in fp32, 0.999 in fp16), and the share of identical argmax matches from the first image to the
second (>= 99% in fp32; 97% in fp16, our choice: the issue fixes fp32 only). A report that does not pass makes
the command fail; it is printed and saved next to the model, and its record (:meth:`VerificationReport.record`)
is stored in the model so that runtimes refuse a model that did not pass.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from correspondence.device import to_numpy
from correspondence.errors import SocoError
from correspondence.runtimes.deps import import_onnx
from correspondence.runtimes.metadata import VerificationRecord, _bound, describe_failures, report_path_for

# max_relative_error: the largest |reference - candidate| of an output divided by its largest |reference| (the
# feature scale). fp32 exports differ from eager PyTorch by ~1e-6 of the scale (op order, fused kernels); fp16
# rounds every op to 11 significant bits, ~1e-3 of the scale after a ViT's depth. The bounds leave a wide margin
# over both and still fail a model with a localised real error that the per-vector cosine would average away.
THRESHOLDS = {"fp32": {"min_cosine": 0.9999, "argmax_agreement": 0.99, "max_relative_error": 1e-3},
              "fp16": {"min_cosine": 0.999, "argmax_agreement": 0.97, "max_relative_error": 5e-2}}


class VerificationError(SocoError):
    """The exported model does not reproduce the PyTorch model within the thresholds."""

    exit_code = 1


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float | None  # None: reported only
    passed: bool


@dataclass
class VerificationReport:
    model: str
    reference: str  # what the candidate was compared against
    candidate: str  # runtime and provider actually used
    precision: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def as_dict(self) -> dict:
        return {"model": self.model, "passed": self.passed, "reference": self.reference, "candidate": self.candidate,
                "precision": self.precision, "thresholds": THRESHOLDS[self.precision],
                "checks": [asdict(c) for c in self.checks], "notes": self.notes, "details": self.details}

    def text(self) -> str:
        lines = [f"verification of {self.model} ({self.precision}): {'PASSED' if self.passed else 'FAILED'}",
                 f"  reference: {self.reference}", f"  candidate: {self.candidate}"]
        for c in self.checks:
            bound = "" if c.threshold is None else f"  (threshold {_bound(asdict(c))})"
            lines.append(f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.value:.8g}{bound}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        return path

    def record(self, report_name: str) -> VerificationRecord:
        """The compact record stored with the model (pass/fail, what was compared, every check's figure)."""
        return VerificationRecord(self.passed, report_name, self.precision, self.reference, self.candidate,
                                  tuple(asdict(c) for c in self.checks),
                                  time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def failures(self) -> str:
        return describe_failures([asdict(c) for c in self.checks]) or ("no checks ran" if not self.checks else "")

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise VerificationError(f"{self.model} failed verification: {self.failures()}")


def report_path(model: str | Path) -> Path:
    """``<model>.verify.json`` next to the model (the rule the runtimes use to name it in their errors)."""
    return report_path_for(model)


def check_onnx(path: str | Path) -> None:
    """The ONNX checker with full shape inference (by path, so > 2 GB models with external data work)."""
    onnx = import_onnx()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        raise VerificationError(f"ONNX checker rejected {path}: {exc}") from exc


def _as_rows(array: np.ndarray) -> np.ndarray:
    """``(B, C, h, w)`` maps -> ``(B, h*w, C)``; ``(B, N, D)`` point embeddings pass through."""
    if array.ndim == 4:
        return array.reshape(array.shape[0], array.shape[1], -1).transpose(0, 2, 1)
    return array


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    dot = (a * b).sum(-1)
    return dot / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def similarities(features: np.ndarray) -> np.ndarray:
    """Cosine similarities ``(N0, N1)`` of every feature of item 0 to every feature of item 1."""
    a = torch.from_numpy(np.ascontiguousarray(features[0])).double()
    b = torch.from_numpy(np.ascontiguousarray(features[1])).double()
    return to_numpy(torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T)


def parity_checks(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], names: Sequence[str],
                  precision: str, argmax_outputs: Sequence[int] | None = None) -> tuple[list[Check], dict]:
    """Compare two runs of the same model on the same two-item batch.

    ``argmax_outputs``: which outputs are concatenated into the matching descriptor (default: all, as the
    feature extractor concatenates blocks)."""
    limits = THRESHOLDS[precision]
    checks, details = [], {}
    for name, ref, out in zip(names, reference, candidate):
        if ref.shape != out.shape:
            checks.append(Check(f"{name}: shape {tuple(out.shape)} == {tuple(ref.shape)}", 0.0, 1.0, False))
            continue
        error = float(np.abs(ref.astype(np.float64) - out).max())
        scale = float(np.abs(ref).max()) or 1.0
        relative = error / scale
        cos = cosine_rows(_as_rows(ref), _as_rows(out))
        details[name] = {"max_abs_error": error, "max_abs_reference": scale, "relative_error": relative,
                         "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "vectors": int(cos.size)}
        checks.append(Check(f"{name}: max abs error / max |reference| ({scale:.4g})", relative,
                            limits["max_relative_error"], bool(relative <= limits["max_relative_error"])))
        checks.append(Check(f"{name}: min cosine of {cos.size} vectors", float(cos.min()), limits["min_cosine"],
                            bool(cos.min() >= limits["min_cosine"])))
    chosen = list(argmax_outputs) if argmax_outputs is not None else list(range(len(names)))
    ref_desc = np.concatenate([_as_rows(reference[i]) for i in chosen], -1)
    out_desc = np.concatenate([_as_rows(candidate[i]) for i in chosen], -1)
    ref_sim = similarities(ref_desc)
    ref_best, out_best = ref_sim.argmax(1), similarities(out_desc).argmax(1)
    same = ref_best == out_best
    rows = np.arange(len(ref_best))
    margin = ref_sim[rows, ref_best] - ref_sim[rows, out_best]  # how much worse the candidate's choice is
    details["argmax"] = {"matches": int(same.size), "identical": int(same.sum()),
                         "differing_reference_ties": int(((~same) & (margin < 1e-6)).sum()),
                         "largest_reference_margin_of_a_differing_match": float(margin.max()),
                         "outputs": [names[i] for i in chosen]}
    checks.append(Check(f"identical argmax matches image 1 -> 2 ({same.size})", float(same.mean()),
                        limits["argmax_agreement"], bool(same.mean() >= limits["argmax_agreement"])))
    return checks, details
