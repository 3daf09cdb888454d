"""Test-time similarity search for same-object matching: any rotation, 0.25-4x scale, with every backbone.

Dense cells of DINOv2, DAISY or any backbone are matched upright and at one scale: a view turned by more than
~40 deg, or nearer / farther by more than ~1.5x, leaves most coarse matches wrong, and the refinement and the
geometric model built on them fail with it. This module searches a small set of similarity hypotheses (rotations
in 45 deg steps; scales 0.25, 0.5, 1, 2, 4) and keeps the one the coarse dense matches support best.

Design (why the demo is the side that turns):

* A hypothesis ``live ~ scale x R(degrees) x demo`` is realised by turning (and, for ``scale < 1``, shrinking) the
  **demo**: those feature maps are extracted once per demo and kept, so a live stream pays only one matrix
  product per hypothesis, never a backbone pass. A live view *larger* than the demo (``scale > 1``) shrinks the
  **live** frame instead (one extraction per frame and scale, shared by every rotation): zooming into the demo
  would need tiles. Warps go into a canvas as large as the turned image, so the extractor's resize does not undo
  the scale; only cells showing the warped image (and the masks) take part.
* Matches found between the warped images are mapped back through the inverse warps, so keypoints, candidates and
  the dense coarse matches (:class:`~correspondence.refine.DenseCoarse`) are in original pixels: the refinement's
  affine warp and the geometric model then follow the found rotation and scale by themselves.
* Score: the mutual dense matches that are inliers of a RANSAC similarity (one coarse cell, in original live
  pixels) whose rotation and scale agree with the hypothesis, over the demo cells that similarity puts inside the
  live image (and mask). The identity goes first and ends the search when it reaches :data:`GOOD_SUPPORT`, so an
  upright frame costs one extra similarity fit. With local features (same-object geometry) their similarity
  orders the rest, so the right hypothesis usually comes second; every hypothesis that reaches the bar stops the
  search, otherwise the best-supported one above :data:`MIN_SUPPORT` wins (the identity when none does).
"""
from __future__ import annotations

import hashlib
import math
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .io import KeypointSet, NamedPoint
from .local_features import match_images
from .preprocessing import to_rgb_array
from .refine import DenseCoarse

if TYPE_CHECKING:
    from .features import FeatureExtractor, FeatureMap
    from .keypoint_matching import DemoQuery, MatchList, MatchSettings

SEARCH_MODES = ("none", "rotation", "rotation-scale", "auto")
ROTATIONS = (0.0, 90.0, 180.0, 270.0, 45.0, 135.0, 225.0, 315.0)  # right angles first: exact, no resampling
SCALES = (1.0, 0.5, 2.0, 0.25, 4.0)  # live object size / demo object size
GOOD_SUPPORT = 0.35  # a hypothesis this well supported ends the search
MIN_SUPPORT = 0.2  # below this no hypothesis is trusted over the identity (unrelated pairs reach 0.15-0.25)
MIN_INLIERS = 8
ANGLE_TOLERANCE = 35.0  # degrees between the fitted similarity and its hypothesis
SCALE_TOLERANCE = 1.8  # factor between the fitted similarity's scale and its hypothesis
NEAREST = 3  # grid hypotheses tried after the local features' estimate
MAX_VARIANTS = 48  # warped demos kept per demo (the oldest go first)


def search_enabled(settings: "MatchSettings") -> bool:
    """``auto``: on in same-object mode (a geometric model is asked for), off otherwise (semantic transfer)."""
    mode = settings.search
    return mode in ("rotation", "rotation-scale") or (mode == "auto" and settings.geometry.model != "none")


def hypotheses(settings: "MatchSettings") -> list["Hypothesis"]:
    scales = (1.0,) if settings.search == "rotation" else SCALES
    return [Hypothesis(degrees, scale) for scale in scales for degrees in ROTATIONS]


