"""Matching primitives on constructed features with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from correspondence.coords import Convention
from correspondence.errors import InputError
from correspondence.features import FeatureMap
from correspondence.io import KeypointSet, NamedPoint
from correspondence.keypoint_matching import MatchSettings, match_keypoint_set
from correspondence.matching import (mutual_nearest_neighbors, nearest_neighbors, similarity_maps,
                                     soft_argmax_window)
from correspondence.preprocessing import ImageGeometry


def test_argmax_finds_the_copied_descriptor():
    torch.manual_seed(0)
    target = torch.randn(500, 32)
    query = target[[7, 123, 499]] * 3.0  # scale must not matter for cosine
    nn = nearest_neighbors(query, target)
    assert nn.index.tolist() == [7, 123, 499]
    assert torch.allclose(nn.score, torch.ones(3))


def test_chunking_does_not_change_results():
    torch.manual_seed(1)
    query, target = torch.randn(300, 16), torch.randn(400, 16)
    a, b = nearest_neighbors(query, target, chunk=7), nearest_neighbors(query, target, chunk=100000)
    assert torch.equal(a.index, b.index)
    m1, m2 = mutual_nearest_neighbors(query, target, chunk=13), mutual_nearest_neighbors(query, target, chunk=10**6)
    assert torch.equal(m1.backward.index, m2.backward.index) and torch.equal(m1.mutual, m2.mutual)


def test_4096_by_4096_fits_when_chunked():
    torch.manual_seed(2)
    source, target = torch.randn(4096, 64), torch.randn(4096, 64)
    result = mutual_nearest_neighbors(source, target, chunk=512)
    sim = torch.nn.functional.normalize(source, dim=1) @ torch.nn.functional.normalize(target, dim=1).T
    assert torch.equal(result.forward.index, sim.argmax(1))
    assert torch.equal(result.backward.index, sim.argmax(0))


def test_mask_restriction_picks_the_best_valid_cell():
    target = torch.eye(4)
    query = torch.tensor([[1.0, 0.9, 0.0, 0.0]])
    assert nearest_neighbors(query, target).index.item() == 0
    valid = torch.tensor([False, True, True, True])
    assert nearest_neighbors(query, target, valid).index.item() == 1
    with pytest.raises(InputError, match="no valid cell"):
        nearest_neighbors(query, target, torch.zeros(4, dtype=torch.bool))


def test_mutual_nearest_neighbours():
    # source 0 <-> target 0 mutually; source 1 -> target 0 too, but target 0 prefers source 0
    source = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    result = mutual_nearest_neighbors(source, target)
    assert result.forward.index.tolist() == [0, 0]
    assert result.mutual.tolist() == [True, False]
    assert result.backward.index.tolist() == [0, 1]


def test_soft_argmax_matches_hand_computation():
    sim = torch.tensor([[0.1, 0.2, 0.0, 0.9],
                        [0.3, 0.8, 0.5, 0.0],
                        [0.0, 0.4, 0.2, 0.0]])
    # half-width 1 around the argmax (0.9 at u=3, v=0) covers u in {2, 3}, v in {0, 1}
    uv, hard = soft_argmax_window(sim, window=1, beta=0.5)
    cells = {(2, 0): 0.0, (3, 0): 0.9, (2, 1): 0.5, (3, 1): 0.0}
    z = sum(math.exp(s / 0.5) for s in cells.values())
    u = sum(c[0] * math.exp(s / 0.5) for c, s in cells.items()) / z
    v = sum(c[1] * math.exp(s / 0.5) for c, s in cells.items()) / z
    assert hard.tolist() == [[3.0, 0.0]]
    assert uv[0, 0].item() == pytest.approx(u, abs=1e-6) and uv[0, 1].item() == pytest.approx(v, abs=1e-6)


def test_soft_argmax_window_excludes_far_peaks_and_small_beta_is_argmax():
    sim = torch.zeros(20, 20)
    sim[4, 4], sim[4, 12] = 1.0, 0.99  # second peak 8 cells away: outside the 15 x 15 window (half-width 7)
    uv, _ = soft_argmax_window(sim, window=7, beta=0.02)
    assert uv[0].tolist() == pytest.approx([4.0, 4.0], abs=1e-6)
    sim[4, 11] = 0.99  # 7 cells away: inside, and it pulls the estimate
    uv, _ = soft_argmax_window(sim, window=7, beta=0.02)
    assert 4.5 < uv[0, 0].item() < 7.5
    sim[4, 11] = 0.0
    sim[4, 5] = 1.0 - 1e-9
    uv, _ = soft_argmax_window(sim, window=7, beta=0.02)
    assert uv[0, 0].item() == pytest.approx(4.5, abs=1e-3)


def _identity_map(grid: int = 8, patch: int = 14, perm: torch.Tensor | None = None) -> FeatureMap:
    """One-hot features: cell i has descriptor e_perm[i]."""
    n = grid * grid
    index = perm if perm is not None else torch.arange(n)
    features = torch.eye(n)[index].T.reshape(n, grid, grid)
    size = grid * patch
    geometry = ImageGeometry(size, size, size, size, 1.0, 1.0, 0.0, 0.0, "stretch")
    return FeatureMap(features, geometry, patch, Convention.PATCH_CENTER)


def test_keypoint_matching_on_a_known_permutation():
    torch.manual_seed(3)
    perm = torch.randperm(64)
    demo, live = _identity_map(), _identity_map(perm=perm)
    points = KeypointSet((NamedPoint("a", (7.0, 7.0)), NamedPoint("b", (35.0, 63.0))))
    matches, _ = match_keypoint_set(demo, points, live)
    for match, (u, v) in zip(matches, [(0, 0), (2, 4)]):
        cell = v * 8 + u
        target = int((perm == cell).nonzero()[0])  # live cell whose descriptor is demo cell's e_cell
        assert match.live_xy == pytest.approx(((target % 8) * 14 + 7.0, (target // 8) * 14 + 7.0))
        assert match.mutual and match.cycle_distance_px == pytest.approx(0.0)


def test_cycle_distance_and_mask_restriction():
    demo = _identity_map()
    live_features = demo.features.clone()
    live_features[:, 0, 1] += live_features[:, 0, 0] * 0.9  # cell 1 = e_1 + 0.9 e_0: looks like demo cell 0 too
    live = FeatureMap(live_features, demo.geometry, 14, Convention.PATCH_CENTER)
    points = KeypointSet((NamedPoint("a", (7.0, 7.0)),))
    mask = np.zeros((112, 112), bool)
    mask[:, 14:] = True  # cell column 0 is outside the object
    matches, _ = match_keypoint_set(demo, points, live, live_mask=mask,
                                    settings=MatchSettings(cycle_threshold_px=5.0))
    m = matches[0]
    assert m.live_xy == pytest.approx((21.0, 7.0))  # cell (1, 0), the best inside the mask
    # live cell 1 carries 0.9 e_0 + e_1 -> backward match is demo cell 1, 14 px from the query
    assert m.cycle_distance_px == pytest.approx(14.0) and not m.mutual and not m.accepted


def test_similarity_maps_shape_and_values():
    fmap = _identity_map(grid=4)
    sims = similarity_maps(fmap.flat()[[5]], fmap.features)
    assert sims.shape == (1, 4, 4) and sims[0, 1, 1] == 1.0 and sims.sum() == 1.0


def test_feature_sampling_is_bilinear_in_the_convention():
    grid, patch = 8, 14
    u = torch.arange(grid, dtype=torch.float32).view(1, 1, grid).expand(1, grid, grid)
    v = torch.arange(grid, dtype=torch.float32).view(1, grid, 1).expand(1, grid, grid)
    size = grid * patch
    geometry = ImageGeometry(size, size, size, size, 1.0, 1.0, 0.0, 0.0, "stretch")
    for convention in Convention:
        fmap = FeatureMap(torch.cat([u, v]), geometry, patch, convention)
        xy = np.array([[20.0, 50.0], [90.5, 13.0]])
        expected = fmap.original_to_grid(xy)
        assert np.allclose(fmap.sample(xy).numpy(), expected, atol=1e-4)
    with pytest.raises(InputError, match="outside the image"):
        fmap.sample(np.array([[size + 1.0, 3.0]]))


def _padded_map(features: torch.Tensor, width: int, height: int, patch: int = 14) -> FeatureMap:
    """A feature map of a ``width x height`` image padded white at the bottom/right to a square grid."""
    from correspondence.preprocessing import PreprocessSettings, plan_geometry
    side = features.shape[1] * patch
    geometry, _ = plan_geometry(width, height, PreprocessSettings(size=side), patch)
    return FeatureMap(features, geometry, patch, Convention.PATCH_CENTER)


@pytest.mark.parametrize("method", ["argmax", "soft-argmax"])
@pytest.mark.parametrize("protocol", ["default", "soco"])
def test_padding_cells_are_never_matched(method, protocol):
    """The live image is 112 x 56: grid rows 4-7 are white padding. The demo keypoint's descriptor is exactly a
    padding cell's (white looks like white) and only half like an image cell: the match is the image cell."""
    grid = 8
    live = _padded_map(torch.eye(grid * grid).T.reshape(-1, grid, grid), 112, 56)
    assert live.image_cells()[:4].all() and not live.image_cells()[4:].any()
    demo_features = torch.eye(grid * grid).T.reshape(-1, grid, grid).clone()
    pad_cell, image_cell = 6 * grid + 2, 1 * grid + 2
    demo_features[:, 0, 0] = 0.0
    demo_features[pad_cell, 0, 0], demo_features[image_cell, 0, 0] = 1.0, 0.5
    demo = FeatureMap(demo_features, ImageGeometry(112, 112, 112, 112, 1.0, 1.0, 0.0, 0.0, "stretch"), 14,
                      Convention.PATCH_CENTER)
    settings = MatchSettings.protocol(protocol, method=method, refine=False)
    matches, _ = match_keypoint_set(demo, KeypointSet((NamedPoint("a", (7.0, 7.0)),)), live, settings=settings)
    x, y = matches[0].live_xy
    assert 0 <= x < 112 and 0 <= y < 56
    assert (x, y) == pytest.approx((35.0, 21.0), abs=0.5 if method == "soft-argmax" else 1e-9)


