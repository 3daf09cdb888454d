"""The node's diagnostics and counters tell the truth, over DDS as a monitoring client sees them (docs/ros.md,
"Diagnostics"): never OK before the first output, the reason named; no claim that frames arrive after they
stopped; undeclared parameters named, logged and counted; ``~/reset`` zeroes every counter; the finalized state
reported after shutdown. The node runs as a subprocess on a leased DDS domain restricted to localhost."""
from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from ros_harness import NODE, ros  # noqa: E402,F401 - ros: the fixture
from ros_harness import start  # noqa: E402

from soco_ros.conversions import rgb_to_image  # noqa: E402
from soco_ros.synthetic import make_scene, varied  # noqa: E402

# every counter in the diagnostics (rejected_<reason> keys come and go with their causes)
COUNTERS = ("frames_received", "frames_rejected", "frames_processed", "frames_published", "frames_failed",
            "frames_dropped", "dropped_overwritten", "dropped_stale", "refused_zero_stamp", "refused_future_stamp",
            "sync_unmatched", "sync_out_of_order", "sync_no_partner", "sync_rearmed", "parameters_rejected",
            "window_frames", "window_problems", "latency_window", "pose_disagreements", "pose_ambiguous")


def _statuses(peer):
    """(level, message, values) of every diagnostics status received, oldest first."""
    out = []
    for msg in peer.messages("diagnostics"):
        for status in msg.status:
            if "correspondence" in status.name:
                level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
                out.append((level, status.message, {kv.key: kv.value for kv in status.values}))
    return out


@pytest.mark.timeout(300)
def test_not_ok_before_output_reasons_named_undeclared_parameters_reset_and_finalized(ros):
    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "qos_reliability": "reliable", "health_timeout": 3.0,
                     "max_frame_age": 0.0, "no_such_param": 3})
    peer = ros.peer()
    start(node, peer)
    # a start-up value for a parameter the node does not have: named, logged, counted
    assert node.wait_log(r"\[parameter\] no_such_param: undeclared parameter 'no_such_param': the node has no such "
                         r"parameter; `ros2 param list` shows its parameters", 5), node.log()[-2000:]
    # images without depth: input arrives, nothing can be published -> WARN naming why, never OK
    peer.send_camera_info(scene.intrinsics)
    stamps = []

    def images_only():
        stamps.append(time.time_ns())
        peer.image_pub.publish(rgb_to_image(varied(scene.rgb, len(stamps)), peer.header(stamps[-1])))

    got = peer.wait_for(lambda: images_only() or ((lv := peer.diagnostic_level()) and "without a partner" in lv[1]
                                                  and lv), 30, interval=0.2)
    # (before health_timeout "no output yet", after it "no output for"; which one depends on the machine's load)
    assert got and got[0] == 1 and got[1].startswith(("no output yet (last image", "no output for")), got
    assert "no /camera/depth/image_raw message queued" in got[1], got
    # the images stop: the message says how long ago the last one came (never that frames arrive), then that
    # none arrive
    before_stop = len(_statuses(peer))
    got = peer.wait_for(lambda: (lv := peer.diagnostic_level()) and lv[1].startswith("no input: no image for") and lv,
                        30, interval=0.2)
    assert got and got[0] == 1, peer.diagnostic_level()
    after = [message for _, message, _ in _statuses(peer)[before_stop:]]
    ages = [float(m.group(1)) for m in (re.search(r"last image ([\d.]+) s ago", t) for t in after) if m]
    assert ages and max(ages) >= 1.0, after  # while stopped, before health_timeout: the age, growing
    assert not any("while frames arrive" in text for _, text, _ in _statuses(peer))
    # now output: OK only once something was published, and never before. One frame, as a single-shot camera sends:
    # under load its processing outlasts a 3 s health_timeout, after which "no input" is the true answer; the
    # timeout is raised first (at run time, as an operator would) so the OK this checks is not raced by it
    assert peer.set_parameters(NODE, {"health_timeout": 120.0})[0].successful
    stamp = peer.send_frame(scene.rgb, scene.depth, intrinsics=scene.intrinsics)
    assert peer.wait_stamp("matches", stamp, 60) is not None, node.log()[-3000:]
    assert peer.wait_for(lambda: (lv := peer.diagnostic_level()) and lv[0] == 0, 15), peer.diagnostic_level()
    statuses = _statuses(peer)
    assert not [s for s in statuses if s[0] == 0 and s[2]["frames_published"] == "0"], "OK before any output"
    # an undeclared parameter at run time (a typo): refused naming it and the likely one, logged, counted
    result = peer.set_parameters(NODE, {"min_scor": 0.3})[0]
    assert not result.successful and "undeclared parameter 'min_scor'" in result.reason, result.reason
    assert "did you mean 'min_score'?" in result.reason, result.reason
    assert node.wait_log(r"\[parameter:min_scor\] rejected: undeclared parameter 'min_scor'", 10)
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and int(d["parameters_rejected"]) == 2 and d, 10)
    assert diag, peer.diagnostics()  # the start-up one and this one
    # ~/reset zeroes every counter (no causes left either) and the level is not OK until the next output
    from std_srvs.srv import Trigger

    assert int(diag["sync_no_partner"]) >= 1 and int(diag["frames_published"]) >= 1, diag
    assert peer.call(Trigger, f"{NODE}/reset", Trigger.Request()).success

    def zeroed():
        status = peer.diagnostic_status()
        values = {kv.key: kv.value for kv in status.values} if status else {}
        return values and all(values[k] == "0" for k in COUNTERS) and not any(
            k.startswith("rejected_") for k in values) and (status, values)

    got = peer.wait_for(zeroed, 10)
    assert got, peer.diagnostics()
    level = got[0].level[0] if isinstance(got[0].level, (bytes, bytearray)) else int(got[0].level)
    assert level == 1 and got[0].message.startswith(("no output yet", "no input")), got[0].message
    # the shutdown transition from a lifecycle manager: diagnostics say finalized, not unconfigured
    assert peer.change_state(NODE, "shutdown") and peer.get_state(NODE) == "finalized"
    got = peer.wait_for(lambda: (d := peer.diagnostics()) and d["state"] == "finalized" and peer.diagnostic_level(),
                        10)
    assert got and got[0] == 1 and got[1].startswith("finalized: the node was shut down"), got
