"""Demo frames from ROS: ``soco demo capture --image ...`` (one synchronised frame from topics, with a timeout that
names the silent topic) and the node's ``~/capture_demo`` service (the node's latest synchronised frame -> a new
demo folder under the ``capture_dir`` parameter). Both write through :mod:`correspondence.demo_editor.folder`, so
the folder is the one ``soco demo edit``, ``soco transfer`` and the node read."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from correspondence.demo_editor.folder import CapturedFrame, write_frame
from correspondence.errors import InputError, SocoError

from .conversions import (FrameError, camera_info_to_intrinsics, check_same_size, depth_to_metres, image_to_rgb,
                          stamp_to_ns)
from .sync import ApproximateSync


TRANSPORTS = {"image": ("raw", "compressed"), "depth": ("raw", "compressedDepth")}


def capture_from_topics(image: str, depth: str | None = None, camera_info: str | None = None, *,
                        timeout_s: float = 10.0, slop_s: float = 0.05, depth_scale: float = 0.001,
                        image_transport: str = "raw", depth_transport: str = "raw") -> CapturedFrame:
    """The first synchronised (image, depth) pair with a camera_info, or an InputError after ``timeout_s`` that
    says which topic never published (or that both publish but their stamps never paired within ``slop_s``).
    ``image_transport`` compressed / ``depth_transport`` compressedDepth read image_transport's sub-topics
    (``<image>/compressed``, ``<depth>/compressedDepth``), as the node's parameters of the same names do."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    for name, transport in (("image", image_transport), ("depth", depth_transport)):
        if transport not in TRANSPORTS[name]:
            raise InputError(f"{name} transport must be one of {', '.join(TRANSPORTS[name])}, got {transport!r}")
    if image_transport != "raw":
        image = f"{image.rstrip('/')}/{image_transport}"
    if depth and depth_transport != "raw":
        depth = f"{depth.rstrip('/')}/{depth_transport}"

    from .qos import sensor_qos

    owns_context = not rclpy.ok()
    if owns_context:
        rclpy.init()
    node = rclpy.create_node("soco_demo_capture")
    try:
        names = ["image"] + (["depth"] if depth else [])
        topics = {"image": image, "depth": depth, "camera_info": camera_info}
        seen = {name: 0 for name, topic in topics.items() if topic}
        result: dict[str, Any] = {}

        def on_pair(*msgs) -> None:
            result.setdefault("pair", dict(zip(names, msgs)))

        sync = ApproximateSync(names, slop_s, on_pair, queue_size=30)

        def image_callback(name: str):
            def callback(msg) -> None:
                seen[name] += 1
                sync.add(name, stamp_to_ns(msg.header.stamp), msg)
            return callback

        def info_callback(msg) -> None:
            seen["camera_info"] += 1
            result["info"] = msg

        kinds = {"image": Image if image_transport == "raw" else CompressedImage,
                 "depth": Image if depth_transport == "raw" else CompressedImage}
        subs = [node.create_subscription(kinds[name], topics[name], image_callback(name), sensor_qos())
                for name in names]
        if camera_info:
            subs.append(node.create_subscription(CameraInfo, camera_info, info_callback, sensor_qos()))
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        deadline = time.monotonic() + float(timeout_s)
        while time.monotonic() < deadline and not ("pair" in result and (not camera_info or "info" in result)):
            executor.spin_once(timeout_sec=0.05)
        executor.remove_node(node)
        if "pair" not in result or (camera_info and "info" not in result):
            raise InputError(_silence(topics, seen, timeout_s, slop_s))
        return _frame(result["pair"], result.get("info"), topics, depth_scale)
    finally:
        node.destroy_node()
        if owns_context:
            rclpy.try_shutdown()


def _silence(topics: dict[str, str | None], seen: dict[str, int], timeout_s: float, slop_s: float) -> str:
    silent = [f"{topics[name]} ({name})" for name, count in seen.items() if count == 0]
    if silent:
        return (f"no message in {timeout_s:g} s on {', '.join(silent)}; check the camera driver runs, the topic "
                f"names (ros2 topic list), ROS_DOMAIN_ID, and the transport (--image-transport compressed / "
                f"--depth-transport compressedDepth read image_transport's sub-topics)")
    return (f"{topics['image']} and {topics['depth']} publish ({seen['image']} and {seen['depth']} messages) but "
            f"their stamps never came within {slop_s:g} s of each other in {timeout_s:g} s; raise --slop, or check "
            f"the driver stamps both from the same exposure")


def _frame(pair: dict[str, Any], info, topics: dict[str, str | None], depth_scale: float) -> CapturedFrame:
    from sensor_msgs.msg import Image

    from .compressed import compressed_depth_to_metres, compressed_to_rgb

    try:
        reader = image_to_rgb if isinstance(pair["image"], Image) else compressed_to_rgb
        rgb = reader(pair["image"], topics["image"])
        depth = intrinsics = None
        if "depth" in pair:
            reader = depth_to_metres if isinstance(pair["depth"], Image) else compressed_depth_to_metres
            depth = reader(pair["depth"], depth_scale, topics["depth"])
            check_same_size(rgb, depth, "depth")
        if info is not None:
            intrinsics = camera_info_to_intrinsics(info, topics["camera_info"])
    except FrameError as exc:
        raise InputError(str(exc)) from None
    return CapturedFrame(rgb, depth, intrinsics, source=topics["image"])


class DemoCaptureService:
    """``~/capture_demo`` (std_srvs/Trigger): the node's latest synchronised frame -> ``<capture_dir>/demo_<UTC
    time>`` (rgb.png, depth.png, intrinsics.json), the folder named in the response. The node calls
    :meth:`remember` with every synchronised frame it accepts (a reference, no copy)."""

    def __init__(self, node) -> None:
        from std_srvs.srv import Trigger

        self.node = node
        self._latest = None
        self._lock = threading.Lock()
        self.captured = 0
        node.create_service(Trigger, "~/capture_demo", self._serve)

    def remember(self, frame) -> None:
        self._latest = frame

    def _serve(self, request, response):
        response.success, response.message = False, ""
        try:
            response.message = str(self.capture())
            response.success = True
        except SocoError as exc:
            response.message = str(exc)
            self.node.get_logger().warning(f"[capture_demo] {exc}")
        return response

    def capture(self) -> Path:
        folder = str(self.node.params.get("capture_dir", "")).strip()
        if not folder:
            raise InputError("capture_dir is empty: set the capture_dir parameter to the folder demos go to")
        frame = self._latest
        if frame is None:
            raise InputError("no synchronised frame received yet (is the camera publishing on the node's inputs?)")
        stamp = datetime.fromtimestamp(frame.stamp_ns / 1e9, tz=timezone.utc).strftime("%Y%m%dT%H%M%S_%f")
        with self._lock:
            target = Path(folder).expanduser() / f"demo_{stamp}"
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create capture_dir {folder!r}: {exc.strerror or exc}") from None
            write_frame(target, CapturedFrame(frame.rgb, frame.depth, frame.intrinsics, frame.frame_id))
            self.captured += 1
        self.node.get_logger().info(f"[capture_demo] wrote {target}")
        return target
