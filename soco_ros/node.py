"""``correspondence_node``: the ROS 2 lifecycle node around :mod:`correspondence` (see ``docs/ros.md``).

Lifecycle (``rclpy.lifecycle.LifecycleNode``, the rclpy way: lifecycle publishers, the base transition hooks
called, shutdown through the state machine): *configure* builds the model, the lifecycle publishers and the
worker threads and loads the demo; *activate* enables the publishers and subscribes to the camera topics;
*deactivate* unsubscribes and lets the frame in progress finish; *cleanup* stops the threads, then destroys the
publishers and releases the model. With ``autostart`` (default) the node configures and activates itself, so
``ros2 run`` / ``soco-ros-node`` just work; set ``autostart:=false`` to drive it from a lifecycle manager
(``~/change_state``). Diagnostics are published in every state, from start-up to shutdown.

Data flow: subscription callbacks only convert and validate (``soco_ros.conversions``), pair image / depth / mask
(``soco_ros.sync``) and put the frame into a one-frame slot; one worker thread runs the pipeline on the latest
frame and publishes (``soco_ros.worker``, ``soco_ros.messages``); demo loads run on that thread too, so the
executor never waits for feature extraction. Debug images are rendered and published by a second, lower-priority
thread, after ``~/matches``. A frame that is replaced before the worker takes it, or that is older than
``max_frame_age`` when it does, is dropped and counted. A bad message is a specific (throttled) warning and a
counted rejection, never an exception out of a callback. ``soco_ros.health`` decides what the diagnostics say.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from geometry_msgs.msg import PointStamped, TransformStamped
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from correspondence.errors import SocoError
from correspondence.segmentation import Prompt

from . import health as H
from . import parameters as P
from .capture import DemoCaptureService
from .compressed import compressed_depth_to_metres, compressed_to_rgb
from .conversions import (FrameError, camera_info_to_intrinsics, check_same_size, depth_to_metres, image_to_rgb,
                          mask_to_bool, ns_to_stamp, stamp_to_ns)
from .processor import FrameProcessor, Frame, build_matcher
from .messages import build_debug_outputs, build_outputs, tf_message
from .qos import latched_qos, output_qos, sensor_overrides, sensor_qos, tf_qos
from .sync import ApproximateSync
from .worker import LatencyStats, WorkItem, Worker

try:  # diagnostics as DiagnosticArray when diagnostic_msgs is installed, else a JSON String
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # pragma: no cover - the wheels ship diagnostic_msgs
    DiagnosticArray = None

NODE_NAME = "correspondence_node"
WARN_PERIOD_S = 5.0
DEFAULT_FRAME_PERIOD_S = 0.5  # for the marker lifetime until the output rate is measured (lifetime 2 x this)
DIAG_LEVELS = {H.OK: "OK", H.WARN: "WARN", H.ERROR: "ERROR"}


class ThrottledLog:
    """One warning per reason per ``period`` seconds; the next one says how many were suppressed."""

    def __init__(self, logger, period: float = WARN_PERIOD_S) -> None:
        self.logger, self.period = logger, period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, reason: str, message: str, level: str = "warning", key: str | None = None) -> None:
        """Throttled per ``key`` (default: the reason and the start of the message, so different topics or causes
        are each reported)."""
        now = time.monotonic()
        key = key or f"{reason}|{message[:40]}"
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
    extra = f" {spec.bracketed_range()}" if spec.range_text() else ""
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


def _problem_key(exc: BaseException) -> str:
    """A stable key for a processing error: its type and its message without the numbers."""
    text = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", str(exc))
    return f"{type(exc).__name__}: {text[:48]}"


class CorrespondenceNode(LifecycleNode):
    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.log = ThrottledLog(self.get_logger())
        self._state_lock = threading.RLock()
        self._pub_lock = threading.RLock()  # publishers are used and destroyed under it
        self._reset_counts()
        self.health = H.Health()
        self.params = self._declare_parameters()
        self._apply_health_params(self.params)
        self.add_pre_set_parameters_callback(self._pre_set_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.processor: FrameProcessor | None = None
        self.worker: Worker | None = None
        self.debug_worker: Worker | None = None
        self.sync: Any = None
        self.latency = LatencyStats(window=int(os.environ.get("SOCO_ROS_LATENCY_WINDOW", "300")))
        self.processing = LatencyStats(window=300)
        self._intrinsics = None
        self._prompt: Prompt | None = None
        self._configured = self._active = False
        self._configure_error: str | None = None
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._input_topics: dict[str, str] = {}  # input -> the topic it is read from (set at activate)
        self._tf_broadcaster = None
        self._tf_kind = "off"
        self._publish_times: deque[float] = deque(maxlen=20)
        self.create_service(Trigger, "~/set_demo", self._srv_set_demo)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.capture = DemoCaptureService(self)  # ~/capture_demo (soco_ros/capture.py)
        self.create_subscription(String, "~/set_demo_path", self._on_set_demo_path, output_qos())
        # Diagnostics flow in every lifecycle state (a plain publisher, not a managed one), from start to shutdown.
        self._diag_pub = (self.create_publisher(DiagnosticArray, "/diagnostics", output_qos(10))
                          if DiagnosticArray is not None else
                          self.create_publisher(String, "~/diagnostics", output_qos(10)))
        self._diag_timer = self.create_timer(float(self.params["diagnostics_period"]), self._publish_diagnostics)

    # ============================================================================================ parameters
    def _declare_parameters(self) -> dict[str, Any]:
        """Declare every parameter with its start-up value. An integer for a double is taken as that double; a
        value of the wrong type, out of range or not among the choices falls back to the default; an invalid
        depth pair falls back to the default pair. Each fallback is a warning naming the values and is counted."""
        overrides = getattr(self, "_parameter_overrides", None)  # rclpy's start-up values (params file, -p)
        if isinstance(overrides, dict):
            self._rename_overrides(overrides)
        values: dict[str, Any] = {}
        for spec in P.SPECS:
            descriptor = _descriptor(spec)
            if isinstance(overrides, dict) and spec.name in overrides:
                given = overrides[spec.name].value
                coerced = P.coerce(spec.name, given)
                if coerced is not given:
                    overrides[spec.name] = Parameter(spec.name, Parameter.Type.DOUBLE, coerced)
            try:
                value = self.declare_parameter(spec.name, spec.default, descriptor).value
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                self._parameter_refused(spec.name, f"start-up value rejected ({exc}); using the default "
                                                   f"{spec.default!r}", prefix="[parameter] ")
                value = self.declare_parameter(spec.name, spec.default, descriptor, ignore_override=True).value
            reason = P.validate(spec.name, value)
            if reason is not None:
                self._parameter_refused(spec.name, f"{reason}; using the default {spec.default!r}",
                                        prefix="[parameter] ")
                self.set_parameters([Parameter(spec.name, value=spec.default)])
                value = spec.default
            values[spec.name] = value
        reason = P.validate_pair(values)
        if reason is not None:
            low, high = P.BY_NAME["depth_min"].default, P.BY_NAME["depth_max"].default
            self._parameter_refused("depth_min", f"start-up {reason}; keeping the last valid pair depth_min={low:g}, "
                                                 f"depth_max={high:g} (the defaults)", prefix="[parameter] ")
            self.set_parameters([Parameter("depth_min", value=low), Parameter("depth_max", value=high)])
            values.update(depth_min=low, depth_max=high)
        return values

    def _rename_overrides(self, overrides: dict[str, Parameter]) -> None:
        """Start-up values given under a renamed parameter's old name are taken as the new one (a warning each);
        when both names are given, the new one wins and the old value is reported as ignored."""
        for old, new in P.RENAMED.items():
            if old not in overrides:
                continue
            given = overrides.pop(old)
            if new in overrides:
                self.get_logger().warning(f"[parameter] {P.renamed_message_ignored(old)}")
                continue
            overrides[new] = Parameter(new, given.type_, given.value)
            self.get_logger().warning(f"[parameter] {P.renamed_note(old)}")

    def _parameter_refused(self, name: str, reason: str, prefix: str | None = None) -> None:
        """Every refused parameter value: one warning (unthrottled: a user action) and a counter."""
        with self._state_lock:
            self.counts["parameters_rejected"] += 1
        head = prefix if prefix is not None else f"[parameter:{name}] rejected: "
        if prefix is not None and not reason.startswith(name):
            reason = f"{name}: {reason}"
        self.get_logger().warning(f"{head}{reason}")

    def _pre_set_parameters(self, params: list[Parameter]) -> list[Parameter]:
        """Before rclpy checks types and ranges: an integer for a double becomes that double (what ``ros2 param
        set node min_score 1`` sends), a renamed parameter's old name becomes the new one (with a warning), and a
        value rclpy or we will refuse is logged and counted here, once, with our reason (rclpy's own refusals
        never reach :meth:`_on_set_parameters`)."""
        out = []
        for param in params:
            if param.name in P.RENAMED:
                self.get_logger().warning(f"[parameter:{param.name}] {P.renamed_note(param.name)}")
                param = Parameter(P.RENAMED[param.name], param.type_, param.value)
            spec = P.BY_NAME.get(param.name)
            if spec is None:
                out.append(param)
                continue
            value = P.coerce(param.name, param.value)
            if value is not param.value:
                param = Parameter(param.name, Parameter.Type.DOUBLE, value)
            reason = P.validate(param.name, value)
            if reason is not None:
                self._parameter_refused(param.name, reason)
            out.append(param)
        return out

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes: dict[str, Any] = {}
        for param in params:
            spec = P.BY_NAME.get(param.name)
            if spec is None:  # e.g. use_sim_time, qos_overrides.*
                continue
            value = P.coerce(param.name, param.value)
            reason = P.validate(param.name, value)
            if reason is not None:  # already logged and counted by the pre-set callback
                return SetParametersResult(successful=False, reason=reason)
            if not spec.reconfigurable and self._configured and value != self.params[param.name]:
                return self._refuse(param.name, f"parameter {param.name!r} is applied at configure time; deactivate "
                                                "and clean up the node, set it, then configure again (or restart "
                                                "the node)")
            changes[param.name] = value
        merged = {**self.params, **changes}
        reason = P.validate_pair(merged)
        if reason is not None:
            name = "depth_min" if "depth_min" in changes else "depth_max"
            return self._refuse(name, f"{reason}; keeping depth_min={self.params['depth_min']:g}, "
                                      f"depth_max={self.params['depth_max']:g} (to move the range past its other "
                                      "end, set both at once with set_parameters_atomically, or move the other "
                                      "end first)")
        if "demo_path" in changes and self.processor is not None and changes["demo_path"] != self.params["demo_path"]:
            error = self._request_demo(changes["demo_path"])
            if error is not None:
                return self._refuse("demo_path", error, log=False)  # _request_demo logged it
        if self.processor is not None:
            processor_changes = {k: v for k, v in changes.items() if k != "demo_path"}
            if processor_changes:
                try:
                    self.processor.update(processor_changes)
                except SocoError as exc:
                    return self._refuse(",".join(sorted(processor_changes)), f"cannot apply it: {exc}")
        self.params.update(changes)
        if "sync_slop" in changes and self.sync is not None:
            self._set_slop(changes["sync_slop"])
        if "max_frame_age" in changes and self.worker is not None:
            self.worker.max_age_s = float(changes["max_frame_age"])
        self._apply_health_params(changes)
        return SetParametersResult(successful=True)

    def _refuse(self, name: str, reason: str, log: bool = True) -> SetParametersResult:
        if log:
            self._parameter_refused(name, reason)
        else:
            with self._state_lock:
                self.counts["parameters_rejected"] += 1
        return SetParametersResult(successful=False, reason=reason)

    def _apply_health_params(self, changes: dict[str, Any]) -> None:
        if "health_timeout" in changes:
            self.health.timeout_s = float(changes["health_timeout"])
        if "health_window" in changes:
            self.health.window_s = float(changes["health_window"])
        if "health_max_problem_ratio" in changes:
            self.health.max_problem_ratio = float(changes["health_max_problem_ratio"])

    # ============================================================================================ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.params
        self._configure_error = None
        stage = "building the matcher"
        try:
            if p["torch_threads"] > 0:
                import torch

                torch.set_num_threads(int(p["torch_threads"]))
            started = time.perf_counter()
            matcher = build_matcher(p)
            stage = "building the mask source / functional head"
            processor = FrameProcessor(p, matcher=matcher)
            described = matcher.extractor.describe()
        except Exception as exc:  # noqa: BLE001 - any failure leaves the node unconfigured, with the reason
            what = str(exc) if isinstance(exc, SocoError) else f"{type(exc).__name__}: {exc}"
            self._configure_error = f"{stage}: {what}"
            self.get_logger().error(f"[configure] failed while {stage}: {what}; the node stays unconfigured (fix "
                                    "the parameters, then configure through ~/change_state)")
            return TransitionCallbackReturn.FAILURE
        self.processor = processor
        self.get_logger().info(
            f"matcher: {described['backbone']['name']} ({described['backbone'].get('weights')}), input "
            f"{described['effective_image_size']} px, device {described['device']}, runtime {p['runtime']}; "
            f"segmentation: {processor.mask_source_reason} ({time.perf_counter() - started:.1f} s)")
        if p["demo_path"]:
            try:
                self._install_demo(processor.load_spec(p["demo_path"]), p["demo_path"], publish=False)
            except SocoError as exc:
                self.get_logger().warning(f"[demo] cannot load demo {p['demo_path']!r}: {exc}")
        else:
            self.get_logger().warning("[demo] no demo_path set: frames are dropped until a demo is loaded "
                                      "(parameter demo_path or topic ~/set_demo_path)")
        with self._pub_lock:
            self._pubs = {
                "matches": self.create_lifecycle_publisher(_cloud_type(), "~/matches", output_qos()),
                "keypoint_names": self.create_lifecycle_publisher(String, "~/keypoint_names", latched_qos()),
                "alignment": self.create_lifecycle_publisher(TransformStamped, "~/alignment", output_qos()),
                "alignment_quality": self.create_lifecycle_publisher(String, "~/alignment_quality", output_qos()),
                "markers": self.create_lifecycle_publisher(MarkerArray, "~/markers", output_qos()),
                "debug_image": self.create_lifecycle_publisher(Image, "~/debug_image", output_qos(2)),
                "mask": self.create_lifecycle_publisher(Image, "~/mask", output_qos(2)),
            }
            self._make_tf_publisher()
        self.worker = Worker(self._process, max_age_s=p["max_frame_age"], on_error=self._on_worker_error,
                             clock=self._now_s, on_stale=self._on_stale)
        self.debug_worker = Worker(self._process_debug, max_age_s=0.0, on_error=self._on_worker_error,
                                   name="soco-debug", nice=10)
        self.worker.start()
        self.debug_worker.start()
        self._configured = True
        return super().on_configure(state)

    def _make_tf_publisher(self) -> None:
        """/tf: tf2_ros' TransformBroadcaster when importable (a ROS install), else a lifecycle publisher of
        tf2_msgs/TFMessage (built into the venv by ``python -m soco_ros.tf2_msgs_build``), else none."""
        try:
            from tf2_ros import TransformBroadcaster

            self._tf_broadcaster, self._tf_kind = TransformBroadcaster(self, qos=tf_qos()), "tf2_ros"
            return
        except ImportError:
            pass
        try:
            from tf2_msgs.msg import TFMessage

            self._pubs["tf"] = self.create_lifecycle_publisher(TFMessage, "/tf", tf_qos())
            self._tf_kind = "tf2_msgs"
        except ImportError:
            self._tf_kind = "unavailable"
            if self.params["publish_tf"]:
                self.get_logger().warning("[tf] publish_tf is true but neither tf2_ros nor tf2_msgs is importable: "
                                          "the alignment is on ~/alignment only (build tf2_msgs with `python -m "
                                          "soco_ros.tf2_msgs_build`, or source a ROS 2 install)")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        p = self.params

        def qos():  # a fresh profile per subscription: rclpy's QoS overrides modify the profile they are given
            return sensor_qos(p["qos_reliability"], p["qos_depth"])

        inputs = ["image"] + (["depth"] if p["use_depth"] else []) + (["mask"] if p["use_mask"] else [])
        self._input_topics = {name: self._input_topic(name) for name in inputs}
        types = {name: Image if self._transport(name) == "raw" else CompressedImage for name in inputs}
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
        overrides = sensor_overrides()
        # camera_info first: in one executor cycle its callback then runs before the image's (creation order)
        info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos(),
                                            qos_overriding_options=overrides)
        if use_mf:
            import message_filters

            subs = [message_filters.Subscriber(self, types[name], self._input_topics[name], qos_profile=qos(),
                                               qos_overriding_options=overrides) for name in inputs]
            self.sync = message_filters.ApproximateTimeSynchronizer(subs, p["sync_queue_size"], p["sync_slop"])
            self.sync.registerCallback(lambda *msgs: self._on_synced(dict(zip(inputs, msgs))))
            self._subs = list(subs)
        else:
            self.sync = ApproximateSync(inputs, p["sync_slop"], lambda *msgs: self._on_synced(dict(zip(inputs, msgs))),
                                        p["sync_queue_size"])
            self._subs = [self.create_subscription(types[name], self._input_topics[name], self._sync_callback(name),
                                                   qos(), qos_overriding_options=overrides) for name in inputs]
        self._subs.append(info_sub)
        if p["use_prompt"]:
            self._subs.append(self.create_subscription(PointStamped, "prompt", self._on_prompt, qos(),
                                                       qos_overriding_options=overrides))
        self._active = True
        self._publish_names()
        topics = [self._input_topics[name] for name in inputs] + [
            self.resolve_topic_name(name) for name in ["camera_info"] + (["prompt"] if p["use_prompt"] else [])]
        self.get_logger().info(f"active: subscribed to {', '.join(topics)} ({p['qos_reliability']}, sync "
                               f"{'message_filters' if use_mf else 'built-in'}, slop {p['sync_slop']} s); "
                               f"publishing under {self.get_fully_qualified_name()}/, /tf: {self._tf_kind}")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        for sub in self._subs:
            sub_obj = getattr(sub, "sub", sub)  # message_filters.Subscriber wraps the subscription
            self.destroy_subscription(sub_obj)
        self._subs = []
        self.sync = None
        for worker in (self.worker, self.debug_worker):
            if worker is not None:
                worker.slot.clear()
                if not worker.wait_idle(10.0):
                    self.get_logger().warning("[worker] still busy after 10 s; its output will not be published")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for worker in (self.worker, self.debug_worker):  # no thread may publish from here on
            if worker is not None and not worker.stop():
                self.get_logger().warning("[worker] still busy after 10 s; it stops after the current frame")
        with self._pub_lock:
            pubs, self._pubs = self._pubs, {}
            for pub in pubs.values():
                self.destroy_lifecycle_publisher(pub)
            if self._tf_broadcaster is not None:
                self.destroy_publisher(self._tf_broadcaster.pub_tf)
                self._tf_broadcaster = None
            self._tf_kind = "off"
        self.worker = self.debug_worker = None
        self.processor = None
        self._configured = False
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self.on_deactivate(state)
        if self._configured:
            self.on_cleanup(state)
        self.get_logger().info("shut down")
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error("[lifecycle] a transition raised; cleaning up")
        if self._active:
            self.on_deactivate(state)
        if self._configured:
            self.on_cleanup(state)
        return super().on_error(state)

    def autostart(self) -> bool:
        """Configure and activate (``autostart``); False (and the node stays up, unconfigured) if that fails."""
        if not self.params["autostart"]:
            self.get_logger().info("autostart is false: waiting for lifecycle transitions (~/change_state)")
            return True
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        return self.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        """Leave through the lifecycle state machine (the shutdown transition from whatever state the node is in),
        so the hooks run and a lifecycle manager sees ``finalized``."""
        try:
            if self._state_machine.current_state[1] != "finalized":
                self.trigger_shutdown()
                return
        except Exception as exc:  # noqa: BLE001 - e.g. interrupted mid-transition: clean up by hand
            self.get_logger().warning(f"[lifecycle] shutdown transition not possible ({exc}); cleaning up directly")
        if self._active:
            self.on_deactivate(None)
        if self._configured:
            self.on_cleanup(None)

    # ============================================================================================ demo
    def _request_demo(self, path: str) -> str | None:
        """Check the demo at ``path`` now (files only) and load it on the worker before its next frame; None if
        it is accepted, else the reason (the current demo stays)."""
        try:
            demo = FrameProcessor.load_spec(path)
        except SocoError as exc:
            current = self.processor
            keep = f"; keeping demo {current.demo_path!r}" if current is not None and current.has_demo else ""
            self.get_logger().warning(f"[demo] cannot load demo {path!r}: {exc}{keep}")  # a user action: unthrottled
            return str(exc)
        def job() -> None:
            try:
                self._install_demo(demo, path)
            except SocoError as exc:
                processor = self.processor
                keep = f"; keeping demo {processor.demo_path!r}" if processor is not None and processor.has_demo else ""
                self.get_logger().warning(f"[demo] cannot load demo {path!r}: {exc}{keep}")

        worker = self.worker
        if worker is not None and worker.running:
            worker.run_job(job)
        else:  # pragma: no cover - the worker runs whenever the node is configured
            job()
        return None

    def _install_demo(self, demo, path: str, publish: bool = True) -> None:
        """Make ``demo`` current, extract its features, publish its names, then log it (worker thread, or
        configure): once the log line is there, frames are served with this demo."""
        processor = self.processor
        if processor is None:
            return
        processor.install_demo(demo, path)
        started = time.perf_counter()
        try:
            processor.warmup()
        except SocoError as exc:
            self.log.warn("warmup", f"warm-up on the demo image failed: {exc}")
        if publish:
            self._publish_names()
        self.get_logger().info(f"demo {path!r}: {len(demo.keypoints.points) if demo.keypoints is not None else 0} "
                               f"keypoints{'' if demo.keypoints is not None else ', function ' + str(demo.function)}"
                               f", {'RGB-D (3D alignment)' if demo.has_3d else 'RGB only (2D alignment)'}; "
                               f"warm-up {time.perf_counter() - started:.2f} s")

    def _publish_names(self) -> None:
        processor = self.processor
        with self._pub_lock:
            if processor is not None and processor.has_demo and "keypoint_names" in self._pubs and self._active:
                self._pubs["keypoint_names"].publish(String(data=json.dumps(list(processor.keypoint_names))))

    def _srv_set_demo(self, request, response):
        if self.processor is None:
            response.success, response.message = False, "the node is not configured"
            return response
        error = self._request_demo(self.params["demo_path"])
        response.success = error is None
        response.message = error or f"loading {self.params['demo_path']!r}"
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
            self.health.reset()
            self.log.reset()
        response.success, response.message = True, "cleared the pending frame, sync queues, prompt and counters"
        return response

    def _reset_counts(self) -> None:
        self.counts = {"received": 0, "rejected": 0, "published": 0, "parameters_rejected": 0}
        self.rejected = {}

    # ============================================================================================ inputs
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    def _transport(self, name: str) -> str:
        """raw, compressed or compressedDepth: how the input ``name`` arrives (the mask is always raw)."""
        return {"image": self.params["image_transport"], "depth": self.params["depth_transport"]}.get(name, "raw")

    def _input_topic(self, name: str) -> str:
        """The topic an input is read from: the (remapped) name itself, or image_transport's sub-topic of it
        (``<image>/compressed``, ``<depth>/compressedDepth``), as image_transport's subscribers resolve it."""
        resolved = self.resolve_topic_name(name)
        transport = self._transport(name)
        return resolved if transport == "raw" else f"{resolved}/{transport}"

    def _sync_callback(self, name: str):
        def callback(msg: Image) -> None:
            if name == "image":
                self.health.input()
            sync = self.sync
            if sync is not None:
                sync.add(name, stamp_to_ns(msg.header.stamp), msg)
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
        self.health.problem("rejected", reason, message)
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
        self.health.frame()
        image = msgs["image"]
        try:
            topics = {name: self._input_topics.get(name) or self._input_topic(name) for name in msgs}
            topic = topics["image"]
            if not str(image.header.frame_id).strip():
                raise FrameError("frame_id", f"{topic}: header.frame_id is empty; the matches, markers and the "
                                             "transform could not be placed in tf (set the camera driver's frame)")
            rgb = image_to_rgb(image, topic) if isinstance(image, Image) else compressed_to_rgb(image, topic)
            depth = mask = intrinsics = None
            if "depth" in msgs:
                reader = depth_to_metres if isinstance(msgs["depth"], Image) else compressed_depth_to_metres
                depth = reader(msgs["depth"], self.params["depth_scale"], topics["depth"])
                check_same_size(rgb, depth, "depth")
                intrinsics = self._intrinsics
                if intrinsics is None:
                    raise FrameError("no_camera_info", "no valid camera_info received yet (needed with depth)")
                if (intrinsics.width, intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
                    raise FrameError("size_mismatch", f"camera_info is for {intrinsics.width}x{intrinsics.height} "
                                                      f"but the image is {rgb.shape[1]}x{rgb.shape[0]}")
            if "mask" in msgs:
                mask = mask_to_bool(msgs["mask"], topics["mask"])
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
        worker = self.worker
        if worker is not None and self._active:
            worker.submit(WorkItem(frame, stamp_ns / 1e9))
        self.capture.remember(frame)

    # ============================================================================================ worker
    def _marker_lifetime(self) -> float:
        value = float(self.params["marker_lifetime"])
        if value > 0:
            return value
        times = list(self._publish_times)
        period = float(sorted(b - a for a, b in zip(times, times[1:]))[(len(times) - 1) // 2]) if len(times) >= 3 \
            else DEFAULT_FRAME_PERIOD_S
        return 2.0 * max(period, 0.01)

    def _process(self, item: WorkItem) -> None:
        frame: Frame = item.payload
        processor = self.processor
        if processor is None:
            return
        started = time.perf_counter()
        processed = processor.process(frame)
        header = Header(frame_id=frame.frame_id)
        header.stamp = ns_to_stamp(frame.stamp_ns)
        p = self.params
        outputs = build_outputs(processed, header, p["demo_frame_id"], p["marker_scale"], publish_debug=False,
                                marker_lifetime_s=self._marker_lifetime(),
                                processing_s=time.perf_counter() - started)
        with self._pub_lock:
            pubs = self._pubs
            if not pubs or not self._active:
                return
            pubs["matches"].publish(outputs.matches)
            latency = self._now_s() - item.stamp_s
            if outputs.alignment is not None:
                pubs["alignment"].publish(outputs.alignment)
                if p["publish_tf"]:
                    self._publish_tf(outputs.alignment)
            if outputs.quality is not None:
                pubs["alignment_quality"].publish(outputs.quality)
            pubs["markers"].publish(outputs.markers)
        if p["publish_debug"] and self.debug_worker is not None:  # rendered and published by the debug thread
            self.debug_worker.submit(WorkItem((processed, header), item.stamp_s))
        self.latency.add(latency)
        self.processing.add(time.perf_counter() - started)
        self._publish_times.append(time.monotonic())
        self.health.published()
        with self._state_lock:
            self.counts["published"] += 1

    def _publish_tf(self, transform: TransformStamped) -> None:
        if self._tf_broadcaster is not None:
            self._tf_broadcaster.sendTransform(transform)
        elif "tf" in self._pubs:
            self._pubs["tf"].publish(tf_message([transform]))

    def _process_debug(self, item: WorkItem) -> None:
        """Debug thread (nice 10, at most one pending frame: a newer one replaces it): overlay and mask images."""
        processed, header = item.payload
        debug_image, mask = build_debug_outputs(processed, header)
        with self._pub_lock:
            if not self._pubs or not self._active or not self.params["publish_debug"]:
                return
            self._pubs["debug_image"].publish(debug_image)
            if mask is not None:
                self._pubs["mask"].publish(mask)

    def _on_stale(self, item: WorkItem, age_s: float) -> None:
        message = (f"frame dropped as stale: its stamp is {age_s:.2f} s old when the worker took it (max_frame_age "
                   f"{self.params['max_frame_age']:g} s); check the camera clock / use_sim_time, or raise "
                   "max_frame_age")
        self.health.problem("stale", "stale", message)
        self.log.warn("stale", message, key="stale")  # one line per 5 s, however the age varies

    def _on_worker_error(self, item: WorkItem | None, exc: BaseException) -> None:
        if isinstance(exc, SocoError):
            reason = type(exc).__name__
            with self._state_lock:
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
            if item is not None and not isinstance(item.payload, tuple):
                self.health.problem("failed", _problem_key(exc), str(exc))
            self.log.warn(f"processing:{reason}", f"frame not published: {exc}")
        else:
            if item is not None and not isinstance(item.payload, tuple):
                self.health.problem("failed", _problem_key(exc), f"unexpected {type(exc).__name__}: {exc}")
            self.log.warn(f"crash:{type(exc).__name__}", "frame not published, unexpected error:\n"
                          + "".join(traceback.format_exception(exc)), level="error")

    # ============================================================================================ diagnostics
    def state_label(self) -> str:
        return "active" if self._active else ("inactive" if self._configured else "unconfigured")

    def diagnostics(self) -> dict[str, Any]:
        worker = self.worker
        latency = self.latency.summary()
        window = self.health.window()
        values: dict[str, Any] = {
            "state": self.state_label(),
            "demo": self.processor.demo_path if self.processor is not None else "",
            "frames_received": self.counts["received"],
            "frames_rejected": self.counts["rejected"],
            "frames_processed": worker.processed if worker else 0,
            "frames_published": self.counts["published"],
            "frames_failed": worker.failed if worker else 0,
            "frames_dropped": (worker.overwritten + worker.stale) if worker else 0,
            "dropped_overwritten": worker.overwritten if worker else 0,
            "dropped_stale": worker.stale if worker else 0,
            "sync_unmatched": getattr(self.sync, "unmatched", 0) if self.sync is not None else 0,
            "parameters_rejected": self.counts["parameters_rejected"],
            "window_frames": window["frames"], "window_problems": window["problems"],
            "window_problem_ratio": float(window["ratio"]),
            "tf": self._tf_kind if self.params["publish_tf"] else "off",
            "latency_window": latency["count"],
            "latency_p50_ms": latency["p50_ms"], "latency_p95_ms": latency["p95_ms"],
            "latency_max_ms": latency["max_ms"],
            "processing_p50_ms": self.processing.summary()["p50_ms"],
        }
        if self._configure_error:
            values["configure_error"] = self._configure_error
        for reason, count in sorted(self.rejected.items()):
            values[f"rejected_{reason}"] = count
        return values

    def assess(self, values: dict[str, Any] | None = None) -> tuple[int, str]:
        values = values if values is not None else self.diagnostics()
        ok = (f"{values['frames_published']} published, {values['frames_dropped']} dropped, p50 "
              f"{values['latency_p50_ms']:.0f} ms")
        processor = self.processor
        topics = ", ".join(self._input_topics.values())
        where = f"; subscribed to {topics}: is the camera publishing there, with a QoS that matches?" if topics else ""
        hint = ""
        if values["frames_received"] == 0 or self.health.window()["frames"] == 0:
            hint = (f"; no synchronised image / depth / mask set: {values['sync_unmatched']} messages found no "
                    f"partner within sync_slop {self.params['sync_slop']:g} s (check their stamps and that every "
                    "input topic is published)")
        return self.health.assess(values["state"], self._configure_error if not self._configured else None,
                                  has_demo=processor is not None and processor.has_demo, ok_text=ok, idle_hint=hint,
                                  input_hint=where)

    def _publish_diagnostics(self) -> None:
        try:
            values = self.diagnostics()
            level, message = self.assess(values)
        except Exception as exc:  # noqa: BLE001 - diagnostics must never take the node down
            self.log.warn("diagnostics", f"cannot compute diagnostics: {exc}", level="error")
            return
        if DiagnosticArray is None:  # pragma: no cover
            self._diag_pub.publish(String(data=json.dumps({**values, "level": level, "message": message})))
            return
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: correspondence", hardware_id="soco_ros")
        status.level = {H.OK: DiagnosticStatus.OK, H.WARN: DiagnosticStatus.WARN,
                        H.ERROR: DiagnosticStatus.ERROR}[level]
        status.message = message
        status.values = [KeyValue(key=k, value=(f"{v:.3f}" if isinstance(v, float) else str(v)))
                         for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def _cloud_type():
    from sensor_msgs.msg import PointCloud2

    return PointCloud2


def _interrupt(signum, frame):  # SIGTERM like SIGINT: leave spin, shut down through the lifecycle
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C / SIGTERM; 0 after a clean shutdown (whatever happened to autostart), 1 if an
    unexpected error ended it."""
    # The worker thread holds the GIL in Python-level parts of the pipeline; a 1 ms switch interval (default 5 ms)
    # lets the executor thread take sensor messages out of DDS promptly while a frame is being processed.
    sys.setswitchinterval(0.001)
    # rclpy's own signal handler would shut the context down before the node could leave through its shutdown
    # transition (no more publishing, no transition event); Ctrl-C here raises KeyboardInterrupt in spin instead.
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)  # also when started with SIGINT ignored (a background job of a script)
    signal.signal(signal.SIGTERM, _interrupt)
    node = CorrespondenceNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    code = 0
    try:
        node.autostart()
        while rclpy.ok():  # short waits, so Ctrl-C is seen within a quarter second
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001
        node.get_logger().error("unexpected error:\n" + traceback.format_exc())
        code = 1
    finally:
        try:
            node.shutdown()
        finally:
            executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
            rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
