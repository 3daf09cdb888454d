"""soco demo capture (files, a video file via OpenCV) and the editor's session and HTTP API without a browser:
segmentation, save validated by the demo loader, bad input, a folder it cannot write, two pages saving one demo."""
from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import demo_scene
from correspondence.cli import main
from correspondence.demo_editor.folder import StaleRevisionError, revision
from correspondence.demo_editor.session import EditorSession, png_data_url
from correspondence.demo_spec import load_demo, load_frame
from correspondence.errors import InputError

KEYPOINTS = [{"name": "handle_top", "xy": [200.0, 100.0]}, {"name": "rim_point/left", "xy": [115.0, 75.0]},
             {"name": "free text point", "xy": [150.0, 150.0]}]


@pytest.fixture()
def captured(tmp_path) -> Path:
    files = demo_scene.write_files(tmp_path / "camera")
    assert main(["demo", "capture", str(tmp_path / "demo"), "--rgb", str(files["rgb"]), "--depth-file",
                 str(files["depth"]), "--intrinsics", str(files["intrinsics"])]) == 0
    return tmp_path / "demo"


def test_capture_from_files_writes_a_frame_the_loader_reads(captured, capsys):
    rgb, depth, _ = demo_scene.draw()
    frame = load_frame(captured)
    assert frame.mode == "frame" and frame.has_3d
    np.testing.assert_array_equal(frame.rgb, rgb)
    np.testing.assert_allclose(frame.depth, depth, atol=1e-6)
    assert frame.intrinsics.fx == 300.0 and (frame.intrinsics.width, frame.intrinsics.height) == (320, 240)
    assert sorted(p.name for p in captured.iterdir()) == ["depth.png", "intrinsics.json", "rgb.png"]
    assert main(["demo", "capture", str(captured), "--rgb", str(captured / "rgb.png")]) == 1  # exists
    assert "already exists" in capsys.readouterr().err


def test_capture_from_a_video_file(tmp_path):
    """A synthetic video written with OpenCV's VideoWriter; the frame after --skip is the one kept."""
    path = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (demo_scene.WIDTH, demo_scene.HEIGHT))
    frames = [demo_scene.draw((5 * i, 0), seed=i)[0] for i in range(6)]
    for frame in frames:
        writer.write(frame[..., ::-1])
    writer.release()
    assert main(["demo", "capture", str(tmp_path / "demo"), "--video", str(path), "--skip", "3"]) == 0
    rgb = load_frame(tmp_path / "demo").rgb
    errors = [np.abs(rgb.astype(int) - f.astype(int)).mean() for f in frames]
    assert int(np.argmin(errors)) == 3 and errors[3] < 6  # MJPG is lossy; the 4th frame, not another


