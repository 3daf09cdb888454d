"""Functional-correspondence losses and metrics against values computed by hand on tiny inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from correspondence.errors import InputError
from correspondence.functional.losses import (LossTerms, functional_part_loss, info_nce, mask_loss, spatial_loss,
                                              total_loss)
from correspondence.functional.metrics import (aggregate, discovery_curve, discovery_metrics, discovery_scores,
                                               f_measure, iou, normalised_distance, pck_px)


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def nll(pos: float, negs: list[float]) -> float:
    """-log( e^pos / (e^pos + sum e^neg) ), written out."""
    return -math.log(math.exp(pos) / (math.exp(pos) + sum(math.exp(n) for n in negs)))


# ------------------------------------------------------------------------------------------------- info_nce

def test_info_nce_one_anchor_two_negatives():
    a, p = t([[1.0, 0.0]]), t([[0.6, 0.8]])
    negs = t([[0.0, 1.0], [-1.0, 0.0]])  # a.p = 0.6, a.n = 0, -1
    expected = -math.log(math.exp(6.0) / (math.exp(6.0) + math.exp(0.0) + math.exp(-10.0)))
    assert info_nce(a, p, negs, tau=0.1).item() == pytest.approx(expected, rel=1e-12)
    assert info_nce(a, p, negs[None], tau=0.1).item() == pytest.approx(expected, rel=1e-12)  # (N, M, D) form


def test_info_nce_averages_anchors_and_per_anchor_negatives_differ():
    a = t([[1.0, 0.0], [0.0, 1.0]])
    p = t([[1.0, 0.0], [0.0, 1.0]])
    negs = t([[[0.0, 1.0]], [[0.0, -1.0]]])  # anchor 0: a.n = 0; anchor 1: a.n = -1
    expected = (nll(2.0, [0.0]) + nll(2.0, [-2.0])) / 2
    assert info_nce(a, p, negs, tau=0.5).item() == pytest.approx(expected, rel=1e-12)


def test_info_nce_without_negatives_is_zero_and_shapes_are_checked():
    a = t([[1.0, 0.0]])
    assert info_nce(a, a, torch.zeros(0, 2, dtype=torch.float64)).item() == 0.0
    with pytest.raises(InputError):
        info_nce(a, t([[1.0, 0.0], [0.0, 1.0]]), t([[0.0, 1.0]]))
    with pytest.raises(InputError):
        info_nce(a, a, torch.zeros(2, 1, 2))


# ----------------------------------------------------------------------------------------- functional part

def test_functional_part_loss_two_plus_two_pixels():
    emb_a = t([[1.0, 0.0], [0.0, 1.0]])      # a0 part, a1 rest
    emb_b = t([[0.8, 0.6], [-0.6, 0.8]])     # b0 part, b1 rest
    part_a, part_b = torch.tensor([True, False]), torch.tensor([True, False])
    # s / tau with tau = 0.5: a0b0 = 1.6, a0b1 = -1.2, a1b0 = 1.2, a1b1 = 1.6
    terms = [nll(1.6, [-1.2]),   # a0 (part): positive b0, negative b1
             nll(1.6, [1.2]),    # a1 (rest): positive b1, negative b0
             nll(1.6, [1.2]),    # b0 (part): positive a0, negative a1
             nll(1.6, [-1.2])]   # b1 (rest): positive a1, negative a0
    got = functional_part_loss(emb_a, part_a, emb_b, part_b, tau=0.5)
    assert got.item() == pytest.approx(sum(terms) / 4, rel=1e-12)


def test_functional_part_loss_averages_over_positives_and_pools_anchors():
    emb_a = t([[1.0, 0.0], [0.0, 1.0]])                     # a0 part, a1 rest
    emb_b = t([[0.8, 0.6], [0.6, 0.8], [-0.6, 0.8]])        # b0 part, b1 part, b2 rest
    part_a, part_b = torch.tensor([True, False]), torch.tensor([True, True, False])
    s = (emb_a @ emb_b.T / 0.5).tolist()  # s[i][j] = a_i . b_j / tau
    terms = [(nll(s[0][0], [s[0][2]]) + nll(s[0][1], [s[0][2]])) / 2,  # a0: two positives, mean
             nll(s[1][2], [s[1][0], s[1][1]]),                          # a1: one positive, two negatives
             nll(s[0][0], [s[1][0]]),                                   # b0: positive a0, negative a1
             nll(s[0][1], [s[1][1]]),                                   # b1: positive a0, negative a1
             nll(s[1][2], [s[0][2]])]                                   # b2: positive a1, negative a0
    got = functional_part_loss(emb_a, part_a, emb_b, part_b, tau=0.5)
    assert got.item() == pytest.approx(sum(terms) / 5, rel=1e-12)


def test_functional_part_loss_with_no_part_in_one_image_keeps_only_existing_terms():
    emb_a = t([[1.0, 0.0], [0.0, 1.0]])     # a0 part, a1 rest
    emb_b = t([[0.8, 0.6], [-0.6, 0.8]])    # both rest
    s = (emb_a @ emb_b.T / 0.5).tolist()
    # a0: no positive in B; a1: positives b0, b1 but no negative -> both dropped.
    terms = [nll(s[1][0], [s[0][0]]), nll(s[1][1], [s[0][1]])]  # b0, b1: positive a1, negative a0
    got = functional_part_loss(emb_a, torch.tensor([True, False]), emb_b, torch.tensor([False, False]), tau=0.5)
    assert got.item() == pytest.approx(sum(terms) / 2, rel=1e-12)


@pytest.mark.parametrize("nb", [0, 2])
def test_functional_part_loss_with_nothing_to_learn_is_a_differentiable_zero(nb):
    raw_a = torch.randn(3, 4, requires_grad=True)
    raw_b = torch.randn(nb, 4, requires_grad=True)
    loss = functional_part_loss(F.normalize(raw_a, dim=1), torch.zeros(3, dtype=torch.bool),
                                F.normalize(raw_b, dim=1), torch.zeros(nb, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.all(raw_a.grad == 0)


def test_functional_part_loss_checks_mask_shapes():
    with pytest.raises(InputError):
        functional_part_loss(t([[1.0, 0.0]]), torch.tensor([True, False]), t([[1.0, 0.0]]), torch.tensor([True]))


# ------------------------------------------------------------------------------------------- spatial / mask

def test_spatial_loss_identity_construction():
    e = torch.eye(3, dtype=torch.float64)
    # S / tau = 10 I: every row and column is -log(e^10 / (e^10 + 2 e^0)) = log(1 + 2 e^-10)
    assert spatial_loss(e, e, tau=0.1).item() == pytest.approx(math.log(1 + 2 * math.exp(-10.0)), rel=1e-12)
    # swapped rows: the true match scores 0 against a wrong one at 10
    swapped = e[[1, 0]][:, :2]
    assert spatial_loss(e[:2, :2], swapped, tau=0.1).item() == pytest.approx(math.log(1 + math.exp(10.0)))


def test_spatial_loss_averages_both_directions():
    a = t([[1.0, 0.0], [0.0, 1.0]])
    b = t([[1.0, 0.0], [0.6, 0.8]])  # S / tau (tau = 1) = [[1, .6], [0, .8]]: rows and columns differ
    rows = (nll(1.0, [0.6]) + nll(0.8, [0.0])) / 2
    cols = (nll(1.0, [0.0]) + nll(0.8, [0.6])) / 2
    assert spatial_loss(a, b, tau=1.0).item() == pytest.approx((rows + cols) / 2, rel=1e-12)
    with pytest.raises(InputError):
        spatial_loss(a, b[:1])


def test_mask_loss_is_mean_bce_with_logits():
    got = mask_loss(t([0.0, 2.0, -1.0]), torch.tensor([True, False, False]))
    expected = (math.log(2.0) + math.log(1 + math.exp(2.0)) + math.log(1 + math.exp(-1.0))) / 3
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_total_loss_weights_sum_to_twelve_by_default():
    terms = total_loss(t(1.0), t(2.0), t(3.0))
    assert isinstance(terms, LossTerms)
    assert terms.total.item() == pytest.approx((1 + 2 + 10 * 3) / 12)
    assert (terms.functional.item(), terms.mask.item(), terms.spatial.item()) == (1.0, 2.0, 3.0)
    assert total_loss(t(1.0), t(2.0), t(3.0), w_mask=0.0, w_spatial=1.0).total.item() == pytest.approx(2.0)


def test_losses_backpropagate_finite_gradients():
    torch.manual_seed(0)
    raw_a = torch.randn(12, 8, requires_grad=True)
    raw_b = torch.randn(10, 8, requires_grad=True)
    logits = torch.randn(12, requires_grad=True)
    a, b = F.normalize(raw_a, dim=1), F.normalize(raw_b, dim=1)
    part_a, part_b = torch.arange(12) < 4, torch.arange(10) % 3 == 0
    terms = total_loss(functional_part_loss(a, part_a, b, part_b),
                       mask_loss(logits, part_a),
                       spatial_loss(a[:10], b) + info_nce(a[:5], b[:5], b[5:]))
    terms.total.backward()
    for g in (raw_a.grad, raw_b.grad, logits.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


# ---------------------------------------------------------------------------------------- label transfer

def test_pck_is_strict_at_the_threshold_and_distance_is_normalised():
    true = np.zeros((5, 2))
    pred = np.array([[0, 0], [0, 10], [9, 12], [23, 0], [18, 24]], dtype=float)  # distances 0, 10, 15, 23, 30
    assert pck_px(pred, true) == {23: 3 / 5, 15: 2 / 5, 10: 1 / 5}
    assert normalised_distance(pred, true) == pytest.approx((0 + 10 + 15 + 23 + 30) / 5 / 224)
    assert normalised_distance(pred, true, image_size=100) == pytest.approx(15.6 / 100)
    with pytest.raises(InputError):
        pck_px(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(InputError):
        normalised_distance(pred, true[:3])


# --------------------------------------------------------------------------------------------- discovery

GT_SRC = np.array([[10, 10], [50, 50]], dtype=float)
GT_TRG = np.array([[100, 100], [150, 150]], dtype=float)
# candidates in shuffled order; by score: c0 (.9), c1 (.8), c2 (.7), c3 (.6)
CANDS = {  # name: (src, trg, score)
    "c2": ([50, 50], [100, 101], 0.7),  # source near GT 1, target near GT 0: not one GT pair -> FP
    "c0": ([11, 10], [100, 102], 0.9),  # GT 0, distances 1 and 2
    "c3": ([52, 50], [150, 153], 0.6),  # GT 1, distances 2 and 3
    "c1": ([10, 12], [101, 100], 0.8),  # GT 0 again, distances 2 and 1
}
SRC = np.array([v[0] for v in CANDS.values()], dtype=float)
TRG = np.array([v[1] for v in CANDS.values()], dtype=float)
SCORES = np.array([v[2] for v in CANDS.values()])


def test_discovery_curve_hand_computed_at_tau_5():
    curve = discovery_curve(SRC, TRG, SCORES, GT_SRC, GT_TRG, tau=5)
    # 4 candidates: k = 1..25 keeps 1, 26..50 keeps 2, 51..75 keeps 3, 76..100 keeps 4
    # kept 1: c0 TP, GT0 -> P 1, R 1/2;  kept 2: +c1 TP (GT0 again) -> P 1, R 1/2
    # kept 3: +c2 FP -> P 2/3, R 1/2;    kept 4: +c3 TP covers GT1 -> P 3/4, R 1
    blocks = [(1.0, 0.5, 2 / 3), (1.0, 0.5, 2 / 3), (2 / 3, 0.5, 4 / 7), (0.75, 1.0, 6 / 7)]
    assert np.array_equal(curve.k, np.arange(1, 101))
    for i, (p, r, f) in enumerate(blocks):
        sl = slice(25 * i, 25 * (i + 1))
        np.testing.assert_allclose(curve.precision[sl], p)
        np.testing.assert_allclose(curve.recall[sl], r)
        np.testing.assert_allclose(curve.f1[sl], f)
    assert curve.best_f1 == pytest.approx(6 / 7)
    # AP: recall rises 0 -> 1/2 at P = 1 (k = 1), then 1/2 -> 1 at P = 3/4 (k = 76)
    assert curve.average_precision == pytest.approx(0.5 * 1.0 + 0.5 * 0.75)


def test_discovery_thresholds_are_strict_and_metrics_per_tau():
    # tau 3: c3's target is exactly 3 px away -> FP; GT1 never covered.
    # kept 1, 2: P 1, R 1/2 (F1 2/3); kept 3: P 2/3 (F1 4/7); kept 4: P 1/2 (F1 1/2). AP = 1/2 * 1.
    # tau 2: c0 (target at 2), c1 (source at 2), c3 all miss -> nothing is found.
    out = discovery_metrics(SRC, TRG, SCORES, GT_SRC, GT_TRG, taus=(5, 3, 2))
    assert set(out) == {5, 3, 2}
    assert out[5] == pytest.approx({"best_f1": 6 / 7, "ap": 0.875})
    assert out[3] == pytest.approx({"best_f1": 2 / 3, "ap": 0.5})
    assert out[2] == {"best_f1": 0.0, "ap": 0.0}


def test_discovery_empty_inputs_give_zero_curves():
    empty = discovery_curve(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), GT_SRC, GT_TRG, tau=5)
    assert empty.best_f1 == 0.0 and empty.average_precision == 0.0
    no_gt = discovery_curve(SRC, TRG, SCORES, np.zeros((0, 2)), np.zeros((0, 2)), tau=5)
    assert no_gt.best_f1 == 0.0 and np.all(no_gt.precision == 0)
    with pytest.raises(InputError):
        discovery_curve(SRC, TRG, SCORES[:3], GT_SRC, GT_TRG, tau=5)


def test_discovery_curve_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    n, m, tau = 257, 40, 15.0
    gt_src, gt_trg = rng.uniform(0, 224, (m, 2)), rng.uniform(0, 224, (m, 2))
    near = rng.integers(0, m, n)
    src = gt_src[near] + rng.normal(0, 10, (n, 2))
    trg = np.where(rng.random((n, 1)) < 0.6, gt_trg[near] + rng.normal(0, 10, (n, 2)), rng.uniform(0, 224, (n, 2)))
    scores = rng.random(n)
    curve = discovery_curve(src, trg, scores, gt_src, gt_trg, tau)
    hit = ((np.linalg.norm(src[:, None] - gt_src[None], axis=2) < tau)
           & (np.linalg.norm(trg[:, None] - gt_trg[None], axis=2) < tau))
    order = np.argsort(-scores, kind="stable")
    for k in range(1, 101):
        kept = order[: math.ceil(k * n / 100)]
        assert curve.precision[k - 1] == pytest.approx(hit[kept].any(axis=1).mean())
        assert curve.recall[k - 1] == pytest.approx(hit[kept].any(axis=0).mean())
    assert 0 < curve.best_f1 < 1 and 0 < curve.average_precision < 1


def test_discovery_scores_min_max_and_constant_arrays():
    np.testing.assert_allclose(discovery_scores([0.2, 0.6, 1.0], [4.0, 0.0, 2.0]), [0.0, 0.75, 0.75])
    # constant similarity -> 0.5 everywhere; the ranking comes from the cycle distance alone
    np.testing.assert_allclose(discovery_scores([0.5, 0.5], [1.0, 3.0]), [0.75, 0.25])
    np.testing.assert_allclose(discovery_scores([0.3], [7.0]), [0.5])
    assert discovery_scores([], []).shape == (0,)
    with pytest.raises(InputError):
        discovery_scores([0.1, 0.2], [1.0])


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
