"""Training losses of the function-conditioned dense embedding head (Stojanov et al., ICCV 2025).

All contrastive losses take L2-normalised embeddings, so ``a @ b`` is a cosine similarity and the temperature
``tau`` alone sets how peaked the softmax is. The training objective is

    L = (L_func + w_mask * L_mask + w_spatial * L_spatial) / (1 + w_mask + w_spatial)

with ``w_mask = 1`` and ``w_spatial = 10`` (the paper's weighting, i.e. a division by 12). Every loss returns a
0-d tensor; degenerate inputs (no anchors, no valid pairs) give an exact zero that is still connected to the
inputs' graph, so ``total.backward()`` never fails on a batch that happens to contain nothing to learn from.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError

DEFAULT_TAU = 0.1

__all__ = ["DEFAULT_TAU", "LossTerms", "functional_part_loss", "info_nce", "mask_loss", "spatial_loss",
           "total_loss"]


def _zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    """An exact 0 that keeps a ``grad_fn`` whenever any input requires grad (so backward() still works)."""
    total = tensors[0].new_zeros(())
    for t in tensors:
        total = total + t.sum() * 0.0
    return total


def _check_2d(name: str, x: torch.Tensor, dim: int | None = None) -> None:
    if x.ndim != 2:
        raise InputError(f"{name} must be (N, D), got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"{name} has embedding dim {x.shape[1]}, expected {dim}")


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
             tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Mean over anchors of ``-log( e^{a.p/tau} / (e^{a.p/tau} + sum_m e^{a.n_m/tau}) )``.

    ``negatives`` is either per anchor ``(N, M, D)`` or one shared set ``(M, D)`` (the common "all other
    pixels" case, which avoids materialising N copies). ``M = 0`` is allowed: the loss is then exactly 0.
    Computed as ``logsumexp(logits) - logit_pos`` for numerical stability at small ``tau``.
    """
    _check_2d("anchors", anchors)
    n, d = anchors.shape
    _check_2d("positives", positives, d)
    if positives.shape[0] != n:
        raise InputError(f"{n} anchors but {positives.shape[0]} positives")
    if negatives.ndim == 2:
        _check_2d("negatives", negatives, d)
        neg_logits = anchors @ negatives.T
    elif negatives.ndim == 3:
        if negatives.shape[0] != n or negatives.shape[2] != d:
            raise InputError(f"per-anchor negatives must be ({n}, M, {d}), got {tuple(negatives.shape)}")
        neg_logits = torch.einsum("nd,nmd->nm", anchors, negatives)
    else:
        raise InputError(f"negatives must be (N, M, D) or (M, D), got shape {tuple(negatives.shape)}")
    if n == 0:
        return _zero_like_graph(anchors, positives, negatives)
    pos_logits = (anchors * positives).sum(dim=1, keepdim=True)
    logits = torch.cat([pos_logits, neg_logits], dim=1) / tau
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def _part_direction(sim: torch.Tensor, label_anchor: torch.Tensor, label_other: torch.Tensor
                    ) -> tuple[torch.Tensor, int]:
    """Sum of per-anchor losses for anchors in one image against the other image, and how many anchors counted.

    ``sim`` is ``(Na, Nb) / tau``. Only anchors with >= 1 positive and >= 1 negative are kept *before* any
    ``-inf`` masking, so every logsumexp row has a finite entry and backward never sees ``exp(-inf + inf)``.
    """
    same = label_anchor[:, None] == label_other[None, :]
    n_pos = same.sum(dim=1)
    keep = (n_pos > 0) & (n_pos < label_other.shape[0])
    if not bool(keep.any()):
        return sim.sum() * 0.0, 0
    sim, same, n_pos = sim[keep], same[keep], n_pos[keep]
    neg_lse = torch.logsumexp(sim.masked_fill(same, float("-inf")), dim=1, keepdim=True)  # (K, 1), finite
    log_prob = sim - torch.logaddexp(sim, neg_lse)  # log softmax of each entry against all negatives
    per_anchor = -(log_prob * same).sum(dim=1) / n_pos
    return per_anchor.sum(), int(keep.sum())


