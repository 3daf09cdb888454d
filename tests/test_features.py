"""Feature extraction: the weight-free backbone's geometry, the cache, dtypes and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from correspondence import ExtractionSettings, FeatureExtractor, create_backbone
from correspondence.backbones import OutputKind
from correspondence.errors import ConfigError, InputError
from correspondence.preprocessing import PreprocessSettings


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (height // 7 + 1, width // 7 + 1, 3), dtype=np.uint8)
    return np.kron(coarse, np.ones((7, 7, 1), np.uint8))[:height, :width]


def test_daisy_features_are_translation_equivariant_on_the_grid():
    """Shift the image by one patch: interior cells shift by exactly one column (descriptor centring is right)."""
    big = textured(224, 252)
    extractor = FeatureExtractor(create_backbone("daisy"), ExtractionSettings(PreprocessSettings(pad="stretch", size=224)))
    a, b = extractor.extract_batch([big[:, :224], big[:, 14:238]])
    assert a.grid_wh == (16, 16)
    interior = slice(4, 12)
    shifted = (a.features[:, interior, 5:13] - b.features[:, interior, 4:12]).abs()
    unshifted = (a.features[:, interior, 5:13] - b.features[:, interior, 5:13]).abs()
    # equal up to the far tails of DAISY's Gaussian smoothing near the image border
    assert shifted.max() < 1e-2 and shifted.mean() < 1e-4
    assert unshifted.mean() > 100 * shifted.mean() + 1e-2


def test_matching_recovers_a_known_shift():
    """Live = demo shifted by two patches: keypoints at cell centres land exactly two patches over."""
    from correspondence.io import KeypointSet, NamedPoint
    from correspondence.keypoint_matching import match_keypoint_set
    big = textured(224, 280, seed=1)
    extractor = FeatureExtractor(create_backbone("daisy"), ExtractionSettings(PreprocessSettings(pad="stretch", size=224)))
    demo, live = extractor.extract_batch([big[:, 28:252], big[:, :224]])
    centres = [(14 * u + 7.0, 14 * v + 7.0) for u, v in [(4, 4), (8, 10), (10, 7), (6, 11)]]
    points = KeypointSet(tuple(NamedPoint(f"p{i}", xy) for i, xy in enumerate(centres)))
    matches, _ = match_keypoint_set(demo, points, live)
    for m in matches:
        assert m.live_xy == pytest.approx((m.demo_xy[0] + 28, m.demo_xy[1]))
        assert m.score > 0.999 and m.mutual


def test_cache_encodes_each_image_once():
    extractor = FeatureExtractor(create_backbone("test_vit_tiny"))
    a, b = textured(100, 120, 1), textured(100, 120, 2)
    first = extractor.extract_batch([a, b, a])
    assert extractor.cache_misses == 2 and extractor.cache_hits == 1
    assert first[0] is first[2]
    again = extractor(a)
    assert again is first[0] and extractor.cache_hits == 2
    other = FeatureExtractor(extractor.backbone, ExtractionSettings(PreprocessSettings(size=112)))
    assert other(a).grid_wh == (8, 8) and first[0].grid_wh == (16, 16)


def test_batched_equals_single():
    extractor = FeatureExtractor(create_backbone("test_vit_tiny"), batch_size=3, cache_size=0)
    images = [textured(90, 100, s) for s in range(4)]
    batched = extractor.extract_batch(images)
    single = [FeatureExtractor(extractor.backbone, cache_size=0)(im) for im in images]
    for x, y in zip(batched, single):
        assert torch.allclose(x.features, y.features, atol=1e-5)


def test_output_kinds_and_blocks():
    loaded = create_backbone("test_vit_tiny")
    settings = ExtractionSettings(PreprocessSettings(size=112), kind=OutputKind.BLOCKS, layers=(-3, -2, -1))
    fmap = FeatureExtractor(loaded, settings)(textured(64, 64))
    assert fmap.block_dims == (64, 64, 64) and [b.shape for b in fmap.blocks()] == [(64, 8, 8)] * 3
    dense_cls = FeatureExtractor(loaded, ExtractionSettings(PreprocessSettings(size=112), kind="dense_cls"))
    assert dense_cls(textured(64, 64)).dim == 128
    with pytest.raises(ConfigError, match="not offered"):
        FeatureExtractor(create_backbone("daisy"), ExtractionSettings(kind="dense_cls"))
    with pytest.raises(ConfigError, match="out of range"):
        FeatureExtractor(loaded, ExtractionSettings(kind="blocks", layers=(7,)))(textured(64, 64))


def test_bfloat16_close_to_float32_and_fp16_needs_cuda():
    loaded = create_backbone("test_vit_tiny")
    image = textured(112, 112)
    f32 = FeatureExtractor(loaded)(image).features
    bf16 = FeatureExtractor(loaded, ExtractionSettings(PreprocessSettings(size=224), dtype="bfloat16"))(image).features
    cos = torch.nn.functional.cosine_similarity(f32.flatten(1), bf16.flatten(1), dim=0)
    assert cos.min() > 0.98
    with pytest.raises(ConfigError, match="CUDA"):
        FeatureExtractor(loaded, ExtractionSettings(dtype="float16"))


def test_bad_images_and_masks():
    extractor = FeatureExtractor(create_backbone("daisy"))
    with pytest.raises(InputError):
        extractor(np.zeros((0, 10, 3), np.uint8))
    fmap = extractor(textured(50, 60))
    with pytest.raises(InputError, match="empty"):
        fmap.cell_mask(np.zeros((50, 60), bool))
    one_pixel = np.zeros((50, 60), bool)
    one_pixel[25, 30] = True
    assert fmap.cell_mask(one_pixel).sum() >= 1  # a tiny object still yields its best-covered cell


@pytest.mark.parametrize("radius,step", [(14, 14), (35, 14), (12, 8)])
def test_torch_daisy_equals_scikit_image(radius, step):
    from skimage.feature import daisy

    from correspondence.backbones.daisy_torch import DaisyParams, daisy_grid
    gray = np.random.default_rng(radius).random((120, 150))
    reference = daisy(gray, step=step, radius=radius, rings=2, histograms=6, orientations=8, normalization="l2")
    ours = daisy_grid(torch.from_numpy(gray), DaisyParams(radius), step).numpy()
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-9


def test_warm_up_runs_one_full_batch_at_the_configured_size_and_keeps_nothing():
    extractor = FeatureExtractor(create_backbone("test_vit_tiny", random_init=True),
                                 ExtractionSettings(PreprocessSettings(size=112)), batch_size=3, cache_size=4)
    shapes = []
    real = extractor.runtime.forward

    def spy(images, kind, layers):
        shapes.append(tuple(images.shape))
        return real(images, kind, layers)

    extractor.runtime.forward = spy
    assert extractor.warm_up() > 0
    assert shapes == [(3, 3, 112, 112)]
    assert extractor.cache_misses == 0 and extractor.cache_hits == 0 and not extractor._cache
