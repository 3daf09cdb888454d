"""The HANDAL dataset layout (BOP with HANDAL's differences): writers for procedural objects and views, readers,
and a schema check, so that tools written for the real HANDAL data run unchanged on procedural data.

Layout under ``root``::

    handal_dataset_<category>/models/obj_<id:06d>.ply          mesh in millimetres, per-vertex colours (BOP)
    handal_dataset_<category>/models/obj_<id:06d>_parts.json   {"part_names", "face_parts"} (our addition)
    handal_dataset_<category>/models/models_info.json          {"<id>": {diameter, min_x.., size_x..}} in mm
    handal_dataset_<category>/<split>/<scene:06d>/
        rgb/<frame:06d>.jpg  depth/<frame:06d>.png  mask/<frame:06d>_<k:06d>.png  mask_visib/<frame:06d>_<k:06d>.png
        scene_gt.json  scene_camera.json
    functional_pairs/<function>/<catA>|||<catB>|||<group:04d>/trial_<N>/<catA>|||<imageA>.npy, <catB>|||<imageB>.npy

Decisions a reader of the data must know:

* Depth PNGs are uint16 with ``depth_mm = value * depth_scale`` (``depth_scale`` in ``scene_camera.json``,
  0.1 by default, so 0.1 mm units and at most 6.55 m); 0 means no depth. Poses are object -> camera, with
  ``cam_t_m2c`` in millimetres; ``cam_K`` is the OpenCV-convention matrix (pixel centres at integers).
* Frames are numbered 0..n-1 in the order of the views; a scene is written whole (its JSON files are replaced).
  Object ids are positive integers, as in BOP. RGB is JPEG quality 95 without chroma subsampling.
* In a functional-pair file name, ``<image>`` is the image path relative to ``root`` with every "/" replaced by
  "+" (``handal_dataset_mug+test+000000+rgb+000003.jpg``), so the file name stays flat. Image paths therefore
  may not contain "+" or "|||", which keeps the mapping reversible. Arrays are (N, 2) int64 [row, col],
  corresponding row by row.
* When both sides share a category both file names start with ``<cat>|||``; the writer then stores as side A the
  side whose file name sorts first (swapping the arrays; a correspondence is symmetric) and the reader sorts alike.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...camera import CameraIntrinsics
from ...errors import InputError
from ...io import write_json
from ...object_crop import reference_crop
from ..ply import PlyModel, read_ply_model, write_ply
from ..types import ObjectInstance, RenderedView
from .schema import SEP, check_name, check_pose, describe, is_int, is_number, load_json, numbers, open_image

__all__ = ["PlyModel", "read_ply_model", "write_ply", "check_name", "check_pose", "describe", "is_int", "is_number",
           "load_json", "numbers", "open_image"]  # re-exported: the training writer and older callers import here
FUNCTIONAL_DIR = "functional_pairs"
MODEL_INFO_FIELDS = ("diameter", "min_x", "min_y", "min_z", "size_x", "size_y", "size_z")
UINT16_MODES = ("I;16", "I;16L", "I;16B", "I")  # how Pillow opens a 16-bit grayscale PNG


def dataset_name(category: str) -> str:
    return f"handal_dataset_{check_name(category, 'category')}"


# ---- models -----------------------------------------------------------------------------------------------------
def _diameter(points: np.ndarray) -> float:
    """Largest distance between two vertices (over the convex hull when there is one)."""
    pts = np.unique(points, axis=0)
    if len(pts) > 4:
        try:
            from scipy.spatial import ConvexHull

            pts = pts[ConvexHull(pts).vertices]
        except Exception:  # noqa: BLE001 -- flat or degenerate input: Qhull refuses, use every point
            pass
    best, step = 0.0, max(1, 2_000_000 // max(len(pts), 1))
    for start in range(0, len(pts), step):
        best = max(best, float(np.linalg.norm(pts[start:start + step, None] - pts[None], axis=-1).max()))
    return best


def vertex_colors(obj: ObjectInstance) -> np.ndarray:
    """uint8 colour per vertex from the part colours of the faces using it (grey where a part has no colour)."""
    face_rgb = np.array([obj.appearance.part_colors.get(n, (0.5, 0.5, 0.5)) for n in obj.part_names], np.float64)
    colors = np.full((len(obj.vertices), 3), 128, dtype=np.uint8)
    if len(face_rgb):
        per_face = np.clip(np.round(face_rgb[np.asarray(obj.face_parts)] * 255), 0, 255).astype(np.uint8)
        for k in range(3):  # a vertex shared by parts keeps the last write
            colors[np.asarray(obj.faces)[:, k]] = per_face
    return colors


def write_handal_model(root: str | Path, category: str, obj_id: int, obj: ObjectInstance) -> Path:
    """``models/obj_<id>.ply`` in millimetres, its ``_parts.json`` and its ``models_info.json`` entry (merged)."""
    if not is_int(obj_id) or obj_id <= 0:
        raise InputError(f"obj_id must be a positive integer (BOP ids start at 1), got {obj_id!r}")
    models = Path(root) / dataset_name(category) / "models"
    vertices_mm = np.asarray(obj.vertices, dtype=np.float64) * 1000.0
    faces = np.asarray(obj.faces, dtype=np.int64)
    if len(vertices_mm) == 0 or len(faces) == 0:
        raise InputError(f"{obj.instance_id}: cannot write a model without vertices and faces")
    ply = write_ply(models / f"obj_{obj_id:06d}.ply", vertices_mm, faces, vertex_colors(obj))
    write_json(models / f"obj_{obj_id:06d}_parts.json",
               {"part_names": list(obj.part_names), "face_parts": np.asarray(obj.face_parts).astype(int).tolist()})
    info_path = models / "models_info.json"
    info = load_json(info_path, "models info") if info_path.exists() else {}
    if not isinstance(info, dict):
        raise InputError(f"{str(info_path)!r} must be an object keyed by obj_id")
    lo, size = vertices_mm.min(0), vertices_mm.max(0) - vertices_mm.min(0)
    values = (_diameter(vertices_mm), *lo, *size)
    info[str(obj_id)] = {field: float(v) for field, v in zip(MODEL_INFO_FIELDS, values)}
    write_json(info_path, dict(sorted(info.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else -1)))
    return ply


# ---- scenes -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class HandalFrame:
    """One annotated object in one frame of a HANDAL/BOP scene, in metres."""

    frame_id: int
    gt_index: int  # position in the frame's scene_gt list (the ``_<k:06d>`` of the mask files)
    obj_id: int
    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32 metres, 0 = no depth
    mask: np.ndarray  # (H, W) bool, from mask_visib
    intrinsics: CameraIntrinsics
    pose: np.ndarray  # (4, 4) object -> camera, metres
    rgb_path: Path


def write_handal_scene(root: str | Path, category: str, scene_id: int, obj_id: int, views: list[RenderedView],
                       split: str = "test", depth_scale: float = 0.1) -> Path:
    """Write views of one object as a BOP scene (frames 0..n-1); returns the scene folder."""
    if not is_int(scene_id) or scene_id < 0 or not is_int(obj_id) or obj_id <= 0:
        raise InputError(f"scene_id must be an integer >= 0 and obj_id > 0, got {scene_id!r}, {obj_id!r}")
    if not is_number(depth_scale) or depth_scale <= 0:
        raise InputError(f"depth_scale must be a positive number (mm per depth unit), got {depth_scale!r}")
    if not views:
        raise InputError("write_handal_scene needs at least one view")
    scene = Path(root) / dataset_name(category) / check_name(split, "split") / f"{scene_id:06d}"
    for sub in ("rgb", "depth", "mask", "mask_visib"):
        (scene / sub).mkdir(parents=True, exist_ok=True)
    gt, cameras = {}, {}
    for frame, view in enumerate(views):
        cam = view.intrinsics
        shape = (cam.height, cam.width)
        if view.rgb.shape != shape + (3,) or view.depth.shape != shape or view.mask.shape != shape:
            raise InputError(f"view {frame}: rgb/depth/mask shapes {view.rgb.shape}/{view.depth.shape}/"
                             f"{view.mask.shape} do not match the intrinsics' {cam.width} x {cam.height}")
        pose = check_pose(view.pose, f"view {frame} pose")
        depth = np.asarray(view.depth, dtype=np.float64)
        units = np.where(np.isfinite(depth) & (depth > 0), depth * 1000.0 / depth_scale, 0.0)
        if units.max() > 65535.49:
            raise InputError(f"view {frame}: depth {depth.max():.3f} m exceeds uint16 at depth_scale "
                             f"{depth_scale} mm; pass a larger depth_scale")
        name = f"{frame:06d}"
        Image.fromarray(np.ascontiguousarray(view.rgb, dtype=np.uint8)).save(
            scene / "rgb" / f"{name}.jpg", quality=95, subsampling=0)
        Image.fromarray(np.round(units).astype(np.uint16)).save(scene / "depth" / f"{name}.png")
        mask = Image.fromarray(np.asarray(view.mask, dtype=bool).astype(np.uint8) * 255)
        mask.save(scene / "mask" / f"{name}_000000.png")
        mask.save(scene / "mask_visib" / f"{name}_000000.png")
        gt[str(frame)] = [{"cam_R_m2c": pose[:3, :3].ravel().tolist(), "cam_t_m2c": (pose[:3, 3] * 1000).tolist(),
                           "obj_id": obj_id}]
        cameras[str(frame)] = {"cam_K": cam.K.ravel().tolist(), "depth_scale": float(depth_scale),
                               "width": int(cam.width), "height": int(cam.height)}
    write_json(scene / "scene_gt.json", gt)
    write_json(scene / "scene_camera.json", cameras)
    return scene


def _frame_key_problem(key: Any, path: Path) -> str | None:
    return None if isinstance(key, str) and key.isdigit() else f"{path}: frame key {key!r} is not an integer"


def scene_gt_problems(data: Any, path: Path) -> list[str]:
    if not isinstance(data, dict):
        return [f"{path}: must be an object mapping frame ids to lists of annotations"]
    problems: list[str] = []
    for key, anns in data.items():
        if (bad := _frame_key_problem(key, path)) or not isinstance(anns, list) or not anns:
            problems.append(bad or f"{path}: frame {key}: must be a non-empty list of annotations")
            continue
        for k, ann in enumerate(anns):
            at = f"{path}: frame {key}[{k}]"
            if not isinstance(ann, dict):
                problems.append(f"{at}: must be an object")
                continue
            for field, n in (("cam_R_m2c", 9), ("cam_t_m2c", 3)):
                if field not in ann:
                    problems.append(f"{at}: missing field {field!r}")
                elif not numbers(ann[field], n):
                    problems.append(f"{at}: field {field!r} must be {n} finite numbers, got {describe(ann[field])}")
            if "cam_R_m2c" in ann and numbers(ann["cam_R_m2c"], 9):
                R = np.reshape(ann["cam_R_m2c"], (3, 3))
                if np.abs(R.T @ R - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
                    problems.append(f"{at}: field 'cam_R_m2c' is not a rotation matrix")
            if not is_int(ann.get("obj_id")) or ann["obj_id"] <= 0:
                problems.append(f"{at}: field 'obj_id' must be a positive integer, got {ann.get('obj_id')!r}")
    return problems


def scene_camera_problems(data: Any, path: Path) -> list[str]:
    if not isinstance(data, dict):
        return [f"{path}: must be an object mapping frame ids to camera entries"]
    problems: list[str] = []
    for key, cam in data.items():
        if (bad := _frame_key_problem(key, path)) or not isinstance(cam, dict):
            problems.append(bad or f"{path}: frame {key}: must be an object")
            continue
        at = f"{path}: frame {key}"
        checks = (("cam_K", lambda v: numbers(v, 9), "9 finite numbers"),
                  ("depth_scale", lambda v: is_number(v) and v > 0, "a positive number"),
                  ("width", lambda v: is_int(v) and v > 0, "a positive integer"),
                  ("height", lambda v: is_int(v) and v > 0, "a positive integer"))
        for field, ok, expected in checks:
            if field not in cam:
                problems.append(f"{at}: missing field {field!r}")
            elif not ok(cam[field]):
                problems.append(f"{at}: field {field!r} must be {expected}, got {describe(cam[field])}")
    return problems


def _load_scene_json(scene: Path) -> tuple[dict, dict]:
    gt = load_json(scene / "scene_gt.json", "scene_gt")
    cams = load_json(scene / "scene_camera.json", "scene_camera")
    problems = scene_gt_problems(gt, scene / "scene_gt.json") + scene_camera_problems(cams, scene / "scene_camera.json")
    missing = [k for k in gt if k not in cams] if not problems else []
    problems += [f"{scene / 'scene_camera.json'}: no entry for frame {k} of scene_gt.json" for k in missing]
    if problems:
        raise InputError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    return gt, cams


def rgb_file(scene: Path, frame: int) -> Path:
    jpg = scene / "rgb" / f"{frame:06d}.jpg"
    png = jpg.with_suffix(".png")
    return png if not jpg.exists() and png.exists() else jpg


def image_array(path: Path, what: str, shape: tuple[int, int], modes: tuple[str, ...] | None = None,
                rgb: bool = False) -> np.ndarray:
    """Pixels of an image file whose size (and Pillow mode) must be as declared."""
    img = open_image(path, what)
    if modes is not None and img.mode not in modes:
        raise InputError(f"{what} file {str(path)!r} has mode {img.mode} (expected {' or '.join(modes)})")
    array = np.asarray(img.convert("RGB") if rgb else img)
    if array.shape[:2] != shape:
        raise InputError(f"{what} file {str(path)!r} is {array.shape[1]} x {array.shape[0]}, but scene_camera "
                         f"declares width {shape[1]}, height {shape[0]}")
    return array


def read_handal_scene(scene_dir: str | Path) -> list[HandalFrame]:
    """Every annotated object of every frame of a scene folder, in frame order."""
    scene = Path(scene_dir)
    gt, cams = _load_scene_json(scene)
    frames = []
    for key in sorted(gt, key=int):
        frame, cam = int(key), cams[key]
        shape = (cam["height"], cam["width"])
        try:
            intrinsics = CameraIntrinsics.from_matrix(cam["cam_K"], cam["width"], cam["height"])
        except InputError as exc:
            raise InputError(f"{scene / 'scene_camera.json'}: frame {key} field 'cam_K': {exc}") from exc
        rgb_path = rgb_file(scene, frame)
        rgb = image_array(rgb_path, "rgb", shape, rgb=True)
        raw = image_array(scene / "depth" / f"{frame:06d}.png", "depth", shape, UINT16_MODES)
        depth = (raw.astype(np.float64) * cam["depth_scale"] / 1000.0).astype(np.float32)
        for k, ann in enumerate(gt[key]):
            mask = image_array(scene / "mask_visib" / f"{frame:06d}_{k:06d}.png", "mask_visib", shape)
            pose = np.eye(4)
            pose[:3, :3] = np.reshape(ann["cam_R_m2c"], (3, 3))
            pose[:3, 3] = np.asarray(ann["cam_t_m2c"], dtype=np.float64) / 1000.0
            frames.append(HandalFrame(frame, k, ann["obj_id"], rgb, depth, mask.reshape(shape + (-1,)).max(-1) > 0,
                                      intrinsics, pose, rgb_path))
    return frames


# ---- functional pairs -------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FunctionalPairAnnotation:
    """Dense functional correspondences between two images: rows of ``rc_a`` and ``rc_b`` ([row, col]) match."""

    function: str
    category_a: str
    category_b: str
    group: int
    trial: int
    image_a: str  # relative to the dataset root, "/"-separated
    image_b: str
    rc_a: np.ndarray  # (N, 2) int64
    rc_b: np.ndarray
    path_a: Path
    path_b: Path


def flatten_image(image: str) -> str:
    """Image path relative to the root -> the flat form used in file names ("/" -> "+")."""
    if not isinstance(image, str) or not image or image.startswith("/") or "\\" in image or "+" in image \
            or SEP in image or any(p in ("", ".", "..") for p in image.split("/")):
        raise InputError(f"image must be a relative '/'-separated path without '+', '{SEP}', '.' or '..' parts, "
                         f"got {image!r}")
    return image.replace("/", "+")


def _rc_array(value: Any, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2 or array.shape[1] != 2 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"{what} must be an (N, 2) integer array of [row, col], got {array.dtype} {array.shape}")
    return array.astype(np.int64)


def write_functional_pair(root: str | Path, function: str, category_a: str, image_a: str, category_b: str,
                          image_b: str, corr: Any, group: int = 0, trial: int = 0) -> tuple[Path, Path]:
    """Save row-aligned [row, col] arrays (``corr``: PixelCorrespondences, or a pair of arrays)."""
    rc_a, rc_b = corr.rows_cols() if hasattr(corr, "rows_cols") else corr
    rc_a, rc_b = _rc_array(rc_a, "rows/cols of A"), _rc_array(rc_b, "rows/cols of B")
    if len(rc_a) != len(rc_b):
        raise InputError(f"correspondences differ in length: {len(rc_a)} rows for A, {len(rc_b)} for B")
    if (rc_a < 0).any() or (rc_b < 0).any():
        raise InputError("correspondence rows/cols must be >= 0")
    if not (is_int(group) and is_int(trial) and group >= 0 and trial >= 0):
        raise InputError(f"group and trial must be integers >= 0, got {group!r}, {trial!r}")
    check_name(function, "function")
    name_a = f"{check_name(category_a, 'category_a')}{SEP}{flatten_image(image_a)}.npy"
    name_b = f"{check_name(category_b, 'category_b')}{SEP}{flatten_image(image_b)}.npy"
    if category_a == category_b:
        if image_a == image_b:
            raise InputError(f"functional pair of {category_a!r} pairs image {image_a!r} with itself")
        if name_b < name_a:
            (name_a, rc_a), (name_b, rc_b) = (name_b, rc_b), (name_a, rc_a)
    directory = (Path(root) / FUNCTIONAL_DIR / function / f"{category_a}{SEP}{category_b}{SEP}{group:04d}"
                 / f"trial_{trial}")
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / name_a, rc_a)
    np.save(directory / name_b, rc_b)
    return directory / name_a, directory / name_b


def _load_rc(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read correspondence file {str(path)!r}: {exc}") from exc
    return _rc_array(array, f"correspondence file {str(path)!r}")


def read_functional_trial(trial_dir: Path) -> FunctionalPairAnnotation:
    """One ``trial_<N>`` folder of ``functional_pairs/<function>/<catA>|||<catB>|||<group>/``."""
    pair_dir, function = trial_dir.parent, trial_dir.parent.parent.name
    parts = pair_dir.name.split(SEP)
    trial = trial_dir.name.removeprefix("trial_")
    if len(parts) != 3 or not parts[2].isdigit() or not trial_dir.name.startswith("trial_") or not trial.isdigit():
        raise InputError(f"{str(trial_dir)!r}: expected <catA>{SEP}<catB>{SEP}<group>/trial_<N>")
    cat_a, cat_b = parts[0], parts[1]
    files = sorted(p for p in trial_dir.iterdir() if p.suffix == ".npy")
    side_a = [p for p in files if p.name.startswith(cat_a + SEP)]
    side_b = [p for p in files if p.name.startswith(cat_b + SEP)]
    if len(files) != 2 or (cat_a != cat_b and (len(side_a) != 1 or len(side_b) != 1)) or not side_a or not side_b:
        raise InputError(f"{str(trial_dir)!r}: expected two files {cat_a}{SEP}<image>.npy and "
                         f"{cat_b}{SEP}<image>.npy, found {[p.name for p in files]}")
    path_a, path_b = (files[0], files[1]) if cat_a == cat_b else (side_a[0], side_b[0])
    rc_a, rc_b = _load_rc(path_a), _load_rc(path_b)
    if len(rc_a) != len(rc_b):
        raise InputError(f"{str(trial_dir)!r}: {path_a.name} has {len(rc_a)} rows but {path_b.name} has {len(rc_b)}")
    image = lambda p, cat: p.name[len(cat) + len(SEP):-len(".npy")].replace("+", "/")  # noqa: E731
    return FunctionalPairAnnotation(function, cat_a, cat_b, int(parts[2]), int(trial), image(path_a, cat_a),
                                    image(path_b, cat_b), rc_a, rc_b, path_a, path_b)


def _trial_dirs(root: Path) -> list[Path]:
    base = root / FUNCTIONAL_DIR
    return sorted(t for t in base.glob("*/*/*") if t.is_dir())


def read_functional_pairs(root: str | Path) -> list[FunctionalPairAnnotation]:
    """Every functional pair annotation under ``root/functional_pairs``."""
    root = Path(root)
    if not (root / FUNCTIONAL_DIR).is_dir():
        raise InputError(f"{str(root / FUNCTIONAL_DIR)!r} does not exist")
    return [read_functional_trial(t) for t in _trial_dirs(root)]


# ---- schema check -----------------------------------------------------------------------------------------------
def _file_problems(path: Path, what: str, size: tuple[int, int], modes: tuple[str, ...]) -> list[str]:
    try:
        img = open_image(path, what, header_only=True)
    except InputError as exc:
        return [str(exc)]
    problems = []
    if img.size != size:
        problems.append(f"{what} file {path}: size {img.size[0]} x {img.size[1]} differs from the declared "
                        f"width {size[0]}, height {size[1]}")
    if img.mode not in modes:
        problems.append(f"{what} file {path}: mode {img.mode} (expected {' or '.join(modes)})")
    return problems


def _model_problems(models: Path) -> list[str]:
    try:
        info = load_json(models / "models_info.json", "models info")
    except InputError as exc:
        return [str(exc)]
    if not isinstance(info, dict):
        return [f"{models / 'models_info.json'}: must be an object keyed by obj_id"]
    problems = []
    for key, entry in info.items():
        at = f"{models / 'models_info.json'}: obj {key}"
        if not key.isdigit():
            problems.append(f"{at}: key is not an integer obj_id")
            continue
        for field in MODEL_INFO_FIELDS:
            value = entry.get(field) if isinstance(entry, dict) else None
            if not is_number(value):
                problems.append(f"{at}: field {field!r} must be a number, got {value!r}")
        try:
            read_ply_model(models / f"obj_{int(key):06d}.ply")
        except InputError as exc:
            problems.append(str(exc))
    for ply in models.glob("obj_*.ply"):
        if ply.stem[4:].isdigit() and str(int(ply.stem[4:])) not in info:
            problems.append(f"{models / 'models_info.json'}: no entry for {ply.name}")
    return problems


def _scene_problems(scene: Path) -> list[str]:
    try:
        gt, cams = _load_scene_json(scene)
    except InputError as exc:
        return [str(exc)]
    problems = []
    for key, anns in gt.items():
        frame, cam = int(key), cams[key]
        size = (cam["width"], cam["height"])
        problems += _file_problems(rgb_file(scene, frame), "rgb", size, ("RGB", "L"))
        problems += _file_problems(scene / "depth" / f"{frame:06d}.png", "depth", size, UINT16_MODES)
        for k in range(len(anns)):
            for sub in ("mask", "mask_visib"):
                problems += _file_problems(scene / sub / f"{frame:06d}_{k:06d}.png", sub, size, ("L", "1"))
    return problems


def _pair_problems(root: Path) -> list[str]:
    problems = []
    for trial_dir in _trial_dirs(root):
        try:
            pair = read_functional_trial(trial_dir)
        except InputError as exc:
            problems.append(str(exc))
            continue
        for image, rc, path in ((pair.image_a, pair.rc_a, pair.path_a), (pair.image_b, pair.rc_b, pair.path_b)):
            try:
                width, height = open_image(root / image, "image", header_only=True).size
            except InputError as exc:
                problems.append(f"{path}: {exc}")
                continue
            bad = (rc[:, 0] >= height) | (rc[:, 1] >= width)
            if bad.any():
                problems.append(f"{path}: {int(bad.sum())} rows/cols outside the {width} x {height} image {image}")
    return problems


def check_handal_dataset(root: str | Path) -> list[str]:
    """Human-readable problems of a HANDAL-layout root (``[]`` when everything a reader needs is there)."""
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a directory"]
    datasets = sorted(d for d in root.glob("handal_dataset_*") if d.is_dir())
    try:
        layout = find_reference_layout(root)
    except InputError as exc:
        return [str(exc)]
    if not datasets and not (root / FUNCTIONAL_DIR).is_dir() and layout is None:
        return [f"{root}: no handal_dataset_<category> folder, no {FUNCTIONAL_DIR} folder and no reference layout "
                "(selected_annotations*.json)"]
    problems = []
    for dataset in datasets:
        if (dataset / "models").is_dir():
            problems += _model_problems(dataset / "models")
        for split in sorted(d for d in dataset.iterdir() if d.is_dir() and d.name != "models"):
            for scene in sorted(s for s in split.iterdir() if s.is_dir()):
                problems += _scene_problems(scene)
    problems += _pair_problems(root)
    if layout is not None:
        problems += [f"reference layout: {p}" for p in reference_layout_problems(layout)]
    return problems


# ---- the reference's released layout ----------------------------------------------------------------------------
# The released code (cond_corr/inference_2D_HANDAL.py) reads:
#   <annotation_list>.json                      {action: {"<objA>|||<objB>": [trial, ...]}}
#   <annotation_dir>/<action>/<objA>|||<objB>|||0000/trial_<N>/<objA>|||<img>.npy, <objB>|||<img>.npy
#                                               (N, 2) int [row, col] in the 224 x 224 processed crop, row-aligned
#   <base_dir>/<obj>/rgb_images_processed/<img>, <base_dir>/<obj>/object_masks_processed/<img>   (224 x 224)
# An object's category is the part of its name before "---" (within/across category). ``soco synth handal`` writes
# this layout under <root>/reference/ (selected_annotations.json, annotations/, fully_processed_data/).
REFERENCE_DIR = "reference"
REFERENCE_LIST = "selected_annotations.json"
REFERENCE_ANNOTATIONS = "annotations"
REFERENCE_BASE = "fully_processed_data"
REFERENCE_GROUP = "0000"
REFERENCE_SIZE = 224  # get_heatmap / get_mask reshape to (224, 224)
# inference_2D_HANDAL.py:232-233: ``random.sample(range(len(co1)), 10)`` for the figure of every trial; a trial with
# fewer points raises ValueError there and stops the whole label-transfer run
REFERENCE_MIN_POINTS = 10


@dataclass(frozen=True)
class ReferenceLayout:
    annotation_list: Path
    annotation_dir: Path
    base_dir: Path


@dataclass(frozen=True, eq=False)
class ReferenceTrial:
    """One trial of the reference layout, loaded: the processed crops, object masks and annotations."""

    pair_id: str
    function: str
    obj_a: str
    obj_b: str
    image_name_a: str
    image_name_b: str
    image_a: np.ndarray  # (224, 224, 3) uint8
    mask_a: np.ndarray  # (224, 224) bool (the reference: np.array(mask) // 255 == 1)
    image_b: np.ndarray
    mask_b: np.ndarray
    rc_a: np.ndarray  # (N, 2) int64 [row, col]
    rc_b: np.ndarray

    @property
    def category_a(self) -> str:
        return object_category(self.obj_a)

    @property
    def category_b(self) -> str:
        return object_category(self.obj_b)


def object_category(obj: str) -> str:
    """The reference's ``obj.split("---")[0]``."""
    return obj.split("---")[0]


