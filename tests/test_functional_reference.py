"""Parity with the released reference code (dense-functional-correspondence, ``5_training_and_evaluation/cond_corr``,
``3_pseudo_label/resize_images.py``, ``4_eval_curation/resize_annotations.py``).

Each test pins one convention with a case computed by hand or with a few lines transcribed from the reference's
source (marked ``# reference:``), never from this project's code.
"""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from correspondence.device import to_numpy
from correspondence.functional.evaluate import AnnotatedPair, ChanceMethod, EvaluationCounts, cycle_matches, evaluate_pair
from correspondence.functional.inference import PixelEmbedding
from correspondence.functional.losses import functional_loss, mask_loss, spatial_loss, total_loss
from correspondence.functional.metrics import (average_precision, discovery_curve, discovery_scores, kept_counts,
                                               normalised_distance, pck_px)
from correspondence.functional.model import FunctionalHead, HeadConfig, load_reference_state_dict
from correspondence.object_crop import reference_crop, square_box


# ---- thresholds, normalisation, top-k, AP, score --------------------------------------------------------------

def test_pck_counts_a_point_exactly_at_the_threshold_and_distance_divides_by_223():
    true = np.array([[0, 0], [0, 0], [0, 0]])
    pred = np.array([[0, 10], [6, 8], [0, 23]])  # distances 10, 10 (3-4-5 x 2), 23
    assert pck_px(pred, true, (10, 23)) == {10: 2 / 3, 23: 1.0}  # reference: np.mean(metrics <= threshold)
    assert normalised_distance(pred, true) == pytest.approx((10 + 10 + 23) / 3 / 223)


def test_discovery_ball_query_is_inclusive_at_tau():
    gt_src, gt_trg = np.array([[50, 50]]), np.array([[100, 100]])
    on_the_ball = (np.array([[50, 55]]), np.array([[103, 104]]))  # distances exactly 5 and 5
    curve = discovery_curve(*on_the_ball, gt_src, gt_trg, 5)
    assert curve.precision[-1] == 1.0 and curve.recall[-1] == 1.0
    just_outside = (np.array([[50, 55]]), np.array([[103, 105]]))  # 5 and sqrt(34) > 5
    assert discovery_curve(*just_outside, gt_src, gt_trg, 5).recall[-1] == 0.0


def test_top_k_is_int_of_n_times_the_float_cutoff():
    kept = kept_counts(100)
    # reference: for cutoff in np.arange(0.01, 1.01, 0.01): top_k = int(n_pts * cutoff)
    assert len(kept) == 100
    assert kept[6] == 6  # 100 * 0.06999999999999999 -> 6, not 7
    assert [k for i, k in enumerate(kept) if k != i + 1] == [6]
    assert kept_counts(7).tolist()[:15] == [0] * 14 + [1]  # int(7 * 0.15) = 1
    assert kept_counts(1)[-1] == 1


def test_precision_recall_f1_and_ap_by_hand():
    # 100 candidates, 2 annotated pairs; candidate 0 matches pair 0, candidate 49 matches pair 1, the rest nothing
    src = np.full((100, 2), 200)
    trg = np.full((100, 2), 200)
    src[0], trg[0] = (10, 10), (20, 20)
    src[49], trg[49] = (60, 60), (80, 80)
    gt_src, gt_trg = np.array([[10, 10], [60, 60]]), np.array([[20, 20], [80, 80]])
    curve = discovery_curve(src, trg, gt_src, gt_trg, 5)
    k = curve.kept
    assert k[0] == 1 and curve.precision[0] == 1.0 and curve.recall[0] == 0.5
    assert curve.precision[49] == 2 / 50 and curve.recall[49] == 1.0  # k = 50 keeps candidate 49
    assert curve.precision[48] == 1 / 49 and curve.recall[48] == 0.5
    f1 = [2 * p * r / (p + r) for p, r in zip(curve.precision, curve.recall)]
    assert curve.best_f1 == pytest.approx(max(f1)) == pytest.approx(2 / 3)  # k = 1: P 1, R 0.5
    # reference AP: prepend (R 0, P 1); the first step (R 0 -> 0.5 at P 1) and the step to 1.0 at k = 50
    assert curve.average_precision == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 50))
    assert average_precision([0.5, 0.25], [0.5, 1.0]) == pytest.approx(0.5 * 0.5 + 0.5 * 0.25)


