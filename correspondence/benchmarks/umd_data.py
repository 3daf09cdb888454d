"""UMD-i data: the affordance names, the README's class table and the reader of the released zip / folders
(:class:`UMDDataset`); the protocol and its rules are in :mod:`correspondence.benchmarks.umd`."""
from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, InputError

# channel order of *_label_rank.npy
AFFORDANCES: tuple[str, ...] = ("grasp", "cut", "scoop", "contain", "pound", "support", "wrap-grasp")

# UMD_i/README.md, "Classes containing each affordance" (class names as the dataset folders spell them)
AFFORDANCE_CLASSES: dict[str, tuple[str, ...]] = {
    "grasp": ("mug", "hammer", "mallet", "knife", "scissors", "spoon", "tenderizer", "trowel", "shovel", "turner",
              "ladle", "scoop", "shears"),
    "cut": ("knife", "scissors", "shears"),
    "scoop": ("spoon", "trowel", "ladle", "scoop"),
    "contain": ("bowl", "mug", "cup", "pot"),
    "pound": ("hammer", "mallet", "tenderizer"),
    "support": ("turner", "shovel"),
    "wrap-grasp": ("mug", "cup", "pot"),
}

LABEL_RULES = ("primary", "ranked")
ABSENT_RANK = 9
SETTINGS = ("intra", "inter")
METHODS = ("transfer", "chance", "whole-mask")
TRANSFER_MODES = ("cell", "pixel")
F_KERNEL_RADIUS = 3  # fspecial('gaussian', 7, 5)

_SAMPLE_DIR = re.compile(r"^(?P<cls>[A-Za-z][A-Za-z_-]*?)_(?P<idx>\d+)$")
_KINDS = {"rgb": "_rgb.jpg", "mask": "_mask.jpg", "depth": "_depth.png", "labels": "_label_rank.npy"}


# ----------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, eq=False)
class UMDSample:
    """One UMD-i object: RGB, binary mask, optional depth and per-affordance labels (channel order
    :data:`AFFORDANCES`)."""

    name: str  # sample folder, e.g. "hammer_01"
    class_name: str  # "hammer"
    frame: str  # UMD frame id from the file names, e.g. "00000001"
    rgb: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W bool (the JPEG mask thresholded at > 127)
    depth: np.ndarray | None  # H x W float32 metres (uint16 mm / 1000, as the README's reader); None: no file
    ranks: np.ndarray  # H x W x 7 uint8 as stored (1 primary, 2/3 secondary, 9 absent, 0 background)
    labels: np.ndarray  # H x W x 7 bool under ``label_rule``
    label_rule: str = "primary"
    source: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    def region(self, affordance: str) -> np.ndarray:
        """H x W bool region of one affordance (inside the object mask)."""
        return self.labels[..., affordance_index(affordance)] & self.mask

    def has(self, affordance: str) -> bool:
        return bool(self.region(affordance).any())


def affordance_index(name: str) -> int:
    try:
        return AFFORDANCES.index(name)
    except ValueError:
        raise ConfigError(f"unknown affordance {name!r}; known: {', '.join(AFFORDANCES)}") from None


def labels_from_ranks(ranks: np.ndarray, rule: str = "primary") -> np.ndarray:
    """``primary``: rank == 1 (the UMD part regions); ``ranked``: any rank 1..8 (9 = absent, 0 = background)."""
    if rule == "primary":
        return ranks == 1
    if rule == "ranked":
        return (ranks >= 1) & (ranks < ABSENT_RANK)
    raise ConfigError(f"label rule must be one of {', '.join(LABEL_RULES)}, got {rule!r}")