def find_reference_layout(root: str | Path, annotation_list: str | Path | None = None,
                          annotation_dir: str | Path | None = None, base_dir: str | Path | None = None
                          ) -> ReferenceLayout | None:
    """The reference layout at ``root`` (or ``root/reference``): the annotation list is ``annotation_list`` or the
    first ``selected_annotations*.json``; annotations under ``annotations/`` (else the list's folder); images under
    ``fully_processed_data/`` (else the list's folder). None when there is no annotation list."""
    root = Path(root)
    if annotation_list is None:
        for folder in (root, root / REFERENCE_DIR):
            found = sorted(folder.glob("selected_annotations*.json")) if folder.is_dir() else []
            if found:
                annotation_list = found[0]
                break
        else:
            return None
    annotation_list = Path(annotation_list)
    if not annotation_list.is_file():
        raise InputError(f"annotation list {str(annotation_list)!r} does not exist")
    folder = annotation_list.parent
    ann = Path(annotation_dir) if annotation_dir else (folder / REFERENCE_ANNOTATIONS
                                                        if (folder / REFERENCE_ANNOTATIONS).is_dir() else folder)
    base = Path(base_dir) if base_dir else (folder / REFERENCE_BASE if (folder / REFERENCE_BASE).is_dir() else folder)
    return ReferenceLayout(annotation_list, ann, base)