def test_fewer_than_100_candidates_give_finite_values_the_reference_would_make_nan():
    src, trg = np.array([[5, 5]]), np.array([[7, 7]])
    curve = discovery_curve(src, trg, src, trg, 1)
    assert np.isfinite(curve.precision).all() and np.isfinite(curve.f1).all()
    assert curve.kept[:99].max() == 0 and curve.kept[-1] == 1
    assert curve.best_f1 == 1.0 and curve.average_precision == 1.0


def test_discovery_score_is_the_reference_product_and_constant_terms_are_neutral():
    sims = np.array([0.2, 0.5, 0.8, 0.6], dtype=np.float32)
    cycle = np.array([2.0, 0.0, 4.0, 2.0])
    # reference: scores = -(1.0 - normalize(distances)) * normalize(max_sims); np.argsort(scores)
    mm_sim = (sims - sims.min()) / (sims.max() - sims.min())
    mm_cyc = (cycle - cycle.min()) / (cycle.max() - cycle.min())
    reference = -(1.0 - mm_cyc) * mm_sim
    ours = discovery_scores(sims, cycle)
    assert np.allclose(ours, -reference)
    assert np.argsort(-ours, kind="stable").tolist() == np.argsort(reference, kind="stable").tolist() == [1, 3, 0, 2]
    # constant cycle distance (every match cycle-consistent): the similarity alone ranks (the reference: 0 / 0)
    assert discovery_scores(sims, np.zeros(4)).tolist() == pytest.approx(mm_sim.tolist())
    # constant similarity (one candidate included): the cycle distance alone ranks
    assert discovery_scores(np.ones(4, np.float32), cycle).tolist() == pytest.approx((1 - mm_cyc).tolist())
    assert discovery_scores(np.array([0.3], np.float32), np.array([7.0])).tolist() == [1.0]


# ---- crop -------------------------------------------------------------------------------------------------------

def test_crop_geometry_of_a_known_mask():
    image = np.full((100, 100, 3), 40, np.uint8)
    mask = np.zeros((100, 100), bool)
    mask[20:75, 30:85] = True  # rows 20..74, cols 30..84: height = width = 54 (max - min)
    # by hand: padded by 60 -> x 90..144, y 80..134; centre (117, 107); side 1.2 * 54 = 64.8, // 2 = 32
    assert square_box(np.pad(mask, 60)) == (85, 75, 149, 139)
    crop_rgb, crop_mask, crop = reference_crop(image, mask)
    assert crop.box == (85, 75, 149, 139) and crop.ratio == 224 / 64 == 3.5
    points = np.array([[20, 30], [21, 31], [22, 32], [0, 0], [99, 99]])
    # (p + 60 - (75, 85)) * 3.5: (5, 5) -> 17.5 -> 18, (6, 6) -> 21, (7, 7) -> 24.5 -> 24 (half to even),
    # negative -> 0, beyond -> 223
    assert crop.points(points).tolist() == [[18, 18], [21, 21], [24, 24], [0, 0], [223, 223]]
    assert crop_rgb.shape == (224, 224, 3) and crop_mask.shape == (224, 224)
    assert (crop_rgb[0, 0] == 255).all()  # outside the object: white (composite on white, white padding)
    assert (crop_rgb[112, 112] == 40).all() and crop_mask[112, 112] and not crop_mask[0, 0]


# ---- head layout --------------------------------------------------------------------------------------------------

# reference: ConditionedDino(mask_loss=True).state_dict() minus most of the frozen DINOv2 (a few of its keys kept)
REFERENCE_KEYS = {
    "image_embedder.dino_vit.cls_token": (1, 1, 768),
    "image_embedder.dino_vit.blocks.11.mlp.fc2.bias": (768,),
    "image_embedder.lin_proj.weight": (512, 768),
    "image_embedder.w": (3,),
    "mlp_conditioner.mlp.0.weight": (1024, 1024),
    "mlp_conditioner.mlp.0.bias": (1024,),
    "mlp_conditioner.mlp.2.weight": (1024, 1024),
    "mlp_conditioner.mlp.2.bias": (1024,),
    "mlp_conditioner.mlp.4.weight": (256, 1024),
    "mask_projection.weight": (1, 256),
    "mask_projection.bias": (1,),
}


