"""Verification inputs: the generated photo-like pair (:mod:`correspondence.photo_pair`) or two user photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from correspondence.errors import InputError
from correspondence.photo_pair import image_pair, scene

__all__ = ["image_pair", "load_pair", "scene"]


def load_pair(paths: list[str] | tuple[str, ...] | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two user images (``--verify-images A B``) or the generated pair."""
    if not paths:
        return image_pair(seed)
    if len(paths) != 2:
        raise InputError(f"verification needs exactly two images, got {len(paths)}")
    images = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"verification image {path!r} does not exist")
        images.append(np.asarray(Image.open(path).convert("RGB")))
    return images[0], images[1]
