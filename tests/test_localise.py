"""Finding the demo object by correspondence before segmenting it (correspondence/localise.py), on images whose
truth is known by construction: the demo's patch pasted off-centre in the live frame beside a distractor patch."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.api import Matcher
from correspondence.camera import CameraIntrinsics
from correspondence.demo_spec import DemoSpec
from correspondence.io import KeypointSet, NamedPoint
from correspondence.localise import LocaliseSettings, ObjectNotFound, localise
from correspondence.localised_mask import segment_localised
from correspondence.pipeline import PipelineSettings, TransferPipeline
from correspondence.segmentation import DepthForeground, GrabCutBox, Prompt

SIZE = 224
PATCH = 80
TARGET_AT = (130, 24)  # (x, y) of the target's top-left corner in the live frame: far from the centre
DISTRACTOR_AT = (72, 110)


def patch(seed: int) -> np.ndarray:
    """A blocky, colourful texture (16 px blocks): distinctive for DAISY + colour descriptors."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (PATCH // 16, PATCH // 16, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))


def stripes(seed: int) -> np.ndarray:
    """Diagonal stripes of two colours: another kind of object (no block corners, other colours)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 256, (2, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:PATCH, :PATCH]
    return np.where((((xx + yy) // 10) % 2 == 0)[..., None], a, b).astype(np.uint8)


def paste(canvas, depth, mask, texture, at, z):
    x, y = at
    canvas[y:y + PATCH, x:x + PATCH] = texture
    depth[y:y + PATCH, x:x + PATCH] = z
    if mask is not None:
        mask[y:y + PATCH, x:x + PATCH] = True


def scene(with_target: bool = True, with_distractor: bool = True):
    """Live RGB, depth (m; the distractor is nearer, so a nearest-surface rule picks it), the target's true mask."""
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    depth = np.full((SIZE, SIZE), 1.5, np.float32)
    truth = np.zeros((SIZE, SIZE), bool)
    if with_target:
        paste(rgb, depth, truth, patch(1), TARGET_AT, 0.8)
    if with_distractor:
        paste(rgb, depth, None, stripes(2), DISTRACTOR_AT, 0.6)
    return rgb, depth, truth


def demo_view():
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    depth = np.full((SIZE, SIZE), 1.5, np.float32)
    mask = np.zeros((SIZE, SIZE), bool)
    paste(rgb, depth, mask, patch(1), (72, 72), 0.8)
    return rgb, depth, mask


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture(scope="module")
def daisy():
    return Matcher.create("daisy", size=SIZE, cache_size=2)


@pytest.fixture(scope="module")
def maps(daisy):
    demo_rgb, _, demo_mask = demo_view()
    live_rgb, _, _ = scene()
    empty_rgb, _, _ = scene(with_target=False)
    demo, live, empty = daisy.extractor.extract_batch([demo_rgb, live_rgb, empty_rgb], cache=False)
    return demo, demo.cell_mask(demo_mask, min_fraction=0.5), live, empty


def test_localisation_finds_the_off_centre_object_not_the_distractor(maps):
    demo, cells, live, _ = maps
    _, _, truth = scene()
    found = localise(demo, cells, live)
    assert found.found and found.best.score >= LocaliseSettings().min_score
    x, y = found.best.point
    assert truth[int(y), int(x)], "the prompt point lies on the target"
    votes = found.best.votes_xy
    tx, ty = TARGET_AT
    cell = 14  # votes sit on cell centres: a border cell's centre may lie just off the patch
    inside = ((votes[:, 0] > tx - cell) & (votes[:, 0] < tx + PATCH + cell) & (votes[:, 1] > ty - cell)
              & (votes[:, 1] < ty + PATCH + cell))
    assert inside.all()
    x0, y0, x1, y1 = found.best.box
    assert x0 <= tx + 16 and y0 <= ty + 16 and x1 >= tx + PATCH - 16 and y1 >= ty + PATCH - 16
    scores = [c.score for c in found.candidates]
    assert scores == sorted(scores, reverse=True)
    record = found.as_dict()
    assert record["chosen"] == 0 and record["candidates"][0]["score"] == pytest.approx(found.best.score, abs=1e-4)


