"""The node over real DDS on loopback: the node runs as a subprocess (``python -m soco_ros.node``), the test's
publisher/subscriber (:class:`soco_ros.peer.Peer`) in this process on its own rclpy context.

Isolation: every test leases its own ``ROS_DOMAIN_ID`` (``ros_harness.lease_domain``: a file lock per domain, so
no two tests or concurrent runs on this machine share one) and sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``;
no DDS traffic leaves loopback.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from ros_harness import BASE, NODE, ros  # noqa: E402,F401 - ros: the fixture
from ros_harness import start as _start  # noqa: E402

from correspondence.alignment import rotation_error_deg  # noqa: E402
from correspondence.benchmarks.alignment import object_translation_error  # noqa: E402
from soco_ros import parameters as P  # noqa: E402
from soco_ros.conversions import MATCH_FIELDS, cloud_to_array, msg_to_transform  # noqa: E402
from soco_ros.processor import FrameProcessor, Frame  # noqa: E402
from soco_ros.synthetic import make_scene, varied  # noqa: E402

def _gt_errors(cloud, scene):
    idx = cloud["index"].astype(int)
    live = np.stack([cloud["u_live"], cloud["v_live"]], 1)
    return np.linalg.norm(live - scene.live_xy[idx], axis=1)


# ================================================================================================ end to end


@pytest.mark.timeout(240)
def test_matches_and_pose_against_ground_truth(ros):
    """Synthetic RGB-D frames with a known motion: the published matches sit on the true live pixels, their 3D
    points on the live surface, and the published transform is the true demo->live motion (not its inverse)."""
    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir)})
    peer = ros.peer()
    _start(node, peer)
    peer.send_camera_info(scene.intrinsics)
    time.sleep(0.3)
    stamp = peer.send_frame(scene.rgb, scene.depth, frame_id="live_cam", intrinsics=scene.intrinsics)
    msg = peer.wait_stamp("matches", stamp, 60)
    assert msg is not None, node.log()[-3000:]
    assert msg.header.frame_id == "live_cam"
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == list(MATCH_FIELDS)
    cloud = cloud_to_array(msg)
    names = json.loads(peer.wait_for(lambda: peer.messages("keypoint_names"), 10)[-1].data)
    assert names == scene.names
    assert len(cloud) >= 0.8 * len(names) and np.all(np.diff(cloud["index"].astype(int)) > 0)
    # demo pixels are the demo keypoints of `index`
    np.testing.assert_allclose(np.stack([cloud["u_demo"], cloud["v_demo"]], 1), scene.demo_xy[cloud["index"]],
                               atol=1e-3)
    # live pixels against ground truth (the weight-free matcher is not exact: most within 5 % of the image)
    errors = _gt_errors(cloud, scene)
    visible = np.isfinite(errors)
    assert np.mean(errors[visible] < 0.05 * 224) >= 0.7, np.round(errors, 1)
    # x y z is the live camera point of (u_live, v_live): it projects back there and lies on the live depth
    finite = np.isfinite(cloud["z"])
    assert finite.sum() >= 0.8 * len(cloud)
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], 1)[finite].astype(np.float64)
    np.testing.assert_allclose(scene.intrinsics.project(xyz), np.stack([cloud["u_live"], cloud["v_live"]], 1)[finite],
                               atol=0.05)
    surface = scene.depth[cloud["v_live"][finite].astype(int), cloud["u_live"][finite].astype(int)]
    assert np.median(np.abs(surface - xyz[:, 2])) < 0.005
    # where the match is right, its 3D point is the true one
    good = finite & (errors < 3)
    if good.any():
        assert np.median(np.linalg.norm(xyz[good[finite]] - scene.live_points[cloud["index"][good]], axis=1)) < 0.01
    # the transform: demo object frame -> live camera frame, stamped with the frame
    tf = peer.wait_stamp("alignment", stamp, 5)
    assert tf is not None, [m.data for m in peer.messages("alignment_quality")]
    assert tf.header.frame_id == "live_cam" and tf.child_frame_id == "demo_object"
    T = msg_to_transform(tf)
    assert rotation_error_deg(T, scene.truth) < 2.0
    assert object_translation_error(T, scene.truth, scene.centre) < 0.01
    assert object_translation_error(np.linalg.inv(T), scene.truth, scene.centre) > 0.03  # direction matters
    quality = json.loads(peer.messages("alignment_quality")[-1].data)
    assert quality["success"] and quality["kind"] == "3d" and quality["num_inliers"] >= 4
    assert quality["stamp"] == {"sec": stamp // 10**9, "nanosec": stamp % 10**9}
    # the same transform on /tf (camera frame -> demo_frame_id), as a tf2 listener gets it
    if peer.has_tf:
        tf_msgs = peer.wait_for(lambda: [t for m in peer.messages("tf") for t in m.transforms
                                         if t.header.stamp == tf.header.stamp], 5)
        assert tf_msgs, "nothing on /tf"
        assert tf_msgs[0].header.frame_id == "live_cam" and tf_msgs[0].child_frame_id == "demo_object"
        np.testing.assert_allclose(msg_to_transform(tf_msgs[0]), T, atol=1e-9)
    markers = peer.wait_for(lambda: peer.messages("markers"), 5)[-1].markers
    spheres = [m for m in markers if m.type == m.SPHERE]
    assert markers[0].action == markers[0].DELETEALL and len(spheres) == finite.sum()
    assert all(m.header.frame_id == "live_cam" for m in markers)
    assert all(m.lifetime.sec + m.lifetime.nanosec * 1e-9 > 0 for m in markers[1:])  # they vanish when output stops
    np.testing.assert_allclose([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in spheres], xyz,
                               atol=1e-5)
    # the library on the same frame gives exactly what was published (nothing lost or reordered on the way)
    processor = FrameProcessor({**P.defaults(), **BASE, "demo_path": str(scene.demo_dir)})
    processor.set_demo(str(scene.demo_dir))
    reference = processor.process(Frame(scene.rgb, stamp, "live_cam", scene.depth, scene.intrinsics)).result
    accepted = np.flatnonzero(reference.accepted)
    assert cloud["index"].tolist() == accepted.tolist()
    np.testing.assert_allclose(cloud["score"], [reference.matches[i].score for i in accepted], rtol=1e-5)
    np.testing.assert_allclose(T, reference.alignment.transform, atol=1e-4)
    # a late subscriber still gets the keypoint names (transient local)
    from soco_ros.peer import Peer

    late = Peer(ros.domain, name="late_peer")
    try:
        got = late.wait_for(lambda: late.messages("keypoint_names"), 10)
        assert got and json.loads(got[-1].data) == scene.names
    finally:
        late.close()
    # every encoding path gives the same frame: bgr8 colour, 16UC1 millimetre depth
    stamp2 = peer.send_frame(scene.rgb, scene.depth, encoding="bgr8", depth_encoding="16UC1", frame_id="live_cam",
                            intrinsics=scene.intrinsics)
    msg2 = peer.wait_stamp("matches", stamp2, 30)
    assert msg2 is not None, node.log()[-3000:]
    cloud2 = cloud_to_array(msg2)
    assert cloud2["index"].tolist() == cloud["index"].tolist()
    # keypoints placed by the accepted 3D pose (position "pose") move with the pose, which sees the depth at mm steps
    # (the facing-part ICP refits on them: 0.052 px apart at fac410d)
    np.testing.assert_allclose(cloud2["u_live"], cloud["u_live"], atol=0.1)
    np.testing.assert_allclose(cloud2["z"][finite], cloud["z"][finite], atol=0.002)  # mm quantisation
    stamp3 = peer.send_frame(varied(scene.rgb, 3), scene.depth, encoding="mono8", frame_id="live_cam",
                            intrinsics=scene.intrinsics)
    assert peer.wait_stamp("matches", stamp3, 30) is not None, node.log()[-3000:]
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and int(d["frames_published"]) >= 3 and d, 5)
    assert diag and diag["frames_rejected"] == "0" and diag["frames_failed"] == "0", diag
    assert peer.diagnostic_level()[0] == 0, peer.diagnostic_level()
    assert diag["tf"] in (("tf2_ros", "tf2_msgs") if peer.has_tf else ("unavailable",)), diag


@pytest.mark.timeout(240)
def test_compressed_transports_give_the_raw_frames_matches(ros):
    """A camera streamed through image_transport (compressed colour as PNG, compressedDepth 16UC1 millimetres): the
    node reads ``<image>/compressed`` and ``<depth>/compressedDepth`` of the remapped topics and publishes exactly
    what the library gives for the decoded frame."""
    from soco_ros.conversions import depth_to_image, depth_to_metres

    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "image_transport": "compressed",
                     "depth_transport": "compressedDepth"})
    peer = ros.peer(image_transport="compressed", depth_transport="compressedDepth")
    _start(node, peer)
    assert node.wait_log(r"subscribed to /camera/color/image_raw/compressed, "
                         r"/camera/depth/image_raw/compressedDepth", 5), node.log()[-3000:]
    # before the first frame the diagnostics do not say OK: nothing is published, and they say where the node listens
    level = peer.wait_for(lambda: (lv := peer.diagnostic_level()) and lv[0] == 1 and lv, 5)
    assert level and "no input: no image received yet" in level[1], level
    assert "subscribed to /camera/color/image_raw/compressed" in level[1], level
    stamp = peer.send_frame(scene.rgb, scene.depth, depth_encoding="16UC1", frame_id="live_cam",
                            intrinsics=scene.intrinsics)
    msg = peer.wait_stamp("matches", stamp, 60)
    assert msg is not None, node.log()[-3000:]
    cloud = cloud_to_array(msg)
    millimetres = depth_to_metres(depth_to_image(scene.depth, peer.header(stamp), "16UC1"))  # what PNG carried
    processor = FrameProcessor({**P.defaults(), **BASE, "demo_path": str(scene.demo_dir)})
    processor.set_demo(str(scene.demo_dir))
    reference = processor.process(Frame(scene.rgb, stamp, "live_cam", millimetres, scene.intrinsics)).result
    accepted = np.flatnonzero(reference.accepted)
    assert cloud["index"].tolist() == accepted.tolist() and len(accepted) > 0
    np.testing.assert_allclose(cloud["score"], [reference.matches[i].score for i in accepted], rtol=1e-5)
    np.testing.assert_allclose(cloud["u_live"], [reference.matches[i].live_xy[0] for i in accepted], atol=1e-3)
    assert peer.wait_stamp("alignment", stamp, 5) is not None
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and int(d["frames_published"]) >= 1 and d, 5)
    assert diag and diag["frames_rejected"] == "0", diag


@pytest.mark.timeout(240)
def test_mask_prompt_debug_lifecycle_reset(ros):
    """The mask topic (mono8) replaces segmentation and comes back on ~/mask with the overlay; a prompt outside
    the image is a specific warning; deactivate stops processing, activate resumes; ~/reset clears the counters;
    without depth the matches carry NaN x y z and no transform is published."""
    from std_srvs.srv import Trigger

    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "use_mask": True, "use_depth": False, "use_prompt": True,
                     "publish_debug": True, "qos_reliability": "reliable"})
    peer = ros.peer()
    _start(node, peer, depth=False, mask=True)
    stamp = peer.send_frame(scene.rgb, mask=scene.mask, frame_id="cam")
    msg = peer.wait_stamp("matches", stamp, 60)
    assert msg is not None, node.log()[-3000:]
    cloud = cloud_to_array(msg)
    assert len(cloud) and np.isnan(cloud["x"]).all() and np.isnan(cloud["z"]).all()
    mask = peer.wait_stamp("mask", stamp, 5)
    assert mask is not None and mask.encoding == "mono8"
    assert np.array_equal(np.frombuffer(bytes(mask.data), np.uint8).reshape(224, 224) > 0, scene.mask)
    debug = peer.wait_stamp("debug_image", stamp, 5)
    assert debug is not None and debug.encoding == "rgb8" and debug.height == 224 + 24
    # live matches lie in the given mask
    inside = scene.mask[cloud["v_live"].astype(int), cloud["u_live"].astype(int)]
    assert inside.mean() > 0.9
    quality = json.loads(peer.wait_for(lambda: peer.messages("alignment_quality"), 5)[-1].data)
    assert quality["kind"] == "2d"
    assert peer.find("alignment", stamp) is None  # no 3D transform without depth
    # a prompt outside the image: warning, nothing published, next frame fine once it is inside
    from geometry_msgs.msg import PointStamped

    peer.prompt_pub.publish(PointStamped(header=peer.header(time.time_ns()), point=_point(500.0, 10.0)))
    time.sleep(0.5)
    bad = peer.send_frame(varied(scene.rgb, 1), mask=scene.mask)
    assert node.wait_log(r"prompt point \(500, 10\) is outside the image \(224x224", 30), node.log()[-2000:]
    peer.prompt_pub.publish(PointStamped(header=peer.header(time.time_ns()), point=_point(100.0, 100.0)))
    time.sleep(0.5)
    good = peer.send_frame(varied(scene.rgb, 2), mask=scene.mask)
    assert peer.wait_stamp("matches", good, 30) is not None
    assert peer.find("matches", bad) is None
    # lifecycle: inactive -> frames are not processed and diagnostics WARN; active again -> they are
    assert peer.change_state(NODE, "deactivate") and peer.get_state(NODE) == "inactive"
    stamp = peer.send_frame(varied(scene.rgb, 3), mask=scene.mask)
    peer.clear("diagnostics")
    assert peer.wait_for(lambda: (lv := peer.diagnostic_level()) and lv == (1, "inactive"), 5), \
        peer.diagnostic_level()
    assert peer.find("matches", stamp) is None
    assert peer.change_state(NODE, "activate") and peer.get_state(NODE) == "active"
    assert peer.wait_for_subscribers(10, depth=False, mask=True)
    stamp = peer.send_frame(varied(scene.rgb, 4), mask=scene.mask)
    assert peer.wait_stamp("matches", stamp, 30) is not None
    # a configure-time parameter cannot change while configured; a run-time one can, an integer for a double too
    result = peer.set_parameters(NODE, {"backbone": "test_vit_tiny"})[0]
    assert not result.successful and "applied at configure time" in result.reason
    assert peer.set_parameters(NODE, {"min_score": 0.5})[0].successful
    assert peer.set_parameters(NODE, {"min_score": 1})[0].successful  # what `ros2 param set ... 1` sends
    assert not peer.set_parameters(NODE, {"min_score": "high"})[0].successful
    assert node.wait_log(r"\[parameter:min_score\] rejected: parameter 'min_score' must be a double", 10)
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and int(d["parameters_rejected"]) >= 2 and d, 5)
    assert diag, peer.diagnostics()  # the configure-time refusal and the wrong type, both counted
    # reset clears the counters
    assert peer.call(Trigger, f"{NODE}/reset", Trigger.Request()).success
    peer.clear("diagnostics")
    diag = peer.wait_for(lambda: peer.diagnostics(), 5)
    assert diag is not None and diag["frames_received"] == "0" and diag["frames_published"] == "0", diag


def _point(x, y):
    from geometry_msgs.msg import Point

    return Point(x=x, y=y, z=0.0)


# ================================================================================================ bad input


@pytest.mark.timeout(300)
def test_bad_inputs_warn_publish_nothing_and_the_next_good_frame_is_served(ros):
    from std_srvs.srv import Trigger

    scene = make_scene(ros.tmp / "demo", size=224)
    other = make_scene(ros.tmp / "demo2", size=224, category="kettle", seed=4)
    node = ros.node({"demo_path": str(ros.tmp / "no_such_demo"), "ransac_threshold": 5.0,
                     "qos_reliability": "reliable", "max_frame_age": 0.0})
    peer = ros.peer()
    _start(node, peer)
    # start-up: the demo path does not exist, the parameter is out of range -> specific warnings, defaults kept
    assert node.wait_log(r"\[demo\] cannot load demo '.*no_such_demo': demo '.*no_such_demo' does not exist", 5)
    assert node.wait_log(r"\[parameter\] ransac_threshold: start-up value rejected .*using the default 0.015", 5)
    stamp = peer.send_frame(scene.rgb, scene.depth)
    assert node.wait_log(r"frame dropped: no valid CameraInfo received yet on /camera/color/camera_info", 20)  # no camera_info either
    # a CameraInfo with a zero K is refused, so the frame still has no intrinsics
    peer.send_camera_info(scene.intrinsics, zero_k=True)
    assert node.wait_log(r"camera_info rejected: /camera/color/camera_info: K has no positive focal length", 20)
    peer.send_camera_info(scene.intrinsics)
    time.sleep(0.5)
    stamp = peer.send_frame(varied(scene.rgb, 1), scene.depth)
    assert node.wait_log(r"no demo loaded", 30)
    assert peer.find("matches", stamp) is None
    # load a demo through the topic; a bad path through the topic keeps it
    peer.demo_path_pub.publish(_string(str(scene.demo_dir)))
    assert node.wait_log(r"demo '.*demo': \d+ keypoints, RGB-D", 20)
    peer.demo_path_pub.publish(_string(str(ros.tmp / "missing_too")))
    assert node.wait_log(r"cannot load demo '.*missing_too'.*does not exist.*; keeping demo", 20)
    names = json.loads(peer.wait_for(lambda: peer.messages("keypoint_names"), 5)[-1].data)
    assert names == scene.names

    def serves(i):
        s = peer.send_frame(varied(scene.rgb, 10 + i), scene.depth)
        return peer.wait_stamp("matches", s, 60)

    assert serves(0) is not None, node.log()[-3000:]

    def corrupt(kind_wanted, change):
        def tamper(kind, msg):
            if kind == kind_wanted:
                change(msg)
        return tamper

    cases = [
        ("wrong step", corrupt("image", lambda m: setattr(m, "step", m.step - 1)),
         r"\[step\] frame dropped: /camera/color/image_raw: step 671 is smaller than one rgb8 row of 224 px"),
        ("truncated", corrupt("image", lambda m: setattr(m, "data", bytes(m.data)[:1000])),
         r"\[buffer\] frame dropped: /camera/color/image_raw: data buffer truncated: 1000 bytes, expected"),
        ("unknown encoding", corrupt("image", lambda m: setattr(m, "encoding", "nv21")),
         r"\[encoding\] frame dropped: /camera/color/image_raw: unsupported encoding 'nv21'"),
        ("depth encoding", corrupt("depth", lambda m: setattr(m, "encoding", "mono16")),
         r"\[encoding\] frame dropped: /camera/depth/image_raw: unsupported encoding 'mono16'"),
    ]
    for i, (what, tamper, pattern) in enumerate(cases):
        mark = len(node.log())
        bad = peer.send_frame(varied(scene.rgb, 20 + i), scene.depth, tamper=tamper)
        assert node.wait_log(pattern, 20, start=mark), f"{what}:\n{node.log()[mark:]}"
        assert serves(i + 1) is not None, f"after {what}:\n{node.log()[mark:]}"
        assert peer.find("matches", bad) is None, what
    # depth and RGB of different sizes
    mark = len(node.log())
    bad = peer.send_frame(varied(scene.rgb, 30), scene.depth[:112, :112])
    assert node.wait_log(r"\[size_mismatch\] frame dropped: depth is 112x112 but the RGB image is 224x224", 20,
                         start=mark)
    assert serves(10) is not None and peer.find("matches", bad) is None
    # run-time parameters out of range / of the wrong kind are refused with the reason, the value is kept
    results = peer.set_parameters(NODE, {"ransac_threshold": 2.0})
    assert not results[0].successful
    results = peer.set_parameters(NODE, {"runtime": "jax"})
    assert not results[0].successful and "not one of torch, onnxruntime, tensorrt" in results[0].reason
    assert node.wait_log(r"parameter:runtime\] rejected: parameter 'runtime'='jax' is not one of", 10)
    results = peer.set_parameters(NODE, {"depth_min": 9.0})
    assert not results[0].successful and "must be smaller than depth_max" in results[0].reason
    # the demo_path parameter: a missing path is refused (keeps the demo), a good one switches and re-publishes names
    results = peer.set_parameters(NODE, {"demo_path": "/nonexistent/demo.yaml"})
    assert not results[0].successful and "does not exist" in results[0].reason
    assert serves(11) is not None
    assert peer.set_parameters(NODE, {"demo_path": str(other.demo_dir)})[0].successful
    assert peer.wait_for(lambda: json.loads(peer.messages("keypoint_names")[-1].data) == other.names, 10)
    assert peer.call(Trigger, f"{NODE}/set_demo", Trigger.Request()).success
    # diagnostics count every rejection by reason
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and int(d.get("rejected_size_mismatch", 0)) >= 1 and d, 5)
    assert diag, peer.diagnostics()
    for reason in ("step", "buffer", "encoding", "no_camera_info", "camera_info", "InputError"):
        assert int(diag.get(f"rejected_{reason}", 0)) >= 1, (reason, diag)
    assert node.alive()


def _string(text):
    from std_msgs.msg import String

    return String(data=text)


# ================================================================================================ load


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_load_30hz_for_60s_with_a_slow_backbone(ros):
    """30 Hz RGB-D for 60 s into daisy at 448 px (a few frames per second): the node keeps only the latest
    frame, so latency stays flat, the rest is dropped and counted, and memory does not grow."""
    seconds = float(os.environ.get("SOCO_ROS_LOAD_SECONDS", "60"))
    scene = make_scene(ros.tmp / "demo", size=448)
    node = ros.node({"demo_path": str(scene.demo_dir), "image_size": 448, "diagnostics_period": 1.0})
    peer = ros.peer()
    _start(node, peer)
    peer.send_camera_info(scene.intrinsics)
    time.sleep(0.5)
    period, sent, rss = 1 / 30, 0, []
    start = time.monotonic()
    next_t = start
    while time.monotonic() - start < seconds:
        if sent % 30 == 0:
            peer.send_camera_info(scene.intrinsics)
        peer.send_frame(varied(scene.rgb, sent), scene.depth)
        sent += 1
        if sent % 30 == 0:  # once a second: windows of ~20 samples, so a few landing mid-frame move no median
            rss.append((time.monotonic() - start, node.rss_mb()))
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    elapsed = time.monotonic() - start
    time.sleep(3.0)  # the last frame in flight, one more diagnostics message
    diag = peer.diagnostics()
    received = peer.timed("matches")
    latencies = np.array([t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9) for t, m in received])
    report = {"sent": sent, "rate_hz": sent / elapsed, "diagnostics": diag, "subscriber_matches": len(received),
              "subscriber_p50_ms": 1e3 * float(np.percentile(latencies, 50)) if len(latencies) else None,
              "subscriber_p95_ms": 1e3 * float(np.percentile(latencies, 95)) if len(latencies) else None,
              "rss_mb": [(round(t, 1), round(m, 1)) for t, m in rss]}
    print(json.dumps(report, indent=1))
    assert diag is not None
    n_recv, n_pub = int(diag["frames_received"]), int(diag["frames_published"])
    dropped, rejected, failed = int(diag["frames_dropped"]), int(diag["frames_rejected"]), int(diag["frames_failed"])
    assert sent / elapsed > 27  # the publisher kept 30 Hz
    # best-effort sensor QoS: while the worker is busy (2 shared CPU cores here) DDS drops what the node does not
    # take in time; the node still takes in a steady stream (it measured 24-30 % of the sets at 30 Hz here)
    assert 0.15 * sent <= n_recv <= sent
    assert rejected == 0 and failed == 0
    assert 0 <= n_recv - (n_pub + dropped) <= 1  # every received frame is either published or counted as dropped
    assert dropped > 0.5 * n_recv  # the slow backbone cannot keep up: most frames are dropped, not queued
    assert len(received) == n_pub  # every published frame reached the subscriber
    # no backlog: a frame waits at most for the frame in progress when it arrived. Its wait (subscriber latency
    # minus its own processing, from ~/alignment_quality) stays below the previous frame's processing plus
    # transport, however busy the CPU is (other load slows processing and latency alike; a queue would not)
    processing = {(q["stamp"]["sec"], q["stamp"]["nanosec"]): q["processing_ms"] / 1e3
                  for q in (json.loads(m.data) for m in peer.messages("alignment_quality"))}
    proc = np.array([processing.get((m.header.stamp.sec, m.header.stamp.nanosec), np.nan) for _, m in received])
    waits = latencies - proc
    known = np.isfinite(waits[1:]) & np.isfinite(proc[:-1])
    assert known.sum() >= 0.9 * (len(received) - 1)
    within = waits[1:][known] <= proc[:-1][known] + 0.25
    third = len(latencies) // 3
    report["wait_within_previous_processing"] = float(np.mean(within))
    report["early_late_latency_s"] = (float(np.median(latencies[1:third])), float(np.median(latencies[-third:])))
    print(json.dumps({k: report[k] for k in ("wait_within_previous_processing", "early_late_latency_s")}))
    assert np.mean(within) >= 0.9, report
    assert np.percentile(latencies, 95) < 3.0
    # memory: flat after warm-up (samples every second). Warm-up takes the first ~10 s on a loaded 2-core machine
    # (first frames allocate the refinement's image buffers and ICP's clouds: +60-80 MB by 10 s, then flat), so
    # the first 10 s are left out. A sample can land mid-frame (transient buffers of 50-60 MB), so compare the
    # first and the second half of the rest: their floors (between frames) and their medians (with 4 samples a
    # window, as before, three mid-frame samples in the last window once read as +52 MB while the floors were
    # equal to 0.2 MB)
    steady = [m for t, m in rss if t >= 10.0]
    assert len(steady) >= 4, rss
    first, last = steady[:len(steady) // 2], steady[len(steady) // 2:]
    assert min(last) - min(first) < 50, rss
    assert np.median(last) - np.median(first) < 50, rss
    # the diagnostics latency agrees with the subscriber-side stamp -> receive latency over the same frames
    window = int(diag["latency_window"])
    sub = latencies[-window:] * 1e3
    for key, q in (("latency_p50_ms", 50), ("latency_p95_ms", 95)):
        ours = float(diag[key])
        theirs = float(np.percentile(sub, q))
        assert abs(ours - theirs) < 20 + 0.1 * theirs, (key, ours, theirs)


# ================================================================================================ issue 16


@pytest.mark.timeout(240)
def test_diagnostics_tell_the_truth_and_stale_frames_are_logged(ros):
    """Frames that all fail (depth range beyond the object) give WARN naming the reason, not OK; frames whose stamps
    are 5 s old are dropped as stale with a log line stating their age and a WARN; a good stream is OK again.
    Millimetres sent as 32FC1 and an empty frame_id are rejected with their own reasons."""
    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "depth_min": 4.0, "depth_max": 5, "health_timeout": 2.0,
                     "health_window": 3.0, "max_frame_age": 1.0, "qos_reliability": "reliable"})
    peer = ros.peer()
    _start(node, peer)
    peer.send_camera_info(scene.intrinsics)
    time.sleep(0.3)

    def level_is(level, text, timeout, send=None):
        def check():
            if send is not None:
                send()
            got = peer.diagnostic_level()
            return got if got and got[0] == level and text in got[1] else None
        return peer.wait_for(check, timeout, interval=0.3)

    i = [0]

    def frame(**kwargs):
        i[0] += 1
        return peer.send_frame(varied(scene.rgb, i[0]), scene.depth, intrinsics=scene.intrinsics, **kwargs)

    got = level_is(1, "no valid depth in range [4, 5] m", 20, send=frame)
    assert got, (peer.diagnostic_level(), node.log()[-2000:])
    assert "not published" in got[1] or "no output for" in got[1] or "no output yet" in got[1]
    assert peer.set_parameters(NODE, {"depth_min": 0.05})[0].successful
    assert level_is(0, "published", 30, send=frame), peer.diagnostic_level()
    # stale: stamps 5 s old (after ~/reset: the synchroniser would otherwise refuse stamps older than its last set)
    from std_srvs.srv import Trigger

    assert peer.call(Trigger, f"{NODE}/reset", Trigger.Request()).success
    got = level_is(1, "stale", 20, send=lambda: frame(stamp_ns=time.time_ns() - 5 * 10**9))
    assert got, peer.diagnostic_level()
    assert node.wait_log(r"\[stale\] frame dropped as stale: its stamp is 5\.\d\d s old .*max_frame_age 1 s", 5)
    diag = peer.diagnostics()
    assert int(diag["dropped_stale"]) >= 1, diag
    assert level_is(0, "published", 30, send=frame), peer.diagnostic_level()
    # the wrong unit for the encoding that arrived, and a frame nobody can place in tf
    mark = len(node.log())
    peer.send_frame(scene.rgb, scene.depth * 1000.0, intrinsics=scene.intrinsics)
    assert node.wait_log(r"\[depth_units\] frame dropped: /camera/depth/image_raw \(32FC1\) has a median of [\d.]+ m: "
                         r"it looks like millimetres sent as float: 32FC1 depth must be metres", 10, start=mark)
    assert "set depth_scale" not in node.log()[mark:]
    peer.send_frame(scene.rgb, scene.depth, frame_id="", intrinsics=scene.intrinsics)
    assert node.wait_log(r"\[frame_id\] frame dropped: /camera/color/image_raw: header.frame_id is empty", 10,
                         start=mark)
    diag = peer.wait_for(lambda: (d := peer.diagnostics()) and "rejected_frame_id" in d and d, 5)
    assert diag and diag["rejected_frame_id"] == "1" and diag["rejected_depth_units"] == "1", diag


@pytest.mark.timeout(240)
def test_failed_configure_is_an_error_then_a_manual_configure_serves_and_ctrl_c_exits_0(ros):
    """A configure that fails: ERROR on /diagnostics with the reason while unconfigured (diagnostics run from
    start-up). Fixed and configured by hand, the node serves frames, and a Ctrl-C then exits 0. Start-up: an
    integer for a double is taken, an invalid depth pair falls back to the last valid one with both values named,
    and rclpy's standard QoS overrides apply to the sensor subscriptions."""
    scene = make_scene(ros.tmp / "demo", size=224)
    params_file = ros.tmp / "params.yaml"
    params_file.write_text("/**:\n  ros__parameters:\n    qos_overrides:\n      /camera/color/image_raw:\n"
                           "        subscription:\n          reliability: reliable\n", encoding="utf-8")
    node = ros.node({"demo_path": str(scene.demo_dir), "backbone": "no_such_backbone", "depth_min": 7.0,
                     "depth_max": 6, "pixel_threshold": 8}, extra_args=["--params-file", str(params_file)])
    assert node.wait_log(r"\[configure\] failed while building the matcher: unknown backbone 'no_such_backbone'", 60)
    log = node.log()
    assert "depth_min (7) must be smaller than depth_max (6)" in log and "keeping the last valid pair" in log
    assert "pixel_threshold" not in log and "depth_max: start-up value rejected" not in log  # integers taken
    best_effort = ros.peer(name="best_effort_peer", reliable=False)
    got = best_effort.wait_for(lambda: (lv := best_effort.diagnostic_level()) and lv[0] == 2 and lv, 10)
    assert got and "configure failed: building the matcher: unknown backbone 'no_such_backbone'" in got[1], got
    assert best_effort.set_parameters(NODE, {"backbone": "daisy"})[0].successful
    assert best_effort.change_state(NODE, "configure", timeout=90) and best_effort.change_state(NODE, "activate")
    assert best_effort.get_state(NODE) == "active"
    # the override made the image subscription reliable: a best-effort image publisher cannot match it, the
    # best-effort depth publisher (no override) does
    assert best_effort.wait_for(lambda: best_effort.depth_pub.get_subscription_count() > 0, 20)
    assert best_effort.image_pub.get_subscription_count() == 0
    peer = ros.peer()
    assert peer.wait_for_subscribers(20)
    time.sleep(1.0)
    stamp = peer.send_frame(scene.rgb, scene.depth, intrinsics=scene.intrinsics)
    assert peer.wait_stamp("matches", stamp, 60) is not None, node.log()[-3000:]
    assert peer.wait_for(lambda: (lv := peer.diagnostic_level()) and lv[0] == 0, 10), peer.diagnostic_level()
    # the fixture stops the node with SIGINT and requires exit code 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_debug_outputs_do_not_delay_matches(ros):
    """With publish_debug and a subscriber to the debug images, ~/matches arrives as fast as without them (within
    1.2x): the overlay is rendered and published by a low-priority thread after ~/matches."""
    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "qos_reliability": "reliable", "max_frame_age": 0.0})
    peer = ros.peer()  # subscribes to ~/debug_image and ~/mask as well
    _start(node, peer)
    peer.send_camera_info(scene.intrinsics)
    time.sleep(0.3)
    latency = {False: [], True: []}
    i = 0
    for block in (False, True, False, True, False, True):
        assert peer.set_parameters(NODE, {"publish_debug": block})[0].successful
        for k in range(6):
            i += 1
            stamp = peer.send_frame(varied(scene.rgb, i), scene.depth, intrinsics=scene.intrinsics)
            msg = peer.wait_stamp("matches", stamp, 30)
            assert msg is not None, node.log()[-2000:]
            received = next(t for t, m in peer.timed("matches") if m is msg)
            if i > 2:  # warm-up
                latency[block].append(received - stamp / 1e9)
            if block:
                assert peer.wait_stamp("debug_image", stamp, 10) is not None
            time.sleep(0.4)
    without, with_debug = (np.array(latency[k]) for k in (False, True))
    report = {k: (round(1e3 * float(np.median(v)), 1), round(1e3 * float(np.percentile(v, 90)), 1))
              for k, v in (("without", without), ("with_debug", with_debug))}
    print(json.dumps(report))
    assert np.median(with_debug) <= 1.2 * np.median(without) + 0.01, report
    assert np.percentile(with_debug, 90) <= 1.2 * np.percentile(without, 90) + 0.03, report
