"""Training pairs for the functional head: two RGB views with object masks, functional-part masks, part maps and
row-aligned correspondences, one self-describing folder per pair, so a loader needs no renderer and no meshes.

Layout::

    root/index.json                     {"version": 1, "splits": {split: [pair_id, ...]}, "counts": {split: n}}
    root/<split>/<pair_id>/a_rgb.png, b_rgb.png            RGB, lossless
                          a_mask.png, b_mask.png          uint8 0/255, visible object
                          a_function.png, b_function.png  uint8 0/255, visible pixels of the function's parts
                          a_parts.png, b_parts.png        uint16 part id + 1 (index into part_names_*), 0 = background
                          correspondences.npz             xy_a, xy_b (N, 2) float32, points_a (N, 3) float32
                          meta.json

Decisions a reader of the data must know:

* ``xy_a``/``xy_b`` are continuous pixel coordinates (pixel (row i, col j) covers [j, j+1) x [i, i+1), so centres
  are at +0.5), row-aligned; ``points_a`` are the matched surface points in A's object frame (metres).
* ``kind`` "multiview": one instance seen twice; "functional": two different instances. ``function`` may be ""
  only for a multiview pair (then the function masks are empty). ``alignment`` is the similarity taking A's
  object frame onto B's (``FunctionalAlignment.transform``) or null. Poses are object -> camera in metres;
  intrinsics are ``CameraIntrinsics`` fields (OpenCV convention).
* ``meta.json`` is written last and removed first when a pair is rewritten: a folder without it is unfinished.
  ``finalize_training_index`` rebuilds ``index.json`` from the folders (written atomically), so pairs may be
  written in any order or by several processes; call it once after writing.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...camera import CameraIntrinsics
from ...errors import InputError
from ...io import write_json
from ..types import ObjectInstance, RenderedView
from .handal import (UINT16_MODES, check_name, check_pose, describe, image_array, is_int, is_number, load_json,
                     numbers)

KINDS = ("multiview", "functional")
INDEX_VERSION = 1
_SIDES = ("a", "b")
_INTRINSIC_FIELDS = ("fx", "fy", "cx", "cy", "width", "height")


@dataclass(frozen=True, eq=False)
class TrainingPair:
    """One pair folder, decoded: masks as bool, part maps as part ids (-1 = background)."""

    pair_dir: Path
    meta: dict[str, Any]
    rgb_a: np.ndarray  # (H, W, 3) uint8
    rgb_b: np.ndarray
    mask_a: np.ndarray  # (H, W) bool
    mask_b: np.ndarray
    function_a: np.ndarray  # (H, W) bool
    function_b: np.ndarray
    parts_a: np.ndarray  # (H, W) int32, index into meta["part_names_a"], -1 = background
    parts_b: np.ndarray
    xy_a: np.ndarray  # (N, 2) float32 continuous pixel coordinates
    xy_b: np.ndarray
    points_a: np.ndarray | None  # (N, 3) float32, A's object frame

    @property
    def pair_id(self) -> str:
        return self.meta["pair_id"]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def function(self) -> str:
        return self.meta["function"]

    @property
    def intrinsics_a(self) -> CameraIntrinsics:
        return CameraIntrinsics(**self.meta["intrinsics_a"])

    @property
    def intrinsics_b(self) -> CameraIntrinsics:
        return CameraIntrinsics(**self.meta["intrinsics_b"])

    @property
    def pose_a(self) -> np.ndarray:
        return np.asarray(self.meta["pose_a"], dtype=np.float64)

    @property
    def pose_b(self) -> np.ndarray:
        return np.asarray(self.meta["pose_b"], dtype=np.float64)

    @property
    def alignment(self) -> np.ndarray | None:
        a = self.meta["alignment"]
        return None if a is None else np.asarray(a, dtype=np.float64)


# ---- writing ----------------------------------------------------------------------------------------------------
def _functional_parts(obj: ObjectInstance, function: str) -> list[str]:
    if not function:
        return []
    if function not in obj.functional_parts:
        raise InputError(f"{obj.instance_id} ({obj.category}) has no functional part for {function!r}; "
                         f"it has {sorted(obj.functional_parts)}")
    return list(obj.functional_parts[function])


def _save_side(pair_dir: Path, side: str, view: RenderedView, obj: ObjectInstance, parts: list[str]) -> None:
    cam = view.intrinsics
    shape = (cam.height, cam.width)
    if view.rgb.shape != shape + (3,) or view.mask.shape != shape or view.part_map.shape != shape:
        raise InputError(f"view {side}: rgb/mask/part_map shapes {view.rgb.shape}/{view.mask.shape}/"
                         f"{view.part_map.shape} do not match the intrinsics' {cam.width} x {cam.height}")
    part_map = np.asarray(view.part_map, dtype=np.int64)
    if part_map.min(initial=-1) < -1 or part_map.max(initial=-1) >= len(obj.part_names):
        raise InputError(f"view {side}: part_map ids outside [-1, {len(obj.part_names)}) of {obj.instance_id}")
    mask = np.asarray(view.mask, dtype=bool)
    function = mask & np.isin(part_map, [obj.part_id(p) for p in parts])
    Image.fromarray(np.ascontiguousarray(view.rgb, dtype=np.uint8)).save(pair_dir / f"{side}_rgb.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(pair_dir / f"{side}_mask.png")
    Image.fromarray(function.astype(np.uint8) * 255).save(pair_dir / f"{side}_function.png")
    Image.fromarray((part_map + 1).astype(np.uint16)).save(pair_dir / f"{side}_parts.png")


def write_training_pair(root: str | Path, split: str, pair_id: str, kind: str, function: str, view_a: RenderedView,
                        obj_a: ObjectInstance, view_b: RenderedView, obj_b: ObjectInstance, corr: Any,
                        alignment: Any = None) -> Path:
    """Write one pair folder (``corr``: PixelCorrespondences; ``alignment``: FunctionalAlignment, 4x4 or None)."""
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    same = obj_a.instance_id == obj_b.instance_id
    if same != (kind == "multiview"):
        raise InputError(f"a {kind} pair needs {'one instance' if kind == 'multiview' else 'two instances'}, "
                         f"got {obj_a.instance_id!r} and {obj_b.instance_id!r}")
    if not isinstance(function, str) or (not function and kind == "functional"):
        raise InputError(f"a {kind} pair needs a function name, got {function!r}")
    parts_a, parts_b = _functional_parts(obj_a, function), _functional_parts(obj_b, function)
    xy_a = np.asarray(corr.xy_a, dtype=np.float32)
    xy_b = np.asarray(corr.xy_b, dtype=np.float32)
    if xy_a.ndim != 2 or xy_a.shape[1:] != (2,) or xy_a.shape != xy_b.shape:
        raise InputError(f"correspondences must be two (N, 2) arrays, got {xy_a.shape} and {xy_b.shape}")
    points = getattr(corr, "points_a", None)
    arrays = {"xy_a": xy_a, "xy_b": xy_b}
    if points is not None and np.shape(points) == (len(xy_a), 3):
        arrays["points_a"] = np.asarray(points, dtype=np.float32)
    transform = getattr(alignment, "transform", alignment)
    if transform is not None:
        transform = np.asarray(transform, dtype=np.float64)
        if transform.shape != (4, 4) or not np.isfinite(transform).all():
            raise InputError(f"alignment must be a finite 4x4 matrix, got shape {transform.shape}")
    poses = [check_pose(view.pose, f"view {s} pose") for s, view in zip(_SIDES, (view_a, view_b))]
    pair_dir = Path(root) / check_name(split, "split") / check_name(pair_id, "pair_id")
    pair_dir.mkdir(parents=True, exist_ok=True)
    (pair_dir / "meta.json").unlink(missing_ok=True)  # the pair is unfinished until meta.json is back
    _save_side(pair_dir, "a", view_a, obj_a, parts_a)
    _save_side(pair_dir, "b", view_b, obj_b, parts_b)
    np.savez(pair_dir / "correspondences.npz", **arrays)
    meta = {"pair_id": pair_id, "kind": kind, "function": function, "category_a": obj_a.category,
            "category_b": obj_b.category, "instance_a": obj_a.instance_id, "instance_b": obj_b.instance_id,
            "part_names_a": list(obj_a.part_names), "part_names_b": list(obj_b.part_names),
            "functional_parts_a": parts_a, "functional_parts_b": parts_b,
            "intrinsics_a": _intrinsics_dict(view_a.intrinsics), "intrinsics_b": _intrinsics_dict(view_b.intrinsics),
            "pose_a": poses[0].tolist(), "pose_b": poses[1].tolist(),
            "alignment": None if transform is None else transform.tolist()}
    write_json(pair_dir / "meta.json", meta)
    return pair_dir


def _intrinsics_dict(cam: CameraIntrinsics) -> dict[str, float | int]:
    return {"fx": float(cam.fx), "fy": float(cam.fy), "cx": float(cam.cx), "cy": float(cam.cy),
            "width": int(cam.width), "height": int(cam.height)}


def _scan(root: Path) -> dict[str, list[str]]:
    """Split -> finished pair ids (folders holding meta.json), sorted."""
    splits: dict[str, list[str]] = {}
    for split in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        pairs = sorted(p.name for p in split.iterdir() if (p / "meta.json").is_file())
        if pairs:
            splits[split.name] = pairs
    return splits


def finalize_training_index(root: str | Path) -> Path:
    """Rebuild ``root/index.json`` from the pair folders present (atomic replace); returns its path."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"training root {str(root)!r} does not exist")
    splits = _scan(root)
    tmp = root / f".index.json.{os.getpid()}.tmp"
    write_json(tmp, {"version": INDEX_VERSION, "splits": splits, "counts": {s: len(p) for s, p in splits.items()}})
    os.replace(tmp, root / "index.json")
    return root / "index.json"


