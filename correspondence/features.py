"""Dense feature extraction: images -> :class:`FeatureMap`, batched, cached, with exact geometry.

A FeatureMap carries everything needed to go from a pixel in the *original* image to a descriptor and from a
matched cell back to an original pixel, so callers never handle padding, resizing or grid conventions.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .backbones.contract import OutputKind
from .backbones.registry import LoadedBackbone
from .coords import Convention, cell_to_pixel, grid_to_normalised, grid_to_pixel, pixel_to_grid
from .device import resolve_device, synchronize, to_numpy
from .errors import ConfigError, InputError
from .preprocessing import (ImageGeometry, PreprocessSettings, effective_size, mask_to_processed, network_batch,
                            normalise_batch, preprocess_on_device, to_rgb_array)
from .runtimes.base import BackboneRuntime
from .runtimes.precision import AUTO, PrecisionChoice, resolve_precision

DTYPE_CHOICES = ("float32", "float16", "bfloat16", AUTO)


@dataclass(frozen=True)
class ExtractionSettings:
    """Everything that changes the features; recorded with every result."""

    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    kind: OutputKind = OutputKind.LAST_RAW
    layers: tuple[int, ...] = (-1,)
    convention: Convention = Convention.PATCH_CENTER
    # float32 | float16 (CUDA) | bfloat16 | auto (the extractor resolves it: runtimes/precision.py)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OutputKind(self.kind))
        object.__setattr__(self, "convention", Convention(self.convention))
        object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
        if self.dtype not in DTYPE_CHOICES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {self.dtype!r}")

    def as_dict(self) -> dict:
        return {"preprocess": self.preprocess.as_dict(), "kind": self.kind.value, "layers": list(self.layers),
                "convention": self.convention.value, "dtype": self.dtype}


@dataclass(frozen=True, eq=False)
class FeatureMap:
    """Per-patch features ``(C, h, w)`` of one image plus the geometry to map pixels to cells and back."""

    features: torch.Tensor
    geometry: ImageGeometry
    patch_size: int
    convention: Convention
    block_dims: tuple[int, ...] = ()

    @property
    def grid_wh(self) -> tuple[int, int]:
        return int(self.features.shape[2]), int(self.features.shape[1])

    @property
    def processed_wh(self) -> tuple[int, int]:
        return self.geometry.processed_width, self.geometry.processed_height

    @property
    def dim(self) -> int:
        return int(self.features.shape[0])

    def flat(self) -> torch.Tensor:
        """``(h*w, C)`` in row-major cell order (index = row * w + col)."""
        return self.features.flatten(1).T

    def blocks(self) -> list[torch.Tensor]:
        """Split a ``blocks`` feature map back into its per-block ``(C_i, h, w)`` tensors."""
        return list(torch.split(self.features, list(self.block_dims or (self.dim,)), dim=0))

    def check_points(self, xy: np.ndarray, what: str = "point") -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        w, h = self.geometry.original_width, self.geometry.original_height
        bad = ~np.isfinite(xy).all(1) | (xy[:, 0] < 0) | (xy[:, 0] >= w) | (xy[:, 1] < 0) | (xy[:, 1] >= h)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{what} {i} at {xy[i].tolist()} is outside the image ({w} x {h})")
        return xy

    def original_to_grid(self, xy: np.ndarray) -> np.ndarray:
        if self.convention is Convention.SOCO:  # the reference truncates in the original image first
            xy = np.trunc(np.asarray(xy, dtype=np.float64))
        return pixel_to_grid(self.geometry.to_processed(xy), self.grid_wh, self.processed_wh, self.convention)

    def grid_to_original(self, uv: np.ndarray) -> np.ndarray:
        return self.geometry.to_original(grid_to_pixel(uv, self.grid_wh, self.processed_wh, self.convention))

    def cell_to_original(self, uv: np.ndarray) -> np.ndarray:
        """Original-image pixel a predicted (possibly fractional) cell stands for."""
        return self.geometry.to_original(cell_to_pixel(uv, self.grid_wh, self.processed_wh, self.convention))

    def index_to_uv(self, index: np.ndarray | torch.Tensor) -> np.ndarray:
        index = to_numpy(index, np.int64)
        return np.stack([index % self.grid_wh[0], index // self.grid_wh[0]], -1).astype(np.float64)

    def sample(self, xy: np.ndarray) -> torch.Tensor:
        """Bilinearly sampled descriptors ``(N, C)`` at original-image pixels."""
        xy = self.check_points(xy)
        uv = self.original_to_grid(xy)
        grid = torch.from_numpy(grid_to_normalised(uv, self.grid_wh)).to(self.features.device, torch.float32)  # fp32 always
        sampled = F.grid_sample(self.features[None].float(), grid[None, None].float(), mode="bilinear",
                                align_corners=True, padding_mode="border")
        return sampled[0, :, 0].T

    def image_cells(self, min_fraction: float = 0.5) -> torch.Tensor:
        """``(h, w)`` bool on the features' device: the cells that show the image, not its padding.

        A cell counts when at least ``min_fraction`` of it along each axis lies inside the image (0.5: its centre
        is inside); if the image is thinner than that everywhere, the best-covered cells count. Built from the
        geometry's scalars with device arithmetic only: no host synchronisation, so it can run inside a captured
        CUDA graph."""
        g = self.geometry
        w, h = self.grid_wh
        device = self.features.device

        def axis(n: int, processed: int, offset: float, scale: float, original: int) -> torch.Tensor:
            step = processed / n
            start, end = offset * scale, (offset + original) * scale
            index = torch.arange(n, device=device, dtype=torch.float32)
            covered = ((index + 1) * step).clamp(max=end) - (index * step).clamp(min=start)
            fraction = (covered / step).clamp(0.0, 1.0)
            return fraction >= fraction.max().clamp(max=min_fraction)

        cols = axis(w, g.processed_width, g.offset_x, g.scale_x, g.original_width)
        rows = axis(h, g.processed_height, g.offset_y, g.scale_y, g.original_height)
        return rows[:, None] & cols[None, :]

    def cell_size_px(self) -> tuple[float, float]:
        """How many original pixels one cell spans (x, y)."""
        w, h = self.grid_wh
        return (self.geometry.processed_width / w / self.geometry.scale_x,
                self.geometry.processed_height / h / self.geometry.scale_y)

    def cell_mask(self, mask: np.ndarray, min_fraction: float = 0.25) -> torch.Tensor:
        """Which cells an original-size object mask covers (by area fraction; the best-covered cells if none
        reaches ``min_fraction``). Raises InputError for an empty mask."""
        processed = mask_to_processed(mask, self.geometry)
        if not processed.any():
            raise InputError("the object mask is empty (or vanishes at this image size)")
        w, h = self.grid_wh
        p = self.processed_wh[0] // w
        coverage = F.avg_pool2d(torch.from_numpy(processed.astype(np.float32))[None, None], p)[0, 0][:h, :w]  # CPU
        valid = coverage >= min_fraction
        if not valid.any():
            valid = coverage >= coverage.max()
        return valid.to(self.features.device)


_HOST_POOL: ThreadPoolExecutor | None = None


def host_pool() -> ThreadPoolExecutor:
    """Threads for host-side image preparation (decoding, PIL resizing), shared by every extractor."""
    global _HOST_POOL
    if _HOST_POOL is None:
        _HOST_POOL = ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 1))),
                                        thread_name_prefix="soco-prep")
    return _HOST_POOL


def image_key(rgb: np.ndarray) -> str:
    return hashlib.sha1(rgb.tobytes() + str(rgb.shape).encode()).hexdigest()


class FeatureExtractor:
    """Turns images into FeatureMaps with one backbone and one set of settings.

    Keeps an LRU cache keyed by (image content, backbone and weights, settings), so an image used by many
    pairs or frames is encoded once per run.
    """

    def __init__(self, backbone: LoadedBackbone, settings: ExtractionSettings | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 8, cache_size: int = 64,
                 runtime: BackboneRuntime | None = None, device_preprocess: bool | None = None,
                 precision: PrecisionChoice | None = None) -> None:
        """``runtime``: what runs the network (see :mod:`correspondence.runtimes`); default eager torch.
        ``settings.dtype="auto"`` is resolved here (:func:`~correspondence.runtimes.precision.resolve_precision`)
        when the extractor makes its own runtime; ``precision``: the record of a choice made by the caller who built
        ``runtime`` (``Matcher.create``), reported by :meth:`describe`.
        ``device_preprocess``: pad, resize and normalise on the device (only the uint8 frame is uploaded); default:
        on with a CUDA-graph runtime, else PIL on the host, the reference the benchmarks reproduce (the two agree to
        one grey level per pixel, see :func:`preprocess_on_device`)."""
        self.backbone = backbone
        self.settings = settings or ExtractionSettings(
            preprocess=PreprocessSettings(size=backbone.spec.preprocessing.default_size))
        self.device = resolve_device(device)
        backbone.spec.contract.check_kind(self.settings.kind)
        if self.settings.dtype == AUTO and runtime is not None and runtime.name == "torch":
            raise ConfigError("dtype 'auto' must be resolved before the torch runtime is built: pass no runtime, or "
                              "resolve it with correspondence.runtimes.precision.resolve_precision")
        self.settings, resolved = resolve_precision(self.settings, backbone, self.device,
                                                    runtime.name if runtime is not None else "torch")
        self.precision = precision or resolved
        if runtime is None:
            from .runtimes.torch_runtime import TorchRuntime
            runtime = TorchRuntime(backbone.module, self.device, self.settings.dtype)
        contract = backbone.spec.contract
        layers = contract.check_layers(self.settings.layers) if self.settings.kind is OutputKind.BLOCKS else ()
        side = effective_size(self.settings.preprocess.size, contract.patch_size, self.settings.preprocess.size_policy)
        runtime.check(backbone.spec.name, side, self.settings.kind, layers)
        self.runtime = runtime
        if device_preprocess is None:
            device_preprocess = bool(runtime.cuda_graphs)
        self.device_preprocess = bool(device_preprocess)
        runtime.prepare((side, side), self.settings.kind, self.settings.layers)
        self.batch_size = max(1, int(batch_size))
        self.cache_size = cache_size
        self._cache: OrderedDict[str, FeatureMap] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        self.module = backbone.module
        key = {"backbone": backbone.identity, **self.settings.as_dict()}
        if runtime.name != "torch":  # torch keeps the historical key, so on-disk feature caches stay valid
            key["runtime"] = runtime.describe()
        self._settings_key = json.dumps(key, sort_keys=True)

    def describe(self) -> dict:
        """Settings record for results: backbone, weights, preprocessing, effective size and grid."""
        contract = self.backbone.spec.contract
        size = self.settings.preprocess
        side = effective_size(size.size, contract.patch_size, size.size_policy)
        return {"backbone": self.backbone.describe(), "extraction": self.settings.as_dict(),
                "effective_image_size": side, "grid": side // contract.patch_size, "device": str(self.device),
                "runtime": self.runtime.describe(), "precision": self.precision.as_dict()}

    def _key(self, rgb: np.ndarray) -> str:
        return image_key(rgb) + "|" + self._settings_key

    def __call__(self, image: Image.Image | np.ndarray) -> FeatureMap:
        return self.extract_batch([image])[0]

    extract = __call__

    def extract_batch(self, images: Sequence[Image.Image | np.ndarray] | Iterable, cache: bool = True
                      ) -> list[FeatureMap]:
        """FeatureMaps of ``images`` in order. ``cache=False``: a frame seen once (a live camera image) is neither
        hashed nor remembered, which keeps a full-HD frame's hashing off the per-frame budget."""
        rgbs = [to_rgb_array(image) for image in images]
        if not cache:
            self.cache_misses += len(rgbs)  # every image is encoded: the counters still say how many encodes ran
            out: list[FeatureMap] = []
            for start in range(0, len(rgbs), self.batch_size):
                out += self._encode(rgbs[start:start + self.batch_size])
            return out
        keys = [self._key(rgb) for rgb in rgbs]
        fresh: dict[str, FeatureMap] = {}
        todo_unique = list(dict.fromkeys(key for key in keys if key not in self._cache))
        first_index = {key: i for i, key in reversed(list(enumerate(keys)))}
        self.cache_hits += len(rgbs) - len(todo_unique)
        self.cache_misses += len(todo_unique)
        for start in range(0, len(todo_unique), self.batch_size):
            chunk = [first_index[key] for key in todo_unique[start:start + self.batch_size]]
            for index, fmap in zip(chunk, self._encode([rgbs[i] for i in chunk])):
                fresh[keys[index]] = fmap
        results = []
        for key in keys:
            if key in self._cache:
                self._cache.move_to_end(key)
                results.append(self._cache[key])
            else:
                results.append(fresh[key])
        for key, fmap in fresh.items():
            self._remember(key, fmap)
        return results

    @torch.no_grad()
    def warm_up(self, batch: int | None = None) -> float:
        """One untimed network pass on a full batch at the configured size, so that the lazy work of a first call
        (library handles, kernel selection, compilation) is not counted as encoding. Returns its seconds."""
        contract = self.backbone.spec.contract
        side = effective_size(self.settings.preprocess.size, contract.patch_size, self.settings.preprocess.size_policy)
        start = time.perf_counter()
        images = torch.zeros((batch or self.batch_size, 3, side, side), device=self.device)
        self.runtime.forward(images, self.settings.kind, self.settings.layers)
        synchronize(self.device)
        return time.perf_counter() - start

    def _remember(self, key: str, fmap: FeatureMap) -> None:
        if self.cache_size <= 0:
            return
        self._cache[key] = fmap
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()  # not inference_mode: trainable heads on top need ordinary tensors
    def _encode(self, rgbs: list[np.ndarray]) -> list[FeatureMap]:
        contract = self.backbone.spec.contract
        norm = self.backbone.spec.preprocessing
        if self.device_preprocess:
            prepared = [preprocess_on_device(rgb, self.settings.preprocess, contract.patch_size, self.device)
                        for rgb in rgbs]
            batch = normalise_batch(torch.stack([p[0] for p in prepared]), norm.mean, norm.std)
            geometries = [p[1] for p in prepared]
        else:  # PIL releases the GIL while resizing: a batch is prepared on several cores
            batch, geometries = network_batch(rgbs, self.settings.preprocess, contract.patch_size, norm.mean,
                                              norm.std, self.device, host_pool().map if len(rgbs) > 1 else map)
        outputs = self.runtime.forward(batch, self.settings.kind, self.settings.layers)
        block_dims = tuple(int(o.shape[1]) for o in outputs) if len(outputs) > 1 else ()
        stacked = torch.cat(outputs, dim=1).float().to(self.device)
        return [FeatureMap(stacked[i], geometry, contract.patch_size, self.settings.convention, block_dims)
                for i, geometry in enumerate(geometries)]