def test_a_reference_layout_head_loads_the_reference_state_dict_names():
    torch.manual_seed(0)
    state = {k: torch.randn(shape) for k, shape in REFERENCE_KEYS.items()}
    head = load_reference_state_dict(FunctionalHead(HeadConfig(feature_dim=768, text_dim=512)), state)
    own = {k: v.shape for k, v in head.state_dict().items()}
    assert own == {k: torch.Size(s) for k, s in REFERENCE_KEYS.items() if ".dino_vit." not in k}
    assert torch.equal(head.image_embedder.lin_proj.weight, state["image_embedder.lin_proj.weight"])
    assert head.mlp_conditioner.mlp[4].bias is None and head.image_embedder.lin_proj.bias is None
    broken = dict(state)
    broken.pop("mlp_conditioner.mlp.2.bias")
    with pytest.raises(Exception, match="missing"):
        load_reference_state_dict(FunctionalHead(HeadConfig(feature_dim=768, text_dim=512)), broken)


def _reference_embedding(head: FunctionalHead, blocks: list[torch.Tensor], lang: torch.Tensor, co: torch.Tensor):
    """DINO_embedder.forward + MLPConditioner + BilinearInterpolator + mask_projection, transcribed."""
    # reference: dino_features = torch.stack(get_intermediate_layers(...), dim=1)  (B, n_blocks, n_patches, C)
    dino_features = torch.stack([b.flatten(2).transpose(1, 2) for b in blocks], dim=1)
    dino_features = head.image_embedder.lin_proj(dino_features)
    w = head.image_embedder.w.softmax(-1).reshape(1, len(blocks), 1, 1)
    dino_features = torch.nn.functional.normalize((dino_features * w).sum(1), dim=-1)
    B, n_patch, C = dino_features.shape
    grid_dim = int(math.sqrt(n_patch))
    grid = dino_features.permute(0, 2, 1).reshape(B, C, grid_dim, grid_dim)
    uv = co.float()  # (col, row), as get_heatmap's co after its two swaps
    uv = (uv - 0) * (1 - -1) / (224 - 0) + -1  # reference: map_to_range(uv, 0, self.im_size, -1, 1)
    f_out = F.grid_sample(grid, uv.unsqueeze(1), mode="bilinear", align_corners=False)
    f_out = f_out.permute(0, 3, 1, 2).squeeze(3)
    fused = torch.cat([f_out, lang.unsqueeze(1).expand(-1, co.shape[1], -1)], dim=-1)
    out = torch.nn.functional.normalize(head.mlp_conditioner.mlp(fused), dim=-1)
    return out, head.mask_projection(out).squeeze(-1)


def test_head_output_equals_the_reference_forward_at_pixels_and_on_the_dense_grid():
    torch.manual_seed(3)
    head = FunctionalHead(HeadConfig(feature_dim=48, text_dim=16, hidden=64, output=32, projection=40)).eval()
    blocks = [torch.randn(1, 48, 16, 16) for _ in range(3)]
    lang = F.normalize(torch.randn(1, 16), dim=-1)
    co = torch.tensor([[[0, 0], [7, 7], [223, 0], [100, 50], [13, 222]]])
    with torch.no_grad():
        want, want_logit = _reference_embedding(head, blocks, lang, co)
        got, got_logit = head.embed_pixels(head.fuse(blocks), co, lang, 224)
        dense, dense_logit = head.dense_pixels(head.fuse(blocks), lang, 224)
    assert torch.allclose(got, want, atol=2e-7) and torch.allclose(got_logit, want_logit, atol=1e-6)
    index = co[0, :, 1] * 224 + co[0, :, 0]  # row-major
    assert torch.allclose(dense[0, index], want[0], atol=2e-7)
    assert torch.allclose(dense_logit[0, index], want_logit[0], atol=1e-6)


# ---- losses ---------------------------------------------------------------------------------------------------

def _reference_functional_logits(f0_fg, f0_bg, f1_fg, f1_bg, T=0.1):
    """ConditionedDino.forward with sample_all_pairs=True and negneg_loss=True, transcribed."""
    n_pairs, n_pos, n_neg = f0_fg.shape[0], f0_fg.shape[1], f0_bg.shape[1]
    l_pos = torch.bmm(f0_fg, f1_fg.permute(0, 2, 1))
    l_neg_f0_f1 = torch.bmm(f0_fg, f1_bg.permute(0, 2, 1))
    l_neg_f1_f0 = torch.bmm(f1_fg, f0_bg.permute(0, 2, 1))
    l_neg_bg = torch.bmm(f0_bg, f1_bg.permute(0, 2, 1))
    l_pos = l_pos.reshape(-1, 1)
    l_neg_f0_f1 = l_neg_f0_f1.unsqueeze(1).expand(n_pairs, n_pos, n_pos, n_neg).reshape(-1, n_neg)
    l_neg_f1_f0 = l_neg_f1_f0.unsqueeze(1).expand(n_pairs, n_pos, n_pos, n_neg).reshape(-1, n_neg)
    l_neg_bg = l_neg_bg.unsqueeze(1).expand(n_pairs, n_pos, n_neg, n_neg).reshape(-1, n_neg)
    l_neg = torch.cat([l_neg_f0_f1, l_neg_f1_f0, l_neg_bg], dim=1)
    return torch.div(torch.cat([l_pos, l_neg], dim=1), T)