def _reference_image(path: Path, what: str, mode: str) -> np.ndarray:
    return np.asarray(open_image(path, what).convert(mode))


def read_reference_trial(layout: ReferenceLayout, action: str, obj_pair: str, trial: int) -> ReferenceTrial:
    """``run_inference`` of the reference for one trial (its two .npy files in sorted order: the reference takes
    ``os.listdir`` order, which the file system decides; both directions are evaluated either way)."""
    trial_dir = layout.annotation_dir / action / f"{obj_pair}{SEP}{REFERENCE_GROUP}" / f"trial_{trial}"
    if not trial_dir.is_dir():
        raise InputError(f"{str(trial_dir)!r} does not exist (listed in {layout.annotation_list})")
    files = sorted(p for p in trial_dir.iterdir() if p.suffix == ".npy")
    if len(files) != 2:
        raise InputError(f"{str(trial_dir)!r}: expected two <obj>{SEP}<img>.npy files, found {[p.name for p in files]}")
    sides = []
    for path in files:
        parts = path.name[:-len(".npy")].split(SEP)
        if len(parts) != 2:
            raise InputError(f"{str(path)!r}: expected <obj>{SEP}<img>.npy")
        obj, img = parts
        rgb = _reference_image(layout.base_dir / obj / "rgb_images_processed" / img, "rgb", "RGB")
        mask = _reference_image(layout.base_dir / obj / "object_masks_processed" / img, "mask", "L") // 255 == 1
        rc = _load_rc(path)
        if rgb.shape[:2] != mask.shape or (rc.size and ((rc < 0).any() or (rc >= np.array(mask.shape)).any())):
            raise InputError(f"{str(path)!r}: image {rgb.shape[:2]}, mask {mask.shape} or points outside them")
        sides.append((obj, img, rgb, mask, rc))
    (oa, ia, ra, ma, pa), (ob, ib, rb, mb, pb) = sides
    if len(pa) != len(pb):
        raise InputError(f"{str(trial_dir)!r}: {len(pa)} points for {oa} but {len(pb)} for {ob}")
    pair_id = f"{action}/{obj_pair}{SEP}{REFERENCE_GROUP}/trial_{trial}"
    return ReferenceTrial(pair_id, action, oa, ob, ia, ib, ra, ma, rb, mb, pa, pb)