def test_prompted_masks_beat_the_sources_own_rules(maps):
    demo, cells, live, _ = maps
    rgb, depth, truth = scene()
    found = localise(demo, cells, live)
    depth_source = DepthForeground((0.1, 1.0))
    own = depth_source.segment(rgb, Prompt.auto(), depth)  # nearest surface: the distractor
    assert iou(own.mask, truth) == 0.0
    located = segment_localised(depth_source, rgb, depth, found)
    assert iou(located.mask, truth) == 1.0 and located.details["localised"] == "depth component under votes"
    grabcut = segment_localised(GrabCutBox(), rgb, depth, found)
    assert iou(grabcut.mask, truth) > 0.8 > iou(GrabCutBox().segment(rgb).mask, truth)


def test_a_frame_without_the_object_gives_object_not_found_with_the_best_score(maps):
    demo, cells, _, empty = maps
    rgb, depth, _ = scene(with_target=False)
    found = localise(demo, cells, empty)
    assert not found.found and found.matched
    assert found.best_score < LocaliseSettings().min_score
    with pytest.raises(ObjectNotFound, match="object not found") as info:
        segment_localised(DepthForeground((0.1, 1.0)), rgb, depth, found)
    assert info.value.localisation is found


def test_no_match_at_all_falls_back_to_the_sources_own_rule():
    from correspondence.localise import Localisation
    rgb, depth, _ = scene()
    nothing = Localisation((), False, 0.05, 10, 0)
    result = segment_localised(DepthForeground((0.1, 1.0)), rgb, depth, nothing)
    assert result.details["localised"].startswith("fallback: image-centre rule")


def test_settings_are_checked():
    from correspondence.errors import ConfigError
    with pytest.raises(ConfigError):
        LocaliseSettings(min_score=2.0)
    with pytest.raises(ConfigError):
        LocaliseSettings(min_votes=0)


def _pipeline(matcher, **settings):
    rgb, depth, mask = demo_view()
    cam = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)
    keypoints = KeypointSet(tuple(NamedPoint(f"k{i}", (80.0 + 20 * i, 90.0 + 15 * i)) for i in range(4)))
    demo = DemoSpec(None, rgb, depth, cam, mask, keypoints, None, None)
    return TransferPipeline(demo, matcher, PipelineSettings(**settings), DepthForeground((0.1, 1.0))), cam


def test_pipeline_segments_the_localised_object_and_reports_the_choice(daisy):
    pipeline, cam = _pipeline(daisy)
    rgb, depth, truth = scene()
    result = pipeline.process(rgb, depth, cam)
    assert result.localisation is not None and result.localisation.found
    assert iou(result.mask.mask, truth) == 1.0
    assert "localisation" in result.timings_s and "features" in result.timings_s
    assert result.alignment is not None and result.alignment.success  # a pure shift of a flat patch


def test_pipeline_without_the_object_returns_no_pose_and_says_why(daisy):
    pipeline, cam = _pipeline(daisy)
    rgb, depth, _ = scene(with_target=False)
    result = pipeline.process(rgb, depth, cam)
    assert not result.success and result.alignment.transform is None
    assert result.alignment.reason.startswith("object not found") and result.mask is None
    assert result.localisation.best_score < LocaliseSettings().min_score


def test_pipeline_localisation_off_keeps_the_sources_own_rule(daisy):
    pipeline, cam = _pipeline(daisy, localise=LocaliseSettings(enabled=False))
    rgb, depth, truth = scene()
    result = pipeline.process(rgb, depth, cam)
    assert result.localisation is None and iou(result.mask.mask, truth) == 0.0  # the nearer distractor


def test_localisation_runs_on_a_dinov2_feature_map():
    """The rule is backbone-agnostic: DINOv2 ViT-S/14 (random init: shapes and plumbing, not accuracy)."""
    matcher = Matcher.create("dinov2_vits14", random_weights=True, size=112, cache_size=2)
    demo_rgb, _, demo_mask = demo_view()
    live_rgb, _, _ = scene()
    demo, live = matcher.extractor.extract_batch([demo_rgb, live_rgb], cache=False)
    found = localise(demo, demo.cell_mask(demo_mask, min_fraction=0.5), live)
    assert found.matched and found.demo_cells > 0
    assert all(0.0 <= c.score <= 1.0 for c in found.candidates)
