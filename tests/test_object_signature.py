"""Yaw-invariant evidence for finding the demo object (correspondence/object_signature.py, localisation's rule 6).

Truth by construction: (1) rendered objects (correspondence.world) seen with the vertical known, the object turned
on the table by a large yaw: its height, sorted footprint and colours must agree with the demo view's, another
instance or another category's must not; (2) flat RGB-D frames where the appearance thresholds are set above any
score, so only the signature can choose: it must choose the object's surface, not a larger copy, and a frame with
only the copy must stay "object not found" with the signature's figures in the reason."""
from __future__ import annotations

import re

import numpy as np
import pytest

from correspondence.api import Matcher
from correspondence.camera import CameraIntrinsics
from correspondence.errors import ConfigError, InputError
from correspondence.localise import DepthViews, LocaliseSettings, localise
from correspondence.object_signature import ObjectSignature, SignatureCue, SignatureSettings, compare
from correspondence.world.families import make_instance
from correspondence.world.render import Renderer, RenderSettings, sample_pose
from correspondence.world.scene import table_motion

RENDER = RenderSettings(width=160, height=160)


def view(obj, yaw_deg: float, seed: int = 0):
    """A view of ``obj`` turned by ``yaw_deg`` about the vertical, from a fixed camera; and the vertical there."""
    pose = sample_pose(np.random.default_rng(seed), obj, elevation_deg=(35, 35), intrinsics=RENDER.intrinsics)
    pose = pose @ table_motion(yaw_deg, np.zeros(2), np.asarray(obj.center))
    rendered = Renderer(obj).render(pose, RENDER, seed=seed)
    return rendered, pose[:3, 2]  # the table's +z in the camera frame


def signature(obj, yaw_deg: float, seed: int = 0) -> ObjectSignature:
    rendered, up = view(obj, yaw_deg, seed)
    return ObjectSignature.measure(rendered.rgb, rendered.depth, RENDER.intrinsics, rendered.mask, up)


@pytest.mark.parametrize("category", ["car", "stool"])
def test_the_signature_of_an_object_turned_far_agrees_with_its_demo(category):
    obj = make_instance(category, 3, 0)
    demo = signature(obj, 0.0)
    assert demo.height > 0 and demo.footprint[0] >= demo.footprint[1] > 0
    for yaw in (90.0, 150.0, -120.0):
        match = compare(demo, signature(obj, yaw, seed=1))
        assert match.agrees, (yaw, match.as_dict())


def test_another_instance_or_category_does_not_agree():
    demo = signature(make_instance("car", 3, 0), 0.0)
    for other in (make_instance("car", 4, 0), make_instance("bus", 3, 0), make_instance("mug", 3, 0)):
        match = compare(demo, signature(other, 120.0, seed=1))
        assert not match.agrees, (other.category, match.as_dict())


def test_height_uses_the_vertical_not_the_image_axes():
    """A board 0.2 m tall and 0.1 m wide, slanted 0.05 m in depth across its width: its height along the given
    vertical; with the vertical along the image x the height is its width and the footprint its 0.2 x 0.05."""
    cam = CameraIntrinsics.from_fov(200, 200, 45.0)
    depth = np.zeros((200, 200), np.float32)
    rgb = np.full((200, 200, 3), 200, np.uint8)
    z = 1.0
    tall, wide = 0.2 * cam.fy / z, 0.1 * cam.fx / z  # pixels
    y0, x0 = int(100 - tall / 2), int(100 - wide / 2)
    rows, cols = slice(y0, int(y0 + tall)), slice(x0, int(x0 + wide))
    xs = np.arange(200, dtype=np.float32)
    depth[rows, cols] = (z + 0.05 * (xs[cols] - x0) / wide)[None]  # a slanted face: 5 cm of depth across it
    mask = depth > 0
    sig = ObjectSignature.measure(rgb, depth, cam, mask, np.array([0.0, -1.0, 0.0]))
    assert sig.height == pytest.approx(0.2, rel=0.08)
    # seen from above, the slanted board is a thin diagonal: long hypot(0.1, 0.05), short ~0 whatever its turn
    assert sig.footprint[0] == pytest.approx(np.hypot(0.1, 0.05), rel=0.1) and sig.footprint[1] < 0.01
    side = ObjectSignature.measure(rgb, depth, cam, mask, np.array([1.0, 0.0, 0.0]))
    assert side.height == pytest.approx(0.1, rel=0.15)
    assert side.footprint[0] == pytest.approx(0.2, rel=0.08) and side.footprint[1] == pytest.approx(0.05, rel=0.15)


