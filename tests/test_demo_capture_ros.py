"""``soco demo capture --image ...`` and the node's ``~/capture_demo`` over real DDS on loopback (a leased
``ROS_DOMAIN_ID``, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``): the written demo folder holds exactly the frame
that was published; a silent topic is named."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

import demo_scene  # noqa: E402
from ros_harness import REPO, NodeProcess, lease_domain, ros_env  # noqa: E402

from correspondence.camera import CameraIntrinsics  # noqa: E402
from correspondence.demo_spec import load_frame  # noqa: E402

TOPICS = ["--image", "/camera/color/image_raw", "--depth", "/camera/depth/image_raw", "--camera-info",
          "/camera/color/camera_info"]
INTRINSICS = CameraIntrinsics(**demo_scene.intrinsics())


@pytest.fixture
def dds(tmp_path, monkeypatch):
    lease = lease_domain()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(lease.domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    try:
        yield lease.domain
    finally:
        lease.release()


class Camera:
    """A peer publishing the drawn frame at ~10 Hz (image + 32FC1 depth + camera_info, one stamp)."""

    def __init__(self, domain: int, depth: bool = True, **transports: str) -> None:
        from soco_ros.peer import Peer

        self.peer = Peer(domain, name="fake_camera", **transports)
        self.rgb, self.depth, _ = demo_scene.draw()
        self.with_depth = depth
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peer.send_frame(self.rgb, self.depth if self.with_depth else None, intrinsics=INTRINSICS)
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.peer.close()


def _capture(tmp_path, domain: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "correspondence.cli", "demo", "capture", *args], cwd=REPO,
                          env=ros_env(domain, tmp_path), capture_output=True, text=True, timeout=120)


@pytest.mark.timeout(180)
def test_capture_cli_from_compressed_transports(dds, tmp_path):
    """image_transport's compressed (PNG here, lossless) and compressedDepth sub-topics, as the node reads them."""
    camera = Camera(dds, image_transport="compressed", depth_transport="compressedDepth")
    try:
        out = _capture(tmp_path, dds, str(tmp_path / "demo"), *TOPICS, "--timeout", "30", "--image-transport",
                       "compressed", "--depth-transport", "compressedDepth")
    finally:
        camera.close()
    assert out.returncode == 0, out.stderr
    _assert_is_the_frame(tmp_path / "demo", camera)


def _assert_is_the_frame(folder, camera: Camera) -> None:
    frame = load_frame(folder)
    np.testing.assert_array_equal(frame.rgb, camera.rgb)
    np.testing.assert_allclose(frame.depth, camera.depth, atol=0.0005)  # millimetre PNG
    assert frame.intrinsics.as_dict() == INTRINSICS.as_dict()


@pytest.mark.timeout(180)
def test_capture_cli_from_topics(dds, tmp_path):
    camera = Camera(dds)
    try:
        out = _capture(tmp_path, dds, str(tmp_path / "demo"), *TOPICS, "--timeout", "30")
    finally:
        camera.close()
    assert out.returncode == 0, out.stderr
    assert "next: soco demo edit" in out.stdout
    _assert_is_the_frame(tmp_path / "demo", camera)


@pytest.mark.timeout(180)
def test_capture_cli_names_the_silent_topic(dds, tmp_path):
    camera = Camera(dds, depth=False)
    try:
        out = _capture(tmp_path, dds, str(tmp_path / "demo"), *TOPICS, "--timeout", "4")
    finally:
        camera.close()
    assert out.returncode == 1
    assert "no message in 4 s on /camera/depth/image_raw (depth)" in out.stderr, out.stderr
    assert "/camera/color/image_raw" not in out.stderr.split("on ", 1)[1].split(";")[0]  # that one did publish
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_node_capture_demo_service(dds, tmp_path):
    from std_srvs.srv import Trigger

    from soco_ros.peer import Peer

    captures = tmp_path / "captures"
    node = NodeProcess(tmp_path, dds, {"backbone": "daisy", "image_size": 224, "segmentation": "depth",
                                       "capture_dir": str(captures)})
    peer = Peer(dds)
    camera = None
    try:
        assert node.wait_log(r"\]: active:", 120), node.log()[-3000:]
        response = peer.call(Trigger, "/correspondence_node/capture_demo", Trigger.Request(), timeout=20)
        assert not response.success and "no synchronised frame" in response.message
        camera = Camera(dds)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            response = peer.call(Trigger, "/correspondence_node/capture_demo", Trigger.Request(), timeout=20)
            if response.success:
                break
            time.sleep(0.5)
        assert response.success, response.message
        folder = captures / response.message.rsplit("/", 1)[1]
        assert str(folder) == response.message and folder.name.startswith("demo_")
        _assert_is_the_frame(folder, camera)
    finally:
        if camera is not None:
            camera.close()
        peer.close()
        assert node.stop() == 0, node.log()[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_editor_grabs_a_live_rgbd_frame_and_tries_the_transfer_in_3d(dds, tmp_path):
    """The page's "Grab from camera": one synchronised RGB-D frame from the topics, through the node's pipeline."""
    from correspondence.demo_editor.folder import CapturedFrame, revision, write_frame
    from correspondence.demo_editor.session import EditorSession
    from soco_ros.capture import capture_from_topics
    from soco_ros.preview import NodePreview, node_parameters

    rgb, depth, _ = demo_scene.draw()
    write_frame(tmp_path / "demo", CapturedFrame(rgb, depth, INTRINSICS))
    session = EditorSession(tmp_path / "demo", preview=NodePreview(node_parameters(backbone="daisy")),
                            grab=lambda: capture_from_topics(*TOPICS[1::2], timeout_s=30))
    mask = session.segment({"points": [[150, 120, 1]]})["mask"]
    data = {"mode": "keypoints", "revision": revision(tmp_path / "demo"), "category": "mug", "mask": mask,
            "keypoints": [{"name": "rim_point/left", "xy": [115.0, 75.0]}, {"name": "rim_point/right",
                                                                             "xy": [185.0, 75.0]}]}
    camera = Camera(dds)
    try:
        result = session.try_transfer({**data, "grab": True})
    finally:
        camera.close()
    assert result["alignment"]["kind"] == "3d" and result["segmentation"] == "depth"
    assert [m["name"] for m in result["matches"]] == ["rim_point/left", "rim_point/right"]
    assert result["live"].startswith("data:image/png;base64,") and result["overlay"]
    for match, truth in zip(result["matches"], ([115.0, 75.0], [185.0, 75.0])):  # the camera shows the demo frame
        assert np.hypot(*np.subtract(match["live_xy"], truth)) < 8.0, match
