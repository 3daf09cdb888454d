"""A demo: what the robot was shown. A folder or a YAML file naming the demo RGB image, optional depth (with its
scale) and intrinsics, an optional object mask, and either named taxonomy keypoints or a function plus its
functional-part mask. Loading checks every field and reports the first problem precisely.

YAML (paths relative to the file)::

    rgb: demo.jpg
    depth: demo_depth.png        # optional; uint16 PNG (depth_scale m per unit, default 0.001 = mm) or .npy metres
    depth_scale: 0.001
    intrinsics: intrinsics.json  # optional; or inline {fx, fy, cx, cy, width, height} (OpenCV convention)
    mask: demo_mask.png          # optional object mask
    keypoints: keypoints.json    # keypoint mode (or an inline list of {name, xy})
    function: pour-with          # functional mode, with
    function_mask: part.png      # the functional part in the demo image
    views:                       # optional (keypoint demos): the object from other sides, each with its pose
      - {rgb: v1.png, depth: v1_depth.png, intrinsics: intrinsics.json, mask: v1_mask.png,
         pose: {translation: [x, y, z], quaternion: [x, y, z, w]}}   # view camera -> this (primary) camera

The primary view (the fields above) is the demo object frame: keypoints are marked and lifted there, poses are
reported for it. ``views`` (:mod:`correspondence.demo_views`) need depth, intrinsics and ``pose`` (or a 4x4 list);
the primary then needs depth and intrinsics too.

A folder without ``demo.yaml`` is read by convention: ``rgb.*``, ``depth.png``, ``intrinsics.json``,
``mask.png``, ``keypoints.json``, ``function.txt`` + ``function_mask.png``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .camera import CameraIntrinsics
from .demo_views import DemoView, load_views
from .errors import InputError
from .io import KeypointSet, load_image, load_keypoints, load_mask, parse_keypoints

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPEG", ".bmp")


@dataclass(frozen=True, eq=False)
class DemoSpec:
    source: Path
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None  # (H, W) float32 metres, 0 = unknown
    intrinsics: CameraIntrinsics | None
    mask: np.ndarray | None  # (H, W) bool
    keypoints: KeypointSet | None
    function: str | None
    function_mask: np.ndarray | None
    views: tuple[DemoView, ...] = ()  # extra views of the object (multi-view demo); () = one view, as before

    @property
    def mode(self) -> str:
        """keypoints | functional | frame (a captured frame not annotated yet: :func:`load_frame`)."""
        if self.keypoints is not None:
            return "keypoints"
        return "functional" if self.function is not None else "frame"

    @property
    def has_3d(self) -> bool:
        return self.depth is not None and self.intrinsics is not None

    @property
    def all_views(self) -> tuple[DemoView, ...]:
        """The primary view (identity pose) then the extra views: the list a multi-view pipeline searches."""
        if not self.has_3d:
            raise InputError("the demo's views need the primary view's depth and intrinsics")
        return (DemoView(self.rgb, self.depth, self.intrinsics, self.mask, np.eye(4), "primary"),) + self.views


def _fail(source: Path, field: str, message: str) -> InputError:
    return InputError(f"demo {str(source)!r}: {field}: {message}")


def _path(base: Path, value: Any, source: Path, field: str) -> Path:
    if not isinstance(value, str) or not value:
        raise _fail(source, field, f"must be a file name, got {value!r}")
    path = (base / value).expanduser()
    if not path.is_file():
        raise _fail(source, field, f"file {str(path)!r} does not exist")
    return path


def load_depth(path: Path, depth_scale: float) -> np.ndarray:
    """uint16 PNG (x depth_scale metres) or .npy (metres) -> float32 metres, 0 where unknown."""
    from .depth import to_metres  # the one raw -> metres conversion

    if path.suffix == ".npy":
        return to_metres(np.load(path, allow_pickle=False).astype(np.float32), 1.0)
    with Image.open(path) as image:
        raw = np.asarray(image)
    if raw.dtype not in (np.uint16, np.int32, np.uint8) or raw.ndim != 2:
        raise InputError(f"depth {str(path)!r} must be a single-channel 16-bit PNG, got {raw.dtype} {raw.shape}")
    return to_metres(raw, depth_scale)


def load_intrinsics(base: Path, value: Any, source: Path) -> CameraIntrinsics:
    if isinstance(value, str):
        path = _path(base, value, source, "intrinsics")
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise _fail(source, "intrinsics", f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise _fail(source, "intrinsics", "must be a file name or {fx, fy, cx, cy, width, height} (optionally D "
                                          "and distortion_model)")
    try:
        distortion = tuple(value.get("D", value.get("distortion", ())))  # CameraInfo's d, when not rectified
        model = str(value.get("distortion_model", "plumb_bob"))
        if "K" in value:
            return CameraIntrinsics.from_matrix(value["K"], int(value["width"]), int(value["height"]), distortion,
                                                model)
        return CameraIntrinsics(float(value["fx"]), float(value["fy"]), float(value["cx"]), float(value["cy"]),
                                int(value["width"]), int(value["height"]), distortion, model)
    except KeyError as exc:
        raise _fail(source, "intrinsics", f"missing {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:  # InputError included
        raise _fail(source, "intrinsics", str(exc)) from exc


def _conventional(folder: Path) -> dict:
    def first(stem: str) -> str | None:
        for suffix in IMAGE_SUFFIXES + (".npy", ".json", ".txt"):
            if (folder / f"{stem}{suffix}").is_file():
                return f"{stem}{suffix}"
        return None
    spec: dict = {key: first(key) for key in ("rgb", "depth", "mask", "keypoints", "intrinsics", "function_mask")}
    if (folder / "function.txt").is_file():
        spec["function"] = (folder / "function.txt").read_text(encoding="utf-8").strip()
    return {k: v for k, v in spec.items() if v is not None}


def load_frame(path: str | Path) -> DemoSpec:
    """A demo folder that may not be annotated yet (``soco demo capture`` writes one): every file present is
    checked as :func:`load_demo` checks it, but keypoints or a function are optional (``mode == "frame"``)."""
    return load_demo(path, require_annotation=False)


def load_demo(path: str | Path, require_annotation: bool = True) -> DemoSpec:
    source = Path(path)
    if source.is_dir():
        yaml_path = source / "demo.yaml"
        base = source
        spec = _read_yaml(yaml_path) if yaml_path.is_file() else _conventional(source)
    elif source.is_file():
        base = source.parent
        spec = _read_yaml(source)
    else:
        raise InputError(f"demo {str(source)!r} does not exist (give a folder or a YAML file)")
    if "rgb" not in spec:
        raise _fail(source, "rgb", "the demo RGB image is required")
    rgb = np.asarray(load_image(_path(base, spec["rgb"], source, "rgb")))
    height, width = rgb.shape[:2]

    def same_size(array: np.ndarray, field: str) -> np.ndarray:
        if array.shape[:2] != (height, width):
            raise _fail(source, field, f"is {array.shape[1]}x{array.shape[0]} but the RGB image is {width}x{height}")
        return array

    depth = None
    if "depth" in spec:
        scale = spec.get("depth_scale", 0.001)
        if not isinstance(scale, (int, float)) or scale <= 0:
            raise _fail(source, "depth_scale", f"must be a positive number of metres per unit, got {scale!r}")
        depth = same_size(load_depth(_path(base, spec["depth"], source, "depth"), scale), "depth")
        if not (depth > 0).any():
            raise _fail(source, "depth", "has no valid (non-zero, finite) value")
    intrinsics = load_intrinsics(base, spec["intrinsics"], source) if "intrinsics" in spec else None
    if intrinsics is not None and (intrinsics.width, intrinsics.height) != (width, height):
        raise _fail(source, "intrinsics", f"are for {intrinsics.width}x{intrinsics.height} but the image is "
                                          f"{width}x{height}")
    mask = same_size(load_mask(_path(base, spec["mask"], source, "mask")), "mask") if "mask" in spec else None
    if mask is not None and not mask.any():
        raise _fail(source, "mask", "is empty")
    keypoints = function = function_mask = None
    if "keypoints" in spec and "function" in spec:
        raise _fail(source, "keypoints/function", "give either keypoints or a function, not both")
    if "keypoints" in spec:
        value = spec["keypoints"]
        keypoints = (load_keypoints(_path(base, value, source, "keypoints")) if isinstance(value, str)
                     else parse_keypoints(value, f"demo {source}: keypoints"))
        outside = [p.name for p in keypoints.points if not (0 <= p.xy[0] < width and 0 <= p.xy[1] < height)]
        if outside:
            raise _fail(source, "keypoints", f"{outside[0]!r} is outside the {width}x{height} image")
    elif "function" in spec:
        function = spec["function"]
        if not isinstance(function, str) or not function:
            raise _fail(source, "function", f"must be a function name such as 'pour-with', got {function!r}")
        if "function_mask" not in spec:
            raise _fail(source, "function_mask", "is required with a function (the functional part in the demo)")
        function_mask = same_size(load_mask(_path(base, spec["function_mask"], source, "function_mask")),
                                  "function_mask")
        if not function_mask.any():
            raise _fail(source, "function_mask", "is empty")
    elif require_annotation:
        raise _fail(source, "keypoints", "give named keypoints or a function with its functional-part mask")
    views: tuple[DemoView, ...] = ()
    if "views" in spec:
        if depth is None or intrinsics is None:
            raise _fail(source, "views", "extra views need the primary view's depth and intrinsics (the pose is "
                                         "composed in its 3D frame)")
        if function is not None:
            raise _fail(source, "views", "extra views serve a same-object keypoint demo; a functional demo has one "
                                         "view")
        views = load_views(base, spec["views"], source, load_depth, load_intrinsics, load_mask, _path)
    return DemoSpec(source, rgb, depth, intrinsics, mask, keypoints, function, function_mask, views)


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"demo {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"demo {str(path)!r} must be a YAML mapping of fields (rgb, depth, keypoints, ...)")
    return data
