"""``soco match`` end to end on the real photos in ../shared, with the weight-free backbone and a tiny random ViT."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from correspondence import match
from correspondence.cli import main
from conftest import EXAMPLES


@pytest.mark.parametrize("backbone", ["daisy", "test_vit_tiny"])
def test_soco_match_on_real_cats(shared_images, tmp_path, backbone):
    out = tmp_path / backbone
    code = main(["match", "--demo", str(shared_images / "sddino_cat0.jpg"),
                 "--demo-keypoints", str(EXAMPLES / "keypoints" / "sddino_cat0.json"),
                 "--live", str(shared_images / "sddino_cat1.jpg"), "--backbone", backbone, "--out", str(out)])
    assert code == 0
    record = json.loads((out / "matches.json").read_text())
    names = [kp["name"] for kp in json.loads((EXAMPLES / "keypoints" / "sddino_cat0.json").read_text())["keypoints"]]
    assert [m["name"] for m in record["matches"]] == names
    w, h = Image.open(shared_images / "sddino_cat1.jpg").size
    for m in record["matches"]:
        assert 0 <= m["live_xy"][0] < w and 0 <= m["live_xy"][1] < h and -1.0 <= m["score"] <= 1.0
    assert record["settings"]["backbone"]["name"] == backbone
    assert record["settings"]["extraction"]["convention"] == "patch-center"
    overlay = Image.open(out / "overlay.png")
    assert overlay.width > overlay.height > 100


def test_live_mask_keeps_matches_on_the_object(shared_images):
    mask = np.asarray(Image.open(shared_images / "sddino_dog_Anno_59.png")) > 0
    result = match(shared_images / "sddino_dog_00.jpg", EXAMPLES / "keypoints" / "sddino_dog_00.json",
                   shared_images / "sddino_dog_59.jpg", live_mask=mask, backbone="daisy")
    for m in result.matches:
        x, y = (int(round(v)) for v in m.live_xy)
        window = mask[max(0, y - 14):y + 15, max(0, x - 14):x + 15]
        assert window.any(), f"{m.name} landed at {m.live_xy}, away from the dog"


def test_console_script_and_bad_input_exit_codes(shared_images, tmp_path):
    bad_kp = tmp_path / "bad.json"
    bad_kp.write_text('{"keypoints": [{"name": "nose", "xy": [1e9, 3]}]}')
    soco = [sys.executable, "-m", "correspondence.cli"]
    env = dict(os.environ, SOCO_OFFLINE="1")
    run = subprocess.run(soco + ["match", "--demo", str(shared_images / "sddino_cat0.jpg"), "--demo-keypoints",
                                 str(bad_kp), "--live", str(shared_images / "sddino_cat1.jpg"), "--backbone", "daisy",
                                 "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    assert run.returncode == 1 and "outside the image" in run.stderr and "Traceback" not in run.stderr
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    run = subprocess.run(soco + ["match", "--demo", str(corrupt), "--demo-keypoints", str(bad_kp), "--live",
                                 str(corrupt), "--backbone", "daisy"], capture_output=True, text=True, env=env)
    assert run.returncode == 1 and "cannot read image" in run.stderr


def test_keypoint_file_errors_name_the_field(tmp_path):
    from correspondence.errors import InputError
    from correspondence.io import load_keypoints
    cases = {"not json": "is not valid JSON", '{"keypoints": []}': "non-empty list",
             '{"keypoints": [{"name": "a"}]}': "keypoints[0].xy",
             '{"keypoints": [{"name": "a", "xy": [1, 2]}, {"name": "a", "xy": [3, 4]}]}': "duplicated",
             '{"keypoints": [{"name": "a", "xy": [1, 2], "identity": {"left_right": "up"}}]}': "not one of"}
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"k{i}.json"
        path.write_text(text)
        with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_keypoints(path)


def test_same_object_transfer_is_refined_and_verified(shared_images, tmp_path, capsys):
    """cat0 against a warped, re-lit copy of itself (exact truth): with --geometry homography every keypoint is
    re-predicted by the verified model to within 2 px; the record keeps coarse and refined positions."""
    from correspondence.benchmarks.homography import SourceImage, WarpSettings, make_pair, project
    rgb = np.asarray(Image.open(shared_images / "sddino_cat0.jpg").convert("RGB"))
    pair = make_pair(np.random.default_rng(0), SourceImage("cat0", rgb), 0, 20, WarpSettings())
    live_path = tmp_path / "live.png"
    Image.fromarray(pair.live).save(live_path)
    keypoints = json.loads((EXAMPLES / "keypoints" / "sddino_cat0.json").read_text())["keypoints"]
    out = tmp_path / "out"
    assert main(["match", "--demo", str(shared_images / "sddino_cat0.jpg"), "--demo-keypoints",
                 str(EXAMPLES / "keypoints" / "sddino_cat0.json"), "--live", str(live_path), "--backbone", "daisy",
                 "--geometry", "homography", "--out", str(out)]) == 0
    record = json.loads((out / "matches.json").read_text())
    geometry = record["geometry"]
    assert geometry["success"] and geometry["model"] == "homography" and geometry["support"] > 0.5
    printed = capsys.readouterr().out
    assert f"support {geometry['support']:.0%} of the textured dense cells" in printed and "inlier ratio" not in printed
    truth = project(pair.homography, np.array([kp["xy"] for kp in keypoints], dtype=np.float64))
    h, w = pair.live.shape[:2]
    for m, t in zip(record["matches"], truth):
        if 0 <= t[0] < w and 0 <= t[1] < h:
            assert m["position"] == "model" and np.hypot(*np.subtract(m["live_xy"], t)) < 2.0, m
        assert m["coarse_xy"] is not None and m["refined_xy"] is not None
    assert record["settings"]["matching"]["refine"] is True


def test_soco_protocol_soft_argmax_stays_in_the_live_image(shared_images, tmp_path):
    """The reference's soft-argmax over a bottom-padded frame (cat1 is 500 x 375) never lands in the padding."""
    out = tmp_path / "soco"
    assert main(["match", "--demo", str(shared_images / "sddino_cat0.jpg"), "--demo-keypoints",
                 str(EXAMPLES / "keypoints" / "sddino_cat0.json"), "--live", str(shared_images / "sddino_cat1.jpg"),
                 "--backbone", "daisy", "--method", "soft-argmax", "--protocol", "soco", "--out", str(out)]) == 0
    record = json.loads((out / "matches.json").read_text())
    assert record["settings"]["matching"]["window"] == 7 and record["settings"]["matching"]["refine"] is False
    for m in record["matches"]:
        assert 0 <= m["live_xy"][0] < 500 and 0 <= m["live_xy"][1] < 375 and m["position"] == "soft-argmax"


