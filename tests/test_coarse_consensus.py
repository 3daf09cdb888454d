"""The coarse-consensus rule of same-object verification (``correspondence/verify.py``, ``_coarse_consensus``):
where the pixels cannot test any model (no cell correlates sharply: a tiny or blurred view) and local features are
too few, the mutual coarse dense matches' own model is accepted only when many of them agree."""
from __future__ import annotations

import numpy as np

from correspondence.geometry2d import GeometrySettings
from correspondence.refine import DenseCoarse, FrameRefiner, RefineSettings, prepare_image
from correspondence.verify import verify_dense

DEMO_WH, LIVE_WH, CELL = (352, 234), (352, 234), 11.0


def similarity(xy: np.ndarray, degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.radians(degrees)
    rotation = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return xy @ rotation.T + np.asarray(shift)


def grid(step: float = 37.0) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(step / 2, DEMO_WH[0], step), np.arange(step / 2, DEMO_WH[1], step))
    return np.stack([xs.ravel(), ys.ravel()], 1)


def verify(demo_xy: np.ndarray, live_xy: np.ndarray, mutual: np.ndarray | None = None):
    """``verify_dense`` on plain images (no cell has texture to refine: the pixels cannot test any model), no
    local features."""
    mutual = np.ones(len(demo_xy), dtype=bool) if mutual is None else mutual
    dense = DenseCoarse(demo_xy, live_xy, np.ones(len(demo_xy)), mutual)
    plain = np.full((DEMO_WH[1], DEMO_WH[0], 3), 128, np.uint8)
    settings = RefineSettings()
    refiner = FrameRefiner(prepare_image(plain, settings), prepare_image(plain, settings, levels=False), dense,
                           mutual, CELL, CELL, settings)
    return verify_dense(dense, mutual, GeometrySettings(model="homography"), CELL, LIVE_WH, refiner, None)


def quantised(xy: np.ndarray) -> np.ndarray:
    """Cell centres: what a coarse match can say."""
    return (np.floor(xy / CELL) + 0.5) * CELL


def test_many_agreeing_coarse_cells_carry_a_model_at_cell_precision():
    rng = np.random.default_rng(0)
    demo = grid()
    truth = similarity(demo, 170.0, 0.3, (220.0, 160.0))
    live = quantised(truth)
    wrong = rng.choice(len(demo), 4, replace=False)
    live[wrong] = rng.uniform((0, 0), LIVE_WH, (4, 2))
    result = verify(demo, live)
    assert result.success and "cell precision" in result.reason, result.reason
    probe = rng.uniform((0, 0), DEMO_WH, (200, 2))
    error = np.linalg.norm(result.predict(probe) - similarity(probe, 170.0, 0.3, (220.0, 160.0)), axis=1)
    assert np.median(error) < 0.25 * CELL and error.max() < 0.75 * CELL


def test_too_few_or_too_small_a_share_of_agreeing_cells_is_refused():
    rng = np.random.default_rng(1)
    demo = grid()
    truth = quantised(similarity(demo, 30.0, 0.5, (120.0, 40.0)))
    # unrelated: coarse matches anywhere
    result = verify(demo, rng.uniform((0, 0), LIVE_WH, demo.shape))
    assert not result.success
    # half agree (a plain photo's collapsed matches reach 0.36-0.47): below the share
    live = truth.copy()
    wrong = rng.choice(len(demo), len(demo) // 2, replace=False)
    live[wrong] = rng.uniform((0, 0), LIVE_WH, (len(wrong), 2))
    assert not verify(demo, live).success
    # all agree, but fewer than min_coarse_inliers (24) cells
    few = rng.choice(len(demo), 20, replace=False)
    assert len(demo) > 24 and not verify(demo[few], truth[few]).success
