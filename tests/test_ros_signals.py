"""Ctrl-C and SIGTERM over the node's whole life, as a shell, a launch file or systemd sends them: at the first
moment the node's code runs (during the heavy imports), during configure, and while it serves. Every time the
process exits 0 within a bounded time, without a traceback, and says which signal stopped it (docs/ros.md,
"Stopping"). The node runs as a subprocess on a leased DDS domain restricted to localhost (ros_harness)."""
from __future__ import annotations

import signal
import time

import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from ros_harness import ros  # noqa: E402,F401 - ros: the fixture
from ros_harness import start  # noqa: E402

from soco_ros.synthetic import make_scene, varied  # noqa: E402

EXIT_TIMEOUT_S = 60.0  # generous: the machine is shared; a hung shutdown is what this catches


def _handlers_installed(node, timeout: float = 60.0) -> float:
    """Seconds from the spawn until SIGTERM is caught (only the node installs a SIGTERM handler)."""
    deadline = time.monotonic() + timeout
    while not node.catches(signal.SIGTERM):
        assert node.alive() and time.monotonic() < deadline, node.log()[-2000:]
        time.sleep(0.002)
    return time.monotonic() - node.started


def _exits_cleanly(node, signum: int) -> str:
    code = node.wait_exit(EXIT_TIMEOUT_S)
    log = node.log()
    assert code == 0, (code, log[-3000:])
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    assert f"{signal.Signals(signum).name} received" in log, log[-3000:]
    return log


@pytest.mark.timeout(180)
def test_a_signal_during_the_imports_exits_0_even_when_started_with_sigint_ignored(ros):
    """Started as a background job of a script (SIGINT ignored by the parent): the node installs its handlers before
    importing rclpy, torch and the library, so a Ctrl-C right then stops it, before configure."""
    node = ros.node({"demo_path": ""}, ignore_sigint=True)
    installed_after = _handlers_installed(node)
    node.proc.send_signal(signal.SIGINT)
    log = _exits_cleanly(node, signal.SIGINT)
    assert "SIGINT received during start-up" in log, log[-3000:]
    assert "configuring:" not in log  # it stopped while importing
    print(f"handlers installed {installed_after:.3f} s after the spawn")


@pytest.mark.timeout(180)
def test_sigterm_during_configure_exits_0_and_leaves_nothing_running(ros):
    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir), "image_size": 448})
    assert node.wait_log(r"configuring: building the matcher", 90), node.log()[-3000:]
    node.proc.send_signal(signal.SIGTERM)
    log = _exits_cleanly(node, signal.SIGTERM)
    assert "SIGTERM received during start-up" in log, log[-3000:]
    assert "]: active:" not in log, log[-3000:]
    assert "cleaning up directly" in log  # configure was cut short: torn down without the state machine


@pytest.mark.timeout(240)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_serving_exits_0_through_the_shutdown_transition(ros, signum):
    scene = make_scene(ros.tmp / "demo", size=224)
    node = ros.node({"demo_path": str(scene.demo_dir)})
    peer = ros.peer()
    start(node, peer)
    stamp = peer.send_frame(scene.rgb, scene.depth, intrinsics=scene.intrinsics)
    assert peer.wait_stamp("matches", stamp, 60) is not None, node.log()[-3000:]
    for i in range(3):  # frames in flight when the signal comes
        peer.send_frame(varied(scene.rgb, i), scene.depth, intrinsics=scene.intrinsics)
    node.proc.send_signal(signum)
    log = _exits_cleanly(node, signum)
    assert f"{signal.Signals(signum).name} received: shutting down" in log
    assert "shut down" in log.split("received: shutting down")[-1]  # the lifecycle's shutdown transition ran
    # the last status a monitor received says so: finalized (the node publishes it before it goes)
    last = peer.wait_for(lambda: (d := peer.diagnostics()) and d["state"] == "finalized" and d, 10)
    assert last, peer.diagnostics()