def test_a_model_is_refused_between_different_animals(shared_images):
    """Two different cats are no rigid scene: every model is refused with its reason and nothing is re-predicted."""
    from dataclasses import replace

    from correspondence.api import Matcher
    matcher = Matcher.create("daisy")
    for model in ("homography", "auto"):
        matcher.settings = replace(matcher.settings, geometry=model)
        result = matcher(shared_images / "sddino_cat0.jpg", EXAMPLES / "keypoints" / "sddino_cat0.json",
                         shared_images / "sddino_cat1.jpg")
        assert result.geometry is not None and not result.geometry.success and result.geometry.reason
        assert all(m.position != "model" and m.geometry_inlier is None for m in result.matches)
        assert not any(m.accepted for m in result.matches)  # refused in same-object mode: nothing is accepted
        assert result.as_dict()["geometry"]["matrix"] is None


def test_a_refused_model_is_printed_with_its_cause(shared_images, tmp_path, capsys):
    """Different animals with --geometry auto: the console says refused, that no keypoint is accepted, and why;
    every keypoint line says REJECTED and matches.json agrees."""
    out = tmp_path / "refused"
    assert main(["match", "--demo", str(shared_images / "sddino_cat0.jpg"), "--demo-keypoints",
                 str(EXAMPLES / "keypoints" / "sddino_cat0.json"), "--live", str(shared_images / "sddino_dog_00.jpg"),
                 "--backbone", "daisy", "--geometry", "auto", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "matches.json").read_text())
    assert "geometry (auto): refused, no keypoint accepted (0 of" in printed and record["geometry"]["reason"] in printed
    assert not any(m["accepted"] for m in record["matches"]) and printed.count("REJECTED") == len(record["matches"])