def listed_reference_trials(layout: ReferenceLayout) -> list[tuple[str, str, int]]:
    """``(action, obj_pair, trial)`` of the annotation list, in its order (the reference's loops)."""
    data = load_json(layout.annotation_list, "annotation list")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"{layout.annotation_list}: expected {{action: {{'<objA>{SEP}<objB>': [trial, ...]}}}}")
    out = []
    for action, entries in data.items():
        for obj_pair, trials in entries.items():
            if len(obj_pair.split(SEP)) != 2 or not isinstance(trials, list) or not all(is_int(t) for t in trials):
                raise InputError(f"{layout.annotation_list}: bad entry {action}/{obj_pair}: {trials!r}")
            out += [(action, obj_pair, int(t)) for t in trials]
    return out


def read_reference_layout(layout: ReferenceLayout) -> list[ReferenceTrial]:
    """Every trial of the annotation list, in its order (action, object pair, trial), as the reference loops.
    Lenient where this project's evaluator is (fewer than 10 points are evaluated; see
    :func:`reference_layout_problems` for what the released scripts themselves need)."""
    return [read_reference_trial(layout, *listed) for listed in listed_reference_trials(layout)]


def reference_layout_problems(layout: ReferenceLayout) -> list[str]:
    """What the released scripts (``inference_2D_HANDAL.py``, ``inference_2D_discovery_HANDAL.py``) would trip on,
    trial by trial (``[]`` when they run through): the trial folder holds exactly the two ``<obj>|||<img>.npy``
    files (they take ``os.listdir(anno_dir)[0:2]``), images and masks are 224 x 224, both object masks have a
    pixel, both sides have the same number of points and at least :data:`REFERENCE_MIN_POINTS` (the label
    transfer's ``random.sample(.., 10)``)."""
    try:
        listed = listed_reference_trials(layout)
    except InputError as exc:
        return [str(exc)]
    problems = []
    for action, obj_pair, trial in listed:
        trial_dir = layout.annotation_dir / action / f"{obj_pair}{SEP}{REFERENCE_GROUP}" / f"trial_{trial}"
        if trial_dir.is_dir():
            entries = sorted(os.listdir(trial_dir))
            if len(entries) != 2 or not all(e.endswith(".npy") for e in entries):
                problems.append(f"{trial_dir}: the reference reads the first two entries of os.listdir, and the "
                                f"folder holds {entries}")
                continue
        try:
            t = read_reference_trial(layout, action, obj_pair, trial)
        except InputError as exc:
            problems.append(str(exc))
            continue
        where = f"{trial_dir}"
        for obj, image, mask in ((t.obj_a, t.image_a, t.mask_a), (t.obj_b, t.image_b, t.mask_b)):
            if mask.shape != (REFERENCE_SIZE, REFERENCE_SIZE) or image.shape[:2] != mask.shape:
                problems.append(f"{where}: {obj} is {image.shape[:2]} with a {mask.shape} mask; the reference "
                                f"reshapes every heatmap to {REFERENCE_SIZE} x {REFERENCE_SIZE}")
            elif not mask.any():
                problems.append(f"{where}: the object mask of {obj} is empty (the reference's argmax and chance "
                                "draws need a pixel)")
        if len(t.rc_a) < REFERENCE_MIN_POINTS:
            problems.append(f"{where}: {len(t.rc_a)} points; the reference's label transfer samples "
                            f"{REFERENCE_MIN_POINTS} (inference_2D_HANDAL.py:233) and stops the run")
    return problems


