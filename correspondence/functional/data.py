"""Training pairs for the functional head (the layout `soco synth functional` writes), with the frozen backbone's
block features computed once per image and background-colour augmentation applied on the fly."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..features import FeatureExtractor, FeatureMap
from ..world.writers.training import TrainingPair, read_training_pair


def list_pairs(root: str | Path, split: str) -> list[Path]:
    root = Path(root)
    index = root / "index.json"
    if not index.is_file():
        raise InputError(f"{str(root)!r} has no index.json: is it a `soco synth functional` dataset?")
    splits = json.loads(index.read_text(encoding="utf-8")).get("splits", {})
    if split not in splits:
        raise InputError(f"{index}: no split {split!r}; it has {sorted(splits)}")
    return [root / split / pair_id for pair_id in splits[split]]


def recolour_background(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Background-colour augmentation: every non-object pixel gets one random colour."""
    out = rgb.copy()
    out[~mask] = rng.integers(0, 256, 3, dtype=np.uint8)
    return out


@dataclass
class EncodedPair:
    pair: TrainingPair
    fmap_a: FeatureMap
    fmap_b: FeatureMap


class PairFeatures:
    """Block features per pair side; unaugmented ones are cached, augmented ones computed per step."""

    def __init__(self, extractor: FeatureExtractor, augment_prob: float = 0.5, seed: int = 0) -> None:
        self.extractor = extractor
        self.augment_prob = augment_prob
        self.rng = np.random.default_rng(seed)
        self._cache: dict[tuple[str, str], FeatureMap] = {}

    def side(self, pair: TrainingPair, side: str, augment: bool) -> FeatureMap:
        rgb, mask = (pair.rgb_a, pair.mask_a) if side == "a" else (pair.rgb_b, pair.mask_b)
        if augment and self.rng.random() < self.augment_prob:
            return self.extractor(recolour_background(rgb, mask, self.rng))
        key = (str(pair.pair_dir), side)
        if key not in self._cache:
            self._cache[key] = self.extractor(rgb)
        return self._cache[key]

    def __call__(self, pair: TrainingPair, augment: bool = True) -> EncodedPair:
        return EncodedPair(pair, self.side(pair, "a", augment), self.side(pair, "b", augment))


def load_pairs(paths: list[Path]) -> list[TrainingPair]:
    return [read_training_pair(p) for p in paths]


def grid_of(fmap: FeatureMap, xy: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """Original pixels -> [-1, 1] sampling coordinates of this map (align_corners=True), on ``device`` (default:
    where the map's features are, so it can be sampled from directly)."""
    from ..coords import grid_to_normalised
    grid = torch.from_numpy(grid_to_normalised(fmap.original_to_grid(xy), fmap.grid_wh)).float()
    return grid.to(fmap.features.device if device is None else device)


def sample_pixels(mask: np.ndarray, n: int, rng: np.random.Generator, part: np.ndarray | None = None) -> np.ndarray:
    """``n`` pixel centres inside ``mask`` (half from ``part`` when given and present), as continuous xy."""
    def pick(region: np.ndarray, k: int) -> np.ndarray:
        rows, cols = np.nonzero(region)
        if len(rows) == 0 or k <= 0:
            return np.zeros((0, 2))
        idx = rng.choice(len(rows), k, replace=len(rows) < k)
        return np.stack([cols[idx] + 0.5, rows[idx] + 0.5], 1)
    if part is not None and (part & mask).any() and (mask & ~part).any():
        return np.concatenate([pick(part & mask, n // 2), pick(mask & ~part, n - n // 2)])
    return pick(mask, n)
