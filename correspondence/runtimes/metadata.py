"""What an exported model file promises, read back before it is trusted.

An ONNX file (or a TensorRT engine's JSON sidecar) carries these keys so a runtime can refuse a model that was
exported for another backbone, image size, output kind or layer set, instead of returning plausible-looking but
wrong features. Kept in the core library (no onnx import) because every runtime needs to read it.

It also carries the **verification record** (``soco.verification``): whether the export reproduced PyTorch
within the thresholds, with the figures. Only verified exports deploy: a runtime refuses a model whose record is
missing or failed (:func:`require_verified`) unless the caller passes ``allow_unverified``.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, CorruptCheckpointError

FORMAT = "soco_ros.export/1"
PREFIX = "soco."
INPUT_NAME = "images"
VERIFICATION_KEY = PREFIX + "verification"  # JSON record of the export's verification, see VerificationRecord
HOW_TO_ALLOW = ("to run it anyway, pass allow_unverified=True (RuntimeSpec / runtime={..., 'allow_unverified': True}), "
                "--allow-unverified on the command line, or the ROS parameter runtime_allow_unverified:=true")


class UnverifiedModelError(ConfigError):
    """An exported model (or engine) without a passing verification record; refused unless ``allow_unverified``."""

    exit_code = 1


class UnverifiedModelWarning(UserWarning):
    """An unverified model was loaded because the caller passed ``allow_unverified``."""


def report_path_for(model: str | Path) -> Path:
    """Where the full verification report of ``model`` is saved: ``<model>.verify.json`` next to it."""
    model = Path(model)
    return model.with_name(model.name + ".verify.json")


def _bound(check: Mapping[str, Any]) -> str:
    """``<= t`` for error-type checks, ``>= t`` otherwise (how the threshold is read)."""
    threshold = check.get("threshold")
    if threshold is None:
        return "reported only"
    return f"{'<=' if 'error' in str(check.get('name', '')) else '>='} {threshold:g}"


def describe_failures(checks: Sequence[Mapping[str, Any]]) -> str:
    """``"name value (needs >= t), ..."`` for every failed check."""
    parts = []
    for check in checks:
        if not check.get("passed"):
            value = check.get("value")
            shown = f"{value:.6g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
            needs = "" if check.get("threshold") is None else f" (needs {_bound(check)})"
            parts.append(f"{check.get('name')} {shown}{needs}")
    return ", ".join(parts)


@dataclass(frozen=True)
class VerificationRecord:
    """What an export's verification found, stored with the model (``soco.verification`` in an ONNX file's
    metadata, ``verification`` in a TensorRT engine's sidecar). ``report``: file name of the full report, next to
    the model. ``checks``: each ``{name, value, threshold, passed}``."""

    passed: bool
    report: str = ""
    precision: str = ""
    reference: str = ""
    candidate: str = ""
    checks: tuple[dict, ...] = ()
    verified_at: str = ""

    def as_dict(self) -> dict:
        record = asdict(self)
        record["checks"] = [_finite(dict(c)) for c in self.checks]
        return record

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), allow_nan=False)

    @property
    def failures(self) -> str:
        return describe_failures(self.checks) or ("no checks were run" if not self.checks else
                                                  "the record does not say it passed")

    @classmethod
    def parse(cls, value: "str | Mapping[str, Any] | VerificationRecord | None") -> "VerificationRecord | None":
        """The record from its JSON text or dict; None when absent. It passes only when it says ``passed: true``
        and lists at least one check, every one passed; a record that cannot be read counts as failed."""
        if value is None or value == "" or value == {}:
            return None
        if isinstance(value, VerificationRecord):
            return value
        try:
            data = json.loads(value) if isinstance(value, str) else dict(value)
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            known["checks"] = tuple(dict(c) for c in known.get("checks", ()))
            known["passed"] = (data["passed"] is True and bool(known["checks"])
                               and all(c.get("passed") is True for c in known["checks"]))
            return cls(**known)
        except (TypeError, ValueError, KeyError) as exc:
            return cls(False, checks=({"name": f"readable verification record ({exc})", "value": 0.0,
                                       "threshold": 1.0, "passed": False},))


def _finite(check: dict) -> dict:
    """JSON has no NaN: a non-finite figure is stored as its string ('nan', 'inf')."""
    value = check.get("value")
    if isinstance(value, float) and not math.isfinite(value):
        check["value"] = str(value)
    return check


def verification_summary(record: VerificationRecord | None, allow_unverified: bool) -> dict:
    """What a runtime's ``describe()`` reports about the model's verification."""
    return {"passed": None if record is None else record.passed, "report": "" if record is None else record.report,
            "allow_unverified": bool(allow_unverified)}


def require_verified(record: "VerificationRecord | str | Mapping[str, Any] | None", model: str | Path, what: str,
                     allow_unverified: bool = False, remedy: str = "", missing: str = "") -> VerificationRecord | None:
    """The model's record when it passed. Otherwise raise :class:`UnverifiedModelError` naming the model, what
    failed and the report file, or, with ``allow_unverified``, warn (:class:`UnverifiedModelWarning`) and return
    the record (None when there is none) so the caller can report it. ``remedy``: how to get a verified model;
    ``missing``: why a record can be absent (default: the ONNX wording)."""
    record = VerificationRecord.parse(record)
    if record is not None and record.passed:
        return record
    model = Path(model)
    report = model.with_name(record.report) if record is not None and record.report else report_path_for(model)
    if record is None:
        problem = "has no verification record (" + (missing or f"{VERIFICATION_KEY} is missing from its metadata: it "
                                                     "was not exported by this version of `soco export`, or its "
                                                     "metadata was rewritten") + ")"
        see = f"the verification report would be {str(report)!r}" + ("" if report.is_file() else " (not present)")
    else:
        problem = f"FAILED verification: {record.failures}"
        see = f"see the verification report {str(report)!r}"
    message = (f"{what} {str(model)!r} {problem}; {see}. Only verified exports deploy: "
               f"{remedy or 're-export it with `soco export` until it passes'}, or {HOW_TO_ALLOW}")
    if not allow_unverified:
        raise UnverifiedModelError(message)
    warnings.warn(f"allow_unverified: loading {what} {str(model)!r} although it {problem}; {see}",
                  UnverifiedModelWarning, stacklevel=3)
    return record


def output_names(kind: str, layers: Sequence[int]) -> tuple[str, ...]:
    """``features`` for single-map kinds; ``block_<L>`` per resolved block index for ``blocks``."""
    return tuple(f"block_{layer}" for layer in layers) if kind == "blocks" else ("features",)


@dataclass(frozen=True)
class ModelMetadata:
    """The backbone export record (every value is stored as a string under ``soco.<key>``)."""

    backbone: str
    size: int  # square input side in px (a multiple of patch_size)
    patch_size: int
    feature_dim: int  # channels per output map
    output_kind: str  # OutputKind value
    layers: tuple[int, ...]  # resolved block indices (blocks kind) or (num_blocks - 1,)
    outputs: tuple[str, ...]
    precision: str  # fp32 | fp16 | int8 (fp16: LayerNorm computed in fp32; int8: quantised MatMuls; I/O float32)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_kind: str  # pretrained | random | weight-free
    weights_sha256: str  # the weights file hash (pretrained) or the state-dict hash (random)
    batch: str = "dynamic"  # "dynamic" or a fixed batch size
    input_name: str = INPUT_NAME
    opset: int = 17
    model: str = "backbone"
    extra: dict = field(default_factory=dict)

    @property
    def grid(self) -> int:
        return self.size // self.patch_size

    @property
    def verification(self) -> VerificationRecord | None:
        """The export's verification record (``soco.verification``), None when the file has none."""
        return VerificationRecord.parse(self.extra.get(VERIFICATION_KEY[len(PREFIX):]))

    def to_props(self) -> dict[str, str]:
        record = asdict(self)
        extra = record.pop("extra")
        props = {"format": FORMAT}
        for key, value in {**record, **extra}.items():
            props[key] = value if isinstance(value, str) else json.dumps(value)
        props["preprocessing"] = json.dumps({
            "input": f"{self.input_name}: float32 NCHW, RGB, {self.size}x{self.size}",
            "pixels": "x / 255, then (x - mean) / std per channel", "mean": list(self.mean), "std": list(self.std)})
        props["output_layout"] = "float32 (B, C, size/patch, size/patch): one C-vector per patch, row-major grid"
        return {PREFIX + key: value for key, value in props.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> "ModelMetadata":
        raw = {key[len(PREFIX):]: value for key, value in props.items() if key.startswith(PREFIX)}
        if raw.get("format") != FORMAT:
            raise CorruptCheckpointError(
                f"{source} has no soco_ros export metadata (format {raw.get('format')!r}, expected {FORMAT!r}); "
                "export it with `soco export onnx` so its backbone, size and outputs can be checked")
        if raw.get("model", "backbone") != "backbone":
            raise ConfigError(f"{source} is a {raw.get('model')!r} export, not a backbone")
        try:
            known = {name for name in cls.__dataclass_fields__ if name != "extra"}
            values = {}
            for name in known:
                if name in raw:
                    text = raw[name]
                    values[name] = text if name in ("backbone", "output_kind", "precision", "weights_kind",
                                                    "weights_sha256", "batch", "input_name", "model") else json.loads(text)
            for name in ("layers", "outputs", "mean", "std"):
                values[name] = tuple(values[name])
            extra = {k: v for k, v in raw.items() if k not in known and k not in ("format", "preprocessing",
                                                                                  "output_layout")}
            return cls(**values, extra=extra)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptCheckpointError(f"{source}: unreadable soco_ros export metadata ({exc})") from exc

    def check(self, backbone: str | None = None, size: int | None = None, kind: str | None = None,
              layers: Sequence[int] | None = None, source: str = "model") -> None:
        """Raise ConfigError naming every field where this export differs from what the caller asked for."""
        wrong = []
        if backbone is not None and backbone != self.backbone:
            wrong.append(f"backbone {self.backbone!r} (requested {backbone!r})")
        if size is not None and size != self.size:
            wrong.append(f"input size {self.size} px (requested {size} px)")
        if kind is not None and kind != self.output_kind:
            wrong.append(f"output kind {self.output_kind!r} (requested {kind!r})")
        if layers is not None and tuple(layers) != tuple(self.layers):
            wrong.append(f"layers {list(self.layers)} (requested {list(layers)})")
        if wrong:
            raise ConfigError(f"{source} was exported with " + ", ".join(wrong) +
                              "; re-export it with matching settings or change the request")
