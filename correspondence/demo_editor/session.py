"""The editor's work behind the HTTP routes, one demo folder per session: its state for the page, segmentation,
save (validated by the demo loader, atomic, refused when stale) and the transfer preview on a live frame."""
from __future__ import annotations

import base64
import io
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..demo_spec import DemoSpec, load_demo, load_frame
from ..errors import InputError
from ..taxonomy import parse_keypoint_name
from . import vocabulary
from .folder import CapturedFrame, frame_files, revision, write_folder
from .segment import Clicks, InteractiveSegmenter

#: preview(demo, rgb, depth, intrinsics) -> FrameResult: the node's pipeline and settings (soco_ros.preview)
Preview = Callable[[DemoSpec, np.ndarray, Any, Any], Any]
#: grab() -> CapturedFrame: a live frame from the camera topics (soco_ros.capture)
Grab = Callable[[], CapturedFrame]


def png_data_url(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def decode_image(data_url: str, what: str) -> Image.Image:
    """A data URL (or bare base64) from the page -> a PIL image, or an InputError naming what could not be read."""
    if not isinstance(data_url, str) or not data_url:
        raise InputError(f"{what}: no image data")
    payload = data_url.split(",", 1)[1] if data_url.startswith("data:") else data_url
    try:
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=False)))
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{what}: cannot read the image ({exc}); use a PNG or JPEG file") from None


def decode_mask(data_url: str, width: int, height: int, what: str) -> np.ndarray:
    """A mask the page painted (white-on-transparent RGBA, or grey) -> (H, W) bool of the demo's size."""
    image = decode_image(data_url, what)
    if image.size != (width, height):
        raise InputError(f"{what} is {image.size[0]}x{image.size[1]} but the demo image is {width}x{height}")
    if "A" in image.getbands():
        return np.asarray(image.getchannel("A")) > 127
    return np.asarray(image.convert("L")) > 127


