"""Reading images, masks and keypoint files with errors that name the file and the field."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError
from .taxonomy import Identity


def load_image(path: str | Path) -> Image.Image:
    """An RGB PIL image; grayscale, palette and RGBA files are converted (alpha composited on white)."""
    from .preprocessing import to_rgb_array

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            return Image.fromarray(to_rgb_array(img))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"cannot read image {str(path)!r}: {exc}") from exc


def load_mask(path: str | Path) -> np.ndarray:
    """A boolean object mask: any non-zero pixel (of a grayscale, palette or RGB file) is object."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mask file {str(path)!r} does not exist")
    try:
        with Image.open(path) as img:
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"cannot read mask {str(path)!r}: {exc}") from exc
    if array.ndim == 3:
        array = array[..., :3].max(axis=-1)
    return array > 0


@dataclass(frozen=True)
class NamedPoint:
    """A keypoint annotated on an image: name (``concept/identity``), pixel position, optional taxonomy."""

    name: str
    xy: tuple[float, float]
    concept: str = ""
    identity: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "xy": list(self.xy), "concept": self.concept or self.name.split("/")[0],
                "identity": dict(self.identity)}


@dataclass(frozen=True)
class KeypointSet:
    """The keypoints of one image (``--demo-keypoints`` file)."""

    points: tuple[NamedPoint, ...]
    image: str = ""
    image_size: tuple[int, int] | None = None
    category: str = ""
    source: str = field(default="", compare=False)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.points]

    @property
    def xy(self) -> np.ndarray:
        return np.array([p.xy for p in self.points], dtype=np.float64).reshape(-1, 2)


def parse_keypoints(data: Any, source: str = "<keypoints>") -> KeypointSet:
    """Accepts ``{"keypoints": [{"name", "xy"}, ...]}``, a bare list of such entries, or ``{name: [x, y]}``."""
    if isinstance(data, dict) and "keypoints" in data:
        entries = data["keypoints"]
        meta = data
    else:
        entries, meta = data, {}
    if isinstance(entries, dict):
        entries = [{"name": k, "xy": v} for k, v in entries.items()]
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{source}: 'keypoints' must be a non-empty list of {{name, xy}} entries")
    points, seen = [], set()
    for i, entry in enumerate(entries):
        where = f"{source}: keypoints[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where} must be an object with 'name' and 'xy'")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"{where}.name must be a non-empty string")
        if name in seen:
            raise InputError(f"{where}.name {name!r} is duplicated")
        seen.add(name)
        xy = entry.get("xy", entry.get("pos"))
        if (not isinstance(xy, (list, tuple)) or len(xy) != 2
                or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in xy)):
            raise InputError(f"{where}.xy must be [x, y] with two finite numbers, got {xy!r}")
        identity = entry.get("identity") or {}
        if not isinstance(identity, dict):
            raise InputError(f"{where}.identity must be an object like {{\"left_right\": \"left\"}}")
        Identity.of(identity)  # validates axes and values
        points.append(NamedPoint(name, (float(xy[0]), float(xy[1])), str(entry.get("concept", "")),
                                 tuple(sorted(identity.items()))))
    size = meta.get("image_size")
    if size is not None and (not isinstance(size, (list, tuple)) or len(size) != 2):
        raise InputError(f"{source}: image_size must be [width, height]")
    return KeypointSet(tuple(points), str(meta.get("image", "")), tuple(size) if size else None,
                       str(meta.get("category", "")), source)


def load_keypoints(path: str | Path) -> KeypointSet:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"keypoint file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"keypoint file {str(path)!r} is not valid JSON: {exc}") from exc
    return parse_keypoints(data, str(path))


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
