"""Encode every image once per run: a store of FeatureMaps keyed by image path (fp16 in memory, optionally
on disk), so a benchmark costs one forward pass per image, not two per pair."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ...features import FeatureExtractor, FeatureMap
from .loader import SocoView


@dataclass
class StoreStats:
    encoded: int = 0
    hits: int = 0
    disk_hits: int = 0
    encode_seconds: float = 0.0


class FeatureStore:
    def __init__(self, extractor: FeatureExtractor, disk_cache: str | Path | None = None,
                 keep_in_memory: bool = True) -> None:
        self.extractor = extractor
        self.disk_cache = Path(disk_cache) if disk_cache else None
        self.keep_in_memory = keep_in_memory
        self._memory: dict[str, FeatureMap] = {}
        self.stats = StoreStats()
        self._settings_key = hashlib.sha1(extractor._settings_key.encode()).hexdigest()[:16]

    def _disk_path(self, view: SocoView) -> Path | None:
        if self.disk_cache is None:
            return None
        key = hashlib.sha1(str(view.image_path.resolve()).encode()).hexdigest()[:20]
        return self.disk_cache / self._settings_key / f"{key}.pt"

    def __call__(self, view: SocoView) -> FeatureMap:
        key = str(view.image_path)
        if key in self._memory:
            self.stats.hits += 1
            return self._memory[key]
        path = self._disk_path(view)
        if path is not None and path.is_file():
            data = torch.load(path, map_location="cpu", weights_only=True)
            template = self._encode_geometry(view)
            fmap = replace(template, features=data["features"].float())
            self.stats.disk_hits += 1
        else:
            start = time.perf_counter()
            fmap = self.extractor.extract(view.image)
            self.stats.encode_seconds += time.perf_counter() - start
            self.stats.encoded += 1
            fmap = replace(fmap, features=fmap.features.half())
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"features": fmap.features}, path)
        if self.keep_in_memory:
            self._memory[key] = fmap
        return fmap

    def _encode_geometry(self, view: SocoView) -> FeatureMap:
        """Geometry without running the network (the features come from the disk cache)."""
        import numpy as np

        from ...preprocessing import preprocess
        _, geometry = preprocess(np.zeros((view.size[1], view.size[0], 3), np.uint8),
                                 self.extractor.settings.preprocess, self.extractor.backbone.spec.contract.patch_size)
        return FeatureMap(torch.zeros(0), geometry, self.extractor.backbone.spec.contract.patch_size,
                          self.extractor.settings.convention)
