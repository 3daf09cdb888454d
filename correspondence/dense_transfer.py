"""Dense correspondences between a demo region and the live object: every demo cell inside the region matched to
the live object, ranked by the discovery score (similarity and cycle consistency), top-k kept.

Two uses: the functional transfer mode (the region is the demo's functional part, the paper's correspondence
discovery), and the 3D alignment in keypoint mode, where a handful of named keypoints (often on silhouettes,
where depth is unreliable) is too few and too fragile for RANSAC, but a few hundred cells inside the object are
plenty.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError
from .features import FeatureMap
from .functional.inference import discover
from .functional.metrics import discovery_scores


@dataclass(frozen=True)
class DenseSettings:
    top_k: int = 300  # keep the best k matches by discovery score (0 = all)
    require_mutual: bool = True  # keep only mutual nearest neighbours (the live cell's best demo cell is this one)
    max_cycle_px: float | None = None  # drop matches whose demo -> live -> demo cycle misses by more (demo px)

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            raise InputError(f"top_k must be a non-negative integer (0 = keep all), got {self.top_k!r}")
        if self.max_cycle_px is not None and not (np.isfinite(self.max_cycle_px) and self.max_cycle_px >= 0):
            raise InputError(f"max_cycle_px must be a non-negative number of pixels or None, got {self.max_cycle_px}")


@dataclass(frozen=True)
class DenseMatches:
    """``N`` demo -> live pixel correspondences (original-image pixels), best first."""

    demo_xy: np.ndarray  # (N, 2)
    live_xy: np.ndarray  # (N, 2)
    similarity: np.ndarray  # (N,) cosine similarity
    cycle_px: np.ndarray  # (N,) demo -> live -> demo distance in demo pixels
    score: np.ndarray  # (N,) discovery score in [0, 1] (higher = more confident)
    candidates: int  # demo cells considered before mutual/cycle filtering and top-k

    def __len__(self) -> int:
        return len(self.demo_xy)

    @classmethod
    def empty(cls, candidates: int = 0) -> "DenseMatches":
        zero2, zero = np.zeros((0, 2)), np.zeros(0)
        return cls(zero2, zero2.copy(), zero, zero.copy(), zero.copy(), candidates)


def dense_matches(demo: FeatureMap, demo_valid: torch.Tensor, live: FeatureMap, live_valid: torch.Tensor | None,
                  settings: DenseSettings | None = None) -> DenseMatches:
    """Match every valid demo cell into the valid live cells; rank by the discovery score; keep the top k."""
    settings = settings or DenseSettings()
    demo, live = _float32(demo), _float32(live)
    demo_valid = torch.as_tensor(demo_valid, dtype=torch.bool).flatten().to(demo.features.device)
    if demo_valid.numel() != demo.grid_wh[0] * demo.grid_wh[1]:
        raise InputError(f"demo_valid has {demo_valid.numel()} cells, the demo feature grid has "
                         f"{demo.grid_wh[0]}x{demo.grid_wh[1]}")
    if live_valid is None:  # never the padding that made the live image square
        live_valid = live.image_cells()
    live_valid = torch.as_tensor(live_valid, dtype=torch.bool).flatten().to(live.features.device)
    candidates = int(demo_valid.sum())
    if candidates == 0 or not live_valid.any():
        return DenseMatches.empty(candidates)
    found = discover(demo, demo_valid, live, live_valid)
    keep = np.ones(len(found.src_xy), dtype=bool)
    if settings.require_mutual:
        keep &= found.cycle_px <= 1e-6  # the cycle returns to the very same cell
    if settings.max_cycle_px is not None:
        keep &= found.cycle_px <= settings.max_cycle_px
    if not keep.any():
        return DenseMatches.empty(candidates)
    sim, cyc = found.similarity[keep], found.cycle_px[keep]
    score = discovery_scores(sim, cyc)
    order = np.argsort(-score, kind="stable")
    if settings.top_k:
        order = order[:settings.top_k]
    return DenseMatches(found.src_xy[keep][order], found.trg_xy[keep][order], sim[order], cyc[order], score[order],
                        candidates)


def _float32(fmap: FeatureMap) -> FeatureMap:
    """Similarities in float32 on the features' own device (a GPU stays a GPU)."""
    if fmap.features.dtype == torch.float32:
        return fmap
    return FeatureMap(fmap.features.float(), fmap.geometry, fmap.patch_size, fmap.convention, fmap.block_dims)
