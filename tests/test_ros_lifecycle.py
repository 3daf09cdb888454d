"""The node in this process (no subprocess, nothing spun): parameter handling as ROS users expect it and the
lifecycle done the rclpy way. Its DDS participant lives on a leased domain restricted to localhost."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.lifecycle.publisher import LifecyclePublisher  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from soco_ros import health as H  # noqa: E402
from soco_ros.isolation import DomainLease  # noqa: E402

TINY = {"backbone": "test_vit_tiny", "random_weights": True, "image_size": 112, "segmentation": "depth"}


@pytest.fixture
def make_node(monkeypatch):
    from soco_ros.node import CorrespondenceNode

    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("SOCO_OFFLINE", "1")
    lease = DomainLease()
    context = Context()
    rclpy.init(context=context, domain_id=lease.domain)
    nodes = []

    def make(**params):
        node = CorrespondenceNode(context=context, parameter_overrides=[Parameter(k, value=v)
                                                                         for k, v in params.items()])
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.shutdown()
        node.destroy_node()
    rclpy.try_shutdown(context=context)
    lease.release()


def test_start_up_values_integers_for_doubles_and_the_depth_pair(make_node, capfd):
    node = make_node(depth_max=3, min_score=1, ransac_threshold=5.0, runtime="jax", autostart=False)
    assert node.params["depth_max"] == 3.0 and node.get_parameter("depth_max").type_ == Parameter.Type.DOUBLE
    assert node.params["min_score"] == 1.0 and isinstance(node.params["min_score"], float)
    assert node.params["ransac_threshold"] == 0.015 and node.params["runtime"] == "torch"  # refused -> defaults
    assert node.counts["parameters_rejected"] == 2
    other = make_node(depth_min=6.0, autostart=False)  # above the default depth_max 5: the pair is refused
    assert (other.params["depth_min"], other.params["depth_max"]) == (0.05, 5.0)
    assert other.get_parameter("depth_min").value == 0.05 and other.counts["parameters_rejected"] == 1
    log = capfd.readouterr().err
    assert "depth_min (6) must be smaller than depth_max (5)" in log and "keeping the last valid pair" in log
    assert "ransac_threshold: start-up value rejected" in log and "'jax' is not one of" in log
    assert other.assess()[0] == H.WARN  # unconfigured, by choice (autostart false): WARN, not ERROR


def test_run_time_sets_coerce_log_and_count(make_node, capfd):
    node = make_node(autostart=False)
    result = node.set_parameters([Parameter("min_score", value=1)])[0]  # what `ros2 param set ... 1` sends
    assert result.successful and node.get_parameter("min_score").value == 1.0
    assert node.get_parameter("min_score").type_ == Parameter.Type.DOUBLE
    refused = {
        "min_score": "abc",  # wrong type: rclpy refuses, we log and count
        "ransac_threshold": 2.0,  # out of range
        "solver": "magic",  # not a choice
        "depth_min": 9.0,  # above depth_max
    }
    for name, value in refused.items():
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful, name
    assert node.counts["parameters_rejected"] == len(refused)
    assert node.params["depth_min"] == 0.05 and node.params["min_score"] == 1.0
    log = capfd.readouterr().err
    for name in refused:
        assert f"[parameter:{name}] rejected" in log, name
    assert "depth_min (9) must be smaller than depth_max (5)" in log and "keeping depth_min=0.05, depth_max=5" in log
    # both ends moved at once
    assert node.set_parameters_atomically([Parameter("depth_min", value=6), Parameter("depth_max", value=7)]).successful
    assert (node.params["depth_min"], node.params["depth_max"]) == (6.0, 7.0)


def test_a_renamed_parameter_keeps_working_with_a_warning(make_node, capfd):
    """``match_threshold`` (0.1) is ``min_score`` now: a params file or ``ros2 param set`` with the old name still
    sets it, with a warning naming the new one; given both, the new name wins."""
    node = make_node(match_threshold=0.25, autostart=False)
    assert node.params["min_score"] == 0.25 and node.get_parameter("min_score").value == 0.25
    assert not node.has_parameter("match_threshold")
    both = make_node(match_threshold=0.25, min_score=0.5, autostart=False)
    assert both.params["min_score"] == 0.5
    result = node.set_parameters([Parameter("match_threshold", value=1)])[0]  # `ros2 param set ... match_threshold 1`
    assert result.successful and node.get_parameter("min_score").value == 1.0 and node.params["min_score"] == 1.0
    refused = node.set_parameters([Parameter("match_threshold", value=3.0)])[0]  # judged as min_score: out of range
    assert not refused.successful and node.params["min_score"] == 1.0
    log = capfd.readouterr().err
    assert log.count("the parameter 'match_threshold' is renamed 'min_score'") == 4
    assert "both were given, 'match_threshold' is ignored" in log
    assert "[parameter:min_score] rejected: parameter 'min_score'=3.0 is out of range [-1, 1]" in log
    assert node.counts["parameters_rejected"] == 1 and both.counts["parameters_rejected"] == 0


def test_lifecycle_the_rclpy_way(make_node, tmp_path):
    from soco_ros.synthetic import make_scene

    scene = make_scene(tmp_path / "demo", size=112, grid_points=8)
    other = make_scene(tmp_path / "other", size=112, grid_points=4, category="mug", seed=3)
    # a configure that fails leaves the node unconfigured with an ERROR naming the reason
    node = make_node(**{**TINY, "backbone": "no_such_backbone"}, demo_path=str(scene.demo_dir), autostart=False)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    level, message = node.assess()
    assert level == H.ERROR and "building the matcher: unknown backbone 'no_such_backbone'" in message
    # configure-time parameters can be fixed while unconfigured, then configure succeeds
    assert node.set_parameters([Parameter("backbone", value="test_vit_tiny")])[0].successful
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.assess()[0] == H.WARN  # inactive
    pubs = dict(node._pubs)
    assert pubs and all(isinstance(p, LifecyclePublisher) for p in pubs.values())
    assert not any(p._enabled for p in pubs.values())  # disabled until activate
    assert node.worker.running and node.debug_worker.running
    assert node.processor.demo_path == str(scene.demo_dir)
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert all(p._enabled for p in pubs.values())
    # a demo change returns at once; the worker loads it (features included) before its next frame
    started = time.monotonic()
    assert node.set_parameters([Parameter("demo_path", value=str(other.demo_dir))])[0].successful
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 60
    while node.processor.demo_path != str(other.demo_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.processor.demo_path == str(other.demo_dir) and node.worker.wait_idle(60)
    assert not node.set_parameters([Parameter("demo_path", value=str(tmp_path / "nope"))])[0].successful
    assert node.params["demo_path"] == str(other.demo_dir)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert not any(p._enabled for p in pubs.values())
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node._pubs == {} and node.worker is None and node.processor is None
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.shutdown()  # through the state machine, from inactive
    assert node._state_machine.current_state[1] == "finalized" and node.processor is None and not node._pubs


def test_frames_with_an_empty_frame_id_are_rejected(make_node, tmp_path):
    from soco_ros.conversions import depth_to_image, rgb_to_image
    from soco_ros.synthetic import make_scene
    from std_msgs.msg import Header

    scene = make_scene(tmp_path / "demo", size=112, grid_points=4)
    node = make_node(**TINY, demo_path=str(scene.demo_dir), autostart=False)
    node._intrinsics = scene.intrinsics
    header = Header(frame_id="")
    node._on_synced({"image": rgb_to_image(scene.rgb, header), "depth": depth_to_image(scene.depth, header)})
    assert node.rejected == {"frame_id": 1} and node.counts["rejected"] == 1
    header.frame_id = "cam"
    mm = depth_to_image(np.asarray(scene.depth) * 1000.0, header)  # millimetres sent as 32FC1
    node._on_synced({"image": rgb_to_image(scene.rgb, header), "depth": mm})
    assert node.rejected == {"frame_id": 1, "depth_units": 1}
    assert node.health.window()["dominant"]["kind"] == "rejected"


def test_a_configure_cut_short_by_a_signal_is_torn_down_and_reported_finalized(make_node, tmp_path, monkeypatch):
    """A signal during start-up raises ``Interrupted`` inside configure (soco_ros.node): the state machine is left
    in 'configuring', so shutdown tears down what exists directly and the diagnostics still say finalized."""
    from soco_ros import lifecycle
    from soco_ros.node import Interrupted
    from soco_ros.synthetic import make_scene

    scene = make_scene(tmp_path / "demo", size=112, grid_points=4)
    node = make_node(**TINY, demo_path=str(scene.demo_dir), autostart=False)
    started = []
    real_start = lifecycle.Worker.start

    def start_then_signal(worker):  # the signal lands after the worker threads started, before configure ends
        real_start(worker)
        started.append(worker)
        if len(started) == 2:
            raise Interrupted(2)

    monkeypatch.setattr(lifecycle.Worker, "start", start_then_signal)
    with pytest.raises(Interrupted):
        node.trigger_configure()
    assert node._state_machine.current_state[1] == "configuring" and all(w.running for w in started)
    node.shutdown()
    assert not any(w.running for w in started) and node.worker is None and node._pubs == {}
    assert node.state_label() == "finalized" and node.assess()[1].startswith("finalized")