def test_functional_loss_equals_the_reference_logits_and_their_gradient():
    torch.manual_seed(5)
    parts = [F.normalize(torch.randn(2, 3, 4, dtype=torch.float64), dim=-1).requires_grad_() for _ in range(4)]
    logits = _reference_functional_logits(*parts)
    # reference: NCESoftmaxLoss: CrossEntropyLoss(x, zeros)
    want = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
    got = functional_loss(*parts, tau=0.1)
    assert torch.allclose(got, want, atol=1e-12)
    grads_want = torch.autograd.grad(want, parts)
    grads_got = torch.autograd.grad(got, parts)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads_got, grads_want))


def test_functional_loss_one_row_by_hand():
    """One pair, one part and one rest point per image (unit vectors in 2-D): a single row."""
    a_part, a_rest = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    b_part, b_rest = torch.tensor([[[0.6, 0.8]]]), torch.tensor([[[0.8, -0.6]]])
    pos = 0.6  # a_part . b_part
    negs = [0.8, 0.8, -0.6]  # a_part . b_rest, b_part . a_rest, a_rest . b_rest
    want = -math.log(math.exp(pos / 0.1) / (math.exp(pos / 0.1) + sum(math.exp(v / 0.1) for v in negs)))
    assert functional_loss(a_part, a_rest, b_part, b_rest).item() == pytest.approx(want, rel=1e-6)


def test_spatial_loss_is_one_direction_over_all_rows():
    torch.manual_seed(6)
    f1 = F.normalize(torch.randn(2, 5, 3), dim=-1)
    f2 = F.normalize(torch.randn(2, 5, 3), dim=-1)
    # reference: spatial_forward: [diagonal, off-diagonal row entries] / T, CE with label 0 over B * n rows
    sim = torch.bmm(f1, f2.permute(0, 2, 1))
    l_pos = sim.diagonal(dim1=-2, dim2=-1).reshape(-1, 1)
    off = ~torch.eye(5, dtype=torch.bool).unsqueeze(0).expand(2, -1, -1)
    logits = torch.cat([l_pos, sim[off].reshape(-1, 4)], dim=1) / 0.1
    want = F.cross_entropy(logits, torch.zeros(10, dtype=torch.long))
    assert torch.allclose(spatial_loss(f1, f2), want, atol=1e-6)
    assert not torch.allclose(spatial_loss(f1, f2), spatial_loss(f2, f1))  # not symmetrised


def test_mask_loss_and_the_total_weighting():
    logits = [torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[-1.0]]), torch.tensor([[3.0]])]
    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))
    want = (bce(2.0, 1) + bce(0.0, 1) + bce(-1.0, 0) + bce(3.0, 0)) / 4
    assert mask_loss(*logits).item() == pytest.approx(want, rel=1e-6)
    one = torch.tensor(1.0)
    assert total_loss(one, one, one).total.item() == pytest.approx(12 / 12)  # both batches: / (1 + 1 + 10)
    assert total_loss(one, one, None).total.item() == pytest.approx(2 / 2)  # functional only: / (1 + 1)
    assert total_loss(None, None, one).total.item() == pytest.approx(10 / 2)  # spatial only: the reference's / 2


# ---- evaluation ---------------------------------------------------------------------------------------------------

def _onehot_embedding(size: int, codes: np.ndarray, part: np.ndarray | None = None) -> PixelEmbedding:
    """Pixel embeddings that are one-hot in a per-pixel code (equal codes -> similarity 1, else 0)."""
    emb = F.one_hot(torch.from_numpy(codes.ravel()).long(), int(codes.max()) + 1).float()
    return PixelEmbedding(emb, size, part)


class _Fixed:
    def __init__(self, a: PixelEmbedding, b: PixelEmbedding) -> None:
        self.by_id = {}
        self.a, self.b = a, b

    def pixels(self, image, function):
        return self.a if image[0, 0, 0] == 0 else self.b