def test_capture_refuses_bad_sources(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["demo", "capture", str(tmp_path / "a"), "--rgb", str(bad)]) == 1
    assert "cannot read image" in capsys.readouterr().err
    assert main(["demo", "capture", str(tmp_path / "b"), "--video", str(tmp_path / "none.avi")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["demo", "capture", str(tmp_path / "c")]) == 1
    assert "exactly one source" in capsys.readouterr().err
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary folder left behind


def _save_data(session: EditorSession, **extra) -> dict:
    mask = session.segment({"points": [[150, 120, 1]]})["mask"]
    return {"mode": "keypoints", "revision": session.state()["revision"], "category": "mug", "mask": mask,
            "keypoints": KEYPOINTS, **extra}


def test_segment_refine_save_and_reload(captured):
    session = EditorSession(captured)
    truth = demo_scene.draw()[2]
    first = session.segmenter.segment(_clicks([(150, 120, 1)]))
    assert first.source == "depth" and (first.mask & truth).sum() / (first.mask | truth).sum() > 0.95
    refined = session.segmenter.segment(_clicks([(150, 120, 1), (220, 125, 0)]))  # background click on the handle
    assert refined.source == "depth+grabcut" and not refined.mask[125, 220] and refined.mask.sum() < first.mask.sum()
    result = session.save(_save_data(session))
    demo = load_demo(captured)
    assert "3 keypoints" in result["message"] and result["revision"] == revision(captured)
    assert [p.name for p in demo.keypoints.points] == [k["name"] for k in KEYPOINTS]
    assert dict(demo.keypoints.points[1].identity) == {"left_right": "left"} and demo.keypoints.category == "mug"
    np.testing.assert_array_equal(demo.mask, first.mask)
    assert session.state()["keypoints"][2]["name"] == "free text point"
    from soco_ros.processor import FrameProcessor
    assert FrameProcessor.load_spec(str(captured)).keypoints.names == [k["name"] for k in KEYPOINTS]  # as the node


def _clicks(points):
    from correspondence.demo_editor.segment import Clicks
    return Clicks(tuple((float(x), float(y), label) for x, y, label in points))


def test_functional_demo_save(captured):
    session = EditorSession(captured)
    part = np.zeros((demo_scene.HEIGHT, demo_scene.WIDTH), np.uint8)
    part[70:90, 110:190] = 255  # the painted rim
    session.save({"mode": "functional", "revision": revision(captured), "function": "pour-with",
                  "function_mask": png_data_url(part)})
    demo = load_demo(captured)
    assert demo.mode == "functional" and demo.function == "pour-with"
    np.testing.assert_array_equal(demo.function_mask, part > 0)
    with pytest.raises(InputError, match="paint or segment the part"):
        session.save({"mode": "functional", "revision": revision(captured), "function": "pour-with"})


def test_invalid_annotation_leaves_the_folder_untouched(captured):
    session = EditorSession(captured)
    before = revision(captured)
    with pytest.raises(InputError, match="outside the 320x240 image"):  # the demo loader's own check
        session.save(_save_data(session, keypoints=[{"name": "a", "xy": [400.0, 10.0]}]))
    with pytest.raises(InputError, match="duplicated"):
        session.save(_save_data(session, keypoints=[{"name": "a", "xy": [1, 1]}, {"name": "a", "xy": [2, 2]}]))
    with pytest.raises(InputError, match="has no name"):
        session.save(_save_data(session, keypoints=[{"name": " ", "xy": [1, 1]}]))
    assert revision(captured) == before
    assert not [p for p in captured.parent.iterdir() if p.name.startswith(".")]


def test_two_pages_saving_one_demo(captured):
    page_a, page_b = EditorSession(captured), EditorSession(captured)
    data_a, data_b = _save_data(page_a), _save_data(page_b, category="cup")  # both loaded the same revision
    page_a.save(data_a)
    with pytest.raises(StaleRevisionError, match="saved by another page"):
        page_b.save(data_b)
    assert load_demo(captured).keypoints.category == "mug"  # page A's demo, whole
    page_b.save({**data_b, "force": True})  # the page asks, then overwrites on purpose
    assert load_demo(captured).keypoints.category == "cup"


def test_concurrent_saves_never_mix(captured):
    """Many threads saving different demos at once: every save either wins whole or is refused as stale."""
    session = EditorSession(captured)
    base = _save_data(session)
    outcomes: list[str] = []

    def save(i: int) -> None:
        try:
            session.save({**base, "category": f"cat{i}"})
            outcomes.append(f"cat{i}")
        except StaleRevisionError:
            outcomes.append("stale")

    threads = [threading.Thread(target=save, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "stale"]
    assert len(winners) == 1 and load_demo(captured).keypoints.category == winners[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: a read-only folder cannot be made")
def test_unwritable_folder(captured):
    session = EditorSession(captured)
    data = _save_data(session)
    captured.parent.chmod(0o555)
    try:
        with pytest.raises(InputError, match="no write permission"):
            session.save(data)
    finally:
        captured.parent.chmod(0o755)


def test_a_folder_on_a_filesystem_that_refuses_files(captured):
    from correspondence.demo_editor.folder import write_folder
    with pytest.raises(InputError, match="cannot write the demo in '/proc'"):
        write_folder("/proc/soco_demo_editor_test", {"a.txt": b"x"})


def test_missing_parent_folder_is_a_clear_error(captured, tmp_path):
    from correspondence.demo_editor.folder import write_folder
    with pytest.raises(InputError, match="does not exist"):
        write_folder(tmp_path / "no" / "such" / "demo", {"a.txt": b"x"})


def test_http_api_reports_errors_in_json(captured):
    from correspondence.demo_editor.server import make_server

    session = EditorSession(captured)
    server = make_server(session, 0, log=lambda text: None)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def post(path: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        with urllib.request.urlopen(base + "/", timeout=10) as response:
            page = response.read().decode()
        assert "/static/konva.min.js" in page and "https://" not in page  # vendored, nothing from a CDN
        with urllib.request.urlopen(base + "/static/konva.min.js", timeout=10) as response:
            assert b"Konva" in response.read(200)
        forged = urllib.request.Request(base + "/api/save", b"{}", {"Content-Type": "text/plain"})  # no preflight
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=10)
        assert refused.value.code == 415
        rebound = urllib.request.Request(base + "/api/state", headers={"Host": "evil.example:80"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=10)
        assert refused.value.code == 403
        status, body = post("/api/segment", {"points": [[500, 10, 1]]})
        assert status == 422 and "outside the image" in body["error"]
        status, body = post("/api/segment", {"points": [[10, 10, 0]]})
        assert status == 422 and "click on the object" in body["error"]
        status, body = post("/api/try", {"mode": "keypoints", "keypoints": KEYPOINTS, "image": "data:image/png;base64,AAAA"})
        assert status == 422 and "not available" in body["error"]  # this session has no preview
        data = _save_data(session)
        assert post("/api/save", data)[0] == 200
        status, body = post("/api/save", data)  # the same page's old revision: another save happened
        assert status == 409 and body["stale"] and "another page" in body["error"]
    finally:
        server.shutdown()
        server.server_close()


def test_try_refuses_an_unreadable_live_image(captured):
    session = EditorSession(captured, preview=lambda *args: pytest.fail("must not run"))
    with pytest.raises(InputError, match="cannot read the image"):
        session.try_transfer({**_save_data(session), "image": "data:image/png;base64,bm90IGFuIGltYWdl"})
    with pytest.raises(InputError, match="no camera topics"):
        session.try_transfer({**_save_data(session), "grab": True})


def test_a_functional_part_is_segmented_by_colour_not_by_the_depth_surface(captured):
    session = EditorSession(captured)
    whole = session.segment({"points": [[150, 120, 1]], "box": [112, 72, 188, 100]})  # a box prompt on the rim
    part = session.segment({"points": [[150, 85, 1]], "box": [112, 72, 188, 100], "target": "part"})
    assert part["source"] == "grabcut" and part["area"] <= 76 * 28 < whole["area"]


def test_sam_gets_every_click_and_the_box_at_once(captured, monkeypatch):
    """With a SAM mask source the clicks go to the predictor in one call, as SamPredictor.predict takes them; the
    mask equals the predictor's own answer for the same prompt (a tiny random-init SAM, the package's modules)."""
    import torch
    from test_segmentation import build_tiny_sam

    from correspondence.demo_editor.segment import Clicks, InteractiveSegmenter
    from correspondence.segmentation import SamMaskSource

    torch.manual_seed(0)
    source = SamMaskSource.from_model(build_tiny_sam())
    frame = load_frame(captured)
    segmenter = InteractiveSegmenter(frame.rgb, frame.depth, source, "sam (test)")
    clicks = Clicks(((150.0, 120.0, 1), (40.0, 40.0, 0)), (100.0, 60.0, 240.0, 190.0))
    calls = []
    original = source.predictor.predict
    monkeypatch.setattr(source.predictor, "predict", lambda **kw: calls.append(kw) or original(**kw))
    result = segmenter.segment(clicks)
    assert len(calls) == 1 and calls[0]["point_labels"].tolist() == [1, 0] and not calls[0]["multimask_output"]
    np.testing.assert_array_equal(calls[0]["box"], [100, 60, 240, 190])
    masks, ious, _ = original(point_coords=np.array([[150.0, 120.0], [40.0, 40.0]]), point_labels=np.array([1, 0]),
                              box=np.array([100.0, 60.0, 240.0, 190.0]), multimask_output=False)
    np.testing.assert_array_equal(result.mask, masks[0])
    assert result.source == "sam" and result.score == pytest.approx(float(ious[0]))
    single = segmenter.segment(Clicks(((150.0, 120.0, 1),)))  # one click: best of SAM's three masks
    assert calls[-1]["multimask_output"] and single.source == "sam"
    assert source.embeddings_computed == 1  # one image, many prompts: one encoder pass


def test_sam2_missing_weights_fall_back_with_the_reason(captured, monkeypatch, tmp_path):
    from correspondence.demo_editor.sam2_source import editor_mask_source

    monkeypatch.setenv("SOCO_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "none"))
    source, reason = editor_mask_source(load_frame(captured).depth)
    assert source.name == "depth" and "SAM 2 unavailable" in reason


@pytest.mark.slow
def test_sam2_checkpoint_in_the_official_layout_segments_with_every_click(captured, tmp_path):
    """A random-init SAM 2.1 tiny saved as the official checkpoint is ({"model": state_dict}), found in
    $SOCO_WEIGHTS_DIR by its official name; the editor's mask is the SAM 2 predictor's own answer."""
    import torch
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from correspondence.demo_editor.sam2_source import editor_mask_source
    from correspondence.sam2_source import SAM2_CONFIGS, SAM2_SOURCES
    from correspondence.demo_editor.segment import Clicks, InteractiveSegmenter
    from correspondence.errors import CorruptCheckpointError

    torch.manual_seed(0)
    reference = build_sam2(SAM2_CONFIGS["tiny"], None, device="cpu")
    path = tmp_path / SAM2_SOURCES["tiny"].filename
    torch.save({"model": reference.state_dict()}, path)
    source, reason = editor_mask_source(None, "tiny", str(path))
    assert source.name == "sam2" and source.weights == str(path) and reason.startswith("sam2:")
    frame = load_frame(captured)
    segmenter = InteractiveSegmenter(frame.rgb, frame.depth, source, "sam2 (test)")
    clicks = Clicks(((150.0, 120.0, 1), (40.0, 40.0, 0)), (100.0, 60.0, 240.0, 190.0))
    result = segmenter.segment(clicks)
    predictor = SAM2ImagePredictor(reference)
    predictor.set_image(frame.rgb)
    masks, ious, _ = predictor.predict(point_coords=np.array([[150.0, 120.0], [40.0, 40.0]]),
                                       point_labels=np.array([1, 0]), box=np.array([100.0, 60.0, 240.0, 190.0]),
                                       multimask_output=False)
    np.testing.assert_array_equal(result.mask, masks[0] > 0.5)
    assert result.source == "sam2" and result.score == pytest.approx(float(ious[0]), abs=1e-5)
    state = reference.state_dict()
    state.pop(next(iter(state)))
    torch.save({"model": state}, path)
    with pytest.raises(CorruptCheckpointError, match="does not fit SAM 2.1 tiny"):
        editor_mask_source(None, "tiny", str(path))


@pytest.mark.slow
def test_soco_demo_edit_serves_on_localhost_only(captured, tmp_path):
    """The command as a user runs it: --port 0 --no-browser prints the address; the page and the state answer."""
    import re
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "correspondence.cli", "demo", "edit", str(captured), "--port", "0",
                             "--no-browser", "--backbone", "daisy"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "SOCO_OFFLINE": "1"})
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            if match:
                break
        assert match, "".join(lines)
        assert "segmentation: depth" in line  # says which mask source and why
        with urllib.request.urlopen(match.group(1) + "api/state", timeout=120) as response:
            state = json.loads(response.read())
        assert state["folder"] == str(captured.absolute()) and state["mode"] == "frame" and state["can_try"]
        assert any(c["name"] == "car" and "wheel_center/front-left" in [k["name"] for k in c["keypoints"]]
                   for c in state["categories"])
        car = next(c for c in state["categories"] if c["name"] == "car")
        assert next(k for k in car["keypoints"] if k["name"] == "headlight/left")["mirror"] == "headlight/right"
        assert "pour-with" in state["functions"]
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_missing_browser_skips_with_the_reason_locally_and_fails_on_ci(monkeypatch):
    import test_demo_browser as browser_tests

    monkeypatch.setattr(browser_tests, "CHROMIUM", None)
    monkeypatch.delenv("SOCO_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium not found"):
        browser_tests._browser_or_skip()
    monkeypatch.setenv("SOCO_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="SOCO_REQUIRE_BROWSER=1 but chromium not found"):
        browser_tests._browser_or_skip()
