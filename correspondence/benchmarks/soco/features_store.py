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

In one process, :meth:`FeatureStore.encode_distributed` is a pipeline, as a ``DataLoader`` with workers would be:
while one chunk (a batch) is encoded, the next chunk's images are decoded on host threads, and the disk cache is
written by a background thread, so neither the decoding nor the writing holds up the network. The stats say where
the time went: ``encode_seconds`` is wall time spent encoding, ``decode_wait_seconds`` and ``write_wait_seconds``
the part of it the loop waited for decoded images and for disk writes.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from ... import distributed
from ...errors import ConfigError
from ...features import FeatureExtractor, FeatureMap
from .loader import SocoView

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class StoreStats:
    encoded: int = 0
    hits: int = 0
    disk_hits: int = 0
    encode_seconds: float = 0.0  # wall time spent encoding (decoding waits and disk-write waits included)
    decode_wait_seconds: float = 0.0  # the part of it spent waiting for images to be decoded
    write_wait_seconds: float = 0.0  # the part of it spent waiting for disk-cache writes
    read_seconds: float = 0.0  # reading maps from the disk cache (not encoding: a warm run encodes nothing)
    received: int = 0  # maps encoded by another rank (torchrun)
    device_bytes: int = 0  # held on the device
    host_bytes: int = 0  # held in host memory (beyond the device budget)


# summed over ranks after a torchrun encoding (every rank's own share)
_SHARED_STATS = ("encoded", "disk_hits", "encode_seconds", "decode_wait_seconds", "write_wait_seconds",
                 "read_seconds")

_DECODE_POOL: ThreadPoolExecutor | None = None


def decode_pool() -> ThreadPoolExecutor:
    """Threads that decode the next chunk's images while the current chunk is encoded. Not :func:`~correspondence.features.host_pool`:
    the extractor prepares the current chunk there, and decoding queued ahead of it would serialise the two."""
    global _DECODE_POOL
    if _DECODE_POOL is None:
        _DECODE_POOL = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)),
                                          thread_name_prefix="soco-decode")
    return _DECODE_POOL


def _decode(view: SocoView):
    """The view's image: the one it holds if already loaded, else decoded now without being kept in the view (the
    store keeps maps, not images; see :meth:`SocoView.decode`)."""
    held = getattr(view, "__dict__", {}).get("image")
    return held if held is not None else view.decode()


def _compact_cpu(features: torch.Tensor) -> torch.Tensor:
    """A host copy holding only this map: ``torch.save`` of a view would write the whole batch's storage."""
    host = features.detach().cpu()
    return host if host.untyped_storage().nbytes() == host.nbytes else host.clone()