def test_label_transfer_restricted_to_an_empty_predicted_part_lands_on_pixel_0_0():
    size = 32
    mask = np.zeros((size, size), bool)
    mask[8:24, 8:24] = True
    codes = np.arange(size * size).reshape(size, size) % 7
    empty = np.zeros((size, size), bool)
    a = _onehot_embedding(size, codes, part=mask.copy())
    b = _onehot_embedding(size, codes, part=empty)
    image_a, image_b = np.zeros((size, size, 3), np.uint8), np.ones((size, size, 3), np.uint8)
    rc = np.array([[10, 10], [20, 15]])
    pair = AnnotatedPair("p", "pour-with", "mug", "cup", image_a, mask, image_b, mask, rc, rc)
    counts = EvaluationCounts()
    ab, ba = evaluate_pair(pair, _Fixed(a, b), discovery=False, counts=counts)
    # reference: pred_maps *= mask2 (all 0); -= 100 * (1 - mask2) -> constant -100 -> argmax 0 -> (0, 0)
    d = np.linalg.norm(rc, axis=1)
    assert ab["normalised_distance"] == pytest.approx(d.mean() / 223) and ab["empty_region"] is True
    assert counts.skipped == {"empty_predicted_part": 1}
    assert "empty_region" not in ba and ba["pck@10"] >= 0


def test_part_first_discovery_ranks_part_matches_before_the_rest_and_falls_back_under_16_pixels():
    size = 16
    mask = np.ones((size, size), bool)
    part = np.zeros((size, size), bool)
    part[:4, :] = True  # 64 part pixels, 192 rest pixels
    rng = np.random.default_rng(0)
    codes = rng.permutation(size * size).reshape(size, size)  # distinct: every pixel matches itself only
    a = _onehot_embedding(size, codes, part)
    b = _onehot_embedding(size, codes, part)
    # identity correspondences: a part pixel goes to itself, inside the part region
    src, trg = cycle_matches(a, np.flatnonzero(part.ravel()), b, np.flatnonzero(part.ravel()))
    assert (src == trg).all() and len(src) == 64
    image_a, image_b = np.zeros((size, size, 3), np.uint8), np.ones((size, size, 3), np.uint8)
    rc = np.array([[1, 1], [10, 10]])
    pair = AnnotatedPair("p", "f", "mug", "mug", image_a, mask, image_b, mask, rc, rc)
    records = evaluate_pair(pair, _Fixed(a, b))
    assert all(r["part_first"] and r["candidates"] == 256 for r in records)
    tiny = part.copy()
    tiny[:, :] = False
    tiny[0, :15] = True  # 15 part pixels < 16: whole objects
    small = evaluate_pair(pair, _Fixed(_onehot_embedding(size, codes, tiny), _onehot_embedding(size, codes, tiny)))
    assert not any(r["part_first"] for r in small)


def test_part_first_order_in_the_ranked_list():
    """Part -> part candidates come first even when the rest's matches score higher."""
    size = 8
    mask = np.ones((size, size), bool)
    part = np.zeros((size, size), bool)
    part[:2, :] = True  # 16 part pixels, 48 rest
    codes = np.arange(size * size).reshape(size, size)
    a, b = _onehot_embedding(size, codes, part), _onehot_embedding(size, codes, part)
    from correspondence.functional import evaluate as ev
    split = ev._split_regions(mask, part, mask, part)
    assert split is not None
    ranked = [cycle_matches(a, rs, b, rt) for rs, rt in split]
    src = np.concatenate([r[0] for r in ranked])
    assert set(src[:16].tolist()) == set(np.flatnonzero(part.ravel()).tolist())
    assert set(src[16:].tolist()) == set(np.flatnonzero(~part.ravel()).tolist())


def test_chance_draws_the_reference_random_stream():
    size = 8
    mask = np.zeros((size, size), bool)
    mask[2:6, 1:7] = True
    rc_a = np.array([[2, 1], [3, 4], [5, 6]])
    rc_b = np.array([[4, 2], [2, 2], [5, 5]])
    pair = AnnotatedPair("p", "f", "mug", "jug", np.zeros((size, size, 3), np.uint8), mask,
                         np.zeros((size, size, 3), np.uint8), mask, rc_a, rc_b)
    method = ChanceMethod()
    ab, ba = evaluate_pair(pair, method, discovery=False)
    # reference (find_matches with chance=True) after np.random.seed(1234)
    np.random.seed(1234)
    row_indices, col_indices = np.where(mask == 1)
    indices2 = np.array(list(zip(col_indices, row_indices)))
    co1_matches = indices2[np.random.choice(len(indices2), size=len(rc_a), replace=True)]
    co2 = rc_b[:, [1, 0]]
    distances1 = np.sqrt(np.sum((co1_matches - co2) ** 2, axis=1))
    assert ab["normalised_distance"] == pytest.approx(np.mean(distances1) / 223)
    assert ab["pck@10"] == np.mean(distances1 <= 10)


