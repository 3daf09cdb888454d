"""Rule 6's relative evidence (correspondence/object_signature.py, correspondence/localise.py).

Truth by construction: flat RGB-D frames of textured boards, so every surface, its size and its colours are known.
(1) A surface that holds nearly all the votes (>= ``lead_ratio`` x any other's) is admitted with the looser
footprint tolerance: the object with part of it hidden (a spout or a cab behind the body: here a third of the board
cut off, its visible footprint x1.65) is found when it leads, refused when a rival surface holds comparable votes,
and a leading surface of another height stays refused. (2) Votes pooled over the frame yield to a surface whose
height, footprint and colours agree (seed 1's truck at 92 deg of the alignment bench: six pooled votes on a
distractor truck chose it over the object)."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.api import Matcher
from correspondence.camera import CameraIntrinsics
from correspondence.localise import DepthViews, LocaliseSettings, localise
from correspondence.object_signature import ObjectSignature, SignatureCue, SignatureSettings

SIZE = 224
CAMERA = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)
UP = np.array([0.0, -1.0, 0.0])  # the image's up: a camera looking level at the table


def texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 256, (8, 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((7, 7, 1), dtype=np.uint8))  # 56 px


def paste(rgb, depth, tex, x, y, columns=None, tall=1.0):
    """The board ``tex`` at (x, y), slanted 2 mm of depth per pixel column; ``columns``: only its first columns are
    visible (the rest hidden); ``tall``: its rows stretched (another height)."""
    rows = (np.arange(int(round(tex.shape[0] * tall))) / tall).astype(int)
    tex = tex[rows][:, :columns]
    h, w = tex.shape[:2]
    rgb[y:y + h, x:x + w] = tex
    depth[y:y + h, x:x + w] = (0.8 + 0.002 * np.arange(w))[None]


def frame(*boards):
    rgb = np.full((SIZE, SIZE, 3), 90, np.uint8)
    depth = np.zeros((SIZE, SIZE), np.float32)
    for seed, x, y, kw in boards:
        paste(rgb, depth, texture(seed), x, y, **kw)
    return rgb, depth


def demo_signature():
    rgb, depth = frame((0, 84, 84, {}))
    return ObjectSignature.measure(rgb, depth, CAMERA, depth > 0, UP)


def votes_on(x0, y0, count, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(x0 + 2, x0 + 30, count), rng.uniform(y0 + 2, y0 + 50, count)], -1)


@pytest.fixture(scope="module")
def partly_hidden():
    """The demo's board with a third of it hidden (38 of 56 columns visible) at (20, 30); another board, 1.3x taller
    and of other colours, at (130, 110)."""
    rgb, depth = frame((0, 20, 30, {"columns": 38}), (5, 130, 110, {"tall": 1.3}))
    return SignatureCue(demo_signature(), rgb, depth, CAMERA, UP)


def test_the_partly_hidden_object_is_out_of_the_strict_tolerance(partly_hidden):
    """The premise: its visible footprint is x1.5-1.75 the demo's, its height the demo's."""
    cue = partly_hidden
    surfaces = cue.vote_components(np.vstack([votes_on(20, 30, 6), votes_on(130, 110, 6)]), np.ones(12), 40)
    mine = [s for s in surfaces if s.box[0, 0] < 100][0]
    assert 1.5 < mine.match.footprint_ratio <= 1.75 and mine.match.height_ratio < 1.1
    assert not mine.match.leads and not mine.match.agrees  # a rival holds as many votes: strict tolerances


def test_a_surface_leading_the_votes_is_admitted_with_the_looser_footprint(partly_hidden):
    cue = partly_hidden
    surfaces = cue.vote_components(np.vstack([votes_on(20, 30, 10), votes_on(130, 110, 2)]), np.ones(12), 40)
    best = surfaces[0]
    assert best.box[0, 0] == 20 and best.match.leads and best.match.agrees  # the object, 5x the rival's votes
    assert best.match.as_dict()["leads"] is True
    strict = SignatureCue(cue.demo, cue.live_rgb, cue.live_depth, CAMERA, UP, SignatureSettings(lead_ratio=100.0))
    assert not strict.vote_components(np.vstack([votes_on(20, 30, 10), votes_on(130, 110, 2)]), np.ones(12),
                                      40)[0].match.agrees  # the lead rule off: refused as before


def test_a_leading_surface_of_another_height_stays_refused(partly_hidden):
    surfaces = partly_hidden.vote_components(np.vstack([votes_on(20, 30, 1), votes_on(130, 110, 10)]),
                                             np.ones(11), 40)
    other = [s for s in surfaces if s.box[0, 0] >= 100][0]
    assert other.match.leads and other.match.height_ratio > 1.2 and not other.match.agrees


@pytest.fixture(scope="module")
def pooled_frame():
    """The demo board alone; live, the same board (moved) beside a 1.3x taller board of its texture."""
    matcher = Matcher.create("daisy", size=SIZE, cache_size=2)
    demo_rgb, demo_depth = frame((0, 84, 84, {}))
    rgb, depth = frame((0, 20, 30, {}), (0, 120, 100, {"tall": 1.3}))
    demo_fmap, live_fmap = matcher.extractor.extract_batch([demo_rgb, rgb], cache=False)
    cells = demo_fmap.cell_mask(demo_depth > 0, min_fraction=0.5)
    cue = SignatureCue(ObjectSignature.measure(demo_rgb, demo_depth, CAMERA, demo_depth > 0, UP), rgb, depth,
                       CAMERA, UP)
    return demo_fmap, cells, live_fmap, DepthViews(demo_depth, CAMERA, depth, CAMERA), (demo_rgb, rgb), cue


def test_votes_pooled_over_the_frame_yield_to_a_surface_of_the_objects_shape(pooled_frame):
    demo_fmap, cells, live_fmap, views, images, cue = pooled_frame
    # no group of adjacent votes forms; votes pooled over the frame pass at any score (the weakest evidence taken)
    settings = LocaliseSettings(min_votes=10_000, min_score=0.0)
    votes_only = localise(demo_fmap, cells, live_fmap, settings, views, images)
    assert votes_only.found and votes_only.best.pooled  # the premise
    shaped = localise(demo_fmap, cells, live_fmap, settings, views, images, signature=cue)
    assert shaped.found and shaped.by_signature and not shaped.best.pooled
    votes = shaped.best.votes_xy
    assert ((votes[:, 0] >= 20) & (votes[:, 0] < 76) & (votes[:, 1] >= 30) & (votes[:, 1] < 86)).all()
    assert "before votes pooled over the frame" in shaped.as_dict()["rule"]


def test_a_leading_surface_of_the_objects_size_but_other_colours_stays_refused():
    """The lead loosens the footprint only: a look-alike of the object's size and other colours, holding every
    vote, is refused (colour overlap under the strict ``min_colour_overlap``)."""
    rgb, depth = frame((0, 60, 60, {}))
    rgb[60:116, 60:116, 1:] //= 4  # the same board, reddened
    cue = SignatureCue(demo_signature(), rgb, depth, CAMERA, UP)
    only = cue.vote_components(votes_on(60, 60, 10), np.ones(10), 40)[0]
    assert only.match.leads and only.match.height_ratio < 1.1 and only.match.footprint_ratio < 1.1
    assert only.match.colour_overlap < cue.settings.min_colour_overlap and not only.match.agrees
