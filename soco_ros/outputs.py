"""The node's outputs: the lifecycle publishers (and /tf), what the worker threads publish for a processed frame,
and what a frame that ends without output tells the log and the health record.

:class:`OutputsMixin` is one part of :class:`soco_ros.lifecycle.CorrespondenceNode`. It owns ``_pubs`` (created at
configure by :meth:`_create_publishers`, destroyed at cleanup by :meth:`_destroy_publishers`, always under
``_pub_lock``), the /tf broadcaster and the publish-time record; it reads ``params``, ``processor``, ``_active``,
``debug_worker`` and updates ``counts``, ``rejected``, ``latency``, ``processing`` and ``health``. The message
contents come from :mod:`soco_ros.messages`; this module only decides what is published when.
"""
from __future__ import annotations

import json
import re
import time
import traceback

from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from correspondence.errors import SocoError

from .conversions import ns_to_stamp
from .messages import build_debug_outputs, build_outputs, tf_message
from .processor import Frame
from .qos import latched_qos, output_qos, tf_qos
from .worker import WorkItem

DEFAULT_FRAME_PERIOD_S = 0.5  # for the marker lifetime until the output rate is measured (lifetime 2 x this)


def _cloud_type():
    from sensor_msgs.msg import PointCloud2

    return PointCloud2


def _problem_key(exc: BaseException) -> str:
    """A stable key for a processing error: its type and its message without the numbers."""
    text = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", str(exc))
    return f"{type(exc).__name__}: {text[:48]}"


class OutputsMixin:
    # ------------------------------------------------------------------------------------------------ publishers
    def _create_publishers(self) -> None:
        """Configure: the lifecycle publishers (silent until activate) and the /tf publisher."""
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


    def _destroy_publishers(self) -> None:
        """Cleanup (after the worker threads stopped, so no thread publishes on a destroyed publisher)."""
        with self._pub_lock:
            pubs, self._pubs = self._pubs, {}
            for pub in pubs.values():
                self.destroy_lifecycle_publisher(pub)
            if self._tf_broadcaster is not None:
                self.destroy_publisher(self._tf_broadcaster.pub_tf)
                self._tf_broadcaster = None
            self._tf_kind = "off"

    def _publish_names(self) -> None:
        processor = self.processor
        with self._pub_lock:
            if processor is not None and processor.has_demo and "keypoint_names" in self._pubs and self._active:
                self._pubs["keypoint_names"].publish(String(data=json.dumps(list(processor.keypoint_names))))


    # ------------------------------------------------------------------------------------------------ worker threads
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
        result = processed.result
        with self._state_lock:
            self.counts["published"] += 1
            self.counts["pose_disagreements"] += sum(bool(k.disagrees) for k in result.pose_keypoints or ())
            self.counts["pose_ambiguous"] += int(result.pose_search is not None and result.pose_search.ambiguous)

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

