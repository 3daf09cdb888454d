"""An object whose votes are too scattered to group (correspondence/localise.py, ``pool_votes``): a stool's seat and
thin legs, or a turned object that keeps a few votes here and there, gives groups of one or two votes, fewer than
``min_votes``; the votes of the whole frame that agree with one rigid 3D motion are the object all the same.
Truth by construction: small textured parts pasted into flat RGB-D frames, far enough apart that no two parts'
votes are neighbours."""
from __future__ import annotations

import numpy as np
import pytest

from correspondence.api import Matcher
from correspondence.camera import CameraIntrinsics
from correspondence.localise import DepthViews, LocaliseSettings, localise
from correspondence.localised_mask import segment_localised
from correspondence.segmentation import DepthForeground
from test_localise import SIZE

PART = 14  # px: one feature cell (14 px at 224 px), the parts placed on the cell grid
SPACING = 56  # px between parts: four cells, so the vote grid dilated by one cell keeps them apart
Z = 0.8
CAMERA = CameraIntrinsics.from_fov(SIZE, SIZE, 45.0)


def part(seed: int) -> np.ndarray:
    """A small block texture (7 px blocks) of its own colours."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (PART // 7, PART // 7, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((7, 7, 1), dtype=np.uint8))


def frame(corners):
    """RGB, depth (m) and mask of the parts with top-left corners ``corners`` (part k gets texture k)."""
    rgb = np.full((SIZE, SIZE, 3), 128, np.uint8)
    depth = np.full((SIZE, SIZE), 1.5, np.float32)
    mask = np.zeros((SIZE, SIZE), bool)
    for k, (x, y) in enumerate(np.round(corners).astype(int)):
        rgb[y:y + PART, x:x + PART] = part(k)
        depth[y:y + PART, x:x + PART] = Z
        mask[y:y + PART, x:x + PART] = True
    return rgb, depth, mask


GRID = np.array([(14 + SPACING * i, 14 + SPACING * j) for j in range(3) for i in range(3)], np.float64)


@pytest.fixture(scope="module")
def scattered():
    matcher = Matcher.create("daisy", size=SIZE, cache_size=2)
    demo = frame(GRID)
    moved = frame(GRID + 28)  # the object slid by two cells: every distance kept
    centre = GRID.mean(0)
    other = frame(centre + (GRID - centre) * 1.4 + 8)  # the same parts, spread out: no distance kept
    fmaps = matcher.extractor.extract_batch([demo[0], moved[0], other[0]], cache=False)
    cells = fmaps[0].cell_mask(demo[2], min_fraction=0.5)
    out = {}
    for name, live, fmap in (("moved", moved, fmaps[1]), ("other", other, fmaps[2])):
        views = DepthViews(demo[1], CAMERA, live[1], CAMERA)
        out[name] = {pool: localise(fmaps[0], cells, fmap, LocaliseSettings(pool_votes=pool), views,
                                    (demo[0], live[0])) for pool in (False, True)}
    return out, moved


def test_scattered_parts_are_found_by_their_rigid_agreement(scattered):
    out, (rgb, depth, truth) = scattered
    grouped, pooled = out["moved"][False], out["moved"][True]
    assert not grouped.found, "no group of votes is large enough: why the pooled candidate exists"
    assert pooled.found and pooled.best.pooled and pooled.best.rigid
    assert len(pooled.best.votes_xy) >= LocaliseSettings().min_votes_rigid
    assert pooled.min_score == LocaliseSettings().min_score  # judged by the stricter floor than a grouped one's
    votes = pooled.best.votes_xy.astype(int)
    assert truth[votes[:, 1], votes[:, 0]].mean() > 0.9
    assert pooled.as_dict()["candidates"][0]["pooled"] is True
    mask = segment_localised(DepthForeground((0.1, 1.0)), rgb, depth, pooled).mask
    assert mask.any() and not (mask & ~truth).any()  # on the object (each part is its own depth component)


def test_the_same_parts_at_other_distances_are_not_found(scattered):
    out, _ = scattered
    other = out["other"][True]
    assert not other.found
    assert not any(c.pooled for c in other.candidates)
    assert other.reason.startswith("object not found")
