"""Small checks shared by the dataset writers and loaders (HANDAL, training): names usable as path components,
JSON and image files read with errors that name the file, numeric field checks, rigid poses."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import InputError

SEP = "|||"  # separates category and object names inside one functional-pair name


def check_name(value: Any, what: str) -> str:
    """A string usable as one path component and inside a ``|||``-separated name."""
    if not isinstance(value, str) or not value or value in (".", "..") or any(c in value for c in "/\\\0") \
            or SEP in value:
        raise InputError(f"{what} must be a non-empty name without '/', '\\\\' or '{SEP}', got {value!r}")
    return value


def load_json(path: str | Path, what: str = "JSON file") -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {str(path)!r} is not valid JSON: {exc}") from exc


def open_image(path: str | Path, what: str, header_only: bool = False) -> Image.Image:
    """A loaded PIL image (or only its header), with an InputError naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {str(path)!r} does not exist")
    try:
        img = Image.open(path)
        if not header_only:
            img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"cannot read {what} file {str(path)!r}: {exc}") from exc


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def numbers(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n and all(is_number(v) for v in value)


def describe(value: Any) -> str:
    return f"{len(value)} values" if isinstance(value, list) else f"{type(value).__name__} {value!r}"[:80]


def check_pose(pose: np.ndarray, what: str) -> np.ndarray:
    """A 4x4 rigid transform (rotation within 1e-4 of orthonormal, det +1), as float64."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise InputError(f"{what} must be a finite 4x4 matrix, got shape {pose.shape}")
    R = pose[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
        raise InputError(f"{what} must be a rigid transform (its 3x3 block is not a rotation)")
    return pose