def write_reference_trial(out: str | Path, action: str, obj_a: str, image_name_a: str, image_a: np.ndarray,
                          mask_a: np.ndarray, rc_a: np.ndarray, obj_b: str, image_name_b: str, image_b: np.ndarray,
                          mask_b: np.ndarray, rc_b: np.ndarray, trial: int) -> Path:
    """One trial of the reference layout under ``out`` (processed crops, masks and the two .npy files); the
    caller records it in the annotation list (:func:`write_reference_list`)."""
    out = Path(out)
    for obj, img in ((obj_a, image_name_a), (obj_b, image_name_b)):
        if SEP in obj or "/" in obj or SEP in img or "/" in img or not obj or not img:
            raise InputError(f"object {obj!r} and image {img!r} may not be empty or contain '/' or '{SEP}'")
    if (obj_a, image_name_a) == (obj_b, image_name_b):
        raise InputError(f"a trial pairs {obj_a}/{image_name_a} with itself")
    rc_a, rc_b = _rc_array(rc_a, "rows/cols of A"), _rc_array(rc_b, "rows/cols of B")
    if len(rc_a) != len(rc_b):
        raise InputError(f"correspondences differ in length: {len(rc_a)} and {len(rc_b)}")
    if len(rc_a) < REFERENCE_MIN_POINTS:
        raise InputError(f"{action} {obj_a}/{image_name_a} - {obj_b}/{image_name_b}: {len(rc_a)} points; the "
                         f"reference's label transfer samples {REFERENCE_MIN_POINTS} (inference_2D_HANDAL.py:233)")
    base = out / REFERENCE_BASE
    for obj, img, rgb, mask in ((obj_a, image_name_a, image_a, mask_a), (obj_b, image_name_b, image_b, mask_b)):
        (base / obj / "rgb_images_processed").mkdir(parents=True, exist_ok=True)
        (base / obj / "object_masks_processed").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(base / obj / "rgb_images_processed" / img)
        Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(
            base / obj / "object_masks_processed" / img)
    trial_dir = out / REFERENCE_ANNOTATIONS / check_name(action, "action") / \
        f"{obj_a}{SEP}{obj_b}{SEP}{REFERENCE_GROUP}" / f"trial_{trial}"
    trial_dir.mkdir(parents=True, exist_ok=True)
    for old in trial_dir.glob("*.npy"):
        old.unlink()
    np.save(trial_dir / f"{obj_a}{SEP}{image_name_a}.npy", rc_a)
    np.save(trial_dir / f"{obj_b}{SEP}{image_name_b}.npy", rc_b)
    return trial_dir