def write_atomically(path: Path, features: torch.Tensor) -> None:
    """Save one map; a temporary file per rank then a rename, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{distributed.rank()}.tmp")
    torch.save({"features": _compact_cpu(features)}, tmp)
    tmp.replace(path)


@dataclass
class _Chunk:
    """One batch of views on its way through the pipeline: which are read from the disk cache, and the decoding
    of the others, under way on the decode pool."""
    views: list[SocoView]
    cached: dict[int, Path] = field(default_factory=dict)
    todo: list[int] = field(default_factory=list)
    decoding: list[Future] = field(default_factory=list)

    def cancel(self) -> None:
        for future in self.decoding:
            future.cancel()


class _DiskWriter:
    """Disk-cache saves on one background thread, so a save never holds up the next encode. The queue is bounded
    (a slow disk slows the loop down instead of piling maps up); the first error is raised by the next ``put`` or
    by ``close``, never lost."""

    def __init__(self, save: Callable[[Path, torch.Tensor], None], maxsize: int) -> None:
        self._save = save
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._error: BaseException | None = None
        self.wait_seconds = 0.0  # how long callers were blocked: a full queue, and the final drain
        self._thread = threading.Thread(target=self._run, name="soco-cache-writer", daemon=True)
        self._thread.start()

    def put(self, path: Path, features: torch.Tensor) -> None:
        self._raise_error()
        start = time.perf_counter()
        self._queue.put((path, features))
        self.wait_seconds += time.perf_counter() - start

    def close(self, raise_error: bool = True) -> float:
        """Wait for every queued save; returns the seconds waited, raises the first error (unless told not to,
        when another error is on its way out)."""
        start = time.perf_counter()
        self._queue.put(None)
        self._thread.join()
        waited = time.perf_counter() - start
        self.wait_seconds += waited
        if raise_error:
            self._raise_error()
        return waited

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:  # after an error, keep draining so that no caller blocks on a full queue
                try:
                    self._save(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._error = exc


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
        busy with a batch, not starved by one image at a time), then saved before returning."""
        return self._finish(self._plan(views), self._write_now)

    def _plan(self, views: list[SocoView]) -> _Chunk:
        """Sort a chunk into disk-cache hits and images to encode, and start decoding the latter."""
        chunk = _Chunk(list(views))
        for i, view in enumerate(chunk.views):
            path = self._disk_path(view)
            if path is not None and path.is_file():
                chunk.cached[i] = path
            else:
                chunk.todo.append(i)
        chunk.decoding = [decode_pool().submit(_decode, chunk.views[i]) for i in chunk.todo]
        return chunk

    def _finish(self, chunk: _Chunk, save: Callable[[Path, torch.Tensor], None]) -> list[FeatureMap]:
        """The chunk's maps in order: cached ones read, the others encoded once decoded, cast to the storage dtype
        and handed to ``save`` for the disk cache. Times the encoding (waits included) and, apart, the reads."""
        start = time.perf_counter()
        out = {i: self._read(chunk.views[i], path) for i, path in chunk.cached.items()}
        self.stats.read_seconds += time.perf_counter() - start
        if chunk.todo:
            start = time.perf_counter()
            fmaps = self.extractor.extract_batch(self._decoded(chunk), cache=False)
            self.stats.encoded += len(chunk.todo)
            for i, fmap in zip(chunk.todo, fmaps):
                out[i] = replace(fmap, features=fmap.features.to(device=self.device, dtype=self.dtype))
                path = self._disk_path(chunk.views[i])
                if path is not None:
                    save(path, out[i].features)
            self.stats.encode_seconds += time.perf_counter() - start
        return [out[i] for i in range(len(chunk.views))]

    def _decoded(self, chunk: _Chunk) -> list:
        """The chunk's decoded images, counting how long the loop waited for them."""
        start = time.perf_counter()
        images = [future.result() for future in chunk.decoding]
        self.stats.decode_wait_seconds += time.perf_counter() - start
        return images

    def _read(self, view: SocoView, path: Path) -> FeatureMap:
        data = torch.load(path, map_location=self.device, weights_only=True)
        self.stats.disk_hits += 1
        return replace(self._encode_geometry(view), features=data["features"].to(self.dtype))

    def _write_now(self, path: Path, features: torch.Tensor) -> None:
        """Save in the caller's thread (a lazy encode, a torchrun rank): the loop waits for the whole write."""
        start = time.perf_counter()
        write_atomically(path, features)
        self.stats.write_wait_seconds += time.perf_counter() - start

    def encode_distributed(self, views: Iterable[SocoView], progress: bool = True) -> None:
        """Under torchrun: every rank encodes every ``world``-th image (sorted by path, disk cache first) and rank
        0 receives them all, round by round (at most one map per rank in flight), into its memory. The other
        ranks keep nothing. In a single process this is a pipelined prefetch (see :meth:`_prefetch`). Every rank
        must call it with the same views."""
        unique: dict[str, SocoView] = {}
        for view in views:
            unique.setdefault(str(view.image_path), view)
        keys = sorted(unique)  # the same on every rank (never filtered by what one rank holds)
        if not distributed.is_initialized() or distributed.world_size() == 1:
            self._prefetch([unique[k] for k in keys if k not in self._memory], progress)
            return
        rank, world = distributed.rank(), distributed.world_size()
        mine = distributed.shard(keys, rank, world)
        rounds = -(-len(keys) // world)  # the length of rank 0's share, the longest
        before = [getattr(self.stats, name) for name in _SHARED_STATS]
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
        own = [getattr(self.stats, name) - value for name, value in zip(_SHARED_STATS, before)]
        totals = distributed.all_reduce_sum(own)  # every rank's share: images encoded once over all ranks
        for name, value, total in zip(_SHARED_STATS, before, totals):
            setattr(self.stats, name, type(value)(value + total))

    def _prefetch(self, views: list[SocoView], progress: bool) -> None:
        """One process: encode ``views`` chunk by chunk, the next chunk decoding and the disk cache being written
        while the current chunk runs through the network; every map kept, every save done before returning."""
        step = max(1, self.extractor.batch_size)
        chunks = [views[start:start + step] for start in range(0, len(views), step)]
        writer = _DiskWriter(write_atomically, maxsize=2 * step) if self.disk_cache is not None else None
        save = writer.put if writer is not None else self._write_now  # (no disk cache: never called)
        try:
            with tqdm(total=len(views), desc="encoding images", unit="image", disable=not progress) as bar, \
                    contextlib.closing(self._planned_ahead(chunks)) as planned:
                for chunk in planned:
                    for view, fmap in zip(chunk.views, self._finish(chunk, save)):
                        self._keep(str(view.image_path), fmap)
                        self._unused.add(str(view.image_path))
                    bar.update(len(chunk.views))
        except BaseException:
            if writer is not None:
                writer.close(raise_error=False)  # the first error is the one to see
            raise
        if writer is not None:
            self.stats.encode_seconds += writer.close()  # the stage ends when its last map is on disk
            self.stats.write_wait_seconds += writer.wait_seconds

    def _planned_ahead(self, chunks: list[list[SocoView]]) -> Iterator[_Chunk]:
        """The chunks in order, the next one's decoding under way while the caller encodes the current one: two
        chunks of decoded images at most. Decoding not started yet is cancelled if the caller stops early."""
        ahead: deque[_Chunk] = deque()
        try:
            for views in chunks:
                ahead.append(self._plan(views))
                if len(ahead) == 2:
                    yield ahead.popleft()
            while ahead:
                yield ahead.popleft()
        finally:
            for chunk in ahead:
                chunk.cancel()

    def _encode_geometry(self, view: SocoView) -> FeatureMap:
        """Geometry without running the network (the features come from the disk cache)."""
        import numpy as np

        from ...preprocessing import preprocess
        _, geometry = preprocess(np.zeros((view.size[1], view.size[0], 3), np.uint8),
                                 self.extractor.settings.preprocess, self.extractor.backbone.spec.contract.patch_size)
        return FeatureMap(torch.zeros(0), geometry, self.extractor.backbone.spec.contract.patch_size,
                          self.extractor.settings.convention)
