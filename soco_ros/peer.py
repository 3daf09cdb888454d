"""A DDS peer of the node for tests and the latency benchmark: publishes camera frames, records every output.

It runs its own rclpy :class:`~rclpy.context.Context` on the given ``domain_id`` (so several peers and tests in one
process never share a domain) and spins in a background thread. Each received message is stored with its
wall-clock receive time, so stamp -> receive latency can be measured on the subscriber side.

Set ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` in the environment before creating a peer (the tests do): rcl
reads it when the context is initialised.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, TransformStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from correspondence.camera import CameraIntrinsics

from .compressed import depth_to_compressed, rgb_to_compressed
from .conversions import depth_to_image, intrinsics_to_camera_info, ns_to_stamp, rgb_to_image

OUTPUTS = {"matches": PointCloud2, "alignment": TransformStamped, "alignment_quality": String,
           "markers": MarkerArray, "debug_image": Image, "mask": Image}


class Peer:
    def __init__(self, domain_id: int, node: str = "/correspondence_node", name: str = "soco_peer",
                 image_topic: str = "/camera/color/image_raw", depth_topic: str = "/camera/depth/image_raw",
                 info_topic: str = "/camera/color/camera_info", mask_topic: str = "/camera/mask",
                 prompt_topic: str = "/camera/prompt", reliable: bool = True, image_transport: str = "raw",
                 depth_transport: str = "raw") -> None:
        """``image_transport`` compressed / ``depth_transport`` compressedDepth: publish ``CompressedImage`` on
        ``<topic>/compressed`` / ``<topic>/compressedDepth``, as image_transport's plugins do (PNG, lossless)."""
        self.context = Context()
        rclpy.init(context=self.context, domain_id=int(domain_id))
        self.node = rclpy.create_node(name, context=self.context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        self.image_transport, self.depth_transport = image_transport, depth_transport
        self.image_pub = (self.node.create_publisher(Image, image_topic, qos) if image_transport == "raw" else
                          self.node.create_publisher(CompressedImage, f"{image_topic}/{image_transport}", qos))
        self.depth_pub = (self.node.create_publisher(Image, depth_topic, qos) if depth_transport == "raw" else
                          self.node.create_publisher(CompressedImage, f"{depth_topic}/{depth_transport}", qos))
        self.info_pub = self.node.create_publisher(CameraInfo, info_topic, qos)
        self.mask_pub = self.node.create_publisher(Image, mask_topic, qos)
        self.prompt_pub = self.node.create_publisher(PointStamped, prompt_topic, qos)
        self.demo_path_pub = self.node.create_publisher(String, f"{node}/set_demo_path", QoSProfile(depth=5))
        self.received: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        self._lock = threading.Lock()
        out_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for key, kind in OUTPUTS.items():
            self.node.create_subscription(kind, f"{node}/{key}", self._recorder(key), out_qos)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(String, f"{node}/keypoint_names", self._recorder("keypoint_names"), latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), out_qos)
        try:  # /tf, as a tf2 listener subscribes to it (reliable, volatile, keep last 100)
            from tf2_msgs.msg import TFMessage

            self.node.create_subscription(TFMessage, "/tf", self._recorder("tf"), QoSProfile(depth=100))
            self.has_tf = True
        except ImportError:
            self.has_tf = False
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shutdown races
            pass

    def _recorder(self, key: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            now = time.time()
            with self._lock:
                self.received[key].append((now, msg))
        return record

    # ------------------------------------------------------------------------------------------------ reading
    def messages(self, key: str) -> list[Any]:
        with self._lock:
            return [msg for _, msg in self.received[key]]

    def timed(self, key: str) -> list[tuple[float, Any]]:
        with self._lock:
            return list(self.received[key])

    def clear(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self.received.clear()
            else:
                self.received[key].clear()

    def wait_for(self, predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        return predicate()

    def find(self, key: str, stamp_ns: int) -> Any | None:
        """The first ``key`` message whose header stamp is ``stamp_ns``."""
        for msg in self.messages(key):
            if msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == stamp_ns:
                return msg
        return None

    def wait_stamp(self, key: str, stamp_ns: int, timeout: float) -> Any | None:
        return self.wait_for(lambda: self.find(key, stamp_ns), timeout)

    def diagnostics(self) -> dict[str, str] | None:
        """Key/values of the latest diagnostics status of the node, or None."""
        status = self.diagnostic_status()
        return {kv.key: kv.value for kv in status.values} if status is not None else None

    def diagnostic_status(self):
        """The latest ``DiagnosticStatus`` of the node (``level``, ``message``, ``values``), or None."""
        for msg in reversed(self.messages("diagnostics")):
            for status in msg.status:
                if "correspondence" in status.name:
                    return status
        return None

    def diagnostic_level(self) -> tuple[int, str] | None:
        """(level as an int: 0 OK, 1 WARN, 2 ERROR; message) of the latest status, or None."""
        status = self.diagnostic_status()
        if status is None:
            return None
        level = status.level
        return (level[0] if isinstance(level, (bytes, bytearray)) else int(level)), status.message

    def wait_for_subscribers(self, timeout: float = 20.0, depth: bool = True, mask: bool = False) -> bool:
        """Until the node's subscriptions to image, camera_info (and depth / mask) are matched (it is active):
        a volatile message published before discovery completes is lost."""
        pubs = [self.image_pub, self.info_pub] + ([self.depth_pub] if depth else []) + ([self.mask_pub] if mask else [])
        return bool(self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), timeout))

    # ------------------------------------------------------------------------------------------------ sending
    def header(self, stamp_ns: int, frame_id: str = "camera_color_optical_frame") -> Header:
        return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)

    def send_camera_info(self, intrinsics: CameraIntrinsics, stamp_ns: int | None = None,
                         frame_id: str = "camera_color_optical_frame", zero_k: bool = False) -> None:
        msg = intrinsics_to_camera_info(intrinsics, self.header(stamp_ns or time.time_ns(), frame_id))
        if zero_k:
            msg.k = [0.0] * 9
        self.info_pub.publish(msg)

    def send_frame(self, rgb: np.ndarray, depth: np.ndarray | None = None, stamp_ns: int | None = None,
                   frame_id: str = "camera_color_optical_frame", encoding: str = "rgb8",
                   depth_encoding: str = "32FC1", mask: np.ndarray | None = None,
                   tamper: Callable[[str, Any], None] | None = None,
                   intrinsics: CameraIntrinsics | None = None) -> int:
        """Publish image (+ depth, + mask) with one stamp, and CameraInfo first when ``intrinsics`` is given (as a
        camera driver does with every frame); ``tamper(kind, msg)`` may corrupt a message first."""
        stamp_ns = time.time_ns() if stamp_ns is None else stamp_ns
        header = self.header(stamp_ns, frame_id)
        if intrinsics is not None:
            self.info_pub.publish(intrinsics_to_camera_info(intrinsics, header))
        if self.image_transport != "raw":
            image = rgb_to_compressed(rgb, header, "png")
        elif encoding == "mono8":
            image = rgb_to_image(np.asarray(rgb).mean(-1).round().astype(np.uint8), header)
        else:
            image = rgb_to_image(rgb, header, encoding)
        messages = [("image", image, self.image_pub)]
        if depth is not None:
            depth_msg = (depth_to_image(depth, header, depth_encoding) if self.depth_transport == "raw" else
                         depth_to_compressed(depth, header, depth_encoding))
            messages.append(("depth", depth_msg, self.depth_pub))
        if mask is not None:
            messages.append(("mask", rgb_to_image(np.asarray(mask, dtype=bool), header), self.mask_pub))
        for kind, msg, pub in messages:
            if tamper is not None:
                tamper(kind, msg)
        for kind, msg, pub in reversed(messages):  # depth / mask first, the image last
            pub.publish(msg)
        return stamp_ns

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=1.0)
        except Exception:  # noqa: BLE001
            pass
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)

    # ------------------------------------------------------------------------------------------------ services
    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available")
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not future.done():
                raise TimeoutError(f"service {name} did not answer in {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node: str, values: dict[str, Any], timeout: float = 10.0) -> list[Any]:
        """``rcl_interfaces/SetParameters`` on ``node``; the results (``successful``, ``reason``) per parameter."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return list(self.call(SetParameters, f"{node}/set_parameters", request, timeout).results)

    def change_state(self, node: str, transition_label: str, timeout: float = 20.0) -> bool:
        """A lifecycle transition by label (configure, activate, deactivate, cleanup, shutdown)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}
        # shutdown has one id per source state: the node resolves the label from its current state
        transition = Transition(id=ids[transition_label]) if transition_label in ids else Transition(
            label=transition_label)
        request = ChangeState.Request(transition=transition)
        return bool(self.call(ChangeState, f"{node}/change_state", request, timeout).success)

    def get_state(self, node: str, timeout: float = 10.0) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, f"{node}/get_state", GetState.Request(), timeout).current_state.label
