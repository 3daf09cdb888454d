"""int8 ONNX models (``soco export onnx|head --precision int8``) with ``onnxruntime.quantization``.

A CPU without native bf16 still has int8 dot products (AVX2 ``vpmaddubsw``, AVX-512 VNNI): ONNX Runtime's int8
MatMul kernels run a ViT's linear layers (~95 % of its FLOPs) at 1.6-2x the fp32 rate. Two modes:

* ``dynamic`` (default): weights int8 per output channel, activations quantised per tensor at run time from
  their observed range. Needs no data and adapts to every frame.
* ``static``: activation ranges fixed from calibration images (QDQ format, MatMul inputs only: LayerNorm,
  Softmax and GELU stay fp32, where a ViT's activation outliers live). Calibration images: the generated
  photo-like scenes (``generated``), your demo image, or a folder of photos.

The quantised model is verified against eager fp32 PyTorch like every export, with the ``int8`` thresholds
(:data:`correspondence.runtimes.parity.THRESHOLDS`), and refused when it misses them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from correspondence.errors import ConfigError, InputError, MissingDependencyError
from correspondence.photo_pair import scene

QUANT_MODES = ("dynamic", "static")
PRECISIONS = ("fp32", "fp16", "int8")
OPS = ("MatMul", "Gemm")  # the linear layers; everything else (norms, softmax, GELU) stays fp32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
GENERATED = "generated"


@dataclass(frozen=True)
class Quantization:
    """How an int8 model is made: ``mode`` dynamic | static, and for static the calibration sources (each
    ``generated``, an image file such as the demo, or a folder of images) and at most ``count`` images."""

    mode: str = "dynamic"
    calibration: tuple[str, ...] = (GENERATED,)
    count: int = 8

    def __post_init__(self) -> None:
        if self.mode not in QUANT_MODES:
            raise ConfigError(f"unknown quantization {self.mode!r}; choose one of {', '.join(QUANT_MODES)}")
        if self.count < 1:
            raise ConfigError(f"calibration needs at least one image, got count {self.count}")
        object.__setattr__(self, "calibration", tuple(self.calibration) or (GENERATED,))

    def describe(self) -> dict:
        return {"mode": self.mode, "weights": "int8 per channel",
                "activations": "uint8 per tensor, range at run time" if self.mode == "dynamic"
                else "uint8 per tensor, range from calibration",
                "ops": list(OPS), **({"calibration": list(self.calibration), "count": self.count}
                                     if self.mode == "static" else {})}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown export precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def calibration_images(sources: Sequence[str], count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB images from the sources, in order: ``generated`` photo-like scenes (seeds 1.., not the
    verification pair's seed 0), an image file, or every image in a folder (sorted by name)."""
    images: list[np.ndarray] = []
    for source in sources:
        if source == GENERATED:
            images += [np.asarray(scene(seed, 640)) for seed in range(1, count + 1)]
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InputError(f"calibration folder {source!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            files = [path]
        else:
            raise InputError(f"calibration source {source!r} is neither '{GENERATED}', an image nor a folder")
        for file in files[:count - len(images)]:
            try:
                images.append(np.asarray(Image.open(file).convert("RGB")))
            except OSError as exc:
                raise InputError(f"calibration image {str(file)!r} is not readable: {exc}") from exc
        if len(images) >= count:
            break
    return images[:count]


def _quantization_module():
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise MissingDependencyError(f"int8 export needs onnxruntime.quantization ({exc}); pip install -e .[export]"
                                     ) from exc
    return quantization


class _Feeds:
    """``onnxruntime.quantization.CalibrationDataReader`` over precomputed feed dicts."""

    def __init__(self, feeds: Iterable[dict[str, np.ndarray]]) -> None:
        self._iter = iter(list(feeds))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:  # not needed by MinMax calibration; part of the reader protocol
        pass


def quantize(fp32_model: Path, out: Path, quantization: Quantization,
             calibration_feeds: Callable[[list[np.ndarray]], list[dict[str, np.ndarray]]] | None = None) -> dict:
    """Write the int8 version of ``fp32_model`` to ``out``; returns what was done (stored in the metadata).

    ``calibration_feeds``: images -> the model's input dicts (static mode only)."""
    q = _quantization_module()
    info = quantization.describe()
    if quantization.mode == "dynamic":
        q.quantize_dynamic(str(fp32_model), str(out), weight_type=q.QuantType.QInt8, per_channel=True,
                           op_types_to_quantize=list(OPS))
        return info
    if calibration_feeds is None:
        raise ConfigError("static quantization needs calibration inputs for this model")
    images = calibration_images(quantization.calibration, quantization.count)
    reader = _Feeds(calibration_feeds(images))
    q.quantize_static(str(fp32_model), str(out), reader, quant_format=q.QuantFormat.QDQ, per_channel=True,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      op_types_to_quantize=list(OPS))
    info["calibration_images"] = len(images)
    return info
