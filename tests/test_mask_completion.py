"""Finding the whole object (issue 26 item 2): the depth mask completed with the object's other surfaces
(correspondence/mask_completion.py) and colours paled by a highlight (correspondence/object_colour.py's white mix).

Truth by construction: flat RGB-D boards, so every surface, its size, depth and colours are known.
(1) An object of two boards at a depth step (a chair's back in front of its seat) with votes on one board only: the
mask is that board alone without the demo's signature, both boards with it. A look-alike board (the object's
colours) beside it is not taken in (the object with it would be wider than the demo's), nor a board of other colours
that fits within its size. (2) A leading surface whose colours are the demo's paled by white light (a lit face) is
admitted by rule 6; the same surface in other colours, or not leading, is not."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.camera import CameraIntrinsics
from correspondence.localise import Candidate, Localisation
from correspondence.localised_mask import segment_localised
from correspondence.mask_completion import CompletionSettings, complete_mask
from correspondence.object_colour import ColourModel, linear_chromaticity_histogram, white_mix_overlap
from correspondence.object_signature import ObjectSignature, SignatureCue, SignatureSettings, compare
from correspondence.segmentation import DepthForeground

SIZE = 224
CAMERA = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)
UP = np.array([0.0, -1.0, 0.0])  # the image's up: a camera looking level at the table
SEAT, BACK = (150, 70, 60), (50, 150, 160)  # the object's two colours (sRGB)


def pale(rgb, mix: float) -> np.ndarray:
    """``rgb`` mixed with ``mix`` white in linear light (a highlight), re-encoded."""
    linear = (np.asarray(rgb, np.float64) / 255.0) ** 2.2
    return np.round(255.0 * ((1.0 - mix) * linear + mix * linear.max(-1, keepdims=True)) ** (1 / 2.2)).astype(np.uint8)


def board(rgb, depth, colour, x, y, w, h, z):
    """A w x h px board at depth z, a faint checker of ``colour`` (a texture; chromaticity kept)."""
    checker = ((np.arange(h)[:, None] // 4 + np.arange(w)[None] // 4) % 2)[..., None]
    rgb[y:y + h, x:x + w] = np.asarray(colour, np.float64) * (0.85 + 0.15 * checker)
    depth[y:y + h, x:x + w] = z


def scene(*boards):
    rgb = np.full((SIZE, SIZE, 3), 0, np.uint8)  # a dark backdrop without depth
    depth = np.zeros((SIZE, SIZE), np.float32)
    for b in boards:
        board(rgb, depth, *b)
    return rgb, depth


# The object: a seat board (at 0.85 m) below a back board (at 0.75 m: a depth step, two components).
OBJECT = ((SEAT, 80, 110, 60, 40, 0.85), (BACK, 80, 60, 60, 50, 0.75))


@pytest.fixture(scope="module")
def demo():
    rgb, depth = scene(*OBJECT)
    return rgb, depth, ObjectSignature.measure(rgb, depth, CAMERA, depth > 0, UP), ColourModel.from_image(rgb, depth > 0)


def located(votes_xy: np.ndarray) -> Localisation:
    n = len(votes_xy)
    candidate = Candidate(0.5, votes_xy, np.ones(n), votes_xy, n, 0.5, True, tuple(votes_xy[0]), (0.0, 0.0, 1.0, 1.0))
    return Localisation((candidate,), True, 0.01, 40, n)


SEAT_VOTES = np.array([[90.0, 120.0], [110.0, 125.0], [125.0, 140.0], [100.0, 135.0]])


def iou(a, b):
    return float((a & b).sum()) / max(int((a | b).sum()), 1)


def test_the_object_split_at_a_depth_step_is_completed(demo):
    _, _, signature, colours = demo
    rgb, depth = scene(*OBJECT)
    truth = depth > 0
    source = DepthForeground((0.1, 2.0))
    alone = segment_localised(source, rgb, depth, located(SEAT_VOTES), colours).mask
    assert iou(alone, truth) < 0.5  # the premise: the seat alone (the back is another depth component)
    cue = SignatureCue(signature, rgb, depth, CAMERA, UP)
    result = segment_localised(source, rgb, depth, located(SEAT_VOTES), colours, cue)
    assert iou(result.mask, truth) > 0.99
    assert result.details["completion"]["added"] == 1


def test_completion_off_leaves_the_depth_component_alone(demo):
    """PipelineSettings(mask_completion=None) (the node's mask_completion false) reaches the depth mask: the seat
    alone, as without the object's signature; a larger grow allowance still completes it."""
    from correspondence.mask_completion import CompletionSettings

    _, _, signature, colours = demo
    rgb, depth = scene(*OBJECT)
    cue = SignatureCue(signature, rgb, depth, CAMERA, UP)
    source = DepthForeground((0.1, 2.0))
    alone = segment_localised(source, rgb, depth, located(SEAT_VOTES), colours).mask
    off = segment_localised(source, rgb, depth, located(SEAT_VOTES), colours, cue, None)
    assert np.array_equal(off.mask, alone) and "completion" not in off.details
    wider = segment_localised(source, rgb, depth, located(SEAT_VOTES), colours, cue, CompletionSettings(grow=1.5))
    assert iou(wider.mask, depth > 0) > 0.99


def test_a_look_alike_beside_it_is_not_taken_in(demo):
    """A board of the object's colours at the back's depth, touching it: with it the object would measure twice the
    demo's width."""
    _, _, signature, colours = demo
    rgb, depth = scene(*OBJECT, (BACK, 142, 60, 60, 50, 0.70))
    truth = np.zeros_like(depth, bool)
    truth[60:150, 80:140] = True
    cue = SignatureCue(signature, rgb, depth, CAMERA, UP)
    mask = segment_localised(DepthForeground((0.1, 2.0)), rgb, depth, located(SEAT_VOTES), colours, cue).mask
    assert iou(mask, truth) > 0.99 and not mask[:, 142:].any()


def test_a_neighbour_of_other_colours_within_the_size_is_not_taken_in(demo):
    """Without the back in view, a green board where the back would be fits the demo's size: its colours keep it out."""
    _, _, signature, colours = demo
    rgb, depth = scene(OBJECT[0], ((60, 170, 40), 80, 60, 60, 50, 0.75))
    cue = SignatureCue(signature, rgb, depth, CAMERA, UP)
    source = DepthForeground((0.1, 2.0))
    labels = source._components(*source._valid(depth))[0]
    seat = depth == np.float32(0.85)
    mask, record = complete_mask(seat, labels, cue, colours)
    assert record["added"] == 0 and not mask[60:110].any()
    taken, _ = complete_mask(seat, labels, cue, None)  # without the colours it would be taken: they keep it out
    assert taken[60:110, 80:140].all()


def test_completion_settings_are_checked():
    from correspondence.errors import ConfigError

    with pytest.raises(ConfigError):
        CompletionSettings(grow=0.9)


def test_white_mix_overlap_allows_paled_colours_each_up_to_its_demo_share():
    demo = np.array([SEAT] * 300 + [BACK] * 700, np.uint8)
    demo_hist = linear_chromaticity_histogram(demo)
    paled = pale(demo, 0.5)  # every colour lit pale
    assert white_mix_overlap(demo_hist, linear_chromaticity_histogram(paled)) > 0.95
    assert float(np.minimum(demo_hist, linear_chromaticity_histogram(paled)).sum()) < 0.05  # the plain overlap
    paled_back = pale(np.array([BACK] * 800, np.uint8), 0.5)  # the seat hidden: the back counts up to its share
    assert white_mix_overlap(demo_hist, linear_chromaticity_histogram(paled_back)) == pytest.approx(0.7, abs=0.02)
    other = np.array([(60, 170, 40)] * 800, np.uint8)  # another hue, plain and paled
    assert white_mix_overlap(demo_hist, linear_chromaticity_histogram(other)) == 0.0
    assert white_mix_overlap(demo_hist, linear_chromaticity_histogram(pale(other, 0.25))) == 0.0  # (near white, hues
    # meet: a colour paled as far as max_white_mix allows is not told apart)


def test_a_leading_surface_in_paled_demo_colours_is_admitted(demo):
    """Rule 6: the histogram overlap of a lit (paled) view of the object is under min_colour_overlap; as the leading
    surface, its white-mix overlap admits it. The same surface in other colours, or not leading (strict tolerances), stays refused."""
    rgb, depth, signature, _ = demo
    settings = SignatureSettings()
    lit = rgb.copy()
    lit[depth > 0] = pale(rgb[depth > 0], 0.55)
    live = ObjectSignature.measure(lit, depth, CAMERA, depth > 0, UP)
    match = compare(signature, live, settings)
    assert match.colour_overlap < settings.min_colour_overlap and not match.agrees  # the premise
    assert match.white_mix_overlap >= settings.lead_white_mix_overlap and match.as_leader(settings).agrees
    recoloured = rgb.copy()
    recoloured[depth > 0] = rgb[depth > 0][:, [1, 2, 0]]  # the same object, its colours drawn anew
    other = compare(signature, ObjectSignature.measure(recoloured, depth, CAMERA, depth > 0, UP), settings)
    assert not other.as_leader(settings).agrees