def test_a_mask_reaching_into_the_padding_still_matches_inside_the_image():
    grid = 8
    live = _padded_map(torch.eye(grid * grid).T.reshape(-1, grid, grid), 112, 46)  # row 3 is 4/14 image
    valid = live.image_cells()
    assert valid[:3].all() and not valid[3:].any()
    demo = _identity_map()
    mask = np.ones((46, 112), bool)  # covers a quarter of row 3: enough for the mask, not for the image
    matches, _ = match_keypoint_set(demo, KeypointSet((NamedPoint("a", (7.0, 3 * 14 + 7.0)),)), live,
                                    live_mask=mask, settings=MatchSettings(refine=False))
    assert live.cell_mask(mask)[3].all() and matches[0].live_xy[1] < 46


def test_image_cells_of_a_sliver_fall_back_to_the_best_covered_row():
    live = _padded_map(torch.zeros(3, 8, 8), 112, 4)  # 4 px tall: no cell is half covered
    cells = live.image_cells()
    assert cells[0].all() and not cells[1:].any()
    assert live.cell_size_px() == pytest.approx((14.0, 14.0))


def test_relative_soft_argmax_does_not_blur_flat_maps():
    """DAISY-like similarities: top 0.996, everything within 0.05 of it. The reference's absolute beta spreads the
    weight over its 15 x 15 window and drags the estimate; the relative temperature stays at the peak."""
    torch.manual_seed(0)
    sim = 0.95 + 0.01 * torch.rand(1, 20, 20)
    sim[0, 10, 3] = 0.996
    absolute, hard = soft_argmax_window(sim, window=7, beta=0.02)
    relative, _ = soft_argmax_window(sim, window=1, beta=0.1, relative=True)
    assert hard[0].tolist() == [3.0, 10.0]
    assert abs(absolute[0, 0].item() - 3.0) > 1.5
    assert relative[0].tolist() == pytest.approx([3.0, 10.0], abs=0.05)
    sim[0, 10, 4] = 0.996  # a tie next to the peak: half-way
    relative, _ = soft_argmax_window(sim, window=1, beta=0.1, relative=True)
    assert relative[0, 0].item() == pytest.approx(3.5, abs=0.05)


