"""The node's diagnostics: the counters and latencies as ``DiagnosticStatus`` values, and the level and message
that :mod:`soco_ros.health` decides from them, published on ``/diagnostics`` in every lifecycle state.

:class:`DiagnosticsMixin` is one part of :class:`soco_ros.lifecycle.CorrespondenceNode`. It owns the diagnostics
publisher and timer (:meth:`_start_diagnostics`, from the node's constructor) and reads everything else:
``counts``, ``rejected``, ``worker``, ``sync``, ``latency``, ``processing``, ``health``, ``processor``,
``params`` and the lifecycle state. It changes nothing, so what it reports is what the other parts recorded.
"""
from __future__ import annotations

import json
from typing import Any

from rclpy.duration import Duration
from std_msgs.msg import String

from . import health as H
from .qos import output_qos

try:  # diagnostics as DiagnosticArray when diagnostic_msgs is installed, else a JSON String
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # pragma: no cover - the wheels ship diagnostic_msgs
    DiagnosticArray = None


class DiagnosticsMixin:
    def _start_diagnostics(self) -> None:
        """Diagnostics flow in every lifecycle state (a plain publisher, not a managed one), from start to shutdown."""
        self._diag_pub = (self.create_publisher(DiagnosticArray, "/diagnostics", output_qos(10))
                          if DiagnosticArray is not None else
                          self.create_publisher(String, "~/diagnostics", output_qos(10)))
        self._diag_timer = self.create_timer(float(self.params["diagnostics_period"]), self._publish_diagnostics)

    def state_label(self) -> str:
        """The lifecycle state as a lifecycle manager sees it (``finalized`` after shutdown, a transition's label
        while one runs)."""
        if self._finalized:
            return "finalized"
        try:
            return str(self._state_machine.current_state[1])
        except Exception:  # noqa: BLE001 - the state machine is gone (node destroyed)
            return "active" if self._active else ("inactive" if self._configured else "unconfigured")

    def publish_final_diagnostics(self, timeout_s: float = 2.0) -> None:
        """After shutdown: one last status (``finalized``), delivered to the subscribers before the node goes."""
        self._publish_diagnostics()
        try:
            self._diag_pub.wait_for_all_acked(Duration(seconds=timeout_s))
        except Exception:  # noqa: BLE001 - best effort: the process is ending
            pass

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
            "refused_zero_stamp": self.counts["refused_zero_stamp"],
            "refused_future_stamp": self.counts["refused_future_stamp"],
            "sync_unmatched": self.counts["sync_out_of_order"] + self.counts["sync_no_partner"],
            "sync_out_of_order": self.counts["sync_out_of_order"],
            "sync_no_partner": self.counts["sync_no_partner"],
            "sync_rearmed": self.counts["sync_rearmed"],
            "parameters_rejected": self.counts["parameters_rejected"],
            # published keypoints whose own match lay off the accepted 3D pose's prediction, and frames whose pose
            # was refused as ambiguous (a symmetric object's turn), since start-up or ~/reset
            "pose_disagreements": self.counts["pose_disagreements"],
            "pose_ambiguous": self.counts["pose_ambiguous"],
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
            last = self._last_sync_drop
            hint = ("; no synchronised image / depth / mask set yet" if values["sync_unmatched"] == 0 else
                    f"; no synchronised image / depth / mask set: the synchroniser dropped {values['sync_unmatched']} "
                    f"messages ({values['sync_no_partner']} without a partner, {values['sync_out_of_order']} out of "
                    f"order), the last: {last}")
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