class EditorSession:
    def __init__(self, folder: str | Path, preview: Preview | None = None, grab: Grab | None = None,
                 taxonomy_dir: str | Path | None = None, mask_source=None, mask_reason: str = "") -> None:
        self.folder = Path(folder).expanduser().absolute()
        self.frame = load_frame(self.folder)
        self.preview, self.grab = preview, grab
        self.taxonomy_dir = taxonomy_dir
        self.segmenter = InteractiveSegmenter(self.frame.rgb, self.frame.depth, mask_source, mask_reason)
        self._segment_lock = threading.Lock()  # one SAM / GrabCut at a time on this image
        # the taxonomy is built from the procedural families (seconds): ready before the page asks for it
        threading.Thread(target=vocabulary.categories, daemon=True).start()

    @property
    def size(self) -> tuple[int, int]:
        return self.frame.rgb.shape[1], self.frame.rgb.shape[0]

    # ------------------------------------------------------------------------------------------------ state
    def state(self) -> dict:
        """What the page starts from: the frame, the saved annotation (if any), the vocabularies, the revision."""
        demo = load_frame(self.folder)
        width, height = self.size
        keypoints = []
        category = ""
        if demo.keypoints is not None:
            category = demo.keypoints.category
            keypoints = [point.as_dict() for point in demo.keypoints.points]
        return {"folder": str(self.folder), "revision": revision(self.folder), "width": width, "height": height,
                "image": png_data_url(self.frame.rgb), "mode": demo.mode, "category": category,
                "keypoints": keypoints,
                "mask": None if demo.mask is None else png_data_url(demo.mask.astype(np.uint8) * 255),
                "function": demo.function or "",
                "function_mask": (None if demo.function_mask is None
                                  else png_data_url(demo.function_mask.astype(np.uint8) * 255)),
                "has_depth": demo.depth is not None, "has_intrinsics": demo.intrinsics is not None,
                "segmentation": {"source": self.segmenter.name, "reason": self.segmenter.reason},
                "categories": vocabulary.categories(), "functions": vocabulary.functions(self.taxonomy_dir),
                "can_try": self.preview is not None, "can_grab": self.grab is not None}

    # ------------------------------------------------------------------------------------------------ segment
    def segment(self, data: dict) -> dict:
        width, height = self.size
        clicks = Clicks.parse(data, width, height)
        start = time.perf_counter()
        with self._segment_lock:
            result = self.segmenter.segment(clicks, part=data.get("target") == "part")
        return {"mask": png_data_url(result.mask.astype(np.uint8) * 255), "source": result.source,
                "score": result.score, "area": result.area, "seconds": time.perf_counter() - start}

    # ------------------------------------------------------------------------------------------------ save
    def files(self, data: dict) -> dict[str, bytes | np.ndarray]:
        """The demo folder's files for the page's annotation (frame files re-written from the loaded frame)."""
        width, height = self.size
        files = frame_files(CapturedFrame(self.frame.rgb, self.frame.depth, self.frame.intrinsics, str(self.folder)))
        if data.get("mask"):
            files["mask.png"] = decode_mask(data["mask"], width, height, "the object mask").astype(np.uint8) * 255
        mode = data.get("mode")
        if mode == "keypoints":
            files["keypoints.json"] = (json.dumps(self._keypoints(data), indent=2) + "\n").encode()
        elif mode == "functional":
            function = str(data.get("function") or "").strip()
            if not function:
                raise InputError("pick the function this demo shows (e.g. pour-with)")
            if not data.get("function_mask"):
                raise InputError(f"paint or segment the part that does {function!r} (the functional part)")
            files["function.txt"] = (function + "\n").encode()
            files["function_mask.png"] = decode_mask(data["function_mask"], width, height,
                                                     "the functional-part mask").astype(np.uint8) * 255
        else:
            raise InputError(f"mode must be 'keypoints' or 'functional', got {mode!r}")
        return files

    def _keypoints(self, data: dict) -> dict:
        entries = []
        for i, point in enumerate(data.get("keypoints") or []):
            name = str(point.get("name") or "").strip()
            if not name:
                raise InputError(f"keypoint {i + 1} has no name: pick one from the taxonomy or type one")
            try:
                keypoint = parse_keypoint_name(name)
                concept, identity = keypoint.concept.name, keypoint.identity.as_dict()
            except InputError:  # free text that is not concept/identity: kept as typed
                concept, identity = name.split("/")[0], {}
            entries.append({"name": name, "concept": concept, "identity": identity,
                            "xy": [float(v) for v in point.get("xy", ())]})
        if not entries:
            raise InputError("add at least one keypoint (click the image in keypoint mode)")
        width, height = self.size
        return {"image": "rgb.png", "image_size": [width, height], "category": str(data.get("category") or ""),
                "keypoints": entries}

    def save(self, data: dict) -> dict:
        """Write the folder (validated by the demo loader on the written copy) unless another page saved since."""
        files = self.files(data)
        expected = None if data.get("force") else str(data.get("revision", ""))
        new_revision = write_folder(self.folder, files, expected_revision=expected, check=load_demo)
        demo = load_demo(self.folder)
        what = (f"{len(demo.keypoints.points)} keypoints" if demo.keypoints is not None
                else f"function {demo.function!r}")
        return {"revision": new_revision, "message": f"saved {self.folder} ({what}"
                                                     f"{', object mask' if demo.mask is not None else ''})"}

    # ------------------------------------------------------------------------------------------------ try
    def try_transfer(self, data: dict) -> dict:
        """The page's (unsaved) demo on a live frame through the node's pipeline: overlay and per-keypoint table."""
        if self.preview is None:
            raise InputError("trying a transfer is not available in this session (see the terminal)")
        from ..frame_report import frame_overlay, frame_record

        if data.get("grab"):
            if self.grab is None:
                raise InputError("no camera topics were given: start with --image (and --depth, --camera-info)")
            live = self.grab()
        else:
            from ..preprocessing import to_rgb_array
            live = CapturedFrame(to_rgb_array(decode_image(data.get("image", ""), "the live image")), source="upload")
        with tempfile.TemporaryDirectory(prefix="soco-demo-try-") as tmp:
            write_folder(Path(tmp) / "demo", self.files(data))
            demo = load_demo(Path(tmp) / "demo")
        start = time.perf_counter()
        result = self.preview(demo, live.rgb, live.depth, live.intrinsics)
        seconds = time.perf_counter() - start
        record = frame_record(result)
        alignment = result.alignment or result.alignment_2d
        return {"overlay": png_data_url(np.asarray(frame_overlay(demo, live.rgb, result))),
                "matches": [{"name": m["name"], "score": m["score"], "accepted": m["accepted"],
                             "live_xy": m["live_xy"]} for m in record["matches"]],
                "mode": result.mode, "alignment": {"kind": record["alignment_kind"], "success": bool(result.success),
                                                   "reason": alignment.reason if alignment else ""},
                "segmentation": record["segmentation"], "seconds": seconds,
                "live": png_data_url(live.rgb) if data.get("grab") else None}
