"""Writing a demo folder: never half-written, and two writers of one folder told apart.

A folder is written into a temporary sibling (``.<name>.tmp-*``, same filesystem) and renamed into place, so a
reader sees the old folder or the new one, never a mix; a failure leaves the old folder untouched. The folder's
*revision* (a hash of its file names and contents) lets an editor page say "saved by someone else since you
loaded it" instead of silently overwriting (:class:`StaleRevisionError`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..camera import CameraIntrinsics
from ..errors import InputError

MAX_UINT16_DEPTH_M = 65.535  # depth.png holds millimetres in uint16
_LOCK = threading.Lock()  # one writer at a time within this process (the editor's request threads)


class StaleRevisionError(InputError):
    """The folder changed since the writer read it (another page or process saved it)."""


@dataclass(frozen=True)
class CapturedFrame:
    """One frame of the object: RGB, optional depth in metres (0 = unknown) and intrinsics."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None = None  # (H, W) float32 metres
    intrinsics: CameraIntrinsics | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise InputError(f"{self.source or 'frame'}: RGB must be (H, W, 3) uint8, got {self.rgb.dtype} "
                             f"{self.rgb.shape}")
        height, width = self.rgb.shape[:2]
        if self.depth is not None and self.depth.shape != (height, width):
            raise InputError(f"{self.source or 'frame'}: depth is {self.depth.shape[1]}x{self.depth.shape[0]} but "
                             f"the image is {width}x{height}")
        if self.intrinsics is not None and (self.intrinsics.width, self.intrinsics.height) != (width, height):
            raise InputError(f"{self.source or 'frame'}: intrinsics are for {self.intrinsics.width}x"
                             f"{self.intrinsics.height} but the image is {width}x{height}")


def revision(folder: str | Path) -> str:
    """Content hash of the folder's files ("" when it does not exist): equal iff nothing was written since."""
    folder = Path(folder)
    if not folder.is_dir():
        return ""
    digest = hashlib.blake2b(digest_size=12)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def depth_png(depth_m: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (the folder convention, depth_scale 0.001); 0 where unknown."""
    depth = np.where(np.isfinite(depth_m) & (depth_m > 0), depth_m, 0.0)
    if depth.max(initial=0.0) > MAX_UINT16_DEPTH_M:
        raise InputError(f"depth up to {depth.max():.1f} m does not fit a millimetre PNG (max {MAX_UINT16_DEPTH_M} m)"
                         f": is the depth scale right?")
    return np.round(depth * 1000.0).astype(np.uint16)


def frame_files(frame: CapturedFrame) -> dict[str, bytes | np.ndarray]:
    """The folder-convention files of a frame: rgb.png, depth.png, intrinsics.json."""
    files: dict[str, bytes | np.ndarray] = {"rgb.png": frame.rgb}
    if frame.depth is not None:
        if not (frame.depth > 0).any():
            raise InputError(f"{frame.source or 'frame'}: the depth has no valid (non-zero, finite) value")
        files["depth.png"] = depth_png(frame.depth)
    if frame.intrinsics is not None:
        files["intrinsics.json"] = (json.dumps(frame.intrinsics.as_dict(), indent=2) + "\n").encode()
    return files


def write_folder(folder: str | Path, files: dict[str, bytes | np.ndarray], *, keep: tuple[str, ...] = (),
                 expected_revision: str | None = None, check=None) -> str:
    """Replace ``folder`` by exactly ``files`` (name -> bytes, or an array written as PNG) plus the files named in
    ``keep`` copied from the current folder; return the new revision.

    ``expected_revision``: refuse (:class:`StaleRevisionError`) when the folder's revision differs (someone saved
    since). ``check(tmp_folder)``: validates the written copy before it replaces the folder (e.g. the demo loader);
    any exception leaves the old folder as it was.
    """
    folder = Path(folder).expanduser().absolute()
    parent = folder.parent
    if not parent.is_dir():
        raise InputError(f"cannot write the demo: the folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the demo: no write permission in {str(parent)!r}")
    with _LOCK:
        current = revision(folder)
        if expected_revision is not None and current != expected_revision:
            raise StaleRevisionError(f"{str(folder)!r} was saved by another page or process since this one loaded "
                                     f"it; reload to see that version (your changes are still in this page)")
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=parent))
        except OSError as exc:
            raise InputError(f"cannot write the demo in {str(parent)!r} ({exc.strerror or exc}): is the folder "
                             f"writable (a read-only or special filesystem)?") from exc
        try:
            for name in keep:
                if (folder / name).is_file():
                    shutil.copy2(folder / name, tmp / name)
            for name, content in files.items():
                if isinstance(content, np.ndarray):
                    Image.fromarray(content).save(tmp / name)
                else:
                    (tmp / name).write_bytes(content)
            if check is not None:
                check(tmp)
            _replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return revision(folder)


def _replace(tmp: Path, folder: Path) -> None:
    """Rename ``tmp`` to ``folder``; an existing folder is moved aside first and removed after."""
    old = None
    if folder.exists():
        if not folder.is_dir():
            raise InputError(f"{str(folder)!r} exists and is not a folder")
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.rename(folder, old / folder.name)
    try:
        os.rename(tmp, folder)
    except OSError:
        if old is not None:
            os.rename(old / folder.name, folder)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_frame(folder: str | Path, frame: CapturedFrame, overwrite: bool = False) -> Path:
    """A captured frame -> a demo folder (rgb.png, depth.png, intrinsics.json), checked by reading it back."""
    from ..demo_spec import load_frame

    folder = Path(folder).expanduser()
    if folder.exists() and not overwrite:
        raise InputError(f"{str(folder)!r} already exists (give another folder, or --overwrite)")
    write_folder(folder, frame_files(frame), check=load_frame)
    return folder