def write_reference_list(out: str | Path, entries: dict[str, dict[str, list[int]]]) -> Path:
    """``selected_annotations.json``: {action: {"<objA>|||<objB>": [trials]}} (sorted, for a stable order)."""
    data = {a: {p: sorted(t) for p, t in sorted(pairs.items())} for a, pairs in sorted(entries.items())}
    path = Path(out) / REFERENCE_LIST
    write_json(path, data)
    return path


def bop_object_name(image: str) -> str:
    """``handal_dataset_mug/test/000002/rgb/000003.jpg`` -> ``mug---test-000002`` (category before ``---``)."""
    parts = Path(image).parts
    if len(parts) < 5 or not parts[0].startswith("handal_dataset_"):
        raise InputError(f"{image!r} is not a handal_dataset_<category>/<split>/<scene>/rgb/<frame> path")
    return f"{parts[0][len('handal_dataset_'):]}---{parts[1]}-{parts[2]}"


def convert_bop_to_reference(root: str | Path, out: str | Path | None = None) -> dict:
    """A HANDAL/BOP root with ``functional_pairs/`` -> the reference layout (crops as the reference's
    ``resize_images.py`` / ``resize_annotations.py``; ``out`` defaults to ``root/reference``)."""
    root = Path(root)
    out = Path(out) if out is not None else root / REFERENCE_DIR
    frames: dict[str, HandalFrame] = {}

    def frame(image: str) -> HandalFrame:
        if image not in frames:
            scene = root / Path(image).parent.parent
            frame_id = int(Path(image).stem)
            match = [f for f in read_handal_scene(scene) if f.frame_id == frame_id]
            if not match:
                raise InputError(f"{scene}: no annotated frame {frame_id} for {image}")
            frames[image] = match[0]
        return frames[image]

    entries: dict[str, dict[str, list[int]]] = {}
    crops: dict[str, tuple] = {}
    trials = 0
    skipped: list[str] = []
    for ann in read_functional_pairs(root):
        if len(ann.rc_a) < REFERENCE_MIN_POINTS:  # the released scripts cannot read it: left out, and said so
            skipped.append(f"{ann.path_a.parent}: {len(ann.rc_a)} points")
            continue
        sides = []
        for image, rc in ((ann.image_a, ann.rc_a), (ann.image_b, ann.rc_b)):
            if image not in crops:
                f = frame(image)
                crops[image] = reference_crop(f.rgb, f.mask)
            rgb, mask, crop = crops[image]
            sides.append((bop_object_name(image), f"{Path(image).stem}.png", rgb, mask, crop.points(rc)))
        (oa, ia, ra, ma, pa), (ob, ib, rb, mb, pb) = sides
        key = f"{oa}{SEP}{ob}"
        used = entries.setdefault(ann.function, {}).setdefault(key, [])
        trial = ann.trial
        while trial in used:
            trial += 1
        write_reference_trial(out, ann.function, oa, ia, ra, ma, pa, ob, ib, rb, mb, pb, trial)
        used.append(trial)
        trials += 1
    write_reference_list(out, entries)
    problems = reference_layout_problems(find_reference_layout(out))
    if problems:  # a writer bug: what was written must run through the released scripts
        raise InputError(f"the reference layout written to {out} would not run in the released scripts: "
                         + "; ".join(problems[:5]))
    record = {"trials": trials, "images": len(crops), "out": str(out)}
    if skipped:
        record["skipped_fewer_than_10_points"] = skipped
    return record


