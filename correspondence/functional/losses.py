"""Training losses of the function-conditioned head, as the released reference computes them
(``ConditionedDino.forward`` / ``spatial_forward`` and ``train.train_step`` in ``cond_corr``).

All embeddings are L2-normalised, so dot products are cosine similarities; ``tau = 0.1`` for both InfoNCE terms.

* :func:`functional_loss` (``forward``, ``sample_all_pairs=True``, ``negneg_loss=True``): for each pair ``p`` of
  images sharing a function, ``n`` part points and ``n`` rest-of-object points per image. Every ordered part x part
  combination ``(a, i)`` is a row with the positive ``f0_part[a] . f1_part[i]``; its negatives are indexed by
  ``i`` alone (the reference's ``unsqueeze(1).expand``): ``f0_part[i] . f1_rest[:]``, ``f1_part[i] . f0_rest[:]``
  and ``f0_rest[i] . f1_rest[:]`` (rest x rest as negatives). Cross-entropy with the positive as class 0,
  averaged over all ``P n^2`` rows. Computed without materialising the ``P n^2 x 3n`` logits (each row's
  negatives only depend on ``(p, i)``): ``mean(logaddexp(pos, LSE_neg[p, i]) - pos)``, the same value and
  gradient. The rest x rest term needs as many rest as part points (the reference's ``torch.cat`` needs it too).
* :func:`spatial_loss` (``spatial_forward``): ``N`` true correspondences of two views of one object, one
  direction: row ``i`` of view 1 must pick row ``i`` of view 2 among all ``N``; the mean over all rows.
* :func:`mask_loss`: ``(BCE(f0_part, 1) + BCE(f1_part, 1) + BCE(f0_rest, 0) + BCE(f1_rest, 0)) / 4`` on the
  mask head's logits of the sampled points.
* :func:`total_loss` (``train_step``): ``(L_func + w_mask L_mask + w_spatial L_spatial) / (1 + w_mask +
  w_spatial)`` when the step has both batches (the default: a full functional and a full spatial batch every
  step), ``(L_func + w_mask L_mask [+ w_spatial L_spatial]) / (1 + w_mask)`` when it has one of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError

DEFAULT_TAU = 0.1
W_MASK = 1.0
W_SPATIAL = 10.0

__all__ = ["DEFAULT_TAU", "LossTerms", "W_MASK", "W_SPATIAL", "functional_loss", "mask_loss", "spatial_loss",
           "total_loss"]


def _check(name: str, x: torch.Tensor, ndim: int = 3) -> None:
    if x.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions (pairs, points, dim), got shape {tuple(x.shape)}")


def functional_loss(f0_part: torch.Tensor, f0_rest: torch.Tensor, f1_part: torch.Tensor, f1_rest: torch.Tensor,
                    tau: float = DEFAULT_TAU, negneg: bool = True) -> torch.Tensor:
    """The reference's functional-part InfoNCE; each input ``(P, n, D)`` (pairs, points, dim)."""
    for name, x in (("f0_part", f0_part), ("f0_rest", f0_rest), ("f1_part", f1_part), ("f1_rest", f1_rest)):
        _check(name, x)
    if f0_part.shape != f1_part.shape or f0_rest.shape != f1_rest.shape or f0_part.shape[::2] != f0_rest.shape[::2]:
        raise InputError(f"part {tuple(f0_part.shape)}/{tuple(f1_part.shape)} and rest {tuple(f0_rest.shape)}/"
                         f"{tuple(f1_rest.shape)} embeddings must agree in pairs, points per side and dim")
    if negneg and f0_rest.shape[1] != f0_part.shape[1]:
        raise InputError(f"the rest x rest negatives need as many rest as part points, got {f0_rest.shape[1]} and "
                         f"{f0_part.shape[1]}")
    pos = torch.bmm(f0_part, f1_part.transpose(1, 2)) / tau  # (P, a, i)
    negatives = [torch.bmm(f0_part, f1_rest.transpose(1, 2)), torch.bmm(f1_part, f0_rest.transpose(1, 2))]
    if negneg:
        negatives.append(torch.bmm(f0_rest, f1_rest.transpose(1, 2)))
    neg_lse = torch.logsumexp(torch.cat(negatives, dim=2) / tau, dim=2)  # (P, i)
    return (torch.logaddexp(pos, neg_lse[:, None, :]) - pos).mean()


def spatial_loss(f1: torch.Tensor, f2: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """The reference's spatial InfoNCE, one direction: ``(P, N, D)`` row-aligned correspondences."""
    _check("f1", f1)
    _check("f2", f2)
    if f1.shape != f2.shape:
        raise InputError(f"spatial_loss needs row-aligned correspondences, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    sim = torch.bmm(f1, f2.transpose(1, 2)) / tau  # (P, N, N)
    target = torch.arange(sim.shape[1], device=sim.device).expand(sim.shape[0], -1)
    return F.cross_entropy(sim.flatten(0, 1), target.flatten())


def mask_loss(part_logits_0: torch.Tensor, part_logits_1: torch.Tensor, rest_logits_0: torch.Tensor,
              rest_logits_1: torch.Tensor) -> torch.Tensor:
    """The reference's mask BCE: part points -> 1, rest points -> 0, the four means averaged."""
    ones, zeros = torch.ones_like(part_logits_0), torch.zeros_like(rest_logits_0)
    return (F.binary_cross_entropy_with_logits(part_logits_0, ones)
            + F.binary_cross_entropy_with_logits(part_logits_1, ones)
            + F.binary_cross_entropy_with_logits(rest_logits_0, zeros)
            + F.binary_cross_entropy_with_logits(rest_logits_1, zeros)) / 4


@dataclass(frozen=True)
class LossTerms:
    """The weighted total (to backprop) and the raw terms (to log)."""

    total: torch.Tensor
    functional: torch.Tensor
    mask: torch.Tensor
    spatial: torch.Tensor


def total_loss(l_func: torch.Tensor | None, l_mask: torch.Tensor | None, l_spatial: torch.Tensor | None,
               w_mask: float = W_MASK, w_spatial: float = W_SPATIAL) -> LossTerms:
    """``train_step``'s weighting; a term is None when its batch (or the mask head) is absent."""
    if w_mask < 0 or w_spatial < 0:
        raise InputError(f"loss weights must be >= 0, got w_mask={w_mask}, w_spatial={w_spatial}")
    present = [t for t in (l_func, l_mask, l_spatial) if t is not None]
    if not present:
        raise InputError("total_loss needs at least one term")
    zero = present[0].new_zeros(())
    func = l_func if l_func is not None else zero
    mask = l_mask if l_mask is not None else zero
    spatial = l_spatial if l_spatial is not None else zero
    total = func + w_mask * mask + w_spatial * spatial
    both = l_func is not None and l_spatial is not None
    total = total / ((1.0 + w_mask + w_spatial) if both else (1.0 + w_mask))
    return LossTerms(total=total, functional=func, mask=mask, spatial=spatial)