def functional_part_loss(emb_a: torch.Tensor, part_a: torch.Tensor, emb_b: torch.Tensor, part_b: torch.Tensor,
                         tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Functional-part contrastive loss between two objects sharing a function (e.g. both "pour-with").

    It pulls the functional parts of the two objects together and pushes them away from the rest (the paper's
    part-vs-rest InfoNCE in both directions), and pulls rest pixels to the other object's rest pixels while
    pushing them from its part (the rest-vs-rest term). Both are one symmetric supervised-contrastive loss.
    With labels ``y`` (True = functional part) and ``s_ij = a_i . b_j / tau``, for an anchor ``i`` of image A

        P(i) = {j in B : y_j == y_i}        N(i) = {j in B : y_j != y_i}
        l_i  = -1/|P(i)| * sum_{p in P(i)} log( e^{s_ip} / (e^{s_ip} + sum_{n in N(i)} e^{s_in}) )

    and symmetrically for anchors of B against A (``s`` transposed). Positives and negatives are always taken
    from the *other* image: the loss is about cross-object transfer, not within-image clustering.

    ``L = mean of l_i over all counted anchors of both images`` (pooled, so each pixel weighs the same).

    Degenerate cases: an anchor counts iff it has at least one positive and one negative. Without a positive
    ``l_i`` is undefined; without a negative it is identically 0 with no gradient, and counting it would only
    dilute the mean. So if B has no part pixels, A's part anchors drop out and A's rest anchors (no negative)
    too, leaving B's rest anchors pulled to A's rest and pushed from A's part -- exactly the terms that still
    exist. If no anchor counts (e.g. neither image has a part, or an image is empty), the loss is a zero
    tensor that keeps a ``grad_fn`` when the inputs require grad.
    """
    _check_2d("emb_a", emb_a)
    _check_2d("emb_b", emb_b, emb_a.shape[1])
    part_a, part_b = part_a.to(device=emb_a.device, dtype=torch.bool), part_b.to(device=emb_b.device,
                                                                                  dtype=torch.bool)
    if part_a.shape != (emb_a.shape[0],) or part_b.shape != (emb_b.shape[0],):
        raise InputError(f"part masks {tuple(part_a.shape)}, {tuple(part_b.shape)} do not match embeddings "
                         f"({emb_a.shape[0]},), ({emb_b.shape[0]},)")
    if emb_a.shape[0] == 0 or emb_b.shape[0] == 0:
        return _zero_like_graph(emb_a, emb_b)
    sim = emb_a @ emb_b.T / tau
    sum_ab, n_ab = _part_direction(sim, part_a, part_b)
    sum_ba, n_ba = _part_direction(sim.T, part_b, part_a)
    if n_ab + n_ba == 0:
        return _zero_like_graph(emb_a, emb_b)
    return (sum_ab + sum_ba) / (n_ab + n_ba)


def spatial_loss(emb_a: torch.Tensor, emb_b: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Multi-view spatial InfoNCE over ``N`` true correspondences of the same object (row i of A <-> row i of B).

    ``S = A B^T / tau``; ``L = (CE(S, arange N) + CE(S^T, arange N)) / 2``: each A pixel must pick its own
    match among all N sampled B pixels, and vice versa. This keeps the embedding spatially discriminative
    within a part, which the functional-part loss alone does not ask for. ``N = 0`` gives a graph-connected
    zero; ``N = 1`` gives exactly 0 (no negatives).
    """
    _check_2d("emb_a", emb_a)
    _check_2d("emb_b", emb_b, emb_a.shape[1])
    if emb_a.shape[0] != emb_b.shape[0]:
        raise InputError(f"spatial_loss needs paired rows, got {emb_a.shape[0]} and {emb_b.shape[0]}")
    n = emb_a.shape[0]
    if n == 0:
        return _zero_like_graph(emb_a, emb_b)
    sim = emb_a @ emb_b.T / tau
    target = torch.arange(n, device=sim.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with logits of the functional-part mask head (numerically stable form)."""
    if logits.shape != target.shape:
        raise InputError(f"mask logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    if logits.numel() == 0:
        return _zero_like_graph(logits)
    return F.binary_cross_entropy_with_logits(logits, target.to(dtype=logits.dtype, device=logits.device))


@dataclass(frozen=True)
class LossTerms:
    """The weighted total (to backprop) and the raw terms (to log)."""

    total: torch.Tensor
    functional: torch.Tensor
    mask: torch.Tensor
    spatial: torch.Tensor


def total_loss(l_func: torch.Tensor, l_mask: torch.Tensor, l_spatial: torch.Tensor, w_mask: float = 1.0,
               w_spatial: float = 10.0) -> LossTerms:
    """``(l_func + w_mask l_mask + w_spatial l_spatial) / (1 + w_mask + w_spatial)``: /12 with the defaults.

    Normalising by the weight sum keeps the loss scale (and hence the useful learning rate) independent of
    the chosen weights.
    """
    if w_mask < 0 or w_spatial < 0:
        raise InputError(f"loss weights must be >= 0, got w_mask={w_mask}, w_spatial={w_spatial}")
    total = (l_func + w_mask * l_mask + w_spatial * l_spatial) / (1.0 + w_mask + w_spatial)
    return LossTerms(total=total, functional=l_func, mask=l_mask, spatial=l_spatial)
