"""Content hashes recorded with results and checked before reuse (weights files, in-memory weights, exported models,
engines)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, length: int | None = None) -> str:
    """SHA-256 of a file's bytes (hex; the first ``length`` characters when given).

    Cached by (path, size, mtime): a multi-GB checkpoint is read once per process however often it is named."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        _CACHE[key] = digest.hexdigest()
    return _CACHE[key][:length] if length else _CACHE[key]


def state_dict_sha256(module) -> str:
    """Hash of a module's parameters and buffers (names, shapes, dtypes, bytes), 16 hex characters: identifies
    random or in-memory weights, which have no file to hash."""
    import torch

    from .device import to_numpy

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(to_numpy(tensor.view(torch.uint8)).tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]