def test_label_transfer_pools_per_direction_and_aggregates_like_gather_results():
    from correspondence.functional.metrics import aggregate
    records = [{"within_category": True, "pck@23": 1.0}, {"within_category": True, "pck@23": 0.5},
               {"within_category": False, "pck@23": 0.0}]
    agg = aggregate(records)
    # reference: within = mean(within list), across = mean(across list), all = mean(within + across)
    assert agg["within"]["pck@23"] == 0.75 and agg["across"]["pck@23"] == 0.0
    assert agg["all"]["pck@23"] == pytest.approx(0.5)
    with pytest.raises(Exception, match="non-finite"):
        aggregate([{"within_category": True, "pck@23": float("nan")}])


def test_reference_discovery_metrics_match_a_transcription_of_the_released_functions():
    rng = np.random.default_rng(1)
    pred1, pred2 = rng.integers(0, 64, (150, 2)), rng.integers(0, 64, (150, 2))
    gt1, gt2 = rng.integers(0, 64, (12, 2)), rng.integers(0, 64, (12, 2))
    for tau in (23, 10, 5):
        # reference: calculate_precision / calculate_recall with cKDTree.query_ball_point
        t1, t2 = cKDTree(gt1), cKDTree(gt2)
        correct = np.array([1 if set(t1.query_ball_point(a, tau)) & set(t2.query_ball_point(b, tau)) else 0
                            for a, b in zip(pred1, pred2)])
        p1, p2 = cKDTree(pred1), cKDTree(pred2)
        recovered = []
        for a, b in zip(gt1, gt2):
            common = set(p1.query_ball_point(a, tau)) & set(p2.query_ball_point(b, tau))
            recovered.append(min(common) if common else float("inf"))
        recovered = np.array(recovered)
        precisions, recalls = [], []
        for cutoff in np.arange(0.01, 1.01, 0.01):
            top_k = int(len(pred1) * cutoff)
            precisions.append(np.sum(correct[:top_k]) / top_k)
            recalls.append(np.mean(recovered < top_k))
        curve = discovery_curve(pred1, pred2, gt1, gt2, tau)
        assert np.allclose(curve.precision, precisions) and np.allclose(curve.recall, recalls)
        ap = np.sum((np.insert(recalls, 0, 0.0)[1:] - np.insert(recalls, 0, 0.0)[:-1]) * np.array(precisions))
        assert curve.average_precision == pytest.approx(ap)


def test_torch_max_keeps_the_first_of_tied_maxima_like_numpy_argmax():
    from correspondence.functional.evaluate import best_match
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    region = np.array([0, 1, 2, 3])
    index, value = best_match(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), target, region, 2)
    assert index.tolist() == [1, 0] and value.tolist() == [1.0, 1.0]
    random.seed(0)
    assert best_match(torch.ones(1, 2), target, np.zeros(0, dtype=np.int64), 2)[0].tolist() == [0]


def test_one_pixel_masks_and_few_points_give_finite_numbers():
    """A one-pixel object (one candidate, constant min-max terms, cutoffs keeping nothing) and fewer than 10 points:
    the reference crashes (one query: get_heatmap squeezes the batch away and ``B, n, m = pred_maps.shape`` raises,
    inference_2D_discovery_HANDAL.py:93; the label transfer's random.sample(.., 10) raises); here every number is
    defined."""
    size = 12
    mask_a = np.zeros((size, size), bool)
    mask_a[3, 4] = True
    mask_b = np.zeros((size, size), bool)
    mask_b[5:9, 5:9] = True
    codes = np.arange(size * size).reshape(size, size) % 5
    a, b = _onehot_embedding(size, codes), _onehot_embedding(size, codes)
    pair = AnnotatedPair("p", "f", "mug", "jug", np.zeros((size, size, 3), np.uint8), mask_a,
                         np.ones((size, size, 3), np.uint8), mask_b, np.array([[3, 4]]), np.array([[6, 6]]))
    for method in (_Fixed(a, b), ChanceMethod()):
        records = evaluate_pair(pair, method)
        for record in records:
            values = [v for k, v in record.items() if k.startswith(("pck", "best_f1", "ap", "normalised"))]
            assert len(values) == 12 and all(np.isfinite(values))
        assert records[0]["candidates"] == 1 and records[1]["candidates"] == 16
    # the reference's search from the one-pixel object: not a NaN, a crash before any score
    with pytest.raises(ValueError, match="not enough values to unpack"):
        _reference_find_cycle_consistent_matches(to_numpy(a.emb), to_numpy(b.emb), mask_a.astype(np.float32),
                                                 mask_b.astype(np.float32), size)
    # with two source pixels it runs (the batch dimension stays; equal codes give it the NaN of the next row)
    two = mask_a.copy()
    two[3, 5] = True
    with np.errstate(invalid="ignore"):
        ranked = _reference_find_cycle_consistent_matches(to_numpy(a.emb), to_numpy(b.emb), two.astype(np.float32),
                                                          mask_b.astype(np.float32), size)
    assert len(ranked[0]) == 2


