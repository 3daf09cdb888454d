"""Keypoint transfer from a demo image to a live image: the one call behind ``soco match``.

A frame runs in two halves. On the features' device (one record, no host synchronisation without a live mask,
so :mod:`correspondence.frame_graph` captures it with the backbone): each demo keypoint's best live *cell*,
searched only among cells of the live image (never its padding) and inside the live mask, and the same for a
grid of demo cells (the dense coarse matches). On the host, after the record came back: each keypoint's coarse
match is refined at the original resolution (:mod:`correspondence.refine`) and, on request, a geometric model
fitted to the dense matches re-predicts or flags the keypoints (:mod:`correspondence.geometry2d`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .dense_field import refine_keypoints
from .device import to_numpy
from .errors import ConfigError
from .features import FeatureExtractor, FeatureMap
from .geometry2d import GeometryResult, GeometrySettings
from .io import KeypointSet
from .local_features import FineRetry, LocalFeatures, detect, match_images
from .matching import nearest_neighbors, similarity_maps, soft_argmax_window, top_k_neighbors
from .preprocessing import to_rgb_array
from .refine import DenseCoarse, FrameRefiner, PreparedImage, RefineSettings, prepare_image
from .transform_search import SEARCH_MODES, DemoSearch, SearchOutcome, search_coarse, search_enabled
from .photometric import refine_verified
from .verify import apply_model, verify_dense

TEMPERATURES = ("relative", "absolute")
PROTOCOLS = ("default", "soco")


@dataclass(frozen=True)
class MatchSettings:
    """How keypoints are matched; recorded in every result.

    Soft-argmax (``method="soft-argmax"``) by default looks at the 3 x 3 cells around the peak with a temperature
    relative to each map's score spread, which does not blur flat (e.g. DAISY) similarity maps; the SOCO
    reference's values (half-width 7, absolute beta 0.02) are the ``soco`` protocol (:meth:`protocol`).
    ``refine``: the coarse cell match is refined at the original resolution (needs both images).
    ``geometry``: a robust model fitted to the dense matches (none | affine | homography | fundamental | auto).
    ``search``: the coarse match's rotation / scale search (:mod:`correspondence.transform_search`).
    """

    method: str = "argmax"  # argmax | soft-argmax
    window: int = 1  # soft-argmax half-width in cells
    beta: float = 0.1  # soft-argmax temperature (times the map's score spread when temperature == relative)
    temperature: str = "relative"  # relative | absolute
    mask_min_fraction: float = 0.25
    cycle_threshold_px: float | None = None  # None: report cycle distance, never reject
    refine: bool = True
    refinement: RefineSettings = field(default_factory=RefineSettings)
    geometry: GeometrySettings = field(default_factory=GeometrySettings)
    dense_cells: int = 1024  # at most this many demo cells are matched densely for a geometric model ...
    dense_cells_refine: int = 256  # ... and for refinement alone (its global affine warp needs far fewer)
    # Test-time rotation / scale search of the coarse match (correspondence/transform_search.py): none | rotation |
    # rotation-scale | auto (rotation-scale in same-object mode, i.e. with a geometric model; none otherwise).
    search: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in ("argmax", "soft-argmax"):
            raise ConfigError(f"match method must be 'argmax' or 'soft-argmax', got {self.method!r}")
        if self.temperature not in TEMPERATURES:
            raise ConfigError(f"temperature must be 'relative' or 'absolute', got {self.temperature!r}")
        if isinstance(self.geometry, str):
            object.__setattr__(self, "geometry", GeometrySettings(model=self.geometry))
        if isinstance(self.refinement, dict):
            object.__setattr__(self, "refinement", RefineSettings(**self.refinement))
        if isinstance(self.geometry, dict):
            object.__setattr__(self, "geometry", GeometrySettings(**self.geometry))
        if self.search not in SEARCH_MODES:
            raise ConfigError(f"search must be one of {', '.join(SEARCH_MODES)}, got {self.search!r}")
        if self.window < 0 or not self.beta > 0:
            raise ConfigError(f"soft-argmax needs window >= 0 and beta > 0, got window={self.window}, beta={self.beta}")

    @classmethod
    def protocol(cls, name: str = "default", **overrides: Any) -> "MatchSettings":
        """``default``: precise transfer (relative soft-argmax temperature, refinement on). ``soco``: the SOCO
        reference's matching (half-width 7, absolute beta 0.02, cell positions, no refinement, no geometry)."""
        if name not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {PROTOCOLS}, got {name!r}")
        base = {} if name == "default" else {"window": 7, "beta": 0.02, "temperature": "absolute", "refine": False,
                                             "search": "none"}
        base.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**base)

    @property
    def needs_dense(self) -> bool:
        return self.refine or self.geometry.model != "none" or search_enabled(self)


