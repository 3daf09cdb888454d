"""What an object looks like at any yaw: its height, its footprint and its colours, measured with depth and gravity.

Why: when the object is turned far from the demo, the live camera sees sides the demo never saw, and appearance
votes (:mod:`~correspondence.localise`) grow few and weak: the object's own votes can score no better than a
distractor's. Some evidence does not depend on the turn about the vertical. With the vertical known (a robot has it
from TF) and metric depth in both views:

- **height**: the object's extent along the vertical;
- **footprint**: its two horizontal extents, sorted (the narrowest width over every horizontal direction, and the
  width across it): a turn about the vertical only rotates the footprint;
- **colours**: the chromaticity histogram ``(r, g) / (r + g + b)`` of its bright pixels
  (:mod:`~correspondence.object_colour`): light changes brightness far more than this ratio, and another instance of
  the category has its colours drawn anew.

Each extent is the 2nd to 98th percentile span of the object's visible points (a stray depth pixel does not widen
it). One view sees part of the object, so the extents are those of its visible surface: from above (a table-top
camera) the top and near sides, which show the whole height and footprint of most objects; an occluded candidate
measures smaller than it is. The live candidate's points are the depth-connected surfaces under its votes (the
depth mask source's rule, :class:`~correspondence.depth_mask.DepthForeground`): an object standing on a visible
table would join the table's surface there, so the pipeline takes the table out of the live depth first
(:mod:`~correspondence.support_plane`, once per frame); where that finds no table, such a candidate measures the
table's extents, which no demo object matches (it is simply not rescued).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .camera import CameraIntrinsics
from .depth_mask import DepthForeground
from .errors import ConfigError, InputError
from .lifting import DepthMap, depth_map
from .object_colour import chromaticity, linear_chromaticity_histogram, white_mix_overlap

#: Horizontal directions (over 180 deg) the footprint's widths are measured along.
FOOTPRINT_DIRECTIONS = 36


@dataclass(frozen=True)
class SignatureSettings:
    """``max_height_ratio`` / ``max_footprint_ratio``: a live candidate's height / each of its sorted footprint
    extents may differ from the demo object's by at most this factor (one view of each sees part of the surface: a
    handle in view or hidden changes a footprint extent by up to 1.6x on the benches' objects, the height by up to
    1.15x). ``min_colour_overlap``: the
    histogram intersection of their chromaticities must reach this. ``min_score``: the appearance score a candidate
    the signature admits still needs (some votes must say *where*; the signature alone says nothing of a frame's
    other objects). ``trim``: the share of points left out at each end of every extent. ``min_extent``: metres
    below which extents compare as equal (a thin part's width is depth noise and its slant). ``bins``: chromaticity
    histogram bins per axis. ``lead_ratio``: a surface whose votes score at least this many times those of every
    other surface under the votes *leads*; a leader is admitted with the looser ``lead_footprint_ratio`` (its height
    and colours still within the strict tolerances): when nearly all of the frame's votes agree on one surface, the
    cue a turn changes most (the visible footprint, with a spout or a cab hidden behind the body: up to x1.61 on the
    benches' targets) needs less margin. A leader's colours agree too when its white-mix overlap
    (:func:`~correspondence.object_colour.white_mix_overlap`: the live colours are the demo's, some hidden, some
    paled by a highlight, up to ``max_white_mix``) reaches ``lead_white_mix_overlap``: a turned truck shows its
    box and hides its cab (histogram overlap 0.50, white-mix 0.99), a lit chair back turns pale (0.36, 0.90), while
    the benches' look-alikes within the lead rule's height and footprint reach 0.77 (docs/live_object.md). The
    histogram overlap alone is not loosened: a same-category look-alike of similar colours leads the votes of a frame
    without the object at overlap 0.44-0.45."""

    enabled: bool = True
    max_height_ratio: float = 1.2
    max_footprint_ratio: float = 1.5
    min_colour_overlap: float = 0.55
    min_score: float = 0.03
    trim: float = 0.02
    min_extent: float = 0.02
    bins: int = 16
    max_points: int = 4000
    lead_ratio: float = 2.0
    lead_footprint_ratio: float = 1.75
    lead_white_mix_overlap: float = 0.85
    max_white_mix: float = 0.7

    def __post_init__(self) -> None:
        for name in ("max_height_ratio", "max_footprint_ratio", "lead_ratio", "lead_footprint_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 1.0):
                raise ConfigError(f"signature {name} must be >= 1, got {value}")
        for name in ("min_colour_overlap", "min_score", "lead_white_mix_overlap", "max_white_mix"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"signature {name} must be in [0, 1], got {value}")
        if not 0.0 <= self.trim < 0.5 or int(self.bins) < 2 or int(self.max_points) < 10:
            raise ConfigError("signature trim must be in [0, 0.5), bins >= 2 and max_points >= 10")


@dataclass(frozen=True, eq=False)
class ObjectSignature:
    """An object's yaw-invariant description in one view (metres; ``colours`` sums to 1, or is all 0 when no pixel
    is bright enough)."""

    height: float
    footprint: tuple[float, float]  # (long, short) horizontal extents
    colours: np.ndarray  # (bins, bins) chromaticity histogram
    points: int  # visible points it was measured on
    linear_colours: np.ndarray | None = None  # (bins, bins) chromaticity histogram in linear light (white mix)

    @classmethod
    def measure(cls, rgb: np.ndarray, depth: np.ndarray | DepthMap, intrinsics: CameraIntrinsics, mask: np.ndarray,
                up: np.ndarray, settings: SignatureSettings | None = None) -> "ObjectSignature":
        """The signature of the ``mask`` pixels with valid depth; ``up``: the vertical in this camera's frame."""
        settings = settings or SignatureSettings()
        depth = depth_map(depth, intrinsics).depth
        mask = np.asarray(mask, bool)
        if mask.shape != depth.shape or np.asarray(rgb).shape[:2] != depth.shape:
            raise InputError(f"signature: mask {mask.shape}, image {np.asarray(rgb).shape[:2]} and depth "
                             f"{depth.shape} must have one size")
        up = _unit(up)
        with np.errstate(invalid="ignore"):
            good = mask & np.isfinite(depth) & (depth > 0)
        rows, cols = np.nonzero(good)
        if len(rows) < 10:
            raise InputError(f"signature: {len(rows)} pixels of the object have depth (needs 10)")
        if len(rows) > settings.max_points:
            keep = np.linspace(0, len(rows) - 1, settings.max_points).astype(np.int64)
            rows, cols = rows[keep], cols[keep]
        xy = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float64)
        points = intrinsics.unproject(xy, depth[rows, cols].astype(np.float64))
        height = _span(points @ up, settings.trim)
        basis = _horizontal_basis(up)
        flat = points @ basis.T  # (N, 2) coordinates in the horizontal plane
        angles = np.linspace(0.0, np.pi, FOOTPRINT_DIRECTIONS, endpoint=False)
        directions = np.stack([np.cos(angles), np.sin(angles)], -1)
        widths = np.array([_span(flat @ d, settings.trim) for d in directions])
        narrow = int(np.argmin(widths))
        across = widths[(narrow + FOOTPRINT_DIRECTIONS // 2) % FOOTPRINT_DIRECTIONS]
        colours = _histogram(np.asarray(rgb)[rows, cols], settings.bins)
        return cls(height, (float(max(across, widths[narrow])), float(widths[narrow])), colours, int(len(rows)),
                   linear_chromaticity_histogram(np.asarray(rgb)[rows, cols], settings.bins))

    def as_dict(self) -> dict:
        return {"height_m": round(self.height, 4), "footprint_m": [round(v, 4) for v in self.footprint],
                "points": self.points}


@dataclass(frozen=True)
class SignatureMatch:
    """How a live candidate's signature compares with the demo object's."""

    height_ratio: float  # max(a / b, b / a) of the heights
    footprint_ratio: float  # the same, the larger over the long and the short extent
    colour_overlap: float  # histogram intersection of the chromaticities, 0..1
    agrees: bool  # all within the settings' tolerances (a leading surface's: the looser ones)
    live: ObjectSignature
    leads: bool = False  # its votes score >= lead_ratio x every other surface's (SignatureCue.vote_components)
    white_mix_overlap: float = 0.0  # the live colours the demo shows, a white mix allowed (object_colour.py)

    def as_dict(self) -> dict:
        return {"height_ratio": round(self.height_ratio, 3), "footprint_ratio": round(self.footprint_ratio, 3),
                "colour_overlap": round(self.colour_overlap, 3),
                "white_mix_overlap": round(self.white_mix_overlap, 3), "leads": bool(self.leads),
                "agrees": bool(self.agrees), **self.live.as_dict()}

    def as_leader(self, settings: SignatureSettings) -> "SignatureMatch":
        """This match for a surface that leads the votes: judged by the looser footprint tolerance, and its colours
        by the white-mix overlap as well."""
        colours = (self.colour_overlap >= settings.min_colour_overlap
                   or self.white_mix_overlap >= settings.lead_white_mix_overlap)
        agrees = self.agrees or (self.height_ratio <= settings.max_height_ratio
                                 and self.footprint_ratio <= settings.lead_footprint_ratio and colours)
        return replace(self, agrees=bool(agrees), leads=True)


def compare(demo: ObjectSignature, live: ObjectSignature, settings: SignatureSettings | None = None
            ) -> SignatureMatch:
    """The size ratios and colour overlap of two signatures, and whether all are within tolerance."""
    settings = settings or SignatureSettings()
    floor = settings.min_extent
    height = _ratio(demo.height, live.height, floor)
    footprint = max(_ratio(a, b, floor) for a, b in zip(demo.footprint, live.footprint))
    overlap = float(np.minimum(demo.colours, live.colours).sum())
    agrees = (height <= settings.max_height_ratio and footprint <= settings.max_footprint_ratio
              and overlap >= settings.min_colour_overlap)
    white_mix = (0.0 if demo.linear_colours is None or live.linear_colours is None else
                 white_mix_overlap(demo.linear_colours, live.linear_colours, settings.max_white_mix))
    return SignatureMatch(height, footprint, overlap, bool(agrees), live, white_mix_overlap=white_mix)


def _ratio(a: float, b: float, floor: float) -> float:
    a, b = max(a, floor, 1e-9), max(b, floor, 1e-9)
    return float(max(a, b) / min(a, b))


@dataclass(frozen=True, eq=False)
class ComponentVotes:
    """The votes on one depth-connected surface of the live frame and that surface's signature match."""

    members: np.ndarray  # (N_votes,) bool: the votes on it
    score: float  # their weights summed over the demo object's cells (localisation's score)
    match: SignatureMatch
    box: np.ndarray  # (2, 2) the surface's pixel box corners, (x0, y0), (x1, y1)


@dataclass(eq=False)
class SignatureCue:
    """What :func:`~correspondence.localise.localise` needs to weigh a live candidate by its signature: the demo
    object's signature, the live frame (RGB, depth, intrinsics) and the vertical in the live camera. The frame's
    depth components are labelled once, on the first candidate asked about."""

    demo: ObjectSignature
    live_rgb: np.ndarray
    live_depth: np.ndarray | DepthMap
    live_intrinsics: CameraIntrinsics
    live_up: np.ndarray
    settings: SignatureSettings = field(default_factory=SignatureSettings)
    _labels: tuple[np.ndarray, int] | None = field(default=None, init=False, repr=False)

    def vote_components(self, votes_xy: np.ndarray, weights: np.ndarray, n_demo: int
                        ) -> list["ComponentVotes"]:
        """The frame's votes grouped by the depth-connected surface they fall on, each surface with a share
        (``weights`` summed over ``n_demo``) of at least ``settings.min_score`` measured and compared with the demo
        object (one that leads the others' scores by ``settings.lead_ratio``, with the looser tolerances); best
        agreeing first, then the others by score."""
        labels, _ = self._components()
        height, width = labels.shape
        xy = np.asarray(votes_xy, dtype=np.float64).reshape(-1, 2)
        under = labels[np.clip(np.floor(xy[:, 1]).astype(int), 0, height - 1),
                       np.clip(np.floor(xy[:, 0]).astype(int), 0, width - 1)]
        surfaces = np.unique(under[under > 0])
        scores = {int(label): float(np.asarray(weights)[under == label].sum() / max(n_demo, 1)) for label in surfaces}
        out = []
        for label in surfaces:
            members = under == label
            score = scores[int(label)]
            if score < self.settings.min_score:
                continue
            rival = max((v for k, v in scores.items() if k != int(label)), default=0.0)
            surface = labels == label
            try:
                live = ObjectSignature.measure(self.live_rgb, self.live_depth, self.live_intrinsics, surface,
                                               self.live_up, self.settings)
            except InputError:  # too few points with depth to measure
                continue
            rows, cols = np.nonzero(surface)
            box = np.array([[cols.min(), rows.min()], [cols.max() + 1.0, rows.max() + 1.0]])
            match = compare(self.demo, live, self.settings)
            if score >= self.settings.lead_ratio * rival:
                match = match.as_leader(self.settings)
            out.append(ComponentVotes(members, score, match, box))
        return sorted(out, key=lambda c: (c.match.agrees, c.score), reverse=True)

    def _components(self) -> tuple[np.ndarray, int]:
        if self._labels is None:
            source = DepthForeground((1e-6, 1e6))
            z, valid = source._valid(depth_map(self.live_depth, self.live_intrinsics).depth)
            self._labels = source._components(z, valid)
        return self._labels


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(v))
    if not (math.isfinite(norm) and norm > 1e-9):
        raise InputError(f"the vertical must be a finite non-zero 3-vector, got {v.tolist()}")
    return v / norm


def _horizontal_basis(up: np.ndarray) -> np.ndarray:
    """(2, 3) two orthonormal directions perpendicular to the unit vector ``up``."""
    helper = np.eye(3)[int(np.argmin(np.abs(up)))]
    first = np.cross(up, helper)
    first /= np.linalg.norm(first)
    return np.stack([first, np.cross(up, first)])


def _span(values: np.ndarray, trim: float) -> float:
    lo, hi = np.quantile(values, [trim, 1.0 - trim])
    return float(hi - lo)


def _histogram(rgb: np.ndarray, bins: int) -> np.ndarray:
    """The (bins, bins) chromaticity histogram of the bright pixels, each spread over its 3 x 3 neighbours (a
    nearby colour under another light still overlaps), summing to 1 (all 0 when none is bright)."""
    from scipy import ndimage

    chroma, known = chromaticity(rgb)
    histogram = np.zeros((bins, bins))
    if known.any():
        index = np.clip((chroma[known] * bins).astype(int), 0, bins - 1)
        np.add.at(histogram, (index[:, 0], index[:, 1]), 1.0)
        histogram = ndimage.uniform_filter(histogram, size=3, mode="constant")
        histogram /= histogram.sum()
    return histogram





def signature_record(cue: SignatureCue, surfaces: list[ComponentVotes], keep: int = 3) -> dict:
    """What the report keeps of a signature check: the demo object's signature and the ``keep`` best surfaces'."""
    return {"demo": cue.demo.as_dict(), "surfaces_checked": len(surfaces),
            "surfaces": [{"score": round(s.score, 4), "votes": int(s.members.sum()), **s.match.as_dict()}
                         for s in surfaces[:keep]]}


def signature_reason(record: dict | None) -> str:
    """The tail of an "object not found" reason after a signature check: the closest surface's figures."""
    if record is None:
        return ""
    if not record["surfaces"]:
        return "; no surface under the votes holds enough of them to weigh its height, footprint and colours"
    best = record["surfaces"][0]
    return (f"; no surface under the votes has the demo object's height, footprint and colours (closest: height "
            f"x{best['height_ratio']:.2f}, footprint x{best['footprint_ratio']:.2f}, colour overlap "
            f"{best['colour_overlap']:.2f}, white-mix {best.get('white_mix_overlap', 0.0):.2f})")
__all__ = ["ComponentVotes", "ObjectSignature", "SignatureCue", "SignatureMatch", "SignatureSettings", "compare",
           "signature_reason", "signature_record"]
