"""Reader for the released SOCO layout: typed, immutable records, images loaded lazily.

A pair file is self-contained (see ``docs``: ``pair_id``, ``pair_group``, ``src_/trg_`` image, size, box and
visible keypoints, ``semantic_overlap``, ``concept_matches``). One :class:`Match` type covers SOC (one target)
and CC (a set of targets). Every problem names the file and the field.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from PIL import Image

from ...errors import InputError

PAIR_DIRS = {"intra": "PairAnnotations/intra", "cross": "PairAnnotations/cross",
             "train": "PairAnnotations/trainsplits/train", "test": "PairAnnotations/trainsplits/test"}


@dataclass(frozen=True)
class SocoKeypoint:
    id: int
    name: str
    xy: tuple[float, float]  # original image pixels
    concept_id: int | None
    concept_name: str | None
    kind: str = ""
    shared: bool = False


@dataclass(frozen=True)
class Match:
    """Source keypoint(s) -> valid target keypoint(s). SOC: one each; CC: every target of the concept."""

    label: str
    source_indices: tuple[int, ...]
    target_indices: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class SocoView:
    category: str
    image_name: str
    image_path: Path
    size: tuple[int, int]  # (W, H) as annotated
    bbox: tuple[float, float, float, float] | None
    keypoints: tuple[SocoKeypoint, ...]

    @cached_property
    def image(self) -> Image.Image:
        """Loaded on first access (and kept: a view object lives as long as its pair)."""
        return self.decode()

    def decode(self) -> Image.Image:
        """The image read from disk now, not kept (the feature store decodes on many threads: before Python 3.12
        ``cached_property`` takes one lock shared by every view, which would decode one image at a time)."""
        if not self.image_path.is_file():
            raise InputError(f"image {str(self.image_path)!r} is missing")
        with Image.open(self.image_path) as image:
            rgb = image.convert("RGB")
            rgb.load()
        if rgb.size != self.size:
            raise InputError(f"image {str(self.image_path)!r} is {rgb.size[0]}x{rgb.size[1]} but the annotation says "
                             f"{self.size[0]}x{self.size[1]}")
        return rgb

    @property
    def bbox_max_side(self) -> float:
        if self.bbox is None:
            return float(max(self.size))
        left, top, right, bottom = self.bbox
        return float(max(right - left, bottom - top))


@dataclass(frozen=True, eq=False)
class SocoPair:
    pair_id: int
    pair_group: str
    pair_type: str
    path: Path
    source: SocoView
    target: SocoView
    semantic_matches: tuple[Match, ...]
    concept_matches: tuple[Match, ...]

    @property
    def cross_category(self) -> bool:
        return self.source.category != self.target.category


def _field(data: Mapping[str, Any], name: str, kind: type | tuple, where: str) -> Any:
    if name not in data:
        raise InputError(f"{where}: missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(f"{where}: field {name!r} must be {expected}, got {type(value).__name__}")
    return value


def _keypoints(items: Sequence[Any], where: str) -> tuple[SocoKeypoint, ...]:
    out = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise InputError(f"{at}: must be an object")
        pos = _field(item, "pos", list, at)
        if len(pos) != 2 or not all(isinstance(v, (int, float)) for v in pos):
            raise InputError(f"{at}: field 'pos' must be [x, y]")
        concept_id = item.get("concept_id")
        out.append(SocoKeypoint(int(_field(item, "id", int, at)), str(_field(item, "name", str, at)),
                                (float(pos[0]), float(pos[1])), int(concept_id) if concept_id is not None else None,
                                item.get("concept_name"), str(item.get("kind", "")), bool(item.get("shared", False))))
    names = [k.name for k in out]
    if len(set(names)) != len(names):
        raise InputError(f"{where}: keypoint names are not unique")
    return tuple(out)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"file {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{str(path)!r} is not valid JSON: {exc}") from exc


def parse_pair(data: Any, path: Path, root: Path, pair_type: str) -> SocoPair:
    where = str(path)
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: a pair file must hold a JSON object")
    category = data.get("category")
    views = {}
    for side in ("src", "trg"):
        cat = str(data.get(f"{side}_category") or category or "")
        if not cat:
            raise InputError(f"{where}: missing field '{side}_category' (and no 'category')")
        size = _field(data, f"{side}_imsize", list, where)
        if len(size) != 2:
            raise InputError(f"{where}: field '{side}_imsize' must be [width, height]")
        bbox = data.get(f"{side}_bndbox")
        if bbox is not None and (not isinstance(bbox, list) or len(bbox) != 4):
            raise InputError(f"{where}: field '{side}_bndbox' must be [left, top, right, bottom]")
        name = str(_field(data, f"{side}_image", str, where))
        views[side] = SocoView(cat, name, root / "Images" / cat / name, (int(size[0]), int(size[1])),
                               tuple(float(v) for v in bbox) if bbox is not None else None,
                               _keypoints(_field(data, f"{side}_keypoints", list, where), f"{where}: {side}_keypoints"))
    src_index = {k.name: i for i, k in enumerate(views["src"].keypoints)}
    trg_index = {k.name: i for i, k in enumerate(views["trg"].keypoints)}

    def lookup(table: dict[str, int], name: Any, what: str) -> int:
        if name not in table:
            raise InputError(f"{where}: {what} names keypoint {name!r}, which is not among the visible keypoints")
        return table[name]

    semantic = tuple(Match(str(n), (lookup(src_index, n, "semantic_overlap"),),
                           (lookup(trg_index, n, "semantic_overlap"),))
                     for n in _field(data, "semantic_overlap", list, where))
    concept = []
    for i, group in enumerate(_field(data, "concept_matches", list, where)):
        at = f"concept_matches[{i}]"
        if not isinstance(group, Mapping):
            raise InputError(f"{where}: {at} must be an object")
        concept.append(Match(str(group.get("concept_name", "")),
                             tuple(lookup(src_index, n, at) for n in _field(group, "src_keypoints", list, f"{where}: {at}")),
                             tuple(lookup(trg_index, n, at) for n in _field(group, "trg_keypoints", list, f"{where}: {at}"))))
    return SocoPair(int(_field(data, "pair_id", int, where)), str(data.get("pair_group", category)), pair_type, path,
                    views["src"], views["trg"], semantic, tuple(concept))


@dataclass
class SocoPairs(Sequence[SocoPair]):
    """A deterministic, lazily parsed sequence of pairs with the usual filters.

    ``pair_type``: intra | cross | train | test. ``categories``: pair groups (category names, or ``a-b`` groups
    for cross). ``supercategories``: keep groups whose (source) category belongs to them.
    ``max_pairs_per_category``: the first N pair files of each group in sorted order (0 or None: all).
    ``files``: exactly these pair files (``<group>/<name>.json`` relative to the pair folder), in this order (a fixed
    subset from a list file); every one must exist.
    """

    root: Path
    pair_type: str = "intra"
    categories: Sequence[str] | None = None
    supercategories: Sequence[str] | None = None
    max_pairs_per_category: int | None = None
    files: Sequence[str] | None = None
    paths: tuple[Path, ...] = field(init=False)

    def __post_init__(self) -> None:
        from .categories import supercategory_of

        self.root = Path(self.root).expanduser()
        if self.pair_type not in PAIR_DIRS:
            raise InputError(f"pair type must be one of {sorted(PAIR_DIRS)}, got {self.pair_type!r}")
        pair_root = self.root / PAIR_DIRS[self.pair_type]
        if not (self.root / "Images").is_dir():
            raise InputError(f"{str(self.root)!r} has no Images/ folder: is it an extracted SOCO dataset?")
        if not pair_root.is_dir():
            raise InputError(f"{str(pair_root)!r} does not exist")
        if self.files is not None:
            paths = [pair_root / name for name in self.files]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise InputError(f"{len(missing)} listed {self.pair_type} pair file(s) do not exist, e.g. {missing[0]!r}")
            self.paths = tuple(paths)
            return
        available = sorted(p.name for p in pair_root.iterdir() if p.is_dir())
        chosen = list(self.categories) if self.categories else available
        unknown = sorted(set(chosen) - set(available))
        if unknown:
            raise InputError(f"unknown {self.pair_type} categories {unknown}; available: {available}")
        if self.supercategories:
            wanted = set(self.supercategories)
            chosen = [c for c in chosen if supercategory_of(c.split("-")[0], self.root) in wanted]
        limit = self.max_pairs_per_category or None
        if limit is not None and limit < 0:
            raise InputError("max pairs per category must be >= 0")
        paths: list[Path] = []
        for group in chosen:
            files = sorted((pair_root / group).glob("*.json"))
            paths.extend(files[:limit] if limit else files)
        self.paths = tuple(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        path = self.paths[index]
        return parse_pair(read_json(path), path, self.root, self.pair_type)

    def __iter__(self) -> Iterator[SocoPair]:
        for i in range(len(self)):
            yield self[i]
