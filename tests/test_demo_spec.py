"""Demo specifications: folder and YAML forms, every field checked with a precise message."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from correspondence.demo_spec import load_demo
from correspondence.errors import InputError


def write_demo(folder, **overrides):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(folder / "rgb.png")
    depth = np.full((40, 60), 800, np.uint16)
    depth[:5] = 0
    Image.fromarray(depth).save(folder / "depth.png")
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    (folder / "keypoints.json").write_text(json.dumps({"keypoints": [{"name": "handle_top", "xy": [25, 12]}]}))
    (folder / "intrinsics.json").write_text(json.dumps({"fx": 50, "fy": 50, "cx": 29.5, "cy": 19.5,
                                                        "width": 60, "height": 40}))
    spec = {"rgb": "rgb.png", "depth": "depth.png", "depth_scale": 0.001, "intrinsics": "intrinsics.json",
            "mask": "mask.png", "keypoints": "keypoints.json", **overrides}
    spec = {k: v for k, v in spec.items() if v is not None}
    (folder / "demo.yaml").write_text(json.dumps(spec))  # JSON is valid YAML
    return folder


def test_folder_and_yaml_forms(tmp_path):
    demo = load_demo(write_demo(tmp_path / "d"))
    assert demo.mode == "keypoints" and demo.has_3d
    assert demo.depth[20, 30] == pytest.approx(0.8) and demo.depth[0, 0] == 0.0  # mm -> m, 0 stays unknown
    assert demo.keypoints.names == ["handle_top"] and demo.mask.sum() == 400
    assert load_demo(tmp_path / "d" / "demo.yaml").rgb.shape == (40, 60, 3)
    (tmp_path / "d" / "demo.yaml").unlink()
    conventional = load_demo(tmp_path / "d")  # by file-name convention
    assert conventional.keypoints is not None and conventional.intrinsics.fx == 50


def test_functional_demo(tmp_path):
    folder = write_demo(tmp_path / "f", keypoints=None, function="pour-with", function_mask="mask.png")
    demo = load_demo(folder)
    assert demo.mode == "functional" and demo.function == "pour-with" and demo.function_mask.any()


@pytest.mark.parametrize("overrides, message", [
    ({"rgb": "missing.png"}, "rgb: file"),
    ({"depth_scale": -1}, "depth_scale: must be a positive"),
    ({"intrinsics": {"fx": 50, "fy": 50, "cx": 1, "cy": 1, "width": 61, "height": 40}}, "intrinsics: are for 61x40"),
    ({"intrinsics": {"fx": 50, "cx": 1, "cy": 1, "width": 60, "height": 40}}, "intrinsics: missing 'fy'"),
    ({"keypoints": [{"name": "a", "xy": [100, 3]}]}, "keypoints: 'a' is outside the 60x40 image"),
    ({"keypoints": None}, "keypoints: give named keypoints or a function"),
    ({"function": "pour-with"}, "keypoints/function: give either"),
    ({"keypoints": None, "function": "pour-with"}, "function_mask: is required"),
])
def test_each_field_is_checked(tmp_path, overrides, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        load_demo(write_demo(tmp_path / "bad", **overrides))


def test_size_mismatches_and_empty_inputs(tmp_path):
    folder = write_demo(tmp_path / "s")
    Image.fromarray(np.zeros((30, 60), np.uint16)).save(folder / "depth.png")
    with pytest.raises(InputError, match="depth: is 60x30 but the RGB image is 60x40"):
        load_demo(folder)
    Image.fromarray(np.zeros((40, 60), np.uint16)).save(folder / "depth.png")
    with pytest.raises(InputError, match="depth: has no valid"):
        load_demo(folder)
    folder = write_demo(tmp_path / "m")
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(folder / "mask.png")
    with pytest.raises(InputError, match="mask: is empty"):
        load_demo(folder)
    with pytest.raises(InputError, match="does not exist"):
        load_demo(tmp_path / "nowhere")
    (tmp_path / "broken.yaml").write_text("rgb: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        load_demo(tmp_path / "broken.yaml")
