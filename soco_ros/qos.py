"""QoS profiles of the node.

* Sensor inputs (image, depth, mask, camera_info, prompt): ``qos_reliability`` (best-effort by default, like
  ``rclpy.qos.qos_profile_sensor_data``: a late frame is worth less than a new one), volatile, keep last
  ``qos_depth``. A best-effort subscription receives from both reliable and best-effort publishers.
* Per-frame outputs (matches, alignment, quality, markers, debug images): reliable, volatile, keep last 5;
  a best-effort or reliable subscriber can connect.
* ``~/keypoint_names``: reliable + transient local, depth 1, so a subscriber that starts late still gets the
  current demo's names (it must ask for transient local too to receive the stored message).
* Diagnostics: reliable, volatile, keep last 10.
* ``/tf``: reliable, volatile, keep last 100 (tf2_ros' ``DynamicBroadcasterQoS``).

Every sensor subscription also takes rclpy's standard QoS overrides (:func:`sensor_overrides`,
``QoSOverridingOptions.with_default_policies()``): start-up parameters
``qos_overrides.<topic>.subscription.{reliability,history,depth}`` (read-only, fully resolved topic names, e.g.
``qos_overrides./camera/color/image_raw.subscription.reliability: reliable``) override the profile built from
``qos_reliability`` / ``qos_depth``.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions


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


def tf_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def sensor_overrides() -> QoSOverridingOptions:
    """The standard ``qos_overrides.<topic>.subscription.*`` parameters (reliability, history, depth)."""
    return QoSOverridingOptions.with_default_policies()
