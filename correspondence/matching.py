"""Dense matching primitives on descriptor sets: cosine NN, windowed soft-argmax, mutual NN, cycle distance.

Everything is vectorised and chunked over query rows, so a 4096 x 4096 patch similarity never has to exist
at once (peak memory is ``chunk x M`` floats).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import InputError

NEG_INF = -1e9  # cells excluded from a soft-argmax window or outside a mask get this logit: no weight
DEFAULT_CHUNK = 1024


def normalise(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return F.normalize(x.float(), dim=dim, eps=1e-12)


@dataclass(frozen=True)
class NNResult:
    index: torch.Tensor  # (N,) best target index per query
    score: torch.Tensor  # (N,) its cosine similarity


def nearest_neighbors(query: torch.Tensor, target: torch.Tensor, target_valid: torch.Tensor | None = None,
                      chunk: int = DEFAULT_CHUNK, *, checked: bool = False) -> NNResult:
    """Cosine argmax of each query row over the (valid) target rows. ``checked``: the caller knows the mask
    leaves a cell (e.g. the image cells, or a mask checked once per demo), so no host synchronisation is spent on
    checking it again."""
    q, t = normalise(query), normalise(target)
    valid = _check_valid(target_valid, t.shape[0], t.device, checked)
    idx, score = [], []
    for start in range(0, q.shape[0], chunk):
        sim = q[start:start + chunk] @ t.T
        if valid is not None:
            sim = sim.masked_fill(~valid[None], float("-inf"))
        best = sim.max(dim=1)
        idx.append(best.indices)
        score.append(best.values)
    if not idx:
        return NNResult(torch.zeros(0, dtype=torch.long, device=q.device), torch.zeros(0, device=q.device))
    return NNResult(torch.cat(idx), torch.cat(score))


def top_k_neighbors(query: torch.Tensor, target: torch.Tensor, k: int, target_valid: torch.Tensor | None = None,
                    chunk: int = DEFAULT_CHUNK) -> NNResult:
    """The ``k`` best (valid) target rows of each query row by cosine: ``(N, k)`` indices and scores, best first
    (``k`` is capped at the number of targets). The caller guarantees a non-empty mask: no host synchronisation."""
    q, t = normalise(query), normalise(target)
    valid = _check_valid(target_valid, t.shape[0], t.device, checked=True)
    k = max(1, min(int(k), t.shape[0]))
    idx, score = [], []
    for start in range(0, q.shape[0], chunk):
        sim = q[start:start + chunk] @ t.T
        if valid is not None:
            sim = sim.masked_fill(~valid[None], float("-inf"))
        best = sim.topk(k, dim=1)
        idx.append(best.indices)
        score.append(best.values)
    if not idx:
        return NNResult(torch.zeros((0, k), dtype=torch.long, device=q.device), torch.zeros((0, k), device=q.device))
    return NNResult(torch.cat(idx), torch.cat(score))


def _check_valid(valid: torch.Tensor | None, n: int, device: torch.device, checked: bool = False
                 ) -> torch.Tensor | None:
    """A flat boolean mask on ``device`` (masks may come from the CPU while features live on a GPU)."""
    if valid is None:
        return None
    valid = torch.as_tensor(valid).reshape(-1).bool().to(device)
    if valid.numel() != n:
        raise InputError(f"validity mask has {valid.numel()} entries for {n} target cells")
    if checked:
        return valid
    if valid.is_cuda and torch.cuda.is_current_stream_capturing():
        return valid  # inside a CUDA-graph capture nothing may wait for the GPU; the mask was checked before
    if not valid.any():
        raise InputError("the target mask leaves no valid cell to match into")
    return valid


@dataclass(frozen=True)
class MutualResult:
    forward: NNResult  # source -> target
    backward: NNResult  # target -> source
    mutual: torch.Tensor  # (N,) bool: backward[forward[i]] == i


def mutual_nearest_neighbors(source: torch.Tensor, target: torch.Tensor, source_valid: torch.Tensor | None = None,
                             target_valid: torch.Tensor | None = None, chunk: int = DEFAULT_CHUNK) -> MutualResult:
    """Both-direction argmax in one chunked pass (the column maxima are accumulated across row chunks)."""
    s, t = normalise(source), normalise(target)
    sv, tv = _check_valid(source_valid, s.shape[0], s.device), _check_valid(target_valid, t.shape[0], t.device)
    col_best = torch.full((t.shape[0],), float("-inf"), device=t.device)
    col_idx = torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
    row_idx, row_best = [], []
    for start in range(0, s.shape[0], chunk):
        sim = s[start:start + chunk] @ t.T
        if tv is not None:
            sim = sim.masked_fill(~tv[None], float("-inf"))
        if sv is not None:
            sim = sim.masked_fill(~sv[start:start + chunk, None], float("-inf"))
        rows = sim.max(dim=1)
        row_idx.append(rows.indices)
        row_best.append(rows.values)
        cols = sim.max(dim=0)
        better = cols.values > col_best
        col_best = torch.where(better, cols.values, col_best)
        col_idx = torch.where(better, cols.indices + start, col_idx)
    forward = NNResult(torch.cat(row_idx), torch.cat(row_best))
    backward = NNResult(col_idx, col_best)
    mutual = backward.index[forward.index] == torch.arange(s.shape[0], device=s.device)
    if sv is not None:
        mutual &= sv
    return MutualResult(forward, backward, mutual)


def soft_argmax_window(similarity: torch.Tensor, window: int = 7, beta: float = 0.02,
                       valid: torch.Tensor | None = None, *, relative: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed soft-argmax over similarity maps ``(N, h, w)``, as the SOCO reference (OmniProbe) computes it.

    ``window`` is a half-width: the cells within ``window`` rows and columns of each map's argmax (a
    ``(2 window + 1)^2`` box, 15 x 15 for the default 7) keep their similarity; every other cell (and any invalid
    cell) gets ``-1e9``. The softmax of ``logits / beta`` weights the cell coordinates. Returns the continuous
    ``(u, v)`` per map ``(N, 2)`` and the hard argmax ``(u, v)`` ``(N, 2)``.

    ``relative``: the temperature is ``beta`` times each map's own score spread (its maximum minus the mean over
    its valid cells) instead of an absolute ``beta``. Descriptors with flat similarities (DAISY: top cosines of
    0.95-0.996 with neighbours barely below) otherwise spread the weight over the whole window and drag the
    estimate to the window's centre of mass; relative to the spread, only cells nearly as good as the peak count.
    """
    if similarity.ndim == 2:
        similarity = similarity[None]
    if window < 0 or beta <= 0:
        raise InputError(f"soft-argmax needs window >= 0 and beta > 0, got window={window}, beta={beta}")
    n, h, w = similarity.shape
    sim = similarity.float()
    if valid is not None:
        sim = sim.masked_fill(~torch.as_tensor(valid).reshape(1, h, w).bool().to(sim.device), NEG_INF)
    flat_arg = sim.flatten(1).argmax(1)
    arg_v, arg_u = flat_arg // w, flat_arg % w
    rows = torch.arange(h, device=sim.device).view(1, h, 1)
    cols = torch.arange(w, device=sim.device).view(1, 1, w)
    half = window
    inside = ((rows - arg_v.view(n, 1, 1)).abs() <= half) & ((cols - arg_u.view(n, 1, 1)).abs() <= half)
    if relative:
        live = sim > NEG_INF / 2
        top = sim.flatten(1).max(1).values.view(n, 1, 1)
        mean = (sim * live).sum((1, 2), keepdim=True) / live.sum((1, 2), keepdim=True).clamp_min(1)
        scale = beta * (top - mean).clamp_min(1e-6)
        logits = torch.where(inside & live, (sim - top) / scale, torch.full_like(sim, NEG_INF))
    else:
        logits = torch.where(inside, sim, torch.full_like(sim, NEG_INF)) / beta
    weights = torch.softmax(logits.flatten(1), dim=1).view(n, h, w)
    u = (weights * cols).sum((1, 2))
    v = (weights * rows).sum((1, 2))
    return torch.stack([u, v], 1), torch.stack([arg_u, arg_v], 1).float()


def similarity_maps(query: torch.Tensor, target_grid: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of query descriptors ``(N, C)`` to every cell of a ``(C, h, w)`` map -> ``(N, h, w)``."""
    c, h, w = target_grid.shape
    return (normalise(query) @ normalise(target_grid.reshape(c, -1).T).T).view(-1, h, w)
