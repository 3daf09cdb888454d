"""``CorrespondenceNode``: the ROS 2 lifecycle node around :mod:`correspondence` (see ``docs/ros.md``).

Lifecycle (``rclpy.lifecycle.LifecycleNode``, the rclpy way: lifecycle publishers, the base transition hooks
called, shutdown through the state machine): *configure* builds the model, the lifecycle publishers and the
worker threads and loads the demo; *activate* enables the publishers and subscribes to the camera topics;
*deactivate* unsubscribes and lets the frame in progress finish; *cleanup* stops the threads, then destroys the
publishers and releases the model. With ``autostart`` (default) the node configures and activates itself, so
``ros2 run`` / ``soco-ros-node`` just work; set ``autostart:=false`` to drive it from a lifecycle manager
(``~/change_state``). Diagnostics are published in every state, from start-up to shutdown.

The node is put together from one part per responsibility, each in its own module: parameters
(:mod:`soco_ros.node_params`), inputs and pairing (:mod:`soco_ros.inputs`), outputs and the worker threads'
publishing (:mod:`soco_ros.outputs`) and diagnostics (:mod:`soco_ros.diagnostics`). This module holds the
state they share, the lifecycle transitions, the demo and the services. The process around it (signals, exit
code) is :mod:`soco_ros.node`.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from correspondence.errors import SocoError
from correspondence.segmentation import Prompt

from . import health as H
from .capture import DemoCaptureService
from .diagnostics import DiagnosticsMixin
from .inputs import InputsMixin
from .node_params import ParametersMixin
from .outputs import OutputsMixin
from .processor import FrameProcessor, build_matcher
from .sync import ApproximateSync
from .qos import output_qos
from .throttle import ThrottledLog
from .worker import LatencyStats, Worker

NODE_NAME = "correspondence_node"
# The node's own counters (the worker's are in Worker); every one is in the diagnostics and zeroed by ~/reset.
COUNTERS = ("received", "rejected", "published", "parameters_rejected", "refused_zero_stamp", "refused_future_stamp",
            "sync_out_of_order", "sync_no_partner", "sync_rearmed", "pose_disagreements", "pose_ambiguous")


class CorrespondenceNode(ParametersMixin, InputsMixin, OutputsMixin, DiagnosticsMixin, LifecycleNode):
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
        self._intrinsics_frame: str | None = None  # the frame_id of the CameraInfo behind _intrinsics
        self._prompt: Prompt | None = None
        self._configured = self._active = False
        self._finalized = False
        self._configure_error: str | None = None
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._input_topics: dict[str, str] = {}  # input -> the topic it is read from (set at activate)
        self._tf_broadcaster = None
        self._tf_kind = "off"
        self._publish_times: deque[float] = deque(maxlen=20)
        # services (available in every state); a new one is a create_service line here and its handler below
        self.create_service(Trigger, "~/set_demo", self._srv_set_demo)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.capture = DemoCaptureService(self)  # ~/capture_demo (soco_ros/capture.py)
        self.create_subscription(String, "~/set_demo_path", self._on_set_demo_path, output_qos())
        self._start_diagnostics()

    def _now_s(self) -> float:
        """The node's clock (ROS time: simulated time with ``use_sim_time``) in seconds."""
        return self.get_clock().now().nanoseconds / 1e9

    # ============================================================================================ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.params
        self._configure_error = None
        stage = "building the matcher"
        self.get_logger().info(f"configuring: {stage} (backbone {p['backbone']}, runtime {p['runtime']}, device "
                               f"{p['device']})")
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
        self._create_publishers()
        self.worker = Worker(self._process, max_age_s=p["max_frame_age"], on_error=self._on_worker_error,
                             clock=self._now_s, on_stale=self._on_stale)
        self.debug_worker = Worker(self._process_debug, max_age_s=0.0, on_error=self._on_worker_error,
                                   name="soco-debug", nice=10)
        self.worker.start()
        self.debug_worker.start()
        self._configured = True
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        subscribed = self._subscribe_inputs()
        self._active = True
        self._publish_names()
        self.get_logger().info(f"active: subscribed to {subscribed}; publishing under "
                               f"{self.get_fully_qualified_name()}/, /tf: {self._tf_kind}")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._unsubscribe_inputs()
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
        self._destroy_publishers()
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
        so the hooks run and a lifecycle manager sees ``finalized``. A transition cut short (a signal during
        start-up's configure) leaves the state machine in a transitional state: then what exists is torn down
        directly."""
        try:
            if self._state_machine.current_state[1] != "finalized":
                self.trigger_shutdown()
        except Exception as exc:  # noqa: BLE001 - e.g. interrupted mid-transition: clean up by hand
            self.get_logger().warning(f"[lifecycle] shutdown transition not possible ({exc}); cleaning up directly")
            self._teardown()
        self._finalized = True  # what the last diagnostics say, even where the state machine could not get there

    def _teardown(self) -> None:
        """Whatever exists, in the transitions' order, without assuming a transition finished."""
        if self._active or self._subs:
            self.on_deactivate(None)
        for worker in (self.worker, self.debug_worker):
            if worker is not None:
                worker.stop()
        self._destroy_publishers()
        self.worker = self.debug_worker = None
        self.processor = None
        self._configured = False

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
            if isinstance(self.sync, ApproximateSync):
                self.sync.reset()
                self.sync.reset_counters()
            if self.worker is not None:
                self.worker.slot.clear()
                self.worker.reset_counters()
            self._prompt = None
            self._reset_counts()
            self.latency.clear()
            self.processing.clear()
            self.health.reset()
            self.log.reset()
        response.success, response.message = True, ("cleared the pending frame, the synchroniser's queues, the prompt, "
                                                     "every counter and the latency statistics")
        return response

    def _reset_counts(self) -> None:
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.rejected = {}
        self._last_sync_drop: str | None = None

    def _count(self, key: str, n: int = 1) -> None:
        with self._state_lock:
            self.counts[key] += n