def test_pairs_without_points_or_mask_are_skipped_and_counted():
    size = 8
    mask = np.ones((size, size), bool)
    image = np.zeros((size, size, 3), np.uint8)
    counts = EvaluationCounts()
    no_points = AnnotatedPair("p", "f", "mug", "mug", image, mask, image, mask, np.zeros((0, 2), int),
                              np.zeros((0, 2), int))
    records = evaluate_pair(no_points, ChanceMethod(), counts=counts)
    assert all("pck@23" not in r and "ap@23" not in r for r in records)
    empty = AnnotatedPair("q", "f", "mug", "mug", image, np.zeros_like(mask), image, mask, np.ones((2, 2), int),
                          np.ones((2, 2), int))
    evaluate_pair(empty, ChanceMethod(), counts=counts)
    assert counts.skipped == {"no_annotated_points": 1, "empty_object_mask": 1}


def _reference_heatmap(f0_feat: np.ndarray, f1_all: np.ndarray, size: int) -> np.ndarray:
    """get_heatmap (correspondence_conditioner.py:458-461): sim = bmm(f0_feat, f1_feat^T).reshape(-1, 224, 224),
    and ``if sim.shape[0] == 1: sim = sim.squeeze(0)`` (one query loses its batch dimension)."""
    sim = (f0_feat @ f1_all.T).reshape(-1, size, size).astype(np.float32)
    if sim.shape[0] == 1:
        sim = sim.squeeze(0)
    return sim


def _reference_find_cycle_consistent_matches(emb1, emb2, mask1, mask2, size):
    """inference_2D_discovery_HANDAL.find_cycle_consistent_matches, transcribed (numpy instead of CUDA)."""
    def normalize(array):
        return (array - array.min()) / (array.max() - array.min())
    row_indices, col_indices = np.where(mask1 == 1)
    indices1 = np.array(list(zip(col_indices, row_indices)))
    pred_maps = _reference_heatmap(emb1[row_indices * size + col_indices], emb2, size)
    pred_maps *= mask2
    pred_maps -= 100 * (1 - mask2)
    B, n, m = pred_maps.shape
    flat_indices = np.argmax(pred_maps.reshape(B, -1), axis=1)
    rows, cols = np.unravel_index(flat_indices, (n, m))
    max_coords = np.stack((cols, rows), axis=1)
    max_sims = normalize(pred_maps[np.arange(len(rows)), rows, cols])
    pred_maps_f1 = _reference_heatmap(emb2[rows * size + cols], emb1, size)
    pred_maps_f1 *= mask1
    pred_maps_f1 -= 100 * (1 - mask1)
    flat_indices = np.argmax(pred_maps_f1.reshape(B, -1), axis=1)
    rows, cols = np.unravel_index(flat_indices, (n, m))
    max_coords_f1 = np.stack((cols, rows), axis=1)
    distances = normalize(np.sqrt(np.sum((max_coords_f1 - indices1) ** 2, axis=1)))
    scores = - (1.0 - distances) * max_sims
    scores_indices = np.argsort(scores, kind="stable")
    return indices1[scores_indices, :], max_coords[scores_indices, :]