@dataclass(frozen=True)
class KeypointMatch:
    name: str
    demo_xy: tuple[float, float]
    live_xy: tuple[float, float]  # the answer: refined / model-predicted when those ran, else the coarse position
    score: float  # cosine similarity at the matched cell
    mutual: bool  # the live cell's best demo match is the demo keypoint's cell
    cycle_distance_px: float  # demo px between the keypoint and its forward-backward match
    accepted: bool = True
    coarse_xy: tuple[float, float] | None = None  # the cell (or soft-argmax) position before refinement
    refined_xy: tuple[float, float] | None = None  # after refinement at the original resolution, if it ran
    refined: bool = False  # the refinement found a confident peak (else the coarse position stands)
    refine_ncc: float | None = None  # its peak normalised cross-correlation
    geometry_inlier: bool | None = None  # the keypoint's own match agrees with the fitted model (None: no model)
    position: str = "cell"  # where live_xy comes from: one of MATCH_POSITIONS (dense-field: the trusted affine field
    # of the dense matches, where the correlation could not refine, correspondence/dense_field.py; interpolated: the
    # epipolar fill, verify.py; pose / pose-hidden: placed by an accepted 3D pose, pose_keypoints.py)


# Every value KeypointMatch.position takes; consumers that encode it (the ROS node's ~/matches) must cover them all.
MATCH_POSITIONS = ("cell", "soft-argmax", "refined", "dense-field", "model", "epipolar", "interpolated", "pose",
                   "pose-hidden")


class MatchList(list):
    """A frame's :class:`KeypointMatch` list (what callers always got) with what was found around it: the dense
    coarse matches, each keypoint's coarse candidates (``(N, k, 2)`` live pixels, NaN-padded; the first is the
    match) and the geometric model (None when not computed)."""

    dense: DenseCoarse | None = None
    candidates: np.ndarray | None = None
    geometry: GeometryResult | None = None
    search: SearchOutcome | None = None  # the rotation / scale hypothesis the coarse match came from, if searched

    @classmethod
    def of(cls, matches, dense: DenseCoarse | None = None, geometry: GeometryResult | None = None,
           candidates: np.ndarray | None = None, search: SearchOutcome | None = None) -> "MatchList":
        out = cls(matches)
        out.dense, out.geometry, out.candidates, out.search = dense, geometry, candidates, search
        return out


@dataclass(frozen=True)
class MatchResult:
    matches: tuple[KeypointMatch, ...]
    settings: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)
    geometry: GeometryResult | None = None
    search: SearchOutcome | None = None

    @property
    def live_xy(self) -> np.ndarray:
        return np.array([m.live_xy for m in self.matches], dtype=np.float64).reshape(-1, 2)

    def as_dict(self) -> dict[str, Any]:
        return {"matches": [asdict(m) for m in self.matches], "settings": self.settings, "timings_s": self.timings_s,
                "geometry": None if self.geometry is None else self.geometry.as_dict(),
                "search": None if self.search is None else self.search.as_dict()}


