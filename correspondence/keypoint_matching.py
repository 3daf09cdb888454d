"""Keypoint transfer from a demo image to a live image: the one call behind ``soco match``."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .device import to_numpy
from .features import FeatureExtractor, FeatureMap
from .io import KeypointSet
from .matching import nearest_neighbors, similarity_maps, soft_argmax_window


@dataclass(frozen=True)
class MatchSettings:
    """How keypoints are matched; recorded in every result."""

    method: str = "argmax"  # argmax | soft-argmax
    window: int = 7
    beta: float = 0.02
    mask_min_fraction: float = 0.25
    cycle_threshold_px: float | None = None  # None: report cycle distance, never reject

    def __post_init__(self) -> None:
        if self.method not in ("argmax", "soft-argmax"):
            from .errors import ConfigError
            raise ConfigError(f"match method must be 'argmax' or 'soft-argmax', got {self.method!r}")


@dataclass(frozen=True)
class KeypointMatch:
    name: str
    demo_xy: tuple[float, float]
    live_xy: tuple[float, float]
    score: float  # cosine similarity at the matched cell
    mutual: bool  # the live cell's best demo match is the demo keypoint's cell
    cycle_distance_px: float  # demo px between the keypoint and its forward-backward match
    accepted: bool = True


@dataclass(frozen=True)
class MatchResult:
    matches: tuple[KeypointMatch, ...]
    settings: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def live_xy(self) -> np.ndarray:
        return np.array([m.live_xy for m in self.matches], dtype=np.float64).reshape(-1, 2)

    def as_dict(self) -> dict[str, Any]:
        return {"matches": [asdict(m) for m in self.matches], "settings": self.settings, "timings_s": self.timings_s}


def _match_cells(demo_desc: torch.Tensor, live: FeatureMap, live_valid: torch.Tensor | None,
                 settings: MatchSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On the features' device: the matched live (u, v) (continuous for soft-argmax), hard cell index, score."""
    if settings.method == "soft-argmax":
        sims = similarity_maps(demo_desc, live.features)
        valid = live_valid.view(live.grid_wh[1], live.grid_wh[0]) if live_valid is not None else None
        uv, hard = soft_argmax_window(sims, settings.window, settings.beta, valid)
        index = (hard[:, 1] * live.grid_wh[0] + hard[:, 0]).long()
        score = sims.flatten(1).gather(1, index[:, None])[:, 0]
        return uv, index, score
    nn = nearest_neighbors(demo_desc, live.flat(), live_valid)
    width = live.grid_wh[0]
    uv = torch.stack([nn.index % width, torch.div(nn.index, width, rounding_mode="floor")], 1)
    return uv, nn.index, nn.score


@dataclass(frozen=True, eq=False)
class DemoQuery:
    """A demo's keypoints made ready to match: their descriptors and cells, computed once per demo."""

    fmap: FeatureMap
    keypoints: KeypointSet
    xy: np.ndarray  # (N, 2) original demo pixels
    descriptors: torch.Tensor  # (N, C) on the features' device
    valid: torch.Tensor | None  # demo cells the cycle may return to (inside the demo mask)
    cell_index: np.ndarray  # (N,) the demo cell each keypoint sits in (for the mutual check)


def prepare_demo(demo: FeatureMap, keypoints: KeypointSet, demo_mask: np.ndarray | None = None,
                 settings: MatchSettings | None = None) -> DemoQuery:
    settings = settings or MatchSettings()
    xy = demo.check_points(keypoints.xy, "demo keypoint")
    valid = demo.cell_mask(demo_mask, settings.mask_min_fraction).flatten() if demo_mask is not None else None
    cells = np.round(demo.original_to_grid(xy)).astype(int)
    gw, gh = demo.grid_wh
    index = np.clip(cells[:, 1], 0, gh - 1) * gw + np.clip(cells[:, 0], 0, gw - 1)
    return DemoQuery(demo, keypoints, xy, demo.sample(xy), valid, index)


