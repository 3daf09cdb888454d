"""The node's input policies over DDS, as a client meets them (docs/ros.md, "Stamp policy" and "Frame policy"): a
frame stamped far ahead is refused and cannot stop the node; a jump back re-arms the synchroniser; every
stamp-based drop is logged by cause with the resolved topic and counted; simulated time is honoured. The node runs
as a subprocess on a leased DDS domain restricted to localhost (ros_harness)."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from ros_harness import ros  # noqa: E402,F401 - ros: the fixture
from ros_harness import start  # noqa: E402

from soco_ros.conversions import depth_to_image, rgb_to_image  # noqa: E402
from soco_ros.synthetic import make_scene, varied  # noqa: E402

S = 1_000_000_000
IMAGE, DEPTH = "/camera/color/image_raw", "/camera/depth/image_raw"


def _diag(peer, key, at_least, timeout=15):
    """The latest diagnostics once ``key`` reached ``at_least`` (None if it never did)."""
    return peer.wait_for(lambda: (d := peer.diagnostics()) and int(d.get(key, 0)) >= at_least and d, timeout)


def _publish(peer, rgb=None, depth=None, image_stamp=None, depth_stamp=None):
    """Image and depth with their own stamps (a camera whose streams are not stamped from one exposure)."""
    if depth is not None:
        peer.depth_pub.publish(depth_to_image(depth, peer.header(depth_stamp)))
    if rgb is not None:
        peer.image_pub.publish(rgb_to_image(rgb, peer.header(image_stamp)))


@pytest.mark.timeout(300)
def test_stamp_policy_future_frames_refused_jumps_rearm_drops_logged_by_cause(ros):
    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "qos_reliability": "reliable", "max_frame_age": 0.0,
                     "max_future_stamp": 0.5})
    peer = ros.peer()
    start(node, peer)
    peer.send_camera_info(scene.intrinsics)
    count = [0]

    def frame(stamp=None):
        count[0] += 1
        return peer.send_frame(varied(scene.rgb, count[0]), scene.depth, stamp_ns=stamp, intrinsics=scene.intrinsics)

    def served(stamp=None, timeout=60):
        stamp = frame(stamp)
        return stamp if peer.wait_stamp("matches", stamp, timeout) is not None else None

    assert served(), node.log()[-3000:]
    # one frame an hour ahead: refused (image and depth), with the reason; it never reaches the outputs
    mark = len(node.log())
    future = frame(time.time_ns() + 3600 * S)
    assert node.wait_log(rf"\[future_stamp\] message refused: {IMAGE}: stamp [\d.]+ s is 3(59|60)\d\.\d+ s ahead of the "
                         r"node's clock \(system time, [\d.]+ s\); refused \(max_future_stamp 0\.5 s\)", 20, start=mark)
    assert _diag(peer, "refused_future_stamp", 2), peer.diagnostics()
    # ... and the frames after it are served at once (the synchroniser's "now" did not move)
    assert served(timeout=60), node.log()[mark:]
    assert peer.find("matches", future) is None and peer.find("alignment", future) is None
    if peer.has_tf:
        assert not [t for m in peer.messages("tf") for t in m.transforms
                    if t.header.stamp.sec * S + t.header.stamp.nanosec == future]
    # a jump back (a looped bag): the synchroniser re-arms with a warning and serves the looped stream
    mark = len(node.log())
    looped = time.time_ns() - 100 * S
    assert served(looped), node.log()[mark:]
    assert node.wait_log(rf"\[stamp_jump\] ({IMAGE}|{DEPTH}): stamps jumped back (9\d|10\d)\.\d+ s .* the synchroniser "
                         "is re-armed", 20, start=mark), node.log()[mark:]
    assert served(looped + S // 10), node.log()[mark:]
    assert _diag(peer, "sync_rearmed", 1)
    # a small step back: out of order, dropped, logged naming the topic
    mark = len(node.log())
    late = frame(looped + S // 20)
    assert node.wait_log(rf"\[sync:out_of_order\] ({IMAGE}|{DEPTH}): message stamped [\d.]+ s dropped: 0\.050 s "
                         r"before the last paired set", 20, start=mark), node.log()[mark:]
    assert _diag(peer, "sync_out_of_order", 1) and peer.find("matches", late) is None
    # depth stamped 200 ms after the image: neither pairs; both dropped without a partner once a later set pairs
    mark = len(node.log())
    base = looped + S
    _publish(peer, scene.rgb, scene.depth, image_stamp=base, depth_stamp=base + S // 5)
    assert served(base + S // 2), node.log()[mark:]
    assert node.wait_log(rf"\[sync:no_partner\] {IMAGE}: message stamped [\d.]+ s dropped without a partner within "
                         rf"sync_slop 0\.05 s \(nearest {DEPTH} 0\.200 s away\)", 20, start=mark), node.log()[mark:]
    assert node.wait_log(rf"\[sync:no_partner\] {DEPTH}: .*\(nearest {IMAGE} 0\.200 s away\)", 5, start=mark)
    # a zero stamp: refused with the reason
    mark = len(node.log())
    frame(0)
    assert node.wait_log(rf"\[zero_stamp\] message refused: {IMAGE}: header.stamp is 0", 20, start=mark)
    diag = _diag(peer, "refused_zero_stamp", 2)
    assert diag and int(diag["sync_no_partner"]) >= 2 and int(diag["sync_unmatched"]) >= 3, diag
    assert served(), node.log()[-2000:]


@pytest.mark.timeout(240)
def test_future_stamps_are_judged_against_simulated_time(ros):
    """With use_sim_time the node's clock is /clock (a bag player's): a frame at the simulated time is served, one
    an hour ahead of it is refused naming simulated time, though both are far in the past of the system clock."""
    from rosgraph_msgs.msg import Clock
    from rclpy.qos import QoSProfile

    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "qos_reliability": "reliable", "use_sim_time": True})
    peer = ros.peer()
    clock_pub = peer.node.create_publisher(Clock, "/clock", QoSProfile(depth=10))
    start(node, peer)
    sim = 1000 * S

    def tick():
        clock_pub.publish(Clock(clock=peer.header(sim).stamp))

    assert peer.wait_for(lambda: clock_pub.get_subscription_count() > 0, 20)
    for _ in range(5):
        tick()
        time.sleep(0.1)
    peer.send_camera_info(scene.intrinsics)

    def send(stamp):
        tick()
        return peer.send_frame(scene.rgb, scene.depth, stamp_ns=stamp, intrinsics=scene.intrinsics)

    served = peer.wait_for(lambda: peer.find("matches", send(sim)), 60, interval=2.0)
    assert served is not None, node.log()[-3000:]
    mark = len(node.log())
    ahead = send(sim + 3600 * S)
    assert node.wait_log(rf"\[future_stamp\] message refused: {IMAGE}: stamp 4600\.000 s is 3600\.000 s ahead of the "
                         r"node's clock \(simulated time \(/clock\), 1000\.000 s\)", 20, start=mark), node.log()[mark:]
    assert peer.find("matches", ahead) is None


@pytest.mark.timeout(240)
def test_frame_policy_depth_and_camera_info_must_be_in_the_image_frame(ros):
    """A RealSense without align_depth: depth in its own optical frame is rejected (counted each time, one warning
    per 5 s naming both frames and the fix), as is a CameraInfo of another frame; with depth_registered set at run
    time the same frames are served."""
    from std_msgs.msg import Header

    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "qos_reliability": "reliable", "max_frame_age": 0.0})
    peer = ros.peer()
    start(node, peer)
    colour, depth_frame = "camera_color_optical_frame", "camera_depth_optical_frame"
    count = [0]

    def frame(depth_in=colour, info_frame=colour):
        count[0] += 1
        peer.send_camera_info(scene.intrinsics, frame_id=info_frame)

        def tamper(kind, msg):
            if kind == "depth":  # a header of its own (the peer shares one between image and depth)
                msg.header = Header(stamp=msg.header.stamp, frame_id=depth_in)
        return peer.send_frame(varied(scene.rgb, count[0]), scene.depth, tamper=tamper)

    good = frame()
    assert peer.wait_stamp("matches", good, 60) is not None, node.log()[-3000:]
    mark = len(node.log())
    bad = [frame(depth_in=depth_frame) for _ in range(3)]
    diag = _diag(peer, "rejected_frame_mismatch", 3, timeout=30)
    assert diag and int(diag["frames_rejected"]) >= 3, (peer.diagnostics(), node.log()[mark:])
    pattern = (rf"\[frame_mismatch\] frame dropped: {DEPTH} is in frame '{depth_frame}' but {IMAGE} in '{colour}': "
               r"depth must be registered to the colour image .* enable align_depth \(align_depth\.enable:=true\)")
    assert node.wait_log(pattern, 5, start=mark), node.log()[mark:]
    assert node.log()[mark:].count("[frame_mismatch]") == 1  # throttled: one line per 5 s, the counter has all
    assert all(peer.find("matches", s) is None for s in bad)
    # CameraInfo and image come from different writers: the first frame after it may still meet the previous one
    mark = len(node.log())
    pattern = (rf"\[camera_info_frame\] frame dropped: /camera/color/camera_info is for frame '{depth_frame}' but "
               rf"{IMAGE} is in '{colour}'")
    assert peer.wait_for(lambda: frame(info_frame=depth_frame) and node.wait_log(pattern, 1.0, start=mark), 30,
                         interval=0.2), node.log()[mark:]
    assert _diag(peer, "rejected_camera_info_frame", 1)
    # the parameter that says the depth (and its CameraInfo) are registered anyway
    assert peer.set_parameters("/correspondence_node", {"depth_registered": True})[0].successful
    served = frame(depth_in=depth_frame, info_frame=depth_frame)
    assert peer.wait_stamp("matches", served, 60) is not None, node.log()[-3000:]