# ---- reading ----------------------------------------------------------------------------------------------------
def meta_problems(meta: Any, path: Path) -> list[str]:
    """Everything wrong with a meta.json's fields (empty if it is usable)."""
    if not isinstance(meta, dict):
        return [f"{path}: must be a JSON object"]
    problems = []

    def need(field: str, ok: bool, expected: str) -> None:
        if field not in meta:
            problems.append(f"{path}: missing field {field!r}")
        elif not ok:
            problems.append(f"{path}: field {field!r} must be {expected}, got {describe(meta[field])}")

    strings = lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v)  # noqa: E731
    matrix = lambda v: isinstance(v, list) and len(v) == 4 and all(numbers(r, 4) for r in v)  # noqa: E731
    need("pair_id", meta.get("pair_id") == path.parent.name, f"the folder name {path.parent.name!r}")
    need("kind", meta.get("kind") in KINDS, f"one of {KINDS}")
    need("function", isinstance(meta.get("function"), str), "a string")
    for side in _SIDES:
        for field in ("category", "instance"):
            need(f"{field}_{side}", isinstance(meta.get(f"{field}_{side}"), str), "a string")
        names = meta.get(f"part_names_{side}")
        need(f"part_names_{side}", strings(names), "a list of strings")
        functional = meta.get(f"functional_parts_{side}")
        need(f"functional_parts_{side}", strings(functional) and strings(names) and set(functional) <= set(names),
             f"a list of names from part_names_{side}")
        cam = meta.get(f"intrinsics_{side}")
        ok = isinstance(cam, dict) and set(cam) == set(_INTRINSIC_FIELDS) and all(is_number(cam[k]) for k in cam) \
            and is_int(cam["width"]) and is_int(cam["height"]) and cam["fx"] > 0 and cam["fy"] > 0 \
            and cam["width"] > 0 and cam["height"] > 0
        need(f"intrinsics_{side}", ok, f"an object with {', '.join(_INTRINSIC_FIELDS)} (positive sizes)")
        need(f"pose_{side}", matrix(meta.get(f"pose_{side}")), "a 4x4 list of numbers")
    need("alignment", meta.get("alignment") is None or matrix(meta.get("alignment")), "null or a 4x4 list")
    return problems


