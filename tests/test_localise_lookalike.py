"""The demo's object among look-alikes (correspondence/localise.py rules 3b and 4, correspondence/object_colour.py):
the same texture in other colours passes a weight-free descriptor's 2D vote; the colour and rigid-3D checks refuse
it, and an object touching the target at the same depth is cut off its depth component by colour. Truth by
construction: textured patches pasted into flat RGB-D frames (tests/test_localise.py's scenes)."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.api import Matcher
from correspondence.camera import CameraIntrinsics
from correspondence.localise import DepthViews, LocaliseSettings, ObjectNotFound, localise
from correspondence.localised_mask import segment_localised
from correspondence.object_colour import ColourModel
from correspondence.segmentation import DepthForeground
from test_localise import PATCH, SIZE, iou, paste, patch

TARGET_AT = (64, 60)
Z = 0.8
CAMERA = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)


BLUE, RED, GREEN = (0.35, 0.5, 1.0), (1.0, 0.35, 0.3), (0.4, 1.0, 0.35)


def tinted(tint: tuple[float, float, float], seed: int = 1) -> np.ndarray:
    """tests/test_localise.py's block texture in one hue: its brightness pattern times ``tint``. The same seed in
    another tint is another instance of the object's kind: the same blocks, other colours."""
    grey = patch(seed).astype(np.float64).mean(-1, keepdims=True)
    return np.clip(grey * np.array(tint) * 1.4 + 20, 0, 255).astype(np.uint8)


def demo_view():
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    depth = np.full((SIZE, SIZE), 1.5, np.float32)
    mask = np.zeros((SIZE, SIZE), bool)
    paste(rgb, depth, mask, tinted(BLUE), (72, 72), Z)
    return rgb, depth, mask


def touching_scene(with_target: bool = True):
    """The target between two touching objects at its own depth (no depth step between them): a look-alike (its
    blocks in red) on its left and another blocky object (green) on its right."""
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    depth = np.full((SIZE, SIZE), 1.5, np.float32)
    truth = np.zeros((SIZE, SIZE), bool)
    x, y = TARGET_AT
    paste(rgb, depth, None, tinted(RED), (0, y + 40), Z)  # partly behind the target
    paste(rgb, depth, None, tinted(GREEN, seed=5), (x + PATCH, y - 30), Z)
    if with_target:
        paste(rgb, depth, truth, tinted(BLUE), TARGET_AT, Z)
    return rgb, depth, truth


@pytest.fixture(scope="module")
def located():
    matcher = Matcher.create("daisy", size=SIZE, cache_size=2)
    demo_rgb, demo_depth, demo_mask = demo_view()
    frames = {present: touching_scene(present) for present in (True, False)}
    demo, live, empty = matcher.extractor.extract_batch([demo_rgb, frames[True][0], frames[False][0]], cache=False)
    cells = demo.cell_mask(demo_mask, min_fraction=0.5)
    out = {}
    for present, fmap in ((True, live), (False, empty)):
        rgb, depth = frames[present][:2]
        views = DepthViews(demo_depth, CAMERA, depth, CAMERA)
        out[present] = {"2d": localise(demo, cells, fmap), "checked": localise(demo, cells, fmap, None, views,
                                                                               (demo_rgb, rgb))}
    return out, frames, ColourModel.from_image(demo_rgb, demo_mask)


def test_a_look_alike_alone_gives_object_not_found_with_its_score(located):
    out, frames, _ = located
    rgb, depth, _ = frames[False]
    assert out[False]["2d"].found, "the 2D vote alone takes the look-alike for the object (why the checks exist)"
    checked = out[False]["checked"]
    assert not checked.found and checked.matched
    assert checked.reason.startswith("object not found")
    assert checked.as_dict()["found"] is False and "score" in checked.reason
    with pytest.raises(ObjectNotFound) as info:
        segment_localised(DepthForeground((0.1, 1.0)), rgb, depth, checked)
    assert info.value.localisation is checked


def test_the_object_beside_its_look_alike_is_found_and_chosen(located):
    out, frames, _ = located
    checked = out[True]["checked"]
    _, _, truth = frames[True]
    assert checked.found and checked.best.rigid
    assert checked.best_score >= LocaliseSettings().min_score_rigid
    votes = checked.best.votes_xy.astype(int)
    assert truth[votes[:, 1], votes[:, 0]].mean() > 0.9


def test_touching_objects_are_cut_off_the_depth_component_by_colour(located):
    out, frames, colours = located
    rgb, depth, truth = frames[True]
    checked = out[True]["checked"]
    source = DepthForeground((0.1, 1.0))
    merged = segment_localised(source, rgb, depth, checked)  # depth alone: the three touching patches are one surface
    assert iou(merged.mask, truth) < 0.5
    cut = segment_localised(source, rgb, depth, checked, colours)
    assert iou(cut.mask, truth) >= 0.8
    assert cut.details["colour_cut"] > 0.3


def test_colour_model_ignores_brightness_and_dark_pixels():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2] = (200, 40, 40)  # red
    rgb[2:] = (100, 20, 20)  # the same red in shadow
    model = ColourModel.from_image(rgb, np.ones((4, 4), bool))
    probe = np.array([[(150, 30, 30), (30, 150, 30), (10, 5, 5)]], np.uint8)  # red, green, too dark to tell
    assert model.matches(probe).tolist() == [[True, False, True]]


def test_depth_mask_keeps_every_part_of_the_object_that_holds_votes():
    """An object's parts at different depths (a truck's cab behind its box) are separate depth components; each part
    with a real share of the votes belongs to the mask, a component with one stray vote does not."""
    from correspondence.localised_mask import depth_component_under
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    depth = np.full((SIZE, SIZE), 1.5, np.float32)
    depth[40:120, 40:100] = 0.8  # the box
    depth[60:120, 100:150] = 0.9  # the cab, 10 cm behind: a depth step
    depth[150:200, 150:200] = 0.7  # another object
    votes = np.array([[50, 50], [60, 70], [80, 90], [90, 110], [70, 60], [60, 100],  # on the box
                      [110, 80], [120, 100], [130, 90],  # on the cab
                      [170, 170]], np.float64)  # one stray vote on the other object
    result = depth_component_under(DepthForeground((0.1, 1.0)), rgb, votes, depth)
    truth = np.zeros((SIZE, SIZE), bool)
    truth[40:120, 40:100] = truth[60:120, 100:150] = True
    assert iou(result.mask, truth) == 1.0 and result.details["parts"] == 2