@dataclass(frozen=True)
class Hypothesis:
    degrees: float  # the live view is the demo turned by this much (image axes: x right, y down)
    scale: float

    @property
    def demo_scale(self) -> float:
        return min(self.scale, 1.0)

    @property
    def live_zoom(self) -> float:
        """How much the live frame is shrunk (``scale > 1``)."""
        return max(self.scale, 1.0)

    @property
    def identity(self) -> bool:
        return self.degrees == 0.0 and self.scale == 1.0


@dataclass(frozen=True)
class Warp:
    """A similarity ``x' = A x + b`` (continuous pixels) into a ``size`` canvas."""

    matrix: np.ndarray  # (2, 3)
    size: tuple[int, int]  # (width, height)

    def apply(self, xy: np.ndarray) -> np.ndarray:
        return np.asarray(xy, dtype=np.float64).reshape(-1, 2) @ self.matrix[:, :2].T + self.matrix[:, 2]

    def invert(self, xy: np.ndarray) -> np.ndarray:
        inverse = np.linalg.inv(self.matrix[:, :2])
        return (np.asarray(xy, dtype=np.float64).reshape(-1, 2) - self.matrix[:, 2]) @ inverse.T

    def image(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        linear = self.matrix[:, :2]
        shrink = math.sqrt(abs(np.linalg.det(linear)))
        if not nearest and shrink < 0.9:  # anti-aliasing before shrinking
            image = cv2.GaussianBlur(image, (0, 0), 0.5 * math.sqrt(1.0 / shrink ** 2 - 1.0))
        # continuous -> OpenCV pixel centres: x_cv' = A x_cv + (A (0.5, 0.5) + b - 0.5)
        cv = np.hstack([linear, (linear @ [0.5, 0.5] + self.matrix[:, 2] - 0.5)[:, None]])
        return cv2.warpAffine(image, cv, self.size, flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def valid(self, wh: tuple[int, int], mask: np.ndarray | None) -> np.ndarray:
        """Canvas pixels that show the image (inside ``mask`` when given)."""
        source = np.ones((wh[1], wh[0]), np.uint8) if mask is None else (np.asarray(mask).reshape(wh[1], wh[0]) > 0)
        return self.image(source.astype(np.uint8), nearest=True) > 0


def turn_and_shrink(wh: tuple[int, int], degrees: float, scale: float) -> Warp:
    """Rotation by ``degrees`` and scaling by ``scale`` (<= 1) about the image centre, into a canvas as large as
    the turned image at full scale (so the extractor's resize keeps the relative scale)."""
    width, height = wh
    angle = math.radians(degrees)
    c, s = math.cos(angle), math.sin(angle)
    if abs(s) < 1e-9 or abs(c) < 1e-9:
        c, s = round(c), round(s)
    out_w = int(math.ceil(abs(c) * width + abs(s) * height - 1e-6))
    out_h = int(math.ceil(abs(s) * width + abs(c) * height - 1e-6))
    linear = scale * np.array([[c, -s], [s, c]])
    offset = np.array([out_w / 2.0, out_h / 2.0]) - linear @ [width / 2.0, height / 2.0]
    return Warp(np.hstack([linear, offset[:, None]]), (out_w, out_h))


_SHARED: "weakref.WeakKeyDictionary[Any, OrderedDict]" = weakref.WeakKeyDictionary()
SHARED_DEMOS = 4  # demos per extractor whose warped queries are kept across calls


def _shared_variants(extractor: Any, rgb: np.ndarray, keypoints: KeypointSet, mask: np.ndarray | None) -> dict:
    """The warped-demo cache of this (extractor, demo, keypoints, mask): a caller that prepares the same demo on
    every call (``Matcher.__call__``, the benchmark's rows) encodes each warped demo once."""
    digest = hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode())
    digest.update(np.ascontiguousarray(keypoints.xy).tobytes() + "|".join(keypoints.names).encode())
    if mask is not None:
        digest.update(np.packbits(np.asarray(mask) > 0).tobytes())
    try:
        demos = _SHARED.setdefault(extractor, OrderedDict())
    except TypeError:  # not weak-referenceable: no sharing
        return {}
    key = digest.hexdigest()
    if key not in demos:
        while len(demos) >= SHARED_DEMOS:
            demos.popitem(last=False)
        demos[key] = {}
    demos.move_to_end(key)
    return demos[key]


@dataclass(eq=False)
class DemoSearch:
    """What the search needs of a demo, beyond its :class:`DemoQuery`: the extractor, the demo's pixels, its
    keypoints and mask, and the warped demos' queries (made on first use, shared by every query of the same demo
    and extractor)."""

    extractor: "FeatureExtractor"
    rgb: np.ndarray
    keypoints: KeypointSet
    mask: np.ndarray | None
    variants: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.variants = _shared_variants(self.extractor, self.rgb, self.keypoints, self.mask)

    def variant(self, degrees: float, scale: float, settings: "MatchSettings") -> tuple["DemoQuery", Warp]:
        key = (degrees, scale, settings.dense_cells, settings.mask_min_fraction)
        if key not in self.variants:
            while len(self.variants) >= MAX_VARIANTS:
                self.variants.pop(next(iter(self.variants)))
            from .keypoint_matching import prepare_demo
            wh = (self.rgb.shape[1], self.rgb.shape[0])
            warp = turn_and_shrink(wh, degrees, scale)
            fmap = self.extractor.extract_batch([warp.image(self.rgb)], cache=False)[0]
            points = KeypointSet(tuple(NamedPoint(p.name, tuple(map(float, xy)))
                                       for p, xy in zip(self.keypoints.points, warp.apply(self.keypoints.xy))))
            # Every warped demo matches its full dense budget: a far-away live view sees few of its cells.
            variant = replace(settings, refine=True, search="none", dense_cells_refine=settings.dense_cells)
            self.variants[key] = (prepare_demo(fmap, points, warp.valid(wh, self.mask), variant), warp)
        return self.variants[key]


@dataclass(frozen=True)
class SearchOutcome:
    """Which hypothesis the coarse match came from (recorded with the result)."""

    degrees: float
    scale: float
    support: float  # inliers / demo cells the fitted similarity keeps in view
    inliers: int
    tried: int  # hypotheses matched, the identity included
    estimate: tuple[float, float] | None = None  # (degrees, scale) of the local features' similarity, if used
    seconds: float = 0.0

    def hypotheses_line(self) -> str:
        return "the upright match, well supported" if self.tried == 1 and self.support >= GOOD_SUPPORT else \
            f"{self.tried} hypotheses tried"

    def as_dict(self) -> dict[str, Any]:
        return {"degrees": self.degrees, "scale": self.scale, "support": self.support, "inliers": self.inliers,
                "tried": self.tried, "estimate": None if self.estimate is None else list(self.estimate),
                "seconds": self.seconds}


def score(dense: DenseCoarse | None, hypothesis: Hypothesis, live_wh: tuple[int, int], live_mask: np.ndarray | None,
          cell_px: float) -> tuple[float, int]:
    """(support, inliers) of the dense matches under a similarity that agrees with ``hypothesis``."""
    if dense is None or int(dense.mutual.sum()) < MIN_INLIERS:
        return 0.0, 0
    use = dense.mutual
    model, inliers = cv2.estimateAffinePartial2D(dense.demo_xy[use], dense.live_xy[use], method=cv2.RANSAC,
                                                 ransacReprojThreshold=float(cell_px), maxIters=2000,
                                                 confidence=0.995)
    if model is None:
        return 0.0, 0
    scale = math.hypot(model[0, 0], model[1, 0])
    turn = math.degrees(math.atan2(model[1, 0], model[0, 0]))
    off = abs((turn - hypothesis.degrees + 180.0) % 360.0 - 180.0)
    if off > ANGLE_TOLERANCE or not hypothesis.scale / SCALE_TOLERANCE <= scale <= hypothesis.scale * SCALE_TOLERANCE:
        return 0.0, 0
    count = int(inliers.sum())
    if count < MIN_INLIERS:  # a handful of cells agree with any similarity on a tiny view (4 of 15: support 0.27)
        return 0.0, count
    predicted = dense.demo_xy @ model[:, :2].T + model[:, 2]
    inside = (predicted[:, 0] >= 0) & (predicted[:, 0] < live_wh[0]) & (predicted[:, 1] >= 0) & \
             (predicted[:, 1] < live_wh[1])
    if live_mask is not None and inside.any():
        mask = np.asarray(live_mask).reshape(live_wh[1], live_wh[0]) > 0
        cols, rows = predicted[inside, 0].astype(int), predicted[inside, 1].astype(int)
        inside[np.flatnonzero(inside)] = mask[rows, cols]
    return count / max(int(inside.sum()), MIN_INLIERS), count


def _estimate(query: "DemoQuery", live_image: Any, live_mask: np.ndarray | None, settings: "MatchSettings"
              ) -> tuple[tuple[float, float] | None, tuple[np.ndarray, np.ndarray] | None]:
    """(degrees, scale) of a RANSAC similarity of the local-feature matches (None without enough of them), and
    the matches themselves (None without local features), so the verification does not detect them again."""
    if query.local is None or live_image is None:
        return None, None
    found = match_images(query.local, query.local_retry, to_rgb_array(live_image), settings.geometry.local_features,
                         live_mask)
    demo_xy, live_xy = found
    if len(demo_xy) < MIN_INLIERS:
        return None, found
    model, inliers = cv2.estimateAffinePartial2D(demo_xy, live_xy, method=cv2.RANSAC, ransacReprojThreshold=5.0)
    if model is None or int(inliers.sum()) < MIN_INLIERS:
        return None, found
    return (math.degrees(math.atan2(model[1, 0], model[0, 0])) % 360.0, math.hypot(model[0, 0], model[1, 0])), found


def _order(candidates: list[Hypothesis], estimate: tuple[float, float] | None) -> list[Hypothesis]:
    """Without an estimate: the grid in its order. With one: the estimate itself (rounded to 15 deg and a quarter
    octave, so warped demos are reused across frames), then the :data:`NEAREST` grid hypotheses around it (local
    features that agree on a similarity are rarely wrong by more)."""
    if estimate is None:
        return candidates
    degrees, scale = estimate
    scale = float(np.clip(2.0 ** (round(4 * math.log2(scale)) / 4), min(SCALES), max(SCALES)))
    first = Hypothesis(float(round(degrees / 15.0) * 15 % 360), scale)

    def distance(h: Hypothesis) -> float:
        return abs((h.degrees - degrees + 180.0) % 360.0 - 180.0) / 45.0 + abs(math.log2(h.scale / scale))
    rest = sorted((h for h in candidates if h != first), key=distance)[:NEAREST]
    return ([] if first.identity else [first]) + rest


def _live_shrunk(extractor: "FeatureExtractor", live_rgb: np.ndarray, live_mask: np.ndarray | None, zoom: float
                 ) -> tuple["FeatureMap", np.ndarray, Warp]:
    wh = (live_rgb.shape[1], live_rgb.shape[0])
    linear = np.eye(2) / zoom
    offset = np.array([wh[0] / 2.0, wh[1] / 2.0]) * (1.0 - 1.0 / zoom)
    warp = Warp(np.hstack([linear, offset[:, None]]), wh)
    fmap = extractor.extract_batch([warp.image(live_rgb)], cache=False)[0]
    return fmap, warp.valid(wh, live_mask), warp


def _in_original(coarse: "MatchList", query: "DemoQuery", demo_warp: Warp, live_warp: Warp | None,
                 live: "FeatureMap", demo_scale: float) -> "MatchList":
    """A warped pair's coarse matches in the original demo and live pixels."""
    from .keypoint_matching import MatchList, _inside

    def back(xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return xy if live_warp is None else live_warp.invert(xy)
    live_xy = _inside(back(np.array([m.live_xy for m in coarse])), live)
    matches = [replace(m, demo_xy=tuple(query.xy[i].tolist()), live_xy=tuple(live_xy[i].tolist()),
                       coarse_xy=tuple(live_xy[i].tolist()), cycle_distance_px=m.cycle_distance_px / demo_scale)
               for i, m in enumerate(coarse)]
    dense = coarse.dense
    if dense is not None:
        dense = DenseCoarse(demo_warp.invert(dense.demo_xy), _inside(back(dense.live_xy), live), dense.score,
                            dense.mutual)
    candidates = coarse.candidates
    if candidates is not None:
        shape = candidates.shape
        candidates = back(candidates.reshape(-1, 2)).reshape(shape)
        finite = np.isfinite(candidates).all(-1)
        candidates[finite] = _inside(candidates[finite], live)
    return MatchList.of(matches, dense, candidates=candidates)


def search_coarse(query: "DemoQuery", live: "FeatureMap", live_mask: np.ndarray | None, settings: "MatchSettings",
                  live_image: Any, identity: "MatchList"
                  ) -> tuple["MatchList", float, SearchOutcome, tuple[np.ndarray, np.ndarray] | None]:
    """The coarse matches of the best-supported hypothesis in original pixels, the live cell size (original
    pixels) their precision corresponds to, the outcome, and the live local-feature matches when the search
    computed them (the verification reuses them). ``identity``: today's coarse match, already made."""
    from .keypoint_matching import live_cells, match_on_device, matches_from_host
    from .device import to_numpy
    start = time.perf_counter()
    live_wh = (live.geometry.original_width, live.geometry.original_height)
    cell = float(np.mean(live.cell_size_px()))
    support, inliers = score(identity.dense, Hypothesis(0.0, 1.0), live_wh, live_mask, cell)
    upright = best = (support, inliers, Hypothesis(0.0, 1.0), identity, cell)
    tried, estimate, local_found = 1, None, None
    search = query.search
    if support < GOOD_SUPPORT and search is not None and live_image is not None:
        estimate, local_found = _estimate(query, live_image, live_mask, settings)
        live_rgb = to_rgb_array(live_image)
        shrunk: dict[float, tuple] = {}
        for hypothesis in _order([h for h in hypotheses(settings) if not h.identity], estimate):
            variant, demo_warp = search.variant(hypothesis.degrees, hypothesis.demo_scale, settings)
            zoom = hypothesis.live_zoom
            if zoom == 1.0:
                fmap, valid, live_warp = live, live_cells(live, live_mask, settings), None
            else:
                if zoom not in shrunk:
                    shrunk[zoom] = _live_shrunk(search.extractor, live_rgb, live_mask, zoom)
                fmap, mask, live_warp = shrunk[zoom]
                valid = live_cells(fmap, mask, settings)
            coarse = matches_from_host(variant, fmap, to_numpy(match_on_device(variant, fmap, valid, settings)),
                                       settings)
            coarse = _in_original(coarse, query, demo_warp, live_warp, live, hypothesis.demo_scale)
            tried += 1
            cell_px = cell * zoom
            support, inliers = score(coarse.dense, hypothesis, live_wh, live_mask, cell_px)
            if support > best[0]:
                best = (support, inliers, hypothesis, coarse, cell_px)
            if support >= GOOD_SUPPORT:
                break
        if best[0] < MIN_SUPPORT:  # nothing is convincing: keep the upright answer (geometry will judge it)
            best = upright
    support, inliers, hypothesis, coarse, cell_px = best
    outcome = SearchOutcome(hypothesis.degrees, hypothesis.scale, float(support), int(inliers), tried, estimate,
                            time.perf_counter() - start)
    return coarse, cell_px, outcome, local_found
