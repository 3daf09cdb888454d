"""Content hashes recorded with results and checked before reuse (weights files, exported models, engines)."""
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