def _match_cells(demo_desc: torch.Tensor, live: FeatureMap, live_valid: torch.Tensor, settings: MatchSettings
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On the features' device: the matched live (u, v) (continuous for soft-argmax), hard cell index, score."""
    if settings.method == "soft-argmax":
        sims = similarity_maps(demo_desc, live.features)
        valid = live_valid.view(live.grid_wh[1], live.grid_wh[0])
        uv, hard = soft_argmax_window(sims, settings.window, settings.beta, valid,
                                      relative=settings.temperature == "relative")
        index = (hard[:, 1] * live.grid_wh[0] + hard[:, 0]).long()
        score = sims.flatten(1).gather(1, index[:, None])[:, 0]
        return uv, index, score
    nn = nearest_neighbors(demo_desc, live.flat(), live_valid, checked=True)
    width = live.grid_wh[0]
    uv = torch.stack([nn.index % width, torch.div(nn.index, width, rounding_mode="floor")], 1)
    return uv, nn.index, nn.score


@dataclass(frozen=True, eq=False)
class DemoQuery:
    """A demo's keypoints made ready to match: their descriptors and cells, computed once per demo. Rows past the
    keypoints are the dense demo cells (``dense_xy``)."""

    fmap: FeatureMap
    keypoints: KeypointSet
    xy: np.ndarray  # (N, 2) original demo pixels
    descriptors: torch.Tensor  # (N + M, C) on the features' device: keypoints, then dense cells
    valid: torch.Tensor  # demo cells the cycle may return to (the image, inside the demo mask if given)
    cell_index: np.ndarray  # (N + M,) the demo cell each row sits in (for the mutual check)
    dense_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (M, 2) dense cell centres, demo px
    image: PreparedImage | None = None  # the demo's pixels for refinement (None: no refinement possible)
    masked: bool = False  # a demo mask restricts the cycle
    local: LocalFeatures | None = None  # the demo's local features (same-object geometry only), detected once
    local_retry: FineRetry | None = None  # the demo's pixels for the low-contrast retry (local_features.match_images)
    search: DemoSearch | None = None  # what the rotation / scale search needs (None: no search possible)

    @property
    def num_keypoints(self) -> int:
        return len(self.xy)


def _dense_cells(valid: np.ndarray, grid_wh: tuple[int, int], limit: int) -> np.ndarray:
    """Flat indices of valid demo cells on a regular sub-grid holding at most ``limit`` of them."""
    cells = np.flatnonzero(valid)
    if limit <= 0 or len(cells) == 0:
        return np.zeros(0, dtype=np.int64)
    stride = max(1, math.ceil(math.sqrt(len(cells) / limit)))
    while True:
        rows, cols = cells // grid_wh[0], cells % grid_wh[0]
        pick = cells[(rows % stride == stride // 2) & (cols % stride == stride // 2)] if stride > 1 else cells
        if len(pick) <= limit:
            return pick.astype(np.int64)
        stride += 1


def prepare_demo(demo: FeatureMap, keypoints: KeypointSet, demo_mask: np.ndarray | None = None,
                 settings: MatchSettings | None = None, demo_image: Any = None,
                 extractor: FeatureExtractor | None = None) -> DemoQuery:
    """``demo_image``: the demo's pixels, for refinement at the original resolution (without it the matches stay
    at cell precision); with ``extractor`` too, the rotation / scale search is possible (``settings.search``)."""
    settings = settings or MatchSettings()
    xy = demo.check_points(keypoints.xy, "demo keypoint")
    valid = demo.image_cells().flatten()
    if demo_mask is not None:
        masked = demo.cell_mask(demo_mask, settings.mask_min_fraction).flatten() & valid
        valid = masked if bool(masked.any()) else demo.cell_mask(demo_mask, settings.mask_min_fraction).flatten()
    cells = np.round(demo.original_to_grid(xy)).astype(int)
    gw, gh = demo.grid_wh
    index = np.clip(cells[:, 1], 0, gh - 1) * gw + np.clip(cells[:, 0], 0, gw - 1)
    descriptors = demo.sample(xy)
    dense = np.zeros(0, dtype=np.int64)
    if settings.needs_dense:
        limit = settings.dense_cells if settings.geometry.model != "none" else settings.dense_cells_refine
        dense = _dense_cells(to_numpy(valid, bool), demo.grid_wh, limit)
        descriptors = torch.cat([descriptors, demo.flat()[torch.from_numpy(dense).to(demo.features.device)]], 0)
    dense_xy = demo.cell_to_original(demo.index_to_uv(dense)) if len(dense) else np.zeros((0, 2))
    image = local = retry = None
    if settings.refine and demo_image is not None:
        image = prepare_image(to_rgb_array(demo_image), settings.refinement, levels=True)
    if settings.geometry.model != "none" and settings.geometry.local_features.kind != "none" and demo_image is not None:
        local = detect(to_rgb_array(demo_image), settings.geometry.local_features, demo_mask)
        retry = FineRetry(to_rgb_array(demo_image), demo_mask)
    search = None
    if search_enabled(settings) and extractor is not None and demo_image is not None:
        search = DemoSearch(extractor, to_rgb_array(demo_image), keypoints, demo_mask)
    return DemoQuery(demo, keypoints, xy, descriptors, valid, np.concatenate([index, dense]), dense_xy, image,
                     demo_mask is not None, local, retry, search)


def live_cells(live: FeatureMap, live_mask: np.ndarray | None, settings: MatchSettings) -> torch.Tensor | None:
    """The live cells a match may land in for a masked frame: inside the mask and the image (the mask alone when
    the two do not overlap on a whole cell). None without a mask: :func:`match_on_device` then uses the image
    cells, computed on the device."""
    if live_mask is None:
        return None
    masked = live.cell_mask(live_mask, settings.mask_min_fraction).flatten()
    both = masked & live.image_cells().flatten()
    return both if bool(both.any()) else masked


def match_prepared(query: DemoQuery, live: FeatureMap, live_mask: np.ndarray | None = None,
                   settings: MatchSettings | None = None, live_image: Any = None
                   ) -> tuple[MatchList, dict[str, float]]:
    """Match a prepared demo into a live feature map. Everything runs on the features' device and crosses to
    the host once (one synchronisation per frame on a GPU); then, with ``live_image``, refinement and geometry
    run on the host (:func:`refine_and_verify`)."""
    settings = settings or MatchSettings()
    t0 = time.perf_counter()
    live_valid = live_cells(live, live_mask, settings)
    host = to_numpy(match_on_device(query, live, live_valid, settings))
    coarse = matches_from_host(query, live, host, settings)
    timings = {"matching": time.perf_counter() - t0}
    matches, more = searched_refine_and_verify(query, live, coarse, live_image, live_mask, settings)
    return matches, {**timings, **more}


def searched_refine_and_verify(query: DemoQuery, live: FeatureMap, coarse: MatchList, live_image: Any,
                               live_mask: np.ndarray | None, settings: MatchSettings
                               ) -> tuple[MatchList, dict[str, float]]:
    """:func:`refine_and_verify` of the coarse match of the best rotation / scale hypothesis (the identity's,
    ``coarse``, unless the search is on and finds a better-supported one)."""
    if not search_enabled(settings):
        return refine_and_verify(query, live, coarse, live_image, live_mask, settings)
    coarse, live_cell, outcome, local_found = search_coarse(query, live, live_mask, settings, live_image, coarse)
    matches, timings = refine_and_verify(query, live, coarse, live_image, live_mask, settings, live_cell,
                                         local_found)
    matches.search = outcome
    return matches, {"search": outcome.seconds, **timings}


def match_on_device(query: DemoQuery, live: FeatureMap, live_valid: torch.Tensor | None,
                    settings: MatchSettings) -> torch.Tensor:
    """``(N + M, 5)`` float64 on the features' device: matched live (u, v), live cell, demo cell of the cycle,
    score; for the keypoints, then the dense demo cells.

    Only live cells of the image (not its padding; and inside ``live_valid`` when given) are searched. No host
    synchronisation without a mask, so a CUDA graph can capture it with the backbone."""
    valid = live_valid if live_valid is not None else live.image_cells().flatten()
    uv, cells, scores = _match_cells(query.descriptors, live, valid, settings)
    # Cycle: the matched live cell's descriptor back into the demo (its image cells, inside the demo mask if given).
    back = nearest_neighbors(live.flat()[cells], query.fmap.flat(), query.valid, checked=True)
    record = [uv.double(), torch.stack([cells, back.index], 1).double(), scores.double()[:, None]]
    shortlist = _shortlist_size(settings)
    if shortlist:  # the keypoints' best cells, for refinement to re-rank at full resolution (dense rows: -1)
        n = query.num_keypoints
        top = top_k_neighbors(query.descriptors[:n], live.flat(), shortlist, valid).index.double()
        rest = torch.full((query.descriptors.shape[0] - n, top.shape[1]), -1.0, dtype=torch.float64,
                          device=top.device)
        record.append(torch.cat([top, rest], 0))
    return torch.cat(record, 1)


def _shortlist_size(settings: MatchSettings) -> int:
    """Cells per keypoint the record carries for re-ranking: enough to find ``candidates`` that are not
    neighbours of each other (0: no re-ranking)."""
    candidates = settings.refinement.candidates if settings.refine else 1
    return 0 if candidates <= 1 else 4 * candidates


def _inside(xy: np.ndarray, fmap: FeatureMap) -> np.ndarray:
    """Clip original-image positions into the image: ``[0, W) x [0, H)``."""
    g = fmap.geometry
    out = np.array(xy, dtype=np.float64).reshape(-1, 2)
    out[:, 0] = np.clip(out[:, 0], 0.0, np.nextafter(float(g.original_width), 0))
    out[:, 1] = np.clip(out[:, 1], 0.0, np.nextafter(float(g.original_height), 0))
    return out


def _pair(xy: np.ndarray) -> tuple[float, float]:
    return float(xy[0]), float(xy[1])


def matches_from_host(query: DemoQuery, live: FeatureMap, host: np.ndarray, settings: MatchSettings) -> MatchList:
    """The :func:`match_on_device` record as named matches in original pixels, with cycle and mutual checks (and the
    dense coarse matches, when the record has them)."""
    demo = query.fmap
    uv, back_index, scores = host[:, :2], host[:, 3].astype(np.int64), host[:, 4]
    live_xy = _inside(live.cell_to_original(uv), live)
    mutual = back_index == query.cell_index
    n = query.num_keypoints
    back_xy = demo.cell_to_original(demo.index_to_uv(back_index[:n]))
    cycle = np.linalg.norm(back_xy - query.xy, axis=1)
    xy = query.xy
    position = "soft-argmax" if settings.method == "soft-argmax" else "cell"
    threshold = settings.cycle_threshold_px
    # Plain Python values in one conversion per array (this runs on every frame, after a ~1 ms GPU graph).
    demo_pairs, live_pairs = list(map(tuple, xy.tolist())), list(map(tuple, live_xy[:n].tolist()))
    score_list, mutual_list, cycle_list = scores[:n].tolist(), mutual[:n].tolist(), cycle.tolist()
    matches = [KeypointMatch(point.name, demo_pairs[i], live_pairs[i], score_list[i], mutual_list[i], cycle_list[i],
                             threshold is None or cycle_list[i] <= threshold, coarse_xy=live_pairs[i],
                             position=position)
               for i, point in enumerate(query.keypoints.points)]
    dense = None
    if len(host) > n:
        dense = DenseCoarse(query.dense_xy, live_xy[n:], scores[n:], mutual[n:])
    return MatchList.of(matches, dense, candidates=_candidates(host[:n], live, live_xy[:n], settings))


def _candidates(rows: np.ndarray, live: FeatureMap, first: np.ndarray, settings: MatchSettings) -> np.ndarray:
    """Per keypoint the matched position, then up to ``candidates - 1`` more of its best cells, none next to a
    cell already taken (a neighbour lies inside the refinement window anyway)."""
    k = settings.refinement.candidates if rows.shape[1] > 5 else 1
    out = np.full((len(rows), k, 2), np.nan)
    out[:, 0] = first
    if k == 1:
        return out
    width = live.grid_wh[0]
    extra_index, extra_cells = [], []
    for i, row in enumerate(rows):
        chosen = [int(row[2])]
        for cell in row[5:].astype(np.int64):
            if len(chosen) == k:
                break
            if cell >= 0 and all(max(abs(cell % width - c % width), abs(cell // width - c // width)) >= 2
                                 for c in chosen):
                chosen.append(int(cell))
                extra_index.append((i, len(chosen) - 1))
                extra_cells.append(int(cell))
    if extra_cells:
        xy = _inside(live.cell_to_original(live.index_to_uv(np.array(extra_cells))), live)
        for (i, j), p in zip(extra_index, xy):
            out[i, j] = p
    return out


def refine_and_verify(query: DemoQuery, live: FeatureMap, coarse: MatchList, live_image: Any,
                      live_mask: np.ndarray | None, settings: MatchSettings, live_cell_px: float | None = None,
                      local_found: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[MatchList, dict[str, float]]:
    """The host half of a frame: refinement at the original resolution, then the geometric model (each when
    asked for and possible). ``live`` only lends its geometry (a captured graph's template will do);
    ``live_cell_px``: the coarse matches' precision in live pixels when it is not ``live``'s cell (a shrunk live
    view of the search)."""
    timings: dict[str, float] = {}
    matches = list(coarse)
    dense = coarse.dense
    refine = settings.refine and query.image is not None and live_image is not None and dense is not None
    geometry_on = settings.geometry.model != "none" and dense is not None
    if not (refine and matches or geometry_on):
        return MatchList.of(matches, dense), timings
    start = time.perf_counter()
    support = dense.mutual if dense.mutual.sum() >= 6 else np.ones(len(dense.mutual), dtype=bool)
    live_cell = live_cell_px or float(np.mean(live.cell_size_px()))
    live_wh = (live.geometry.original_width, live.geometry.original_height)
    refiner = None
    if refine:
        mask = None if live_mask is None else np.asarray(live_mask).reshape(live_wh[1], live_wh[0]) > 0
        refiner = FrameRefiner(query.image, prepare_image(to_rgb_array(live_image), settings.refinement, levels=False),
                               dense, support, float(np.mean(query.fmap.cell_size_px())), live_cell,
                               settings.refinement, mask)
    if refiner is not None and matches:
        result, by_field, _ = refine_keypoints(refiner, query.xy, coarse.candidates,
                                               np.array([m.coarse_xy for m in matches]))
        matches = [replace(m, live_xy=_pair(result.xy[i]), refined_xy=_pair(result.xy[i]),
                           refined=bool(result.refined[i]),
                           refine_ncc=None if np.isnan(result.ncc[i]) else float(result.ncc[i]),
                           position="refined" if result.refined[i] else "dense-field" if by_field[i] else m.position)
                   for i, m in enumerate(matches)]
        timings["refinement"] = time.perf_counter() - start
    geometry = None
    if geometry_on:
        start = time.perf_counter()
        local = None
        if query.local is not None and live_image is not None:
            def local():  # only when the dense matches alone do not settle the model (see verify_dense)
                if local_found is not None:  # the rotation / scale search already matched them on this frame
                    return local_found
                begin = time.perf_counter()
                found = match_images(query.local, query.local_retry, to_rgb_array(live_image),
                                     settings.geometry.local_features, live_mask)
                timings["local_features"] = time.perf_counter() - begin
                return found
        geometry = verify_dense(dense, support, settings.geometry, live_cell, live_wh, refiner, local)
        geometry = refine_verified(geometry, refiner, settings.geometry.photometric)
        matches = apply_model(geometry, matches, live_wh, refiner, live_cell)
        timings["geometry"] = time.perf_counter() - start
    return MatchList.of(matches, dense, geometry), timings


def match_keypoint_set(demo: FeatureMap, keypoints: KeypointSet, live: FeatureMap,
                       live_mask: np.ndarray | None = None, demo_mask: np.ndarray | None = None,
                       settings: MatchSettings | None = None, demo_image: Any = None, live_image: Any = None,
                       extractor: FeatureExtractor | None = None) -> tuple[MatchList, dict[str, float]]:
    """``demo_image`` and ``live_image`` (the original pixels) make refinement possible, and with ``extractor``
    the rotation / scale search."""
    t0 = time.perf_counter()
    query = prepare_demo(demo, keypoints, demo_mask, settings, demo_image, extractor)
    prepared = time.perf_counter() - t0
    matches, timings = match_prepared(query, live, live_mask, settings, live_image)
    return matches, {**timings, "matching": timings["matching"] + prepared}


def match_keypoints(demo_image: Any, keypoints: KeypointSet, live_image: Any, extractor: FeatureExtractor,
                    live_mask: np.ndarray | None = None, demo_mask: np.ndarray | None = None,
                    settings: MatchSettings | None = None) -> MatchResult:
    """Find each demo keypoint in the live image (inside ``live_mask`` when given)."""
    settings = settings or MatchSettings()
    t0 = time.perf_counter()
    demo, live = extractor.extract_batch([demo_image, live_image])
    t_features = time.perf_counter() - t0
    matches, timings = match_keypoint_set(demo, keypoints, live, live_mask, demo_mask, settings,
                                          demo_image=demo_image, live_image=live_image, extractor=extractor)
    record = {**extractor.describe(), "matching": asdict(settings), "live_mask": live_mask is not None,
              "demo_mask": demo_mask is not None}
    return MatchResult(tuple(matches), record, {"features": t_features, **timings}, matches.geometry,
                       matches.search)


@runtime_checkable
class KeypointMatcher(Protocol):
    """What the pipeline needs from any keypoint matcher: demo keypoints -> live matches. The library's
    :class:`~correspondence.api.Matcher` is one and also exposes its features (``extractor``), which dense matching
    and refinement need; any other object with this call (an external matcher, a test oracle) gives keypoint
    matches only."""

    def __call__(self, demo: Any, keypoints: KeypointSet, live: Any, live_mask: np.ndarray | None = None,
                 demo_mask: np.ndarray | None = None) -> MatchResult: ...
