"""``correspondence_node``: the ROS 2 lifecycle node around :mod:`correspondence` (see ``docs/ros.md``).

Lifecycle (``rclpy.lifecycle.LifecycleNode``): *configure* reads the parameters, builds the model and the
publishers and loads the demo; *activate* subscribes to the camera topics and starts the worker; *deactivate*
unsubscribes and stops the worker; *cleanup* releases the model. With ``autostart`` (default) the node
configures and activates itself, so ``ros2 run`` / ``soco-ros-node`` just work; set ``autostart:=false`` to drive
it from a lifecycle manager (``~/change_state``).

Data flow: subscription callbacks only convert and validate (``soco_ros.conversions``), pair image / depth / mask
(``soco_ros.sync``) and put the frame into a one-frame slot; one worker thread runs the pipeline on the latest
frame and publishes (``soco_ros.worker``, ``soco_ros.messages``). A frame that is replaced before the worker
takes it, or that is older than ``max_frame_age`` when it does, is dropped and counted. A bad message is a
specific (throttled) warning and a counted rejection, never an exception out of a callback.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from geometry_msgs.msg import PointStamped, TransformStamped
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from correspondence.errors import SocoError
from correspondence.segmentation import Prompt

from . import parameters as P
from .conversions import (FrameError, camera_info_to_intrinsics, check_same_size, depth_to_metres, image_to_rgb,
                          mask_to_bool, stamp_to_ns)
from .engine import Engine, Frame
from .messages import build_outputs
from .qos import latched_qos, output_qos, sensor_qos
from .sync import ApproximateSync
from .worker import LatencyStats, WorkItem, Worker

try:  # diagnostics as DiagnosticArray when diagnostic_msgs is installed, else a JSON String
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # pragma: no cover - the wheels ship diagnostic_msgs
    DiagnosticArray = None

NODE_NAME = "correspondence_node"
WARN_PERIOD_S = 5.0


class ThrottledLog:
    """One warning per reason per ``period`` seconds; the next one says how many were suppressed."""

    def __init__(self, logger, period: float = WARN_PERIOD_S) -> None:
        self.logger, self.period = logger, period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, reason: str, message: str, level: str = "warning") -> None:
        """Throttled per (reason, start of the message): different topics or causes are each reported."""
        now = time.monotonic()
        key = f"{reason}|{message[:40]}"
        with self._lock:
            if now - self._last.get(key, -1e18) < self.period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        suffix = f" ({suppressed} similar suppressed)" if suppressed else ""
        getattr(self.logger, level)(f"[{reason}] {message}{suffix}")

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
            self._suppressed.clear()


def _descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    extra = f" [{spec.range_text()}]" if spec.range_text() else ""
    extra += "" if spec.reconfigurable else " (configure-time only)"
    descriptor = ParameterDescriptor(description=spec.description + extra)
    if spec.low is not None and isinstance(spec.default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                              step=0.0)]
    elif spec.low is not None and isinstance(spec.default, int):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    return descriptor


class CorrespondenceNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.log = ThrottledLog(self.get_logger())
        self.params = self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.engine: Engine | None = None
        self.worker: Worker | None = None
        self.sync: Any = None
        self.latency = LatencyStats(window=int(os.environ.get("SOCO_ROS_LATENCY_WINDOW", "300")))
        self.processing = LatencyStats(window=300)
        self.counts: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self._intrinsics = None
        self._prompt: Prompt | None = None
        self._configured = self._active = False
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._diag_timer = None
        self._state_lock = threading.RLock()
        self._reset_counts()
        self.create_service(Trigger, "~/set_demo", self._srv_set_demo)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.create_subscription(String, "~/set_demo_path", self._on_set_demo_path, output_qos())

    # ============================================================================================ parameters
    def _declare_parameters(self) -> dict[str, Any]:
        values = {}
        for spec in P.SPECS:
            descriptor = _descriptor(spec)
            try:
                value = self.declare_parameter(spec.name, spec.default, descriptor).value
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                self.get_logger().warning(f"[parameter] {spec.name}: start-up value rejected ({exc}); "
                                          f"using the default {spec.default!r}")
                value = self.declare_parameter(spec.name, spec.default, descriptor, ignore_override=True).value
            if isinstance(spec.default, float) and isinstance(value, int):
                value = float(value)
            reason = P.validate(spec.name, value, values)
            if reason is not None:
                self.get_logger().warning(f"[parameter] {reason}; using the default {spec.default!r}")
                self.set_parameters([Parameter(spec.name, value=spec.default)])
                value = spec.default
            values[spec.name] = value
        return values

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes: dict[str, Any] = {}
        for param in params:
            spec = P.BY_NAME.get(param.name)
            if spec is None:  # e.g. use_sim_time
                continue
            value = param.value
            if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            reason = P.validate(param.name, value, {**self.params, **changes})
            if reason is None and not spec.reconfigurable and self._configured and value != self.params[param.name]:
                reason = (f"parameter {param.name!r} is applied at configure time; deactivate and clean up the node, "
                          "set it, then configure again (or restart the node)")
            if reason is not None:
                self.get_logger().warning(f"[parameter:{param.name}] rejected: {reason}")  # unthrottled
                return SetParametersResult(successful=False, reason=reason)
            changes[param.name] = value
        if "demo_path" in changes and self.engine is not None and changes["demo_path"] != self.engine.demo_path:
            error = self._load_demo(changes["demo_path"])
            if error is not None:
                return SetParametersResult(successful=False, reason=error)
        self.params.update(changes)
        if self.engine is not None:
            engine_changes = {k: v for k, v in changes.items() if k != "demo_path"}
            try:
                self.engine.update(engine_changes)
            except SocoError as exc:
                self.log.warn("parameter", f"cannot apply {sorted(engine_changes)}: {exc}")
                return SetParametersResult(successful=False, reason=str(exc))
        if "sync_slop" in changes and self.sync is not None:
            self._set_slop(changes["sync_slop"])
        if "max_frame_age" in changes and self.worker is not None:
            self.worker.max_age_s = float(changes["max_frame_age"])
        return SetParametersResult(successful=True)

    # ============================================================================================ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.params
        try:
            if p["torch_threads"] > 0:
                import torch

                torch.set_num_threads(int(p["torch_threads"]))
            started = time.perf_counter()
            self.engine = Engine(p)
            described = self.engine.matcher.extractor.describe()
        except SocoError as exc:
            self.get_logger().error(f"[configure] cannot build the matcher: {exc}")
            self.engine = None
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"matcher: {described['backbone']['name']} ({described['backbone'].get('weights')}), input "
            f"{described['effective_image_size']} px, device {described['device']}, runtime {p['runtime']}; "
            f"segmentation: {self.engine.segmenter_reason} ({time.perf_counter() - started:.1f} s)")
        if p["demo_path"] and self._load_demo(p["demo_path"], publish=False) is None:
            try:
                self.get_logger().info(f"warm-up on the demo image: {self.engine.warmup():.2f} s")
            except SocoError as exc:
                self.log.warn("warmup", f"warm-up on the demo image failed: {exc}")
        else:
            self.get_logger().warning("[demo] no demo_path set: frames are dropped until a demo is loaded "
                                      "(parameter demo_path or topic ~/set_demo_path)")
        self._pubs = {
            "matches": self.create_publisher(_cloud_type(), "~/matches", output_qos()),
            "keypoint_names": self.create_publisher(String, "~/keypoint_names", latched_qos()),
            "alignment": self.create_publisher(TransformStamped, "~/alignment", output_qos()),
            "alignment_quality": self.create_publisher(String, "~/alignment_quality", output_qos()),
            "markers": self.create_publisher(MarkerArray, "~/markers", output_qos()),
            "debug_image": self.create_publisher(Image, "~/debug_image", output_qos(2)),
            "mask": self.create_publisher(Image, "~/mask", output_qos(2)),
            "diagnostics": (self.create_publisher(DiagnosticArray, "/diagnostics", output_qos(10))
                            if DiagnosticArray is not None else
                            self.create_publisher(String, "~/diagnostics", output_qos(10))),
        }
        self.worker = Worker(self._process, max_age_s=p["max_frame_age"], on_error=self._on_worker_error,
                             clock=self._now_s)
        self._diag_timer = self.create_timer(float(p["diagnostics_period"]), self._publish_diagnostics)
        self._configured = True
        self._publish_names()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.params
        qos = sensor_qos(p["qos_reliability"], p["qos_depth"])
        inputs = ["image"] + (["depth"] if p["use_depth"] else []) + (["mask"] if p["use_mask"] else [])
        types = {"image": Image, "depth": Image, "mask": Image}
        backend = p["sync_backend"]
        use_mf = False
        if len(inputs) > 1 and backend in ("auto", "message_filters"):
            try:
                import message_filters  # noqa: F401

                use_mf = True
            except ImportError:
                if backend == "message_filters":
                    self.get_logger().warning("[sync] message_filters is not importable; using the built-in "
                                              "approximate-time synchroniser")
        # camera_info first: in one executor cycle its callback then runs before the image's (creation order)
        info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        if use_mf:
            import message_filters

            subs = [message_filters.Subscriber(self, types[name], name, qos_profile=qos) for name in inputs]
            self.sync = message_filters.ApproximateTimeSynchronizer(subs, p["sync_queue_size"], p["sync_slop"])
            self.sync.registerCallback(lambda *msgs: self._on_synced(dict(zip(inputs, msgs))))
            self._subs = list(subs)
        else:
            self.sync = ApproximateSync(inputs, p["sync_slop"], lambda *msgs: self._on_synced(dict(zip(inputs, msgs))),
                                        p["sync_queue_size"])
            self._subs = [self.create_subscription(types[name], name, self._sync_callback(name), qos)
                          for name in inputs]
        self._subs.append(info_sub)
        if p["use_prompt"]:
            self._subs.append(self.create_subscription(PointStamped, "prompt", self._on_prompt, qos))
        self.worker.start()
        self._active = True
        topics = [self.resolve_topic_name(name) for name in inputs + ["camera_info"] + (["prompt"] if p["use_prompt"]
                                                                                       else [])]
        self.get_logger().info(f"active: subscribed to {', '.join(topics)} ({p['qos_reliability']}, sync "
                               f"{'message_filters' if use_mf else 'built-in'}, slop {p['sync_slop']} s); "
                               f"publishing under {self.get_fully_qualified_name()}/")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for sub in self._subs:
            sub_obj = getattr(sub, "sub", sub)  # message_filters.Subscriber wraps the subscription
            self.destroy_subscription(sub_obj)
        self._subs = []
        self.sync = None
        if self.worker is not None and not self.worker.stop():
            self.get_logger().warning("[worker] still busy after 10 s; it will stop after the current frame")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        self.engine = None
        self.worker = None
        self._configured = False
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self.on_deactivate(state)
        if self._configured:
            self.on_cleanup(state)
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error("[lifecycle] a transition raised; cleaning up")
        return self.on_shutdown(state)

    def autostart(self) -> bool:
        """Configure and activate (``autostart``); False (and the node stays up, unconfigured) if that fails."""
        if not self.params["autostart"]:
            self.get_logger().info("autostart is false: waiting for lifecycle transitions (~/change_state)")
            return True
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error("[configure] failed; the node stays unconfigured (fix the parameters and "
                                    "configure through ~/change_state)")
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    # ============================================================================================ demo
    def _load_demo(self, path: str, publish: bool = True) -> str | None:
        """Load ``path`` as the current demo; returns None on success, else the reason (the old demo stays)."""
        try:
            demo = self.engine.set_demo(path)
        except SocoError as exc:
            keep = f"; keeping demo {self.engine.demo_path!r}" if self.engine.has_demo else ""
            self.get_logger().warning(f"[demo] cannot load demo {path!r}: {exc}{keep}")  # a user action: unthrottled
            return str(exc)
        self.get_logger().info(f"demo {path!r}: {len(demo.keypoints.points)} keypoints, "
                               f"{'RGB-D (3D alignment)' if demo.has_3d else 'RGB only (2D alignment)'}")
        if publish:
            self._publish_names()
        return None

    def _publish_names(self) -> None:
        if self.engine is not None and "keypoint_names" in self._pubs:
            self._pubs["keypoint_names"].publish(String(data=json.dumps(list(self.engine.keypoint_names))))

    def _srv_set_demo(self, request, response):
        if self.engine is None:
            response.success, response.message = False, "the node is not configured"
            return response
        error = self._load_demo(self.params["demo_path"])
        response.success = error is None
        response.message = error or f"loaded {self.params['demo_path']!r}"
        return response

    def _on_set_demo_path(self, msg: String) -> None:
        result = self.set_parameters([Parameter("demo_path", value=msg.data)])[0]
        if not result.successful:
            self.get_logger().warning(f"[demo] ~/set_demo_path {msg.data!r} refused: {result.reason}")

    def _srv_reset(self, request, response):
        with self._state_lock:
            if self.sync is not None and hasattr(self.sync, "reset"):
                self.sync.reset()
            if self.worker is not None:
                self.worker.slot.clear()
                self.worker.reset_counters()
            self._prompt = None
            self._reset_counts()
            self.latency.clear()
            self.processing.clear()
            self.log.reset()
        response.success, response.message = True, "cleared the pending frame, sync queues, prompt and counters"
        return response

    def _reset_counts(self) -> None:
        self.counts = {"received": 0, "rejected": 0, "published": 0}
        self.rejected = {}

    # ============================================================================================ inputs
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _sync_callback(self, name: str):
        def callback(msg: Image) -> None:
            self.sync.add(name, stamp_to_ns(msg.header.stamp), msg)
        return callback

    def _set_slop(self, slop: float) -> None:
        if isinstance(self.sync, ApproximateSync):
            self.sync.slop_s = slop
        else:  # message_filters
            from rclpy.duration import Duration

            self.sync.slop = Duration(seconds=slop)

    def _reject(self, reason: str, message: str) -> None:
        with self._state_lock:
            self.counts["rejected"] += 1
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.log.warn(reason, f"frame dropped: {message}")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._intrinsics = camera_info_to_intrinsics(msg)
        except (FrameError, SocoError) as exc:
            with self._state_lock:
                self.rejected["camera_info"] = self.rejected.get("camera_info", 0) + 1
            keep = " (keeping the previous one)" if self._intrinsics is not None else ""
            self.log.warn("camera_info", f"camera_info rejected: {exc}{keep}")

    def _on_prompt(self, msg: PointStamped) -> None:
        try:
            self._prompt = Prompt(point=(msg.point.x, msg.point.y))
        except SocoError as exc:
            self.log.warn("prompt", f"prompt rejected: {exc}")

    def _on_synced(self, msgs: dict[str, Image]) -> None:
        with self._state_lock:
            self.counts["received"] += 1
        image = msgs["image"]
        try:
            rgb = image_to_rgb(image, self.resolve_topic_name("image"))
            depth = mask = intrinsics = None
            if "depth" in msgs:
                depth = depth_to_metres(msgs["depth"], self.params["depth_scale"], self.resolve_topic_name("depth"))
                check_same_size(rgb, depth, "depth")
                intrinsics = self._intrinsics
                if intrinsics is None:
                    raise FrameError("no_camera_info", "no valid camera_info received yet (needed with depth)")
                if (intrinsics.width, intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
                    raise FrameError("size_mismatch", f"camera_info is for {intrinsics.width}x{intrinsics.height} "
                                                      f"but the image is {rgb.shape[1]}x{rgb.shape[0]}")
            if "mask" in msgs:
                mask = mask_to_bool(msgs["mask"], self.resolve_topic_name("mask"))
                check_same_size(rgb, mask, "mask")
                if not mask.any():
                    raise FrameError("empty_mask", "the mask is empty")
        except FrameError as exc:
            self._reject(exc.reason, str(exc))
            return
        except SocoError as exc:
            self._reject("input", str(exc))
            return
        stamp_ns = stamp_to_ns(image.header.stamp)
        frame = Frame(rgb, stamp_ns, image.header.frame_id, depth, intrinsics, mask, self._prompt)
        if self.worker is not None and self._active:
            self.worker.submit(WorkItem(frame, stamp_ns / 1e9))

    # ============================================================================================ worker
    def _process(self, item: WorkItem) -> None:
        frame: Frame = item.payload
        engine = self.engine
        if engine is None:
            return
        started = time.perf_counter()
        processed = engine.process(frame)
        header = Header(frame_id=frame.frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(frame.stamp_ns, 1_000_000_000)
        p = self.params
        outputs = build_outputs(processed, header, p["demo_frame_id"], p["marker_scale"], p["publish_debug"])
        pubs = self._pubs
        if not pubs or not self._active:
            return
        pubs["matches"].publish(outputs.matches)
        latency = self._now_s() - item.stamp_s
        if outputs.alignment is not None:
            pubs["alignment"].publish(outputs.alignment)
        if outputs.quality is not None:
            pubs["alignment_quality"].publish(outputs.quality)
        pubs["markers"].publish(outputs.markers)
        if outputs.debug_image is not None:
            pubs["debug_image"].publish(outputs.debug_image)
        if outputs.mask is not None:
            pubs["mask"].publish(outputs.mask)
        self.latency.add(latency)
        self.processing.add(time.perf_counter() - started)
        with self._state_lock:
            self.counts["published"] += 1

    def _on_worker_error(self, item: WorkItem, exc: BaseException) -> None:
        if isinstance(exc, SocoError):
            reason = type(exc).__name__
            with self._state_lock:
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
            self.log.warn(f"processing:{reason}", f"frame not published: {exc}")
        else:
            self.log.warn(f"crash:{type(exc).__name__}", "frame not published, unexpected error:\n"
                          + "".join(traceback.format_exception(exc)), level="error")

    # ============================================================================================ diagnostics
    def diagnostics(self) -> dict[str, Any]:
        worker = self.worker
        latency = self.latency.summary()
        values: dict[str, Any] = {
            "state": "active" if self._active else ("inactive" if self._configured else "unconfigured"),
            "demo": self.engine.demo_path if self.engine is not None else "",
            "frames_received": self.counts["received"],
            "frames_rejected": self.counts["rejected"],
            "frames_processed": worker.processed if worker else 0,
            "frames_published": self.counts["published"],
            "frames_failed": worker.failed if worker else 0,
            "frames_dropped": (worker.overwritten + worker.stale) if worker else 0,
            "dropped_overwritten": worker.overwritten if worker else 0,
            "dropped_stale": worker.stale if worker else 0,
            "sync_unmatched": getattr(self.sync, "unmatched", 0) if self.sync is not None else 0,
            "latency_window": latency["count"],
            "latency_p50_ms": latency["p50_ms"], "latency_p95_ms": latency["p95_ms"],
            "latency_max_ms": latency["max_ms"],
            "processing_p50_ms": self.processing.summary()["p50_ms"],
        }
        for reason, count in sorted(self.rejected.items()):
            values[f"rejected_{reason}"] = count
        return values

    def _publish_diagnostics(self) -> None:
        if "diagnostics" not in self._pubs:
            return
        values = self.diagnostics()
        if DiagnosticArray is None:  # pragma: no cover
            self._pubs["diagnostics"].publish(String(data=json.dumps(values)))
            return
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: correspondence", hardware_id="soco_ros")
        problems = []
        if not values["demo"]:
            problems.append("no demo")
        if values["state"] != "active":
            problems.append(values["state"])
        status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        status.message = ", ".join(problems) if problems else (
            f"{values['frames_published']} published, {values['frames_dropped']} dropped, p50 "
            f"{values['latency_p50_ms']:.0f} ms")
        status.values = [KeyValue(key=k, value=(f"{v:.3f}" if isinstance(v, float) else str(v)))
                         for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._pubs["diagnostics"].publish(msg)


def _cloud_type():
    from sensor_msgs.msg import PointCloud2

    return PointCloud2


def main(args: list[str] | None = None) -> int:
    # The worker thread holds the GIL in Python-level parts of the pipeline; a 1 ms switch interval (default 5 ms)
    # lets the executor thread take sensor messages out of DDS promptly while a frame is being processed.
    sys.setswitchinterval(0.001)
    rclpy.init(args=args if args is not None else sys.argv)
    node = CorrespondenceNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        if not node.autostart():
            code = 1
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            if node._active or node._configured:
                node.on_shutdown(None)
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
