"""The ROS node's parts without DDS: conversions, worker, health, markers, the tf2_msgs type, DDS domain leases
(parameters: test_ros_parameters.py; the frame processor and message building: test_ros_processor.py)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from correspondence.camera import CameraIntrinsics  # noqa: E402
from soco_ros.conversions import (MATCH_FIELDS, POSITION_UNKNOWN, POSITIONS, FrameError,  # noqa: E402
                                  camera_info_to_intrinsics, check_same_size, position_code, cloud_to_array, depth_to_image, depth_to_metres, image_to_rgb,
                                  intrinsics_to_camera_info, mask_to_bool, matches_to_cloud, msg_to_transform,
                                  rgb_to_image, transform_to_msg)
from soco_ros.worker import LatencyStats, LatestSlot, WorkItem, Worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
HEADER = Header(frame_id="cam")


def _image(array: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    a = np.ascontiguousarray(array)
    if bigendian:
        a = a.astype(a.dtype.newbyteorder(">"))
    rows = a.reshape(a.shape[0], -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((a.shape[0], pad), 7, np.uint8)], 1)
    msg = Image(header=HEADER, height=a.shape[0], width=a.shape[1], encoding=encoding, is_bigendian=int(bigendian),
                step=rows.shape[1])
    msg.data = rows.tobytes()
    return msg


# ================================================================================================ conversions


@pytest.mark.parametrize("pad", [0, 3])
def test_every_colour_encoding_gives_rgb(pad):
    assert np.array_equal(image_to_rgb(_image(RGB, "rgb8", pad)), RGB)
    assert np.array_equal(image_to_rgb(_image(RGB[..., ::-1], "bgr8", pad)), RGB)
    gray = RGB[..., 0]
    assert np.array_equal(image_to_rgb(_image(gray, "mono8", pad)), np.repeat(gray[..., None], 3, 2))


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_encodings_in_metres(bigendian):
    mm = np.array([[0, 1000, 65535], [250, 1, 2000]], dtype=np.uint16)
    metres = depth_to_metres(_image(mm, "16UC1", pad=2, bigendian=bigendian), depth_scale=0.001)
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, mm * 0.001, rtol=1e-6)
    f = np.array([[np.nan, 1.5, -1.0], [np.inf, 0.25, 0.0]], dtype=np.float32)
    out = depth_to_metres(_image(f, "32FC1", bigendian=bigendian))
    np.testing.assert_array_equal(out, [[0, 1.5, 0], [0, 0.25, 0]])  # invalid readings become 0 (unknown)
    # the writer used by the test publisher round-trips both encodings
    depth = np.array([[0.5, 1.234]], dtype=np.float32)
    np.testing.assert_allclose(depth_to_metres(depth_to_image(depth, HEADER, "16UC1")), [[0.5, 1.234]], atol=1e-6)
    np.testing.assert_array_equal(depth_to_metres(depth_to_image(depth, HEADER, "32FC1")), depth)


def test_mask_and_output_images_round_trip():
    mask = RGB[..., 0] > 128
    assert np.array_equal(mask_to_bool(_image(mask.astype(np.uint8) * 255, "mono8", pad=1)), mask)
    assert np.array_equal(mask_to_bool(rgb_to_image(mask, HEADER)), mask)
    assert np.array_equal(image_to_rgb(rgb_to_image(RGB, HEADER, "bgr8")), RGB)


@pytest.mark.parametrize("case,reason,text", [
    ("step", "step", "step 20 is smaller than one rgb8 row"),
    ("truncated", "buffer", "data buffer truncated"),
    ("long", "buffer", "data buffer too long"),
    ("encoding", "encoding", "unsupported encoding 'nv21'"),
    ("empty", "size", "empty image"),
])
def test_bad_images_raise_specific_errors(case, reason, text):
    msg = _image(RGB, "rgb8")
    if case == "step":
        msg.step = 20  # 7 px * 3 bytes = 21
    elif case == "truncated":
        msg.data = bytes(msg.data)[:-5]
    elif case == "long":
        msg.data = bytes(msg.data) + b"\0"
    elif case == "encoding":
        msg.encoding = "nv21"
    elif case == "empty":
        msg.width = 0
    with pytest.raises(FrameError, match=text) as info:
        image_to_rgb(msg, "image")
    assert info.value.reason == reason


def test_depth_and_mask_refuse_colour_encodings_and_odd_steps():
    with pytest.raises(FrameError, match="unsupported encoding 'rgb8'.*16UC1, 32FC1"):
        depth_to_metres(_image(RGB, "rgb8"))
    with pytest.raises(FrameError, match="unsupported encoding 'bgr8'"):
        mask_to_bool(_image(RGB, "bgr8"))
    msg = _image(np.zeros((2, 3), np.uint16), "16UC1", pad=1)  # step 7: not a multiple of 2
    with pytest.raises(FrameError, match="not a multiple"):
        depth_to_metres(msg)


def test_camera_info_checks():
    K = CameraIntrinsics(500.0, 510.0, 319.5, 239.5, 640, 480)
    info = intrinsics_to_camera_info(K, HEADER)
    assert camera_info_to_intrinsics(info) == K
    info.k = [0.0] * 9
    with pytest.raises(FrameError, match="no positive focal length"):
        camera_info_to_intrinsics(info)
    info = intrinsics_to_camera_info(K, HEADER)
    info.width = 0
    with pytest.raises(FrameError, match="image size is 0x480"):
        camera_info_to_intrinsics(info)
    with pytest.raises(FrameError, match="depth is 4x3 but the RGB image is 7x5"):
        check_same_size(RGB, np.zeros((3, 4)), "depth")
    # an unrectified camera (image_raw): d and distortion_model come along; an unknown model is refused
    distorted = CameraIntrinsics(500.0, 510.0, 319.5, 239.5, 640, 480, (0.1, -0.2, 0.001, 0.0, 0.05))
    info = intrinsics_to_camera_info(distorted, HEADER)
    assert list(info.d) == [0.1, -0.2, 0.001, 0.0, 0.05] and info.distortion_model == "plumb_bob"
    assert camera_info_to_intrinsics(info) == distorted
    info.distortion_model = "equidistant"
    info.d = [0.05, -0.01, 0.0, 0.0]
    assert camera_info_to_intrinsics(info).distortion_model == "equidistant"
    info.distortion_model = "fancy_lens"
    with pytest.raises(FrameError, match="distortion model 'fancy_lens' is not supported") as caught:
        camera_info_to_intrinsics(info)
    assert caught.value.reason == "camera_info"
    info.d = [0.0] * 5  # a rectified stream may name any model with zero coefficients
    assert not camera_info_to_intrinsics(info).distorted


def test_match_cloud_layout_and_values():
    points = np.array([[0.1, 0.2, 0.3], [np.nan, np.nan, np.nan]])
    cloud = matches_to_cloud(HEADER, points, [[1.5, 2.5], [3.5, 4.5]], [[5.5, 6.5], [7.5, 8.5]], [0.9, 0.8], [3, 7],
                             [position_code("refined"), position_code("pose")], [False, True])
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [(n, o, d, 1) for n, o, d in MATCH_FIELDS]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (1, 2, 40, 80)
    assert not cloud.is_dense and cloud.header.frame_id == "cam"
    a = cloud_to_array(cloud)
    np.testing.assert_allclose([a["x"][0], a["y"][0], a["z"][0]], [0.1, 0.2, 0.3], rtol=1e-6)
    assert np.isnan(a["z"][1]) and a["index"].dtype == np.uint32 and a["index"].tolist() == [3, 7]
    np.testing.assert_allclose(a["u_live"], [1.5, 3.5])
    np.testing.assert_allclose(a["v_demo"], [6.5, 8.5])
    np.testing.assert_allclose(a["score"], [0.9, 0.8], rtol=1e-6)
    assert [POSITIONS[c] for c in a["position"]] == ["refined", "pose"] and a["pose_disagrees"].tolist() == [0, 1]
    assert position_code("no such source") == POSITION_UNKNOWN


def test_every_library_position_has_a_code():
    """A position the library adds (e.g. dense-field) must not reach ~/matches as 255 'unknown'; codes only append."""
    from correspondence.keypoint_matching import MATCH_POSITIONS
    assert set(MATCH_POSITIONS) <= set(POSITIONS)
    assert POSITIONS[:9] == ("cell", "soft-argmax", "refined", "model", "epipolar", "pose", "pose-hidden", "dense",
                             "interpolated")
    empty = matches_to_cloud(HEADER, np.zeros((0, 3)), np.zeros((0, 2)), np.zeros((0, 2)), [], [])
    assert empty.width == 0 and len(cloud_to_array(empty)) == 0


def test_transform_round_trip_and_direction():
    from scipy.spatial.transform import Rotation

    for seed in range(20):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=seed).as_matrix()
        T[:3, 3] = np.random.default_rng(seed).normal(size=3)
        msg = transform_to_msg(T, HEADER, "demo_object")
        assert msg.header.frame_id == "cam" and msg.child_frame_id == "demo_object"
        np.testing.assert_allclose(msg_to_transform(msg), T, atol=1e-9)
    # a rotation of 180 degrees (trace -1) is the numerically delicate case
    T = np.diag([1.0, -1.0, -1.0, 1.0])
    np.testing.assert_allclose(msg_to_transform(transform_to_msg(T, HEADER, "d")), T, atol=1e-9)


# ================================================================================================ worker


def test_latest_slot_keeps_one_and_counts_overwrites():
    slot = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.overwritten == 2 and slot.take(0) == 3 and slot.take(0.01) is None


def test_worker_drops_stale_and_overwritten_and_survives_errors():
    now = [100.0]
    seen, errors = [], []
    gate = threading.Event()

    def process(item):
        gate.wait(5)
        if item.payload == "boom":
            raise RuntimeError("bad frame")
        seen.append(item.payload)

    worker = Worker(process, max_age_s=1.0, on_error=lambda item, exc: errors.append(str(exc)), clock=lambda: now[0])
    worker.start()
    worker.submit(WorkItem("first", 100.0))
    time.sleep(0.3)  # the worker is now blocked on "first"
    for i in range(5):
        worker.submit(WorkItem(f"f{i}", 100.0))
    gate.set()
    deadline = time.monotonic() + 5
    while worker.processed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["first", "f4"] and worker.overwritten == 4
    worker.submit(WorkItem("old", 98.0))  # 2 s old > max_age 1 s
    worker.submit(WorkItem("boom", 100.0))  # replaces "old" (overwritten) — then fails
    deadline = time.monotonic() + 5
    while worker.failed < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert errors == ["bad frame"] and worker.overwritten == 5
    worker.submit(WorkItem("old2", 98.0))
    deadline = time.monotonic() + 5
    while worker.stale < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.stale == 1
    worker.submit(WorkItem("after", 100.0))
    deadline = time.monotonic() + 5
    while "after" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[-1] == "after"
    assert worker.stop(timeout=5)


def test_latency_stats_window():
    stats = LatencyStats(window=10)
    assert stats.summary()["count"] == 0
    for v in range(100):
        stats.add(v / 1000)
    s = stats.summary()
    assert s["count"] == 10 and s["p50_ms"] == pytest.approx(94.5) and s["max_ms"] == pytest.approx(99)


# ================================================================================================ issue 16


def test_depth_units_advice_names_the_fix_for_the_encoding():
    mm = np.full((8, 8), 1200.0, np.float32)  # millimetres sent as 32FC1
    with pytest.raises(FrameError, match="millimetres sent as float.*fix the publisher") as info:
        depth_to_metres(_image(mm, "32FC1"), depth_scale=0.001, topic="/d")
    assert info.value.reason == "depth_units" and "set depth_scale" not in str(info.value)
    with pytest.raises(FrameError, match="16UC1 depth is value x depth_scale metres and depth_scale is 1: set it "
                                         "to 0.001") as info:
        depth_to_metres(_image(np.full((8, 8), 1200, np.uint16), "16UC1"), depth_scale=1.0)
    assert info.value.reason == "depth_units"
    with pytest.raises(FrameError, match="no valid value") as info:
        depth_to_metres(_image(np.zeros((8, 8), np.float32), "32FC1"))
    assert info.value.reason == "depth_empty"
    # 32FC1 is metres: depth_scale never applies to it
    np.testing.assert_array_equal(depth_to_metres(_image(np.full((2, 2), 1.5, np.float32), "32FC1"), 0.5), 1.5)


def test_health_levels_and_reasons():
    from soco_ros import health as H

    now = [0.0]
    h = H.Health(window_s=10, timeout_s=5, max_problem_ratio=0.5, clock=lambda: now[0])
    assert h.assess("unconfigured", configure_error="building the matcher: unknown backbone 'x'") == (
        H.ERROR, "configure failed: building the matcher: unknown backbone 'x'")
    assert h.assess("inactive")[0] == H.WARN and h.assess("active", has_demo=False)[0] == H.WARN
    # active with a demo but no image yet: nothing is published, so not OK; the caller says where it listens
    assert h.assess("active", ok_text="fine", input_hint="; subscribed to /cam/image") == (
        H.WARN, "no input: no image received yet, so nothing is published; subscribed to /cam/image")
    now[0] += 0.1
    h.input()  # an image arrived (not yet a synchronised frame): still nothing published, so not OK, with the reason
    now[0] += 0.5
    assert h.assess("active", ok_text="fine", idle_hint="; no synchronised image / depth / mask set yet") == (
        H.WARN, "no output yet (last image 0.5 s ago); no synchronised image / depth / mask set yet")
    h.published()
    assert h.assess("active", ok_text="fine") == (H.OK, "fine")
    # 10 frames, 9 fail for the same reason: WARN naming it, with its last message
    for i in range(10):
        now[0] += 0.3
        h.frame()
        if i:
            h.problem("failed", "InputError: no valid depth", f"no valid depth in range [4, 5] m ({i})")
        else:
            h.published()
    level, message = h.assess("active")
    assert level == H.WARN and "9 of 10 frames" in message and "no valid depth in range [4, 5] m (9)" in message
    # frames keep arriving, nothing is published for longer than the timeout: WARN "no output"
    for _ in range(20):
        now[0] += 0.5
        h.frame()
        h.problem("stale", "stale", "frame dropped as stale: its stamp is 5.00 s old")
    level, message = h.assess("active")
    assert level == H.WARN and message.startswith("no output for") and "stale" in message
    # the input stops: the message says how long ago the last image came, never that frames arrive
    now[0] += 3.0
    level, message = h.assess("active")
    assert message.startswith("no output for 15.4 s (last image 3.0 s ago); mostly stale"), message
    # output flows again and the problems age out of the window: OK
    for _ in range(30):
        now[0] += 0.5
        h.frame()
        h.published()
    assert h.assess("active", ok_text="ok")[0] == H.OK
    # overwritten frames are not problems (they are how the node bounds its latency)
    assert h.window()["problems"] == 0
    # inputs stopped (a camera died, a topic or transport that does not match): WARN, not OK
    now[0] += 60
    assert h.silent_for() is None and h.input_age() == pytest.approx(60)
    assert h.assess("active") == (H.WARN, "no input: no image for 60.0 s, so nothing is published")
    # images arrive but never make a synchronised set: "no output", with the caller's hint as the reason
    for _ in range(12):
        now[0] += 0.5
        h.input()
    level, message = h.assess("active", idle_hint="; no synchronised image / depth set")
    assert level == H.WARN and message.startswith("no output for") and message.endswith("no synchronised image / "
                                                                                         "depth set")
    h.reset()  # ~/reset: not OK again until something is published
    h.input()
    assert h.assess("active", ok_text="ok")[0] == H.WARN and h.assess("active")[1].startswith("no output yet")
    assert h.assess("finalized")[1].startswith("finalized: the node was shut down")


def test_worker_runs_jobs_first_and_reports_stale_age():
    now = [100.0]
    order, stale = [], []
    worker = Worker(lambda item: order.append(item.payload), max_age_s=1.0, clock=lambda: now[0],
                    on_stale=lambda item, age: stale.append((item.payload, round(age, 3))), nice=5)
    worker.submit(WorkItem("frame", 100.0))
    worker.run_job(lambda: order.append("job"))
    worker.submit(WorkItem("old", 95.0))  # replaces "frame"
    worker.start()
    deadline = time.monotonic() + 5
    while not stale and time.monotonic() < deadline:
        time.sleep(0.01)
    assert order == ["job"] and stale == [("old", 5.0)] and worker.stale == 1 and worker.overwritten == 1
    worker.submit(WorkItem("fresh", 100.0))
    deadline = time.monotonic() + 5
    while "fresh" not in order and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.wait_idle(5) and order == ["job", "fresh"]
    assert worker.stop(5) and not worker.running


def test_markers_have_a_lifetime_and_tf_message():
    from soco_ros.messages import build_markers, tf_message

    markers = build_markers(HEADER, ["a", "b"], np.array([[0, 0, 1.0], [np.nan, 0, 1]]), 0.01, lifetime_s=1.25)
    assert markers.markers[0].action == markers.markers[0].DELETEALL and len(markers.markers) == 3
    assert all((m.lifetime.sec, m.lifetime.nanosec) == (1, 250_000_000) for m in markers.markers[1:])
    msg = tf_message([transform_to_msg(np.eye(4), HEADER, "demo_object")])
    if msg is None:
        pytest.skip("tf2_msgs is not importable (python -m soco_ros.tf2_msgs_build)")
    assert msg.transforms[0].child_frame_id == "demo_object" and msg.transforms[0].header.frame_id == "cam"


def test_tf2_msgs_is_the_upstream_type():
    """tf2_msgs (from a ROS install, or built by `make setup` / python -m soco_ros.tf2_msgs_build) has the upstream
    type hash, so real tf2 listeners take the node's /tf."""
    pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built: python -m soco_ros.tf2_msgs_build")
    from rclpy.serialization import deserialize_message, serialize_message
    from tf2_msgs.msg import TFMessage

    from soco_ros import tf2_msgs_build

    assert tf2_msgs_build.available()
    msg = TFMessage(transforms=[transform_to_msg(np.eye(4), HEADER, "demo_object")])
    assert deserialize_message(serialize_message(msg), TFMessage).transforms[0].child_frame_id == "demo_object"
    import json
    import sys

    share = Path(sys.prefix) / "share" / "tf2_msgs" / "msg" / "TFMessage.json"
    if share.exists():
        top = json.loads(share.read_text())["type_hashes"][0]
        assert top == {"type_name": "tf2_msgs/msg/TFMessage", "hash_string":
                       "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"}


def test_domain_leases_are_unique_across_processes(tmp_path):
    import subprocess
    import sys

    from soco_ros.isolation import DomainLease, NoFreeDomain

    a, b = DomainLease(20, 22, tmp_path), DomainLease(20, 22, tmp_path)
    assert a.domain != b.domain
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from soco_ros.isolation import DomainLease; "
        f"l = DomainLease(20, 22, {str(tmp_path)!r}); print(l.domain, flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        other = int(holder.stdout.readline())
        assert other not in (a.domain, b.domain)
        with pytest.raises(NoFreeDomain):
            DomainLease(20, 22, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with DomainLease(20, 22, tmp_path) as c:  # the dead holder's lock went with it
        assert c.domain == other
    a.release()
    assert DomainLease(20, 22, tmp_path).domain == a.domain
    b.release()