def match_prepared(query: DemoQuery, live: FeatureMap, live_mask: np.ndarray | None = None,
                   settings: MatchSettings | None = None) -> tuple[list[KeypointMatch], dict[str, float]]:
    """Match a prepared demo into a live feature map. Everything runs on the features' device and crosses to
    the host once (one synchronisation per frame on a GPU)."""
    settings = settings or MatchSettings()
    t0 = time.perf_counter()
    live_valid = live.cell_mask(live_mask, settings.mask_min_fraction).flatten() if live_mask is not None else None
    host = to_numpy(match_on_device(query, live, live_valid, settings))
    return matches_from_host(query, live, host, settings), {"matching": time.perf_counter() - t0}


def match_on_device(query: DemoQuery, live: FeatureMap, live_valid: torch.Tensor | None,
                    settings: MatchSettings) -> torch.Tensor:
    """``(N, 5)`` float64 on the features' device: matched live (u, v), live cell, demo cell of the cycle, score.

    No host synchronisation (without a mask), so a CUDA graph can capture it with the backbone."""
    uv, cells, scores = _match_cells(query.descriptors, live, live_valid, settings)
    # Cycle: the matched live cell's descriptor back into the demo (restricted to the demo mask if given).
    back = nearest_neighbors(live.flat()[cells], query.fmap.flat(), query.valid)
    return torch.cat([uv.double(), torch.stack([cells, back.index], 1).double(), scores.double()[:, None]], 1)


def matches_from_host(query: DemoQuery, live: FeatureMap, host: np.ndarray, settings: MatchSettings
                      ) -> list[KeypointMatch]:
    """The :func:`match_on_device` record as named matches in original pixels, with cycle and mutual checks."""
    demo = query.fmap
    uv, back_index, scores = host[:, :2], host[:, 3].astype(np.int64), host[:, 4]
    live_xy = live.cell_to_original(uv)
    back_xy = demo.cell_to_original(demo.index_to_uv(back_index))
    cycle = np.linalg.norm(back_xy - query.xy, axis=1)
    mutual = back_index == query.cell_index
    xy = query.xy
    matches = []
    for i, point in enumerate(query.keypoints.points):
        accepted = settings.cycle_threshold_px is None or bool(cycle[i] <= settings.cycle_threshold_px)
        matches.append(KeypointMatch(point.name, (float(xy[i, 0]), float(xy[i, 1])),
                                     (float(live_xy[i, 0]), float(live_xy[i, 1])), float(scores[i]),
                                     bool(mutual[i]), float(cycle[i]), accepted))
    return matches


def match_keypoint_set(demo: FeatureMap, keypoints: KeypointSet, live: FeatureMap,
                       live_mask: np.ndarray | None = None, demo_mask: np.ndarray | None = None,
                       settings: MatchSettings | None = None) -> tuple[list[KeypointMatch], dict[str, float]]:
    t0 = time.perf_counter()
    query = prepare_demo(demo, keypoints, demo_mask, settings)
    prepared = time.perf_counter() - t0
    matches, timings = match_prepared(query, live, live_mask, settings)
    return matches, {"matching": timings["matching"] + prepared}


def match_keypoints(demo_image: Any, keypoints: KeypointSet, live_image: Any, extractor: FeatureExtractor,
                    live_mask: np.ndarray | None = None, demo_mask: np.ndarray | None = None,
                    settings: MatchSettings | None = None) -> MatchResult:
    """Find each demo keypoint in the live image (inside ``live_mask`` when given)."""
    settings = settings or MatchSettings()
    t0 = time.perf_counter()
    demo, live = extractor.extract_batch([demo_image, live_image])
    t_features = time.perf_counter() - t0
    matches, timings = match_keypoint_set(demo, keypoints, live, live_mask, demo_mask, settings)
    record = {**extractor.describe(), "matching": asdict(settings), "live_mask": live_mask is not None,
              "demo_mask": demo_mask is not None}
    return MatchResult(tuple(matches), record, {"features": t_features, **timings})
