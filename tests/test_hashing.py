"""The one file-hash helper: the digest of the bytes, a prefix on request, re-read when the file changes."""
from __future__ import annotations

import hashlib
import os

from correspondence.hashing import file_sha256


def test_file_sha256_is_the_content_digest_and_follows_changes(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights v1")
    assert file_sha256(path) == hashlib.sha256(b"weights v1").hexdigest()
    assert file_sha256(path, 16) == hashlib.sha256(b"weights v1").hexdigest()[:16]
    path.write_bytes(b"weights v2!")
    os.utime(path, ns=(1, 10**18))  # a new mtime as well as a new size: the cache key changes
    assert file_sha256(path) == hashlib.sha256(b"weights v2!").hexdigest()