def test_match_settings_protocols():
    default, soco = MatchSettings(), MatchSettings.protocol("soco")
    assert (default.window, default.temperature, default.refine, default.geometry.model) == (1, "relative", True, "none")
    assert (soco.window, soco.beta, soco.temperature, soco.refine) == (7, 0.02, "absolute", False)
    assert MatchSettings.protocol("soco", window=3, beta=None).window == 3
    assert MatchSettings(geometry="homography").geometry.model == "homography"
    from correspondence.errors import ConfigError
    with pytest.raises(ConfigError):
        MatchSettings(temperature="warm")
    with pytest.raises(ConfigError):
        MatchSettings.protocol("fast")


def test_matcher_create_takes_settings_groups_or_their_fields():
    from correspondence.api import Matcher
    from correspondence.errors import ConfigError
    from correspondence.features import ExtractionSettings
    from correspondence.keypoint_matching import MatchSettings
    from correspondence.preprocessing import PreprocessSettings
    grouped = Matcher.create("test_vit_tiny", extraction=ExtractionSettings(PreprocessSettings(size=112)),
                             matching=MatchSettings(refine=False, geometry="auto"))
    loose = Matcher.create("test_vit_tiny", size=112, refine=False, geometry="auto")
    assert grouped.settings == loose.settings and grouped.extractor.settings == loose.extractor.settings
    assert Matcher.create("test_vit_tiny", matching={"protocol": "soco"}).settings == MatchSettings.protocol("soco")
    with pytest.raises(ConfigError, match="unknown Matcher option"):
        Matcher.create("test_vit_tiny", sise=112)
    with pytest.raises(ConfigError, match="either as a MatchSettings or as options"):
        Matcher.create("test_vit_tiny", matching=MatchSettings(), refine=False)