def test_cycle_matches_equal_the_transcribed_reference_search():
    size = 20
    rng = np.random.default_rng(4)
    emb1 = F.normalize(torch.from_numpy(rng.standard_normal((size * size, 6))).float(), dim=-1)
    emb2 = F.normalize(torch.from_numpy(rng.standard_normal((size * size, 6))).float(), dim=-1)
    mask1 = np.zeros((size, size), np.float32)
    mask1[3:15, 2:17] = 1
    mask2 = np.zeros((size, size), np.float32)
    mask2[5:19, 4:12] = 1
    want_src, want_trg = _reference_find_cycle_consistent_matches(to_numpy(emb1), to_numpy(emb2), mask1, mask2, size)
    src, trg = cycle_matches(PixelEmbedding(emb1, size), np.flatnonzero(mask1.ravel()),
                             PixelEmbedding(emb2, size), np.flatnonzero(mask2.ravel()))
    got_src = np.stack([src % size, src // size], 1)  # (col, row), as the reference returns
    got_trg = np.stack([trg % size, trg // size], 1)
    assert np.array_equal(got_src, want_src) and np.array_equal(got_trg, want_trg)


# ---- the DINO baseline ------------------------------------------------------------------------------------------

def _reference_dino_pixel_features(tokens: list[torch.Tensor], image_size: int = 224) -> torch.Tensor:
    """``DINO_embedder.get_DINO_feats`` (correspondence_conditioner.py:74-85) on the blocks
    ``get_intermediate_layers(x, n=3, norm=False)`` returns, then ``get_DINO_heatmap`` (:465-494) and
    ``BilinearInterpolator.forward`` (:288-306) for every pixel, transcribed."""
    n_blocks = len(tokens)
    dino_features = torch.stack(tokens, dim=1)  # reference: B, n_blocks, n_patches, C
    w = torch.ones(n_blocks).softmax(-1).reshape(1, n_blocks, 1, 1).to(dino_features.device)
    dino_features = dino_features * w
    dino_features = dino_features.sum(1)
    dino_features = torch.nn.functional.normalize(dino_features, dim=-1)
    y, x = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    f1_co = torch.stack([x.flatten(), y.flatten()], axis=1).unsqueeze(0)
    f1_co = f1_co[:, :, [1, 0]]
    B, n_patch, C = dino_features.shape
    grid_dim = int(math.sqrt(n_patch))
    assert grid_dim * grid_dim == n_patch
    f1_dino_tokens = dino_features.permute(0, 2, 1).reshape(B, C, grid_dim, grid_dim)
    uv = f1_co[:, :, [1, 0]]
    uv = (uv.float() - 0) * (1 - -1) / (image_size - 0) + -1  # map_to_range(uv, 0, 224, -1, 1)
    uv = uv.unsqueeze(1)
    f_out = torch.nn.functional.grid_sample(f1_dino_tokens, uv, mode="bilinear", align_corners=False)
    f_out = f_out.permute(0, 3, 1, 2).squeeze(3).contiguous()
    return torch.nn.functional.normalize(f_out, dim=-1)[0]


def test_dino_baseline_equals_get_dino_feats_to_the_last_bit_on_the_same_blocks():
    """The reference weights each block by softmax(ones(3)) (fp32 1/3), sums, then normalises over the channels of
    the token layout; a mean (a division by 3) over channel-first maps differs in the last bits, and that moved
    the best match of about one query in ten."""
    from correspondence.backbones import create_backbone
    from correspondence.functional.evaluate import best_match
    from correspondence.functional.inference import DinoEmbedder
    torch.manual_seed(0)
    embedder = DinoEmbedder.create(create_backbone("test_vit_tiny"), 224)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    ours, theirs = [], []
    for image in images:
        blocks = embedder.extractor(image).blocks()
        assert len(blocks) == 3
        tokens = [b.float().flatten(1).T.contiguous()[None] for b in blocks]  # get_intermediate_layers: (1, P, C)
        theirs.append(_reference_dino_pixel_features(tokens))
        ours.append(embedder.pixels(image, "pour-with").emb)
        assert ours[-1].dtype == theirs[-1].dtype and torch.equal(ours[-1], theirs[-1])
    # and the best match of every sampled query equals the reference's argmax over its masked heatmap
    mask = np.zeros((224, 224), np.float32)
    mask[40:190, 30:200] = 1
    queries = rng.choice(224 * 224, 300, replace=False)
    pred_maps = torch.bmm(theirs[0][queries][None], theirs[1][None].permute(0, 2, 1)).reshape(-1, 224, 224).numpy()
    pred_maps *= mask
    pred_maps -= 100 * (1 - mask)
    want = np.argmax(pred_maps.reshape(len(queries), -1), axis=1)
    got, _ = best_match(ours[0][torch.from_numpy(queries)], ours[1], np.flatnonzero(mask.ravel() > 0), 224)
    assert np.array_equal(got, want)