def convert_reference_to_bop(layout: ReferenceLayout, out: str | Path, depth_scale: float = 0.1) -> dict:
    """The reference layout -> a HANDAL/BOP root whose frames are the 224 crops (one scene per object, one frame per
    image, depth unknown = 0, identity pose, a nominal 224 px camera) with ``functional_pairs/`` in crop pixels.
    The crops stay crops: evaluating the result crops them once more (the reference layout keeps no full frame)."""
    out = Path(out)
    trials = read_reference_layout(layout)
    objects: dict[str, dict[str, int]] = {}
    images: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for t in trials:
        for obj, img, rgb, mask in ((t.obj_a, t.image_name_a, t.image_a, t.mask_a),
                                    (t.obj_b, t.image_name_b, t.image_b, t.mask_b)):
            frames = objects.setdefault(obj, {})
            if img not in frames:
                frames[img] = len(frames)
                images[(obj, img)] = (rgb, mask)
    scene_of = {}
    for index, (obj, frames) in enumerate(sorted(objects.items())):
        category = check_name(object_category(obj), "category")
        scene = out / dataset_name(category) / "reference" / f"{index:06d}"
        for sub in ("rgb", "depth", "mask", "mask_visib"):
            (scene / sub).mkdir(parents=True, exist_ok=True)
        gt, cams = {}, {}
        for img, frame_id in sorted(frames.items(), key=lambda kv: kv[1]):
            rgb, mask = images[(obj, img)]
            h, w = mask.shape
            name = f"{frame_id:06d}"
            Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(scene / "rgb" / f"{name}.png")
            Image.fromarray(np.zeros((h, w), np.uint16)).save(scene / "depth" / f"{name}.png")
            m = Image.fromarray(mask.astype(np.uint8) * 255)
            m.save(scene / "mask" / f"{name}_000000.png")
            m.save(scene / "mask_visib" / f"{name}_000000.png")
            gt[str(frame_id)] = [{"cam_R_m2c": np.eye(3).ravel().tolist(), "cam_t_m2c": [0.0, 0.0, 1000.0],
                                  "obj_id": index + 1}]
            cams[str(frame_id)] = {"cam_K": [float(w), 0.0, w / 2, 0.0, float(w), h / 2, 0.0, 0.0, 1.0],
                                   "depth_scale": float(depth_scale), "width": int(w), "height": int(h)}
        write_json(scene / "scene_gt.json", gt)
        write_json(scene / "scene_camera.json", cams)
        scene_of[obj] = (category, scene.relative_to(out).as_posix())
    written = 0
    counters: dict[tuple[str, str, str], int] = {}
    for t in trials:
        (cat_a, scene_a), (cat_b, scene_b) = scene_of[t.obj_a], scene_of[t.obj_b]
        image_a = f"{scene_a}/rgb/{objects[t.obj_a][t.image_name_a]:06d}.png"
        image_b = f"{scene_b}/rgb/{objects[t.obj_b][t.image_name_b]:06d}.png"
        key = (t.function, cat_a, cat_b)
        trial = counters.get(key, 0)
        counters[key] = trial + 1
        write_functional_pair(out, t.function, cat_a, image_a, cat_b, image_b, (t.rc_a, t.rc_b), group=0, trial=trial)
        written += 1
    return {"trials": written, "objects": len(objects), "out": str(out)}
