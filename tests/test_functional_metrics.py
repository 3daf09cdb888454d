"""Functional-correspondence losses and metrics: degenerate inputs, shapes and finiteness (the conventions
themselves are pinned against the reference in test_functional_reference.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from correspondence.errors import InputError
from correspondence.functional.losses import functional_loss, mask_loss, spatial_loss, total_loss
from correspondence.functional.metrics import (aggregate, discovery_curve, discovery_scores, f_measure, iou,
                                               minmax, pck_px)


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


# ------------------------------------------------------------------------------------------------- losses

def test_losses_backpropagate_finite_gradients():
    parts = [_unit(3, 8, 16, seed=i).requires_grad_() for i in range(4)]
    lf = functional_loss(*parts)
    lm = mask_loss(torch.randn(3, 8, requires_grad=True), torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8))
    ls = spatial_loss(parts[0], parts[2])
    terms = total_loss(lf, lm, ls)
    terms.total.backward()
    assert all(torch.isfinite(p.grad).all() for p in parts)
    assert terms.total.item() == pytest.approx(((lf + lm + 10 * ls) / 12).item(), rel=1e-6)


def test_functional_loss_is_stable_at_small_temperature_and_checks_shapes():
    parts = [_unit(1, 4, 8, seed=i) for i in range(4)]
    assert torch.isfinite(functional_loss(*parts, tau=1e-3))
    with pytest.raises(InputError, match="as many rest"):
        functional_loss(parts[0], parts[1][:, :2], parts[2], parts[3][:, :2])
    assert torch.isfinite(functional_loss(parts[0], parts[1][:, :2], parts[2], parts[3][:, :2], negneg=False))
    with pytest.raises(InputError):
        functional_loss(parts[0][0], parts[1], parts[2], parts[3])
    with pytest.raises(InputError):
        spatial_loss(parts[0], parts[1][:, :3])
    with pytest.raises(InputError):
        total_loss(None, None, None)


def test_rest_x_rest_are_negatives():
    """Pulling A's rest towards B's rest raises the loss (the opposite of a positive)."""
    a_part, b_part = _unit(1, 2, 4, seed=1), _unit(1, 2, 4, seed=2)
    a_rest = _unit(1, 2, 4, seed=3)
    far = -a_rest
    near = a_rest.clone()
    assert functional_loss(a_part, a_rest, b_part, near) > functional_loss(a_part, a_rest, b_part, far)


# ------------------------------------------------------------------------------------------------ metrics

def test_label_transfer_needs_points_and_discovery_needs_candidates():
    with pytest.raises(InputError):
        pck_px(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(InputError):
        discovery_curve(np.zeros((0, 2)), np.zeros((0, 2)), np.ones((2, 2)), np.ones((2, 2)), 5)
    with pytest.raises(InputError):
        discovery_curve(np.ones((2, 2)), np.ones((2, 2)), np.zeros((0, 2)), np.zeros((0, 2)), 5)


def test_discovery_scores_shapes_and_range():
    rng = np.random.default_rng(0)
    scores = discovery_scores(rng.random(50).astype(np.float32), rng.random(50) * 9)
    assert scores.shape == (50,) and scores.min() >= 0 and scores.max() <= 1
    assert discovery_scores(np.zeros(0, np.float32), np.zeros(0)).shape == (0,)
    with pytest.raises(InputError):
        discovery_scores([0.1, 0.2], [1.0])
    assert minmax(np.array([3.0, 3.0]), 0.25).tolist() == [0.25, 0.25]
    assert minmax(np.array([1, 3]), 0.0).tolist() == [0.0, 1.0]


# --------------------------------------------------------------------------------------------------- masks

def test_iou_and_f_measure_small_masks():
    pred = np.array([[1, 1, 1, 0]], dtype=bool)
    true = np.array([[0, 1, 1, 0]], dtype=bool)
    assert iou(pred, true) == pytest.approx(2 / 3)
    # P = 2/3, R = 1 -> F1 = 2 * (2/3) / (5/3) = 4/5; F(beta^2 = 4) = 5 * (2/3) / (8/3 + 1) = 10/11
    assert f_measure(pred, true) == pytest.approx(0.8)
    assert f_measure(pred, true, beta2=4.0) == pytest.approx(10 / 11)
    pred2 = np.array([[1, 1, 1, 0]], dtype=bool)
    true2 = np.array([[0, 1, 0, 1]], dtype=bool)  # P = 1/3, R = 1/2 -> F1 = 0.4, IoU = 1/4
    assert f_measure(pred2, true2) == pytest.approx(0.4)
    assert iou(pred2, true2) == pytest.approx(0.25)


def test_mask_metrics_empty_cases():
    empty = np.zeros((2, 2), dtype=bool)
    some = np.eye(2, dtype=bool)
    assert iou(empty, empty) == 1.0 and f_measure(empty, empty) == 1.0
    assert iou(empty, some) == 0.0 and f_measure(empty, some) == 0.0
    assert iou(some, empty) == 0.0 and f_measure(some, empty) == 0.0
    with pytest.raises(InputError):
        iou(empty, np.zeros((2, 3), dtype=bool))


# ------------------------------------------------------------------------------------------------ aggregate

def test_aggregate_splits_within_and_across_category():
    records = [{"within_category": True, "pck@23": 1.0, "pair": "mug_0-mug_1"},
               {"within_category": True, "pck@23": 0.5},
               {"within_category": False, "pck@23": 0.0, "iou": np.float32(0.25)}]
    out = aggregate(records)
    assert out["within"] == {"pck@23": 0.75}
    assert out["across"] == {"pck@23": 0.0, "iou": 0.25}
    assert out["all"] == pytest.approx({"pck@23": 0.5, "iou": 0.25})
    assert aggregate(records[:2])["across"] == {}
    with pytest.raises(InputError):
        aggregate([{"pck@23": 1.0}])
