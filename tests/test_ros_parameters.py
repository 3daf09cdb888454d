"""The node's parameter table without DDS: validation, coercion, the depth pair, config/soco.yaml and the docs
generated from it, the launch file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS 2 wheels (pip install -e .[ros]) are not installed")
pytestmark = pytest.mark.ros

from soco_ros import parameters as P  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_parameter_validation():
    assert P.validate("ransac_threshold", 0.02) is None
    assert "out of range [1e-05, 1]" in P.validate("ransac_threshold", 5.0)
    assert "must be a double" in P.validate("ransac_threshold", "x")
    assert P.validate("ransac_iterations", 10) is None and "out of range" in P.validate("ransac_iterations", 0)
    assert "not one of torch, onnxruntime, tensorrt" in P.validate("runtime", "jax")
    assert "must be smaller than depth_max" in P.validate("depth_min", 6.0, {"depth_max": 5.0})
    assert P.validate("min_score", 0) is None  # an int for a double is fine
    assert "must be finite" in P.validate("sync_slop", float("nan"))
    for spec in P.SPECS:
        assert P.validate(spec.name, spec.default, P.defaults()) is None, spec.name


def test_config_yaml_lists_every_parameter_with_its_default():
    import yaml

    data = yaml.safe_load((REPO / "config" / "soco.yaml").read_text(encoding="utf-8"))
    params = data["/**"]["ros__parameters"]
    assert params == P.defaults()
    assert (REPO / "config" / "soco.yaml").read_text(encoding="utf-8") == P.yaml_text()


def test_docs_list_every_parameter_and_topic():
    assert P.markdown_table() in (REPO / "README.md").read_text(encoding="utf-8")  # the reference, in both places
    text = (REPO / "docs" / "ros.md").read_text(encoding="utf-8")
    assert P.markdown_table() in text
    for topic in ("~/matches", "~/keypoint_names", "~/alignment", "~/alignment_quality", "~/markers", "~/debug_image",
                  "~/mask", "/diagnostics", "~/set_demo", "~/reset", "~/set_demo_path", "/tf"):
        assert f"`{topic}`" in text, topic


def test_launch_file_is_valid_python():
    source = (REPO / "launch" / "correspondence.launch.py").read_text(encoding="utf-8")
    compile(source, "correspondence.launch.py", "exec")
    for arg in ("image", "depth", "camera_info", "params_file"):
        assert f'"{arg}"' in source


def test_parameters_coerce_integers_and_judge_the_depth_pair():
    assert P.coerce("depth_max", 3) == 3.0 and isinstance(P.coerce("depth_max", 3), float)
    assert P.coerce("ransac_iterations", 3) == 3 and isinstance(P.coerce("ransac_iterations", 3), int)
    assert P.coerce("publish_debug", True) is True and P.coerce("depth_max", True) is True  # bool is not a number
    assert "must be a double" in P.validate("depth_max", True)
    reason = P.validate_pair({"depth_min": 6.0, "depth_max": 5.0})
    assert "depth_min (6)" in reason and "depth_max (5)" in reason
    assert P.validate_pair({"depth_min": 0.1, "depth_max": 5.0}) is None
    for name in ("health_timeout", "health_window", "health_max_problem_ratio", "marker_lifetime", "publish_tf"):
        assert name in P.BY_NAME  # the issue-16 parameters are in the one table


def test_up_is_a_finite_non_zero_3_vector_normalised_by_the_node():
    """``up`` / ``demo_up`` (the vertical in the camera frames): [0, 0, 0] is unset; integers (``-p up:=[0,-1,0]``)
    and ``array.array`` (a params file) are lists of floats; a wrong length, a NaN or a vector too short to be a
    direction is refused naming the parameter and the value."""
    import array

    assert P.coerce("up", [0, -1, 0]) == [0.0, -1.0, 0.0] and all(type(v) is float for v in P.coerce("up", [0, -1, 0]))
    assert P.coerce("up", array.array("d", [0.0, 2.0, 0.0])) == [0.0, 2.0, 0.0]
    assert P.validate("up", [0.0, 0.0, 0.0]) is None and P.direction([0.0, 0.0, 0.0]) is None
    assert P.validate("up", [0, -2, 0]) is None and P.direction([0.0, -2.0, 0.0]) == (0.0, -1.0, 0.0)
    assert "must be 3 numbers" in P.validate("up", [0.0, 1.0])
    assert "must be finite" in P.validate("demo_up", [float("nan"), 1.0, 0.0])
    assert "too short to be a direction" in P.validate("up", [1e-9, 0.0, 0.0])
    assert "must be a double[]" in P.validate("up", "0 -1 0")
    assert P.BY_NAME["up"].type_name == "double[]" and P.BY_NAME["up"].reconfigurable
    assert P.defaults()["up"] is not P.BY_NAME["up"].default  # a caller cannot change the table's default
