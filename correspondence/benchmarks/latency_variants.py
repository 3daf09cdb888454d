"""The (runtime, precision) variants of ``soco bench latency``: building each, timing them alternately, and how far
each one's features are from torch fp32 on a real photo pair.

Precisions: ``fp32``; ``bf16`` (torch autocast); ``fp16`` (torch on CUDA, an fp16 ONNX export, TensorRT fp16
kernels); ``auto`` (torch: what :mod:`correspondence.runtimes.precision` picks on this machine, verification
included); ``int8`` (an int8 ONNX export, dynamic quantisation). On a machine shared with other work, timing one
variant after the other lets the load drift between them; :func:`alternating_times` runs one call of each variant
in turn, so every variant sees the same load.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..backbones.registry import LoadedBackbone
from ..device import to_numpy
from ..errors import ConfigError
from ..features import ExtractionSettings
from ..runtimes import create_runtime
from ..runtimes.base import BackboneRuntime, RuntimeSpec
from ..runtimes.parity import cosine_rows, similarities
from ..runtimes.precision import PrecisionChoice, resolve_precision

PRECISION_CHOICES = ("fp32", "bf16", "fp16", "auto", "int8")
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "auto": "auto"}
DTYPE_TAGS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
ONNX_PRECISIONS = ("fp32", "fp16", "int8")
TENSORRT_PRECISIONS = ("fp32", "fp16")
PHOTO_PAIR = ("sddino_cat0.jpg", "sddino_cat1.jpg")  # ../shared/data/images: a real photo pair of one object


class Skip(Exception):
    """This variant cannot run here (the reason goes into the report)."""


@dataclass
class Variant:
    runtime_name: str
    requested: str  # the precision asked for (fp32, bf16, auto, int8, ...)
    runtime: BackboneRuntime
    settings: ExtractionSettings
    choice: PrecisionChoice | None = None  # the torch runtime's precision record

    @property
    def label(self) -> str:
        """``auto`` shows what it resolved to: ``auto (bf16)``."""
        if self.requested == "auto" and self.choice is not None:
            return f"auto ({DTYPE_TAGS[self.choice.dtype]})"
        return self.requested


def check_precisions(precisions) -> tuple[str, ...]:
    unknown = [p for p in precisions if p not in PRECISION_CHOICES]
    if unknown:
        raise ConfigError(f"unknown precision(s) {unknown}; choose from {', '.join(PRECISION_CHOICES)}")
    return tuple(precisions)


def torch_variant(name: str, options: dict, precision: str, loaded: LoadedBackbone, size: int, device: str
                  ) -> Variant:
    """A torch runtime at ``precision`` (``auto`` resolved as the library resolves it)."""
    if precision not in TORCH_DTYPES:
        raise Skip(f"{precision} is an ONNX export precision; the torch runtime runs fp32, bf16, fp16 (CUDA), auto")
    if precision == "fp16" and not str(device).startswith("cuda"):
        raise Skip("torch fp16 needs a CUDA device (on a CPU use bf16)")
    settings = ExtractionSettings(_preprocess(size), dtype=TORCH_DTYPES[precision])
    settings, choice = resolve_precision(settings, loaded, torch.device(device))
    runtime = create_runtime(RuntimeSpec("torch", **options), loaded, device, settings.dtype)
    return Variant(name, precision, runtime, settings, choice)


def exported_variant(name: str, precision: str, loaded: LoadedBackbone, size: int, models: Path,
                     spec_options: dict, device: str) -> Variant:
    """An onnxruntime / tensorrt runtime on a verified export at ``precision``."""
    allowed = ONNX_PRECISIONS if name == "onnxruntime" else TENSORRT_PRECISIONS
    if precision not in allowed:
        raise Skip(f"{name} runs {', '.join(allowed)} exports, not {precision}")
    export_precision = precision if name == "onnxruntime" else "fp32"  # TensorRT picks fp16 kernels itself
    path = export_for(loaded, size, export_precision, models)
    spec = RuntimeSpec(name, str(path), **spec_options, **({"fp16": precision == "fp16"} if name == "tensorrt" else {}))
    return Variant(name, precision, create_runtime(spec, loaded, device), ExtractionSettings(_preprocess(size)))


def export_for(loaded: LoadedBackbone, size: int, precision: str, models: Path) -> Path:
    from .. import plugins
    export_backbone = plugins.load(plugins.EXPORTER_GROUP, "onnx_backbone")
    if export_backbone is None:
        raise Skip("no ONNX exporter is installed (the export/ package of soco_ros: pip install -e .[export])")
    path = models / f"{loaded.spec.name}_{size}_{precision}.onnx"
    result = export_backbone(loaded, size, path, precision=precision, log=lambda message: None)
    result.report.raise_if_failed()
    return path


def _preprocess(size: int):
    from ..preprocessing import PreprocessSettings
    return PreprocessSettings(size=size)


def alternating_times(fns: list[Callable[[int], object]], runs: int, warmup: int,
                      sync: Callable[[], None]) -> list[list[float]]:
    """Seconds of ``runs`` calls of each function, one call of each in turn (after ``warmup`` rounds)."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(warmup + runs):
        for k, fn in enumerate(fns):
            sync()
            start = time.perf_counter()
            fn(i)
            sync()
            if i >= warmup:
                times[k].append(time.perf_counter() - start)
    return times


def photo_pair() -> tuple[list[np.ndarray], str]:
    """The real photo pair from ``../shared/data/images`` when present, else the generated photo-like pair."""
    from PIL import Image

    from ..demo import shared_images_dir
    from ..photo_pair import image_pair
    folder = shared_images_dir()
    if folder is not None and all((folder / name).is_file() for name in PHOTO_PAIR):
        return [np.asarray(Image.open(folder / name).convert("RGB")) for name in PHOTO_PAIR], \
            " / ".join(PHOTO_PAIR) + " (real photos)"
    first, second = image_pair()
    return [first, second], "generated photo-like pair (../shared/data/images not found)"


def pair_batch(loaded: LoadedBackbone, size: int, images: list[np.ndarray], device: str) -> torch.Tensor:
    from ..preprocessing import network_batch
    norm = loaded.spec.preprocessing
    batch, _ = network_batch(images, _preprocess(size), loaded.spec.contract.patch_size, norm.mean, norm.std, device)
    return batch


def features_of(variant: Variant, batch: torch.Tensor) -> np.ndarray:
    """``(2, h*w, C)`` features of the pair through the variant's runtime (one image at a time: batch-1 exports)."""
    outputs = []
    with torch.no_grad():
        for i in range(len(batch)):
            maps = variant.runtime.forward(batch[i:i + 1], variant.settings.kind, variant.settings.layers)
            fmap = torch.cat([m.float() for m in maps], 1)
            outputs.append(to_numpy(fmap, np.float32).reshape(fmap.shape[1], -1).T)
    return np.stack(outputs)


def parity_vs(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Per-patch cosine (min, mean) and the share of identical argmax matches image 1 -> 2, against fp32."""
    cos = cosine_rows(reference, candidate)
    same = similarities(reference).argmax(1) == similarities(candidate).argmax(1)
    return {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "argmax_agreement": float(same.mean()),
            "matches": int(same.size)}
