"""The 3D pose's side of the node over DDS (docs/ros.md, "Gravity and pose-checked keypoints"): the ``up`` /
``demo_up`` parameters reach the pose search (start-up and run time, bad values refused with the reason), and
``~/matches`` / ``~/alignment_quality`` / the diagnostics carry each keypoint's position source, acceptance and
pose-disagreement flag and the pose's ambiguity. The node runs as a subprocess on a leased DDS domain restricted
to localhost."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from ros_harness import NODE, ros  # noqa: E402,F401 - ros: the fixture
from ros_harness import start  # noqa: E402

from soco_ros.conversions import MATCH_FIELDS, POSITIONS, cloud_to_array  # noqa: E402
from soco_ros.synthetic import make_scene, varied  # noqa: E402


def _vector(v) -> str:
    """A 3-vector as a ``-p`` value ROS parses as a double array."""
    return "[" + ", ".join(f"{float(x):.6f}" for x in v) + "]"


def _frame(peer, node, scene, index: int):
    """Send one frame; (the cloud, the alignment_quality record) published for it."""
    stamp = peer.send_frame(varied(scene.rgb, index), scene.depth, frame_id="live_cam", intrinsics=scene.intrinsics)
    msg = peer.wait_stamp("matches", stamp, 90)
    assert msg is not None, node.log()[-3000:]
    stamp_dict = {"sec": stamp // 10**9, "nanosec": stamp % 10**9}
    quality = peer.wait_for(lambda: next((q for q in (json.loads(m.data) for m in peer.messages("alignment_quality"))
                                          if q["stamp"] == stamp_dict), None), 10)
    assert quality is not None
    return msg, quality


@pytest.mark.timeout(300)
def test_up_reaches_the_pose_search_and_matches_carry_the_pose_flags(ros):
    scene = make_scene(ros.tmp / "demo", size=224)
    live_up = np.asarray(scene.up[1]) * 3.0  # any length: the node normalises it
    node = ros.node({"demo_path": str(scene.demo_dir), "up": _vector(live_up), "demo_up": _vector(scene.up[0])})
    peer = ros.peer()
    start(node, peer)
    peer.send_camera_info(scene.intrinsics)
    time.sleep(0.3)
    msg, quality = _frame(peer, node, scene, 1)
    # the vertical reached the pose search: its probes turn about it alone (11 turns of 30 deg; 33 without it)
    search = quality["pose_search"]
    assert search["ran"] and search["hypotheses"].get("probe") == 11, search
    np.testing.assert_allclose(search["up"]["live"], scene.up[1] / np.linalg.norm(scene.up[1]), atol=1e-5)
    assert quality["success"] and quality["pose_ambiguous"] is False and search["ambiguous"] is False
    # ~/matches: every accepted keypoint with its position source and pose flag, as ~/alignment_quality lists them
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == list(MATCH_FIELDS) and msg.point_step == 40
    cloud = cloud_to_array(msg)
    records = quality["keypoints"]
    assert [k["name"] for k in records] == scene.names
    idx = cloud["index"].astype(int)
    assert idx.tolist() == [k["index"] for k in records if k["accepted"]]
    assert [POSITIONS[c] for c in cloud["position"]] == [records[i]["position"] for i in idx]
    assert cloud["pose_disagrees"].astype(bool).tolist() == [records[i]["pose_disagrees"] for i in idx]
    assert {k["position"] for k in records} <= {"pose", "pose-hidden", "cell", "refined"}
    placed = [k for k in records if k["position"] == "pose"]
    assert len(placed) >= 0.5 * len(records)
    for k in records:
        if k["pose_error_px"] is not None:
            assert k["pose_disagrees"] == (k["pose_error_px"] > 10.0), k
    # the pose-placed keypoints are on their true projections
    truth = np.array([scene.live_xy[k["index"]] for k in placed])
    seen = np.isfinite(truth).all(1)
    errors = np.linalg.norm(np.array([k["live_xy"] for k in placed])[seen] - truth[seen], axis=1)
    assert np.median(errors) < 2.0, np.round(errors, 1)
    # the diagnostics count the published disagreements
    expected = quality["pose_disagreements"]
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and int(d["frames_published"]) == 1 and d, 15)
    assert diag and int(diag["pose_disagreements"]) == expected and int(diag["pose_ambiguous"]) == 0, diag
    # run time: a bad vertical is refused with the reason (and counted); [0, 0, 0] as integers turns the prior off
    for bad, why in (([0.0, 1.0], "must be 3 numbers"), ([float("nan"), 1.0, 0.0], "must be finite"),
                     ([1e-9, 0.0, 0.0], "too short to be a direction")):
        result = peer.set_parameters(NODE, {"up": bad})[0]
        assert not result.successful and why in result.reason, result.reason
    assert node.wait_log(r"\[parameter:up\] rejected: parameter 'up' must be 3 numbers", 10)
    assert peer.set_parameters(NODE, {"up": [0, 0, 0]})[0].successful
    _, quality = _frame(peer, node, scene, 2)
    assert quality["pose_search"]["up"] is None and quality["pose_search"]["hypotheses"].get("probe") == 33
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and int(d["frames_published"]) == 2 and d, 15)
    assert diag and int(diag["parameters_rejected"]) == 3, diag
    assert int(diag["pose_disagreements"]) == expected + quality["pose_disagreements"], diag


@pytest.mark.timeout(120)
def test_a_bad_up_at_start_up_is_refused_with_the_reason_and_the_node_serves(ros):
    node = ros.node({"up": "[0.0, 1.0]", "demo_up": "[0.0, 0.0, 0.000000001]"})
    peer = ros.peer()
    assert node.wait_log(r"\]: active:", 90), node.log()[-3000:]
    log = node.log()
    assert "[parameter] up: parameter 'up' must be 3 numbers (x, y, z in the camera frame), got 2" in log, log[-3000:]
    assert "using the default [0.0, 0.0, 0.0]" in log
    assert "[parameter] demo_up: parameter 'demo_up'=[0.0, 0.0, 1e-09] has length 1e-09: too short" in log
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and d["state"] == "active" and d, 20)
    assert diag and int(diag["parameters_rejected"]) == 2, diag
