"""The coarse match's rotation / scale search (correspondence/transform_search.py) on a real photo under exact
similarity warps: dense-only same-object geometry (no local features, so the dense matches alone must be right)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from correspondence.api import Matcher
from correspondence.io import KeypointSet, NamedPoint
from correspondence.keypoint_matching import MatchSettings
from correspondence.refine import global_affine
from correspondence.transform_search import Hypothesis, _order, search_enabled, turn_and_shrink


def similarity_pair(photo: np.ndarray, degrees: float, scale: float, points: int = 120):
    """The photo turned and scaled about its centre (the same canvas), demo grid points that stay well inside
    the live view and their exact live positions."""
    h, w = photo.shape[:2]
    a = math.radians(degrees)
    linear = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = np.array([w / 2.0, h / 2.0])
    shift = centre - linear @ centre  # continuous pixels
    source = cv2.GaussianBlur(photo, (0, 0), 0.5 * math.sqrt(1 / scale ** 2 - 1)) if scale < 0.9 else photo
    cv_matrix = np.hstack([linear, (linear @ [0.5, 0.5] + shift - 0.5)[:, None]])
    live = cv2.warpAffine(source, cv_matrix, (w, h), flags=cv2.INTER_LINEAR)
    n = max(2, round(math.sqrt(points)))
    grid = np.stack(np.meshgrid((np.arange(n) + 0.5) * w / n, (np.arange(n) + 0.5) * h / n), -1).reshape(-1, 2)
    truth = grid @ linear.T + shift
    keep = ((truth >= 10) & (truth < np.array([w, h]) - 10)).all(1)
    keypoints = KeypointSet(tuple(NamedPoint(f"p{i}", tuple(map(float, p))) for i, p in enumerate(grid[keep])))
    return live, keypoints, truth[keep]


def pck(result, truth: np.ndarray, px: float = 5.0) -> float:
    ok = [m.accepted and np.linalg.norm(np.subtract(m.live_xy, t)) <= px for m, t in zip(result.matches, truth)]
    return float(np.mean(ok))


@pytest.fixture
def photo(shared_images) -> np.ndarray:
    return np.asarray(Image.open(shared_images / "sddino_cat1.jpg").convert("RGB"))


def dense_only(search: str) -> Matcher:
    return Matcher.create("daisy", matching={"geometry": "homography", "local_features": "none", "search": search})


def test_warps_map_points_and_pixels_alike():
    image = np.zeros((60, 80), np.uint8)
    image[20, 50] = 255  # the pixel [50, 51) x [20, 21): centre (50.5, 20.5)
    for degrees, scale in ((90.0, 1.0), (45.0, 0.5), (180.0, 0.25), (270.0, 1.0)):
        warp = turn_and_shrink((80, 60), degrees, scale)
        moved = warp.image(image.astype(np.float32) * 1.0)
        peak = np.unravel_index(int(np.argmax(moved)), moved.shape)
        np.testing.assert_allclose(np.array(peak[::-1]) + 0.5, warp.apply([[50.5, 20.5]])[0], atol=1.0)
        np.testing.assert_allclose(warp.invert(warp.apply([[50.5, 20.5]]))[0], [50.5, 20.5], atol=1e-9)


def test_search_is_off_for_semantic_transfer_and_the_soco_protocol():
    assert not search_enabled(MatchSettings())  # default protocol without a model: semantic transfer untouched
    assert search_enabled(MatchSettings(geometry="auto"))  # same-object mode: on
    soco = MatchSettings.protocol("soco")
    assert soco.search == "none" and not search_enabled(soco) and not soco.needs_dense
    assert not search_enabled(MatchSettings.protocol("soco", geometry="auto"))


def test_local_feature_estimate_goes_first_then_its_neighbours():
    grid = [Hypothesis(d, s) for s in (1.0, 0.5, 2.0, 0.25, 4.0) for d in range(0, 360, 45) if (d, s) != (0, 1.0)]
    order = _order(grid, (200.4, 3.1))
    assert order[0] == Hypothesis(195.0, 2.0 ** 1.75) and len(order) == 4
    assert {(h.degrees, h.scale) for h in order[1:]} <= {(180.0, 4.0), (225.0, 4.0), (180.0, 2.0), (225.0, 2.0)}


def test_upright_pair_stops_at_the_identity_with_todays_answer(photo):
    live, keypoints, truth = similarity_pair(photo, 8.0, 1.1)
    searched = dense_only("auto")(photo, keypoints, live)
    plain = dense_only("none")(photo, keypoints, live)
    assert searched.search is not None and searched.search.tried == 1
    assert (searched.search.degrees, searched.search.scale) == (0.0, 1.0)
    np.testing.assert_array_equal(searched.live_xy, plain.live_xy)
    assert plain.search is None and pck(searched, truth) >= 0.95
    assert searched.as_dict()["settings"]["matching"]["search"] == "auto"


SLOW = pytest.mark.slow  # > 20 s on a loaded 2-core CPU: several warped demos / shrunk live frames are encoded


@pytest.mark.parametrize("degrees, scale", [(90.0, 1.0), (180.0, 1.0), pytest.param(135.0, 1.0, marks=SLOW),
                                            pytest.param(0.0, 0.35, marks=SLOW), pytest.param(0.0, 2.5, marks=SLOW)])
def test_turned_or_rescaled_view_is_found(photo, degrees, scale):
    live, keypoints, truth = similarity_pair(photo, degrees, scale)
    result = dense_only("auto")(photo, keypoints, live)
    assert pck(result, truth) >= 0.95, result.search
    # The refinement's affine warp follows the found rotation and scale: the dense matches, mapped back to the
    # original pixels, fit the true linear map.
    if degrees == 135.0:
        assert pck(dense_only("none")(photo, keypoints, live), truth) < 0.5  # today's upright match fails
        matches = Matcher.create("daisy", matching={"geometry": "homography", "local_features": "none"})
        from correspondence.keypoint_matching import match_keypoint_set
        demo_f, live_f = matches.extractor.extract_batch([photo, live], cache=False)
        found, _ = match_keypoint_set(demo_f, keypoints, live_f, settings=matches.settings, demo_image=photo,
                                      live_image=live, extractor=matches.extractor)
        dense = found.dense
        linear = global_affine(dense.demo_xy[dense.mutual], dense.live_xy[dense.mutual], threshold=20.0)
        a = math.radians(degrees)
        np.testing.assert_allclose(linear, [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], atol=0.1)


def test_an_opencv_assertion_in_the_robust_fit_is_a_refusal(monkeypatch):
    """USAC asserts (``!model.empty()``) on some degenerate sets the search's mapped matches produced; that is no
    model, not a crash of the frame."""
    import cv2 as cv
    from correspondence import geometry2d

    def broken(*args, **kwargs):
        raise cv.error("OpenCV(5.1.0) estimator.cpp:418: error: (-215:Assertion failed) !model.empty()")
    monkeypatch.setattr(geometry2d.cv2, "findFundamentalMat", broken)
    rng = np.random.default_rng(0)
    demo = rng.uniform(0, 200, (60, 2))
    result = geometry2d.fit_geometry(demo, demo + 3.0, geometry2d.GeometrySettings(model="fundamental"), 3.0)
    assert not result.success and "OpenCV" in result.reason and "model.empty" in result.reason


def test_soco_match_records_and_prints_the_found_turn(photo, tmp_path, capsys):
    import json
    from correspondence.cli import main
    live = np.ascontiguousarray(photo[::-1, ::-1])  # turned 180 deg exactly
    Image.fromarray(photo).save(tmp_path / "demo.png")
    Image.fromarray(live).save(tmp_path / "live.png")
    h, w = photo.shape[:2]
    points = [(60.5, 80.5), (250.5, 190.5), (400.5, 300.5), (120.5, 330.5)]
    (tmp_path / "kp.json").write_text(json.dumps({"keypoints": [{"name": f"p{i}", "xy": p} for i, p in enumerate(points)]}))
    code = main(["match", "--demo", str(tmp_path / "demo.png"), "--demo-keypoints", str(tmp_path / "kp.json"),
                 "--live", str(tmp_path / "live.png"), "--backbone", "daisy", "--geometry", "homography",
                 "--local-features", "none", "--search", "rotation", "--out", str(tmp_path / "out")])
    assert code == 0
    record = json.loads((tmp_path / "out" / "matches.json").read_text())
    assert record["settings"]["matching"]["search"] == "rotation"
    assert record["search"]["degrees"] == 180.0 and record["search"]["scale"] == 1.0
    truth = np.array([[w - x, h - y] for x, y in points])
    found = np.array([m["live_xy"] for m in record["matches"]])
    assert np.all(np.linalg.norm(found - truth, axis=1) < 5.0) and all(m["accepted"] for m in record["matches"])
    assert "search: live = demo turned 180 deg" in capsys.readouterr().out


def test_the_search_and_the_verification_detect_the_live_local_features_once(photo, monkeypatch):
    """The search's rotation / scale estimate matches the live SIFT features; the model's verification reuses
    those matches instead of detecting them on the same frame again."""
    import correspondence.keypoint_matching as km
    import correspondence.local_features as lf
    live, keypoints, truth = similarity_pair(photo, 180.0, 1.0)
    calls = []

    def spy(detect):
        def counted(image, settings, mask=None):
            calls.append(np.array_equal(np.asarray(image), live))
            return detect(image, settings, mask)
        return counted

    monkeypatch.setattr(km, "detect", spy(km.detect))  # the demo's
    monkeypatch.setattr(lf, "detect", spy(lf.detect))  # the live frame's (local_features.match_images)
    verify = km.verify_dense
    asked = []

    def verify_asking_for_local_features(dense, support, geometry, live_cell, live_wh, refiner, local):
        asked.append(local is not None and len(local()[0]) > 0)  # as a frame the dense matches cannot settle does
        return verify(dense, support, geometry, live_cell, live_wh, refiner, local)

    monkeypatch.setattr(km, "verify_dense", verify_asking_for_local_features)
    result = Matcher.create("daisy", matching={"geometry": "auto"})(photo, keypoints, live)
    assert result.search.estimate is not None  # the search matched the live features ...
    assert asked == [True] and calls.count(True) == 1  # ... once for the whole frame
    assert pck(result, truth) >= 0.95


def test_a_handful_of_agreeing_cells_is_no_support():
    """A tiny live view at a wrong hypothesis: 4 of 15 mutual cells agree with some similarity by chance. They
    scored support 0.27 (above the 0.2 bar; a 160-px cup enlarged 3.3x took the 0.25x hypothesis); fewer than
    MIN_INLIERS agreeing cells now score nothing."""
    from correspondence.refine import DenseCoarse
    from correspondence.transform_search import MIN_INLIERS, score
    rng = np.random.default_rng(0)
    demo = rng.uniform(0, 160, (15, 2))
    live = rng.uniform(0, 160, (15, 2))
    live[:4] = demo[:4] * 0.5 + 40.0  # four cells under one similarity (0 deg, 0.5x)
    dense = DenseCoarse(demo, live, np.ones(15), np.ones(15, dtype=bool))
    support, inliers = score(dense, Hypothesis(0.0, 0.5), (160, 160), None, 2.0)
    assert inliers < MIN_INLIERS and support == 0.0
    live[:MIN_INLIERS] = demo[:MIN_INLIERS] * 0.5 + 40.0  # enough cells agree: support again
    support, inliers = score(DenseCoarse(demo, live, np.ones(15), np.ones(15, dtype=bool)), Hypothesis(0.0, 0.5),
                             (160, 160), None, 2.0)
    assert inliers >= MIN_INLIERS and support > 0.2