def _correspondences(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read correspondences {str(path)!r}: {exc}") from exc
    for key in ("xy_a", "xy_b"):
        if key not in arrays:
            raise InputError(f"{str(path)!r}: missing array {key!r}")
        if arrays[key].ndim != 2 or arrays[key].shape[1] != 2 or not np.issubdtype(arrays[key].dtype, np.floating):
            raise InputError(f"{str(path)!r}: array {key!r} must be (N, 2) float, got "
                             f"{arrays[key].dtype} {arrays[key].shape}")
    if len(arrays["xy_a"]) != len(arrays["xy_b"]):
        raise InputError(f"{str(path)!r}: xy_a has {len(arrays['xy_a'])} rows but xy_b has {len(arrays['xy_b'])}")
    if "points_a" in arrays and arrays["points_a"].shape != (len(arrays["xy_a"]), 3):
        raise InputError(f"{str(path)!r}: array 'points_a' must be ({len(arrays['xy_a'])}, 3), "
                         f"got {arrays['points_a'].shape}")
    return arrays


def read_training_pair(pair_dir: str | Path) -> TrainingPair:
    """Decode one pair folder; InputError names the file and field at fault."""
    pair_dir = Path(pair_dir)
    meta = load_json(pair_dir / "meta.json", "pair meta")
    problems = meta_problems(meta, pair_dir / "meta.json")
    if problems:
        raise InputError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    decoded: dict[str, np.ndarray] = {}
    for side in _SIDES:
        cam = meta[f"intrinsics_{side}"]
        shape = (cam["height"], cam["width"])
        decoded[f"rgb_{side}"] = image_array(pair_dir / f"{side}_rgb.png", f"{side}_rgb", shape, rgb=True)
        for name in ("mask", "function"):
            raw = image_array(pair_dir / f"{side}_{name}.png", f"{side}_{name}", shape, ("L", "1"))
            decoded[f"{name}_{side}"] = raw > 0
        parts = image_array(pair_dir / f"{side}_parts.png", f"{side}_parts", shape, UINT16_MODES).astype(np.int32)
        if parts.max(initial=0) > len(meta[f"part_names_{side}"]):
            raise InputError(f"{pair_dir / f'{side}_parts.png'}: part ids exceed the {len(meta[f'part_names_{side}'])}"
                             f" names of field 'part_names_{side}'")
        decoded[f"parts_{side}"] = parts - 1
    arrays = _correspondences(pair_dir / "correspondences.npz")
    return TrainingPair(pair_dir, meta, xy_a=arrays["xy_a"].astype(np.float32),
                        xy_b=arrays["xy_b"].astype(np.float32), points_a=arrays.get("points_a"), **decoded)


# ---- schema check -----------------------------------------------------------------------------------------------
def _pair_content_problems(pair: TrainingPair) -> list[str]:
    problems = []
    for side in _SIDES:
        cam = pair.meta[f"intrinsics_{side}"]
        xy = getattr(pair, f"xy_{side}")
        bad = ~np.isfinite(xy).all(1) | (xy[:, 0] < 0) | (xy[:, 0] >= cam["width"]) | (xy[:, 1] < 0) \
            | (xy[:, 1] >= cam["height"])
        if bad.any():
            problems.append(f"{pair.pair_dir / 'correspondences.npz'}: {int(bad.sum())} rows of xy_{side} outside "
                            f"the {cam['width']} x {cam['height']} image")
        if (getattr(pair, f"function_{side}") & ~getattr(pair, f"mask_{side}")).any():
            problems.append(f"{pair.pair_dir / f'{side}_function.png'}: function pixels outside {side}_mask.png")
        for name in ("mask", "function"):
            raw = np.asarray(Image.open(pair.pair_dir / f"{side}_{name}.png"))
            if raw.dtype != bool and not np.isin(raw, (0, 255)).all():
                problems.append(f"{pair.pair_dir / f'{side}_{name}.png'}: values other than 0 and 255")
    return problems


def check_training_dataset(root: str | Path) -> list[str]:
    """Human-readable problems of a training root (``[]`` when every pair reads and the index matches)."""
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a directory"]
    problems, scanned = [], _scan(root)
    try:
        index = load_json(root / "index.json", "training index")
        listed = index.get("splits") if isinstance(index, dict) else None
        if not isinstance(listed, dict) or not all(isinstance(v, list) for v in listed.values()):
            problems.append(f"{root / 'index.json'}: field 'splits' must map split names to lists of pair ids")
        elif {s: sorted(v) for s, v in listed.items() if v} != scanned:
            problems.append(f"{root / 'index.json'}: lists {sum(map(len, listed.values()))} pairs but the folders "
                            f"hold {sum(map(len, scanned.values()))}; run finalize_training_index")
    except InputError as exc:
        problems.append(f"{exc} (run finalize_training_index)")
    if not scanned:
        problems.append(f"{root}: no pair folder with a meta.json")
    for split, pairs in scanned.items():
        for pair_id in pairs:
            try:
                problems += _pair_content_problems(read_training_pair(root / split / pair_id))
            except InputError as exc:
                problems.append(str(exc))
    return problems
