"""Every export checks itself: the ONNX checker, then the exported model against PyTorch on an image pair.

Per output: the largest absolute difference relative to the feature scale (the largest reference magnitude of
that output: <= 1e-3 in fp32, <= 5e-2 in fp16), the cosine similarity of every patch feature vector (the minimum
must reach 0.9999 in fp32, 0.999 in fp16), and the share of identical argmax matches from the first image to the
second (>= 99% in fp32; 97% in fp16, our choice: the issue fixes fp32 only; bf16 and int8 in
:data:`correspondence.runtimes.parity.THRESHOLDS`). The figures are computed by :mod:`correspondence.runtimes.parity`
(shared with the first-use check of a reduced precision on the user's weights). A report that does not pass makes
the command fail; it is printed and saved next to the model, and its record (:meth:`VerificationReport.record`)
is stored in the model so that runtimes refuse a model that did not pass.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from correspondence.errors import SocoError
from correspondence.runtimes.deps import import_onnx
from correspondence.runtimes.metadata import VerificationRecord, _bound, describe_failures, report_path_for
from correspondence.runtimes.parity import THRESHOLDS, Check, cosine_rows, parity_checks, similarities

__all__ = ["THRESHOLDS", "Check", "VerificationError", "VerificationReport", "check_onnx", "cosine_rows",
           "parity_checks", "report_path", "similarities"]

class VerificationError(SocoError):
    """The exported model does not reproduce the PyTorch model within the thresholds."""

    exit_code = 1


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