class _Source:
    """Files of a zip archive or of a folder, addressed by '/'-separated relative paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        if not root.exists():
            raise InputError(f"UMD-i root {str(root)!r} does not exist (give the UMD_i.zip or its extracted folder)")
        self.zip: zipfile.ZipFile | None = None
        if root.is_file():
            if not zipfile.is_zipfile(root):
                raise InputError(f"UMD-i root {str(root)!r} is a file but not a zip archive")
            try:
                self.zip = zipfile.ZipFile(root)
                self.paths = [n for n in self.zip.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as exc:
                raise InputError(f"cannot read zip archive {str(root)!r}: {exc}") from exc
        else:
            self.paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def read(self, path: str) -> bytes:
        try:
            if self.zip is not None:
                return self.zip.read(path)
            return (self.root / path).read_bytes()
        except (KeyError, OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"cannot read {self.where(path)}: {exc}") from exc

    def where(self, path: str) -> str:
        return f"{self.root}!{path}" if self.zip is not None else str(self.root / path)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _decode_image(source: _Source, path: str, field_name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(source.read(path))) as img:
            img.load()
            if field_name == "rgb":
                return np.asarray(img.convert("RGB"))
            return np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{field_name}: cannot decode image {source.where(path)}: {exc}") from exc


def _read_sample(source: _Source, folder: str, files: dict[str, list[str]], label_rule: str) -> UMDSample:
    name = folder.rsplit("/", 1)[-1]
    match = _SAMPLE_DIR.match(name)
    if not match:
        raise InputError(f"sample folder {source.where(folder)} is not named <class>_<NN>")
    for kind, found in files.items():
        if len(found) > 1:
            raise InputError(f"sample {name}: {len(found)} {kind} files ({', '.join(found)}); expected one")
    for kind in ("rgb", "mask", "labels"):
        if not files.get(kind):
            raise InputError(f"sample {name} ({source.where(folder)}): no {kind} file (*{_KINDS[kind]})")
    rgb_path, mask_path, label_path = files["rgb"][0], files["mask"][0], files["labels"][0]
    rgb = _decode_image(source, rgb_path, "rgb")
    height, width = rgb.shape[:2]
    mask_raw = _decode_image(source, mask_path, "mask")
    if mask_raw.ndim == 3:
        mask_raw = mask_raw[..., :3].astype(np.float32).mean(-1)
    if mask_raw.shape != (height, width):
        raise InputError(f"mask {source.where(mask_path)} has shape {mask_raw.shape}, the rgb image "
                         f"{(height, width)} (H, W)")
    mask = np.asarray(mask_raw) > 127  # JPEG: threshold
    try:
        ranks = np.load(io.BytesIO(source.read(label_path)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"labels: cannot read numpy array {source.where(label_path)}: {exc}") from exc
    if ranks.ndim != 3 or ranks.shape[2] != len(AFFORDANCES) or ranks.shape[:2] != (height, width):
        raise InputError(f"labels {source.where(label_path)} have shape {ranks.shape}; expected "
                         f"{(height, width, len(AFFORDANCES))} (H, W, affordances) to match the rgb image")
    if not np.issubdtype(ranks.dtype, np.integer):
        raise InputError(f"labels {source.where(label_path)} have dtype {ranks.dtype}; expected integer ranks")
    depth = None
    if files.get("depth"):
        depth_path = files["depth"][0]
        raw = _decode_image(source, depth_path, "depth")
        if raw.shape != (height, width):
            raise InputError(f"depth {source.where(depth_path)} has shape {raw.shape}; the rgb image "
                             f"{(height, width)} (H, W)")
        depth = raw.astype(np.float32) / 1000.0
    frame = Path(rgb_path).name[len(name) + 1:-len(_KINDS["rgb"])]
    return UMDSample(name, match.group("cls").lower(), frame, rgb, mask, depth, ranks.astype(np.uint8),
                     labels_from_ranks(ranks, label_rule), label_rule, source.where(folder))


class UMDDataset:
    """All UMD-i samples under ``root``: the released ``UMD_i.zip`` or its extracted folder (``UMD_i/``,
    ``UMD_i/dataset/`` or any folder holding the ``<class>_<NN>/`` sample folders)."""

    def __init__(self, root: str | Path, label_rule: str = "primary", classes: Sequence[str] | None = None) -> None:
        labels_from_ranks(np.zeros((1, 1, 1), np.uint8), label_rule)  # validates the rule
        self.root = Path(root)
        self.label_rule = label_rule
        source = _Source(self.root)
        try:
            folders: dict[str, dict[str, list[str]]] = {}
            for path in source.paths:
                if "/" not in path:
                    continue
                folder, filename = path.rsplit("/", 1)
                for kind, suffix in _KINDS.items():
                    if filename.endswith(suffix):
                        folders.setdefault(folder, {}).setdefault(kind, []).append(path)
            folders = {f: files for f, files in folders.items() if "labels" in files or "rgb" in files}
            if not folders:
                raise InputError(f"no UMD-i samples (<class>_<NN>/*{_KINDS['labels']}) under {str(self.root)!r}")
            wanted = {c.lower() for c in classes} if classes else None
            samples = []
            for folder in sorted(folders, key=lambda f: f.rsplit("/", 1)[-1]):
                name = folder.rsplit("/", 1)[-1]
                match = _SAMPLE_DIR.match(name)
                if wanted is not None and match and match.group("cls").lower() not in wanted:
                    continue
                samples.append(_read_sample(source, folder, folders[folder], label_rule))
        finally:
            source.close()
        names = [s.name for s in samples]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise InputError(f"sample folders found twice under {str(self.root)!r}: {', '.join(dupes)}")
        if wanted is not None:
            missing = sorted(wanted - {s.class_name for s in samples})
            if missing:
                raise ConfigError(f"no UMD-i samples of class(es) {', '.join(missing)} under {str(self.root)!r}")
        self.samples: tuple[UMDSample, ...] = tuple(samples)
        self._by_name = {s.name: s for s in samples}

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    def __getitem__(self, name: str) -> UMDSample:
        try:
            return self._by_name[name]
        except KeyError:
            raise InputError(f"no UMD-i sample named {name!r}") from None

    @property
    def classes(self) -> dict[str, list[str]]:
        """class -> sample names (sorted)."""
        out: dict[str, list[str]] = {}
        for s in self.samples:
            out.setdefault(s.class_name, []).append(s.name)
        return dict(sorted(out.items()))


def load_umd(root: str | Path, label_rule: str = "primary") -> UMDDataset:
    return UMDDataset(root, label_rule)