def test_bad_input_is_refused_clearly():
    cam = CameraIntrinsics.from_fov(50, 50, 45.0)
    rgb, depth, mask = np.zeros((50, 50, 3), np.uint8), np.ones((50, 50), np.float32), np.ones((50, 50), bool)
    with pytest.raises(InputError, match="vertical"):
        ObjectSignature.measure(rgb, depth, cam, mask, np.zeros(3))
    with pytest.raises(InputError, match="pixels of the object have depth"):
        ObjectSignature.measure(rgb, np.zeros((50, 50), np.float32), cam, mask, np.array([0, -1.0, 0]))
    with pytest.raises(InputError, match="one size"):
        ObjectSignature.measure(rgb, depth, cam, mask[:10], np.array([0, -1.0, 0]))
    with pytest.raises(ConfigError):
        SignatureSettings(max_height_ratio=0.9)
    with pytest.raises(ConfigError):
        SignatureSettings(min_colour_overlap=1.5)


# ------------------------------------------------------------------------------ localisation's rule 6

SIZE = 224
CAMERA = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)
UP = np.array([0.0, -1.0, 0.0])  # the image's up: a camera looking level at the table
NEVER = LocaliseSettings(min_score=1.0, min_score_rigid=1.0, min_score_unconfirmed=1.0)  # votes alone never pass


def board(rgb, depth, texture, x, y, scale=1.0):
    """Paste ``texture`` (scaled by nearest-neighbour ``scale``) at (x, y) as a board slanted in depth."""
    if scale != 1.0:
        n = int(round(texture.shape[0] * scale))
        index = (np.arange(n) / scale).astype(int)
        texture = texture[index][:, index]
    h, w = texture.shape[:2]
    rgb[y:y + h, x:x + w] = texture
    depth[y:y + h, x:x + w] = (0.8 + 0.1 * scale * np.arange(w) / w)[None]  # its depth extent scales too


def texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 256, (8, 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((7, 7, 1), dtype=np.uint8))  # 56 px


def scene(parts):
    rgb = np.full((SIZE, SIZE, 3), 90, np.uint8)
    depth = np.zeros((SIZE, SIZE), np.float32)
    for x, y, scale in parts:
        board(rgb, depth, texture(), x, y, scale)
    return rgb, depth


@pytest.fixture(scope="module")
def frames():
    matcher = Matcher.create("daisy", size=SIZE, cache_size=2)
    demo = scene([(84, 84, 1.0)])
    with_object = scene([(20, 30, 1.0), (110, 100, 1.6)])  # the object and a copy 1.6x its size
    copy_only = scene([(110, 100, 1.6)])
    fmaps = matcher.extractor.extract_batch([demo[0], with_object[0], copy_only[0]], cache=False)
    demo_mask = demo[1] > 0
    cells = fmaps[0].cell_mask(demo_mask, min_fraction=0.5)
    demo_sig = ObjectSignature.measure(demo[0], demo[1], CAMERA, demo_mask, UP)
    out = {}
    for name, (rgb, depth), fmap in (("object", with_object, fmaps[1]), ("copy", copy_only, fmaps[2])):
        views = DepthViews(demo[1], CAMERA, depth, CAMERA)
        cue = SignatureCue(demo_sig, rgb, depth, CAMERA, UP)
        out[name] = (localise(fmaps[0], cells, fmap, NEVER, views, (demo[0], rgb)),
                     localise(fmaps[0], cells, fmap, NEVER, views, (demo[0], rgb), signature=cue))
    return out


