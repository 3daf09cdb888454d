"""One frame for a demo, from files or from a video device (OpenCV). Frames from ROS topics come from
:mod:`soco_ros.capture` (rclpy lives there only); all three give a :class:`~.folder.CapturedFrame`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .folder import CapturedFrame


def from_files(rgb: str | Path, depth: str | Path | None = None, depth_scale: float = 0.001,
               intrinsics: str | Path | None = None) -> CapturedFrame:
    """RGB (any image file), optional depth (uint16 PNG x ``depth_scale`` m, or .npy metres) and intrinsics JSON."""
    from ..demo_spec import load_depth, load_intrinsics
    from ..io import load_image

    image = np.asarray(load_image(rgb))
    depth_m = None
    if depth is not None:
        if not Path(depth).is_file():
            raise InputError(f"depth file {str(depth)!r} does not exist")
        depth_m = load_depth(Path(depth), depth_scale)
    camera = load_intrinsics(Path("."), str(intrinsics), Path(str(intrinsics))) if intrinsics else None
    return CapturedFrame(image, depth_m, camera, source=str(rgb))


def _open_video(device: str):
    import cv2

    target: int | str = int(device) if str(device).isdigit() else str(device)
    if isinstance(target, str) and not target.startswith("/dev/") and not Path(target).is_file():
        raise InputError(f"video {target!r} does not exist (give a device index such as 0, /dev/videoN or a file)")
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        raise InputError(f"cannot open video {device!r} with OpenCV (no such device, busy, or no permission: is "
                         f"the user in the 'video' group?)")
    return capture


def from_video(device: str, skip: int = 5, intrinsics: str | Path | None = None) -> CapturedFrame:
    """Frame ``skip`` of a video device (index or /dev/videoN) or file: the first frames of a webcam are often
    dark while its auto-exposure settles. No depth; intrinsics only when a JSON is given."""
    import cv2

    from ..demo_spec import load_intrinsics

    capture = _open_video(device)
    try:
        frame = None
        for index in range(max(0, int(skip)) + 1):
            ok, image = capture.read()
            if not ok:
                if frame is None:
                    raise InputError(f"video {device!r} gave no frame (read {index} of {skip + 1} wanted)")
                break  # a short file: keep its last frame
            frame = image
    finally:
        capture.release()
    rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB if frame.ndim == 3 else cv2.COLOR_GRAY2RGB))
    camera = load_intrinsics(Path("."), str(intrinsics), Path(str(intrinsics))) if intrinsics else None
    return CapturedFrame(rgb, None, camera, source=f"video {device}")

