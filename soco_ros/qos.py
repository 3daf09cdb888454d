"""QoS profiles of the node.

* Sensor inputs (image, depth, mask, camera_info, prompt): ``qos_reliability`` (best-effort by default, like
  ``rclpy.qos.qos_profile_sensor_data``: a late frame is worth less than a new one), volatile, keep last
  ``qos_depth``. A best-effort subscription receives from both reliable and best-effort publishers.
* Per-frame outputs (matches, alignment, quality, markers, debug images): reliable, volatile, keep last 5;
  a best-effort or reliable subscriber can connect.
* ``~/keypoint_names``: reliable + transient local, depth 1, so a subscriber that starts late still gets the
  current demo's names (it must ask for transient local too to receive the stored message).
* Diagnostics: reliable, volatile, keep last 10.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def sensor_qos(reliability: str = "best_effort", depth: int = 5) -> QoSProfile:
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=policy,
                      durability=DurabilityPolicy.VOLATILE)


def output_qos(depth: int = 5) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def latched_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