def test_the_signature_chooses_the_objects_surface_when_votes_are_too_weak(frames):
    without, with_cue = frames["object"]
    assert not without.found  # the premise: the votes alone do not pass
    assert with_cue.found and with_cue.best.signature is not None and with_cue.best.signature["agrees"]
    votes = with_cue.best.votes_xy
    assert (votes[:, 0] < 20 + 56).all() and (votes[:, 1] < 30 + 56).all()  # all on the object, none on the copy
    assert "height, footprint and colours match" in with_cue.reason
    record = with_cue.as_dict()
    assert record["candidates"][0]["signature"]["agrees"] is True
    assert record["signature"]["surfaces_checked"] >= 2  # the copy was weighed too, and refused
    copy = [s for s in record["signature"]["surfaces"] if not s["agrees"]]
    assert copy and copy[0]["height_ratio"] == pytest.approx(1.6, rel=0.1)


def test_a_frame_with_only_a_lookalike_of_another_size_stays_not_found(frames):
    without, with_cue = frames["copy"]
    assert not without.found and not with_cue.found
    assert with_cue.reason.startswith("object not found")
    assert "no surface under the votes has the demo object's height, footprint and colours" in with_cue.reason
    assert re.search(r"closest: height x1\.[5-8]\d", with_cue.reason), with_cue.reason  # the copy is 1.6x taller


def test_the_cue_off_or_absent_changes_nothing(frames):
    without, _ = frames["object"]
    assert "signature" not in without.as_dict()
    assert all(c.signature is None for c in without.candidates)


@pytest.mark.parametrize("views", [0, 1], ids=["one view", "multi-view demo"])
def test_pipeline_passes_the_vertical_to_localisation_and_reports_the_choice(views):
    """process(..., up=...) turns rule 6 on; without the vertical the same frame stays "object not found". A
    multi-view demo's views vote with the same cue (here a second view of the same side)."""
    from correspondence.demo_spec import DemoSpec
    from correspondence.demo_views import DemoView
    from correspondence.io import KeypointSet, NamedPoint
    from correspondence.pipeline import PipelineSettings, TransferPipeline
    from correspondence.segmentation import DepthForeground

    matcher = Matcher.create("daisy", size=SIZE, cache_size=2)
    rgb, depth = scene([(84, 84, 1.0)])
    keypoints = KeypointSet(tuple(NamedPoint(f"k{i}", (90.0 + 12 * i, 95.0 + 9 * i)) for i in range(4)))
    extra = tuple(DemoView(rgb, depth, CAMERA, depth > 0, np.eye(4), "the same side again") for _ in range(views))
    demo = DemoSpec(None, rgb, depth, CAMERA, depth > 0, keypoints, None, None, extra)
    pipeline = TransferPipeline(demo, matcher, PipelineSettings(localise=NEVER), DepthForeground((0.1, 2.0)))
    live_rgb, live_depth = scene([(20, 30, 1.0), (110, 100, 1.6)])
    blind = pipeline.process(live_rgb, live_depth, CAMERA)
    assert blind.alignment.reason.startswith("object not found") and blind.mask is None
    seen = pipeline.process(live_rgb, live_depth, CAMERA, up=(UP, UP))
    assert seen.localisation.found and seen.localisation.best.signature["agrees"]
    truth = np.zeros_like(live_depth, bool)
    truth[30:86, 20:76] = True
    assert (seen.mask.mask == truth).all()  # the object's own surface, not the larger copy
    off = TransferPipeline(demo, matcher, PipelineSettings(localise=NEVER, signature=None), DepthForeground((0.1, 2.0)))
    assert off.process(live_rgb, live_depth, CAMERA, up=(UP, UP)).mask is None
