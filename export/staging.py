"""Only verified exports reach the requested path.

Every export is written into a private staging folder next to the requested path (same file system, same file
name, so an ONNX file's external-data reference stays valid), verified there, and its verification record is
stored in the file (ONNX ``soco.verification``, engine sidecar ``verification``). Then:

* passed: the model is moved to the requested path, the report saved as ``<model>.verify.json``;
* failed: the model is moved to ``<stem>.rejected<suffix>`` (with its report, ``<stem>.rejected<suffix>.verify.json``)
  so it can be inspected, and any older model at the requested path is removed, because this export was meant to
  replace it. The rejected file still carries its failed record, so a runtime refuses it even if it is renamed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from correspondence.runtimes.metadata import VerificationRecord

from .verify import VerificationReport, report_path

def companions(path: Path) -> tuple[str, ...]:
    """Suffixes of the files that travel with a model: an ONNX file's external data, an engine's JSON sidecar."""
    return (".data",) if path.suffix == ".onnx" else (".json",)


class Staging:
    """``with Staging(out) as staged:`` a path with ``out``'s name in a private folder beside it, removed on exit."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.folder: Path | None = None

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".staging", dir=self.out.parent))
        return self.folder / self.out.name

    def __exit__(self, *exc) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def rejected_path(out: str | Path) -> Path:
    """Where a model that failed verification is kept for inspection: ``model.onnx`` -> ``model.rejected.onnx``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rejected{out.suffix}")


def model_files(path: str | Path) -> list[Path]:
    """The model and the files that belong to it (external data, engine sidecar, verification report)."""
    path = Path(path)
    return [path, *(path.with_name(path.name + suffix) for suffix in companions(path)), report_path(path)]


def remove_model(path: str | Path) -> list[Path]:
    """Delete ``path`` and its companions; returns what was there."""
    removed = []
    for file in model_files(path):
        if file.is_file() or file.is_symlink():
            file.unlink()
            removed.append(file)
    return removed


def move_model(src: Path, dst: Path) -> None:
    """Move a model and its companions. An ONNX file with external data that changes its name gets its data
    file renamed and the references in the graph rewritten (the reference is the data file's name)."""
    data = src.with_name(src.name + ".data")
    if data.is_file() and src.name != dst.name and src.suffix == ".onnx":
        from correspondence.runtimes.deps import import_onnx
        onnx = import_onnx()
        model = onnx.load(str(src), load_external_data=False)
        tensors = list(model.graph.initializer)
        tensors += [a.t for node in model.graph.node for a in node.attribute if a.HasField("t")]
        for tensor in tensors:
            for entry in tensor.external_data:
                if entry.key == "location" and entry.value == data.name:
                    entry.value = dst.name + ".data"
        onnx.save(model, str(src))  # the graph only: the tensors stay external
    for suffix in ("", *companions(src)):
        part = src.with_name(src.name + suffix)
        if part.is_file():
            os.replace(part, dst.with_name(dst.name + suffix))


def finalise(staged: Path, out: Path, report: VerificationReport,
             store_record: Callable[[Path, VerificationRecord], None],
             log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Store the record in the staged model, then move it to ``out`` (passed) or to its rejected name (failed).
    Returns the model's final path and its report's path."""
    out = Path(out)
    final = out if report.passed else rejected_path(out)
    store_record(staged, report.record(report_path(final).name))
    remove_model(final)
    move_model(staged, final)
    report.model = str(final)
    saved = report.save(report_path(final))
    if report.passed:
        remove_model(rejected_path(out))  # an earlier rejected attempt is superseded
    else:
        removed = remove_model(out)
        log(f"[soco] {out} FAILED verification ({report.failures()}): not deployed; the rejected model is kept for "
            f"inspection as {final} with its report {saved}"
            + (f"; removed the older {', '.join(str(p) for p in removed)} it was to replace" if removed else ""))
    return final, saved
