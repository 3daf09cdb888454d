"""What an exported model file promises, read back before it is trusted.

An ONNX file (or a TensorRT engine's JSON sidecar) carries these keys so a runtime can refuse a model that was
exported for another backbone, image size, output kind or layer set, instead of returning plausible-looking but
wrong features. Kept in the core library (no onnx import) because every runtime needs to read it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from ..errors import ConfigError, CorruptCheckpointError

FORMAT = "soco_ros.export/1"
PREFIX = "soco."
INPUT_NAME = "images"


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
    precision: str  # fp32 | fp16 (fp16: LayerNorm computed in fp32, I/O float32)
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
