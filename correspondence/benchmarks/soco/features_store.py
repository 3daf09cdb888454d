"""Encode every image once per run: a store of FeatureMaps keyed by image path (in memory, optionally on disk),
so a benchmark costs one forward pass per image, not two per pair.

``storage``: the dtype maps are kept in, in memory and on disk. ``float32`` (the paper protocols' default) keeps
what the backbone gave; ``float16`` halves the memory (a 60 x 60 x 768 ViT-B map at 840 px: 11 MB -> 5.5 MB) and
moves some predictions (about 5 argmax and 1000 soft-argmax ones in 5000 keypoints), never the sampling grid,
which is fp32 whatever the storage. A map is cast to the storage dtype once, when it is encoded; the disk cache
keeps that cast under a key that includes the storage dtype, so a cold run (encoding) and a warm run (reading the
disk cache) hand out identical maps and give identical numbers.

Every map the store hands out lives on the extractor's device, whether it was just encoded, read from the disk
cache or received from another rank. On a CUDA device, maps beyond ``device_budget`` bytes (default: half of the
GPU's memory) are kept in host memory and copied to the GPU when asked for, so the released set (4000 images) fits
whatever the backbone. Under torchrun, :meth:`FeatureStore.encode_distributed` shares the encoding out: each rank
encodes (or reads from the disk cache) its share of the images and rank 0 receives every map.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import torch
from tqdm.auto import tqdm

from ... import distributed
from ...errors import ConfigError
from ...features import FeatureExtractor, FeatureMap, host_pool
from .loader import SocoView

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class StoreStats:
    encoded: int = 0
    hits: int = 0
    disk_hits: int = 0
    encode_seconds: float = 0.0
    received: int = 0  # maps encoded by another rank (torchrun)
    device_bytes: int = 0  # held on the device
    host_bytes: int = 0  # held in host memory (beyond the device budget)


class FeatureStore:
    def __init__(self, extractor: FeatureExtractor, disk_cache: str | Path | None = None,
                 keep_in_memory: bool = True, storage: str = "float32", device_budget: int | None = None) -> None:
        if storage not in STORAGE_DTYPES:
            raise ConfigError(f"feature storage must be one of {sorted(STORAGE_DTYPES)}, got {storage!r}")
        self.extractor = extractor
        self.device = torch.device(extractor.device)
        self.disk_cache = Path(disk_cache) if disk_cache else None
        self.keep_in_memory = keep_in_memory
        self.storage = storage
        self.dtype = STORAGE_DTYPES[storage]
        if device_budget is None and self.device.type == "cuda":
            device_budget = torch.cuda.get_device_properties(self.device).total_memory // 2
        self.device_budget = device_budget  # None: no limit (CPU)
        self._memory: dict[str, FeatureMap] = {}
        self._unused: set[str] = set()  # handed in by encode_distributed, not asked for yet
        self.stats = StoreStats()
        key = extractor._settings_key if storage == "float16" else extractor._settings_key + "|storage=float32"
        self._settings_key = hashlib.sha1(key.encode()).hexdigest()[:16]

    def _disk_path(self, view: SocoView) -> Path | None:
        if self.disk_cache is None:
            return None
        key = hashlib.sha1(str(view.image_path.resolve()).encode()).hexdigest()[:20]
        return self.disk_cache / self._settings_key / f"{key}.pt"

    def __call__(self, view: SocoView) -> FeatureMap:
        key = str(view.image_path)
        if key in self._memory:
            if key in self._unused:  # its first use: the image counts as encoded once, like a lazy encode
                self._unused.discard(key)
            else:
                self.stats.hits += 1
            return self._on_device(self._memory[key])
        fmap = self._load_or_encode(view)
        if self.keep_in_memory:
            self._keep(key, fmap)
        return fmap

    def _on_device(self, fmap: FeatureMap) -> FeatureMap:
        if fmap.features.device == self.device:
            return fmap
        return replace(fmap, features=fmap.features.to(self.device, non_blocking=True))

    def _keep(self, key: str, fmap: FeatureMap) -> None:
        """Remember a map: on the device while the budget lasts, then in (pinned) host memory."""
        size = fmap.features.numel() * fmap.features.element_size()
        if self.device_budget is None or self.stats.device_bytes + size <= self.device_budget:
            self._memory[key] = self._on_device(fmap)
            self.stats.device_bytes += size
            return
        host = fmap.features.to("cpu")
        if torch.cuda.is_available():
            host = host.pin_memory()
        self._memory[key] = replace(fmap, features=host)
        self.stats.host_bytes += size

    def memory_estimate(self, images: int, dim: int) -> int:
        """Bytes ``images`` maps of ``dim`` channels take in this store's storage dtype."""
        contract = self.extractor.backbone.spec.contract
        size = self.extractor.settings.preprocess
        from ...preprocessing import effective_size
        grid = effective_size(size.size, contract.patch_size, size.size_policy) // contract.patch_size
        return images * dim * grid * grid * torch.tensor([], dtype=self.dtype).element_size()

    def _load_or_encode(self, view: SocoView) -> FeatureMap:
        return self._load_or_encode_many([view])[0]

    def _load_or_encode_many(self, views: list[SocoView]) -> list[FeatureMap]:
        """Disk-cached maps are read; the rest are decoded on host threads and encoded as one batch (a GPU is
        busy with a batch, not starved by one image at a time)."""
        out: dict[int, FeatureMap] = {}
        todo = []
        for i, view in enumerate(views):
            path = self._disk_path(view)
            if path is not None and path.is_file():
                data = torch.load(path, map_location=self.device, weights_only=True)
                self.stats.disk_hits += 1
                out[i] = replace(self._encode_geometry(view), features=data["features"].to(self.dtype))
            else:
                todo.append(i)
        if todo:
            start = time.perf_counter()  # decoding included: it is part of what an image costs
            images = list(host_pool().map(lambda i: views[i].image, todo)) if len(todo) > 1 else [views[todo[0]].image]
            fmaps = self.extractor.extract_batch(images, cache=False)
            self.stats.encode_seconds += time.perf_counter() - start
            self.stats.encoded += len(todo)
            for i, fmap in zip(todo, fmaps):
                out[i] = replace(fmap, features=fmap.features.to(device=self.device, dtype=self.dtype))
                self._save(views[i], out[i])
        return [out[i] for i in range(len(views))]

    def _save(self, view: SocoView, fmap: FeatureMap) -> None:
        path = self._disk_path(view)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{distributed.rank()}.tmp")
            torch.save({"features": fmap.features.cpu()}, tmp)
            tmp.replace(path)  # atomic: a concurrent reader never sees half a file

    def encode_distributed(self, views: Iterable[SocoView], progress: bool = True) -> None:
        """Under torchrun: every rank encodes every ``world``-th image (sorted by path, disk cache first) and rank
        0 receives them all, round by round (at most one map per rank in flight), into its memory. The other
        ranks keep nothing. In a single process this is a plain prefetch. Every rank must call it with the same
        views."""
        unique: dict[str, SocoView] = {}
        for view in views:
            unique.setdefault(str(view.image_path), view)
        keys = sorted(unique)  # the same on every rank (never filtered by what one rank holds)
        if not distributed.is_initialized() or distributed.world_size() == 1:
            todo = [k for k in keys if k not in self._memory]
            step = max(1, self.extractor.batch_size)
            with tqdm(total=len(todo), desc="encoding images", unit="image", disable=not progress) as bar:
                for start in range(0, len(todo), step):
                    chunk = todo[start:start + step]
                    for key, fmap in zip(chunk, self._load_or_encode_many([unique[k] for k in chunk])):
                        self._keep(key, fmap)
                        self._unused.add(key)
                    bar.update(len(chunk))
            return
        rank, world = distributed.rank(), distributed.world_size()
        mine = distributed.shard(keys, rank, world)
        rounds = -(-len(keys) // world)  # the length of rank 0's share, the longest
        before = (self.stats.encoded, self.stats.disk_hits, self.stats.encode_seconds)
        bar = tqdm(total=len(keys), desc=f"encoding images ({world} ranks)", unit="image",
                   disable=not progress or rank != 0)
        for i in range(rounds):
            item = None
            if i < len(mine):
                key = mine[i]
                if rank == 0:
                    if key not in self._memory:
                        self._keep(key, self._load_or_encode(unique[key]))
                        self._unused.add(key)
                else:
                    fmap = self._memory.pop(key, None) or self._load_or_encode(unique[key])
                    item = (key, replace(fmap, features=fmap.features.cpu()))
            received = distributed.gather_objects(item)
            if rank == 0:
                for got in received or []:
                    if got is not None and got[0] not in self._memory:
                        key, fmap = got
                        self._keep(key, fmap)
                        self._unused.add(key)
                        self.stats.received += 1
                bar.update(min(world, len(keys) - i * world))
        bar.close()
        mine_stats = (self.stats.encoded - before[0], self.stats.disk_hits - before[1],
                      self.stats.encode_seconds - before[2])
        totals = distributed.all_reduce_sum(mine_stats)  # every rank's share: images encoded once over all ranks
        self.stats.encoded = before[0] + int(totals[0])
        self.stats.disk_hits = before[1] + int(totals[1])
        self.stats.encode_seconds = before[2] + totals[2]

    def _encode_geometry(self, view: SocoView) -> FeatureMap:
        """Geometry without running the network (the features come from the disk cache)."""
        import numpy as np

        from ...preprocessing import preprocess
        _, geometry = preprocess(np.zeros((view.size[1], view.size[0], 3), np.uint8),
                                 self.extractor.settings.preprocess, self.extractor.backbone.spec.contract.patch_size)
        return FeatureMap(torch.zeros(0), geometry, self.extractor.backbone.spec.contract.patch_size,
                          self.extractor.settings.convention)
