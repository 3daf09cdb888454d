"""Find the demo object in a live frame from the demo's own features, before any mask exists.

Why: a mask source left to itself segments whatever is near the image centre (:func:`~correspondence.segmentation.
choose_auto_mask`); an object off-centre, or one among others, gets the wrong mask and every later stage works on
the wrong object. The demo object's features say where it is.

Rule (coarse cells, the backbone's own grid, no extra network pass):

1. Every demo object cell is matched against *every* image cell of the live frame; a pair that is a mutual
   nearest neighbour by cosine is a **vote** for that live cell, weighted by its similarity. Mutuality makes each
   live cell's vote go to its single best demo cell, so among several objects of the demo's kind most votes land on
   the one that looks most like the demo.
2. Votes are grouped into **candidates**: connected components (8-neighbours) of the vote grid dilated by
   ``group_radius`` cells.
3. A candidate's votes must agree with one 2D affine map from the demo's cells to the live ones (OpenCV's
   RANSAC, ``inlier_cells`` cells of tolerance): a rigid object seen from a nearby view moves its cells
   together, while an object that merely shares colours or texture with the demo collects votes scattered
   without such an order. The **score** is the sum of the agreeing votes' weights over the number of demo
   object cells: the weighted share of the demo object found there (1.0 = every demo cell has a confident,
   geometrically consistent mutual match).
   b. With both images given, a demo cell votes only among the live cells of its colour (chromaticity,
   r / (r + g + b) and g / (r + g + b) over 5 x 5 px at the cell centres, within ``max_colour_difference``), before
   the mutual nearest neighbours are taken: a weight-free descriptor sees texture, not hue, so another instance of
   the category (other colours) would otherwise take the votes of the demo's object.
4. With depth in both views (:class:`DepthViews`, what the pipeline has on an RGB-D frame), a candidate is
   **confirmed** when at least ``min_votes_rigid`` of its votes also agree with one rigid 3D motion (the votes lifted
   with each view's depth, :func:`~correspondence.alignment.ransac_rigid`, ``rigid_cells`` cells of tolerance in
   metres at the votes' depth): the demo's object moved keeps every distance between its points, another instance of
   its category (other proportions, other size) or an object that only shares its texture does not. A confirmed
   candidate's score counts only the rigid votes and needs ``min_score_rigid``; an unconfirmed one keeps its 2D
   score and needs the stricter ``min_score_unconfirmed`` (weight-free features often match a part to its mirror
   twin, a wheel to the other wheel, so the object itself may fail the rigid check). Confirmed candidates that
   pass come first.
   b. When no group is confirmed, the votes of the whole frame go through the same rigid check (``pool_votes``):
   at least ``min_votes_rigid`` agreeing make one more candidate, judged by ``min_score`` (no adjacency backs it).
   A stool's seat and thin legs, or a turned object's few votes, are groups of one or two, below ``min_votes``.
5. The best candidate is chosen when its score reaches its threshold (without depth: ``min_score``); otherwise the
   object is **not found** (the report keeps every candidate's score, and a frame without a candidate scores 0). No
   mutual match at all (nothing matches, colour aside) leaves the choice to the mask source's own rule (the
   image-centre fallback).
6. With the vertical given (:class:`~correspondence.object_signature.SignatureCue`) and no candidate passing, the
   frame's votes are grouped by the depth-connected surface they fall on; a surface whose height, sorted footprint and
   colours match the demo object's (yaw-invariant: :mod:`~correspondence.object_signature`) and whose votes reach
   its ``min_score`` is chosen (``signature`` in the candidate's record); else "not found" says how close the
   nearest surface came. A surface holding ``lead_ratio`` x the votes of every other surface is judged with the
   looser footprint tolerance (a turn hides a spout or a cab behind the body), and its colours agree too by their
   white-mix overlap (a lit face turned pale: :func:`~correspondence.object_colour.white_mix_overlap`).
   c. The same check runs when the best candidate is only votes pooled over the frame (4b, the weakest evidence
   taken): a surface whose height, footprint and colours agree comes first (such pooled votes chose a look-alike
   of the object's category beside the object itself).

A candidate prompts a mask source through :func:`~correspondence.localised_mask.segment_localised`: SAM / SAM 2 with the vote centre as a point
and the votes' box, GrabCut with the box (with depth, of the whole demo object moved by the votes' rigid motion),
the depth source with the depth-connected component holding most votes (less a touching object of other colours),
completed with the object's other surfaces that keep it within the demo object's size (:mod:`~correspondence.
mask_completion`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
import numpy as np
import torch

from .alignment import ransac_rigid
from .camera import CameraIntrinsics
from .device import to_numpy
from .errors import ConfigError, InputError
from .features import FeatureMap
from .lifting import DepthMap, depth_map, lift
from .object_colour import patch_chromaticity
from .object_signature import SignatureCue, signature_reason, signature_record
from .matching import mutual_nearest_neighbors, normalise
from .segmentation import NoMaskError, Prompt


@dataclass(frozen=True)
class LocaliseSettings:
    """``min_score``: the smallest candidate score that counts as the object (below: "object not found").
    ``group_radius``: cells a vote grid is dilated by before grouping votes into candidates.
    ``box_margin``: cells added around the votes' box (votes sit on cell centres, the object reaches further).
    ``box_grow``: the box also grows by this share of its size on every side: votes cover only the part of the
    object that matched, and a box prompt (GrabCut above all) must contain the whole object.
    ``min_votes``: a candidate needs at least this many votes (an affine map needs 3).
    ``inlier_cells``: the affine fit's RANSAC tolerance, in live cells.
    ``min_demo_cells``: a demo object covering fewer cells is too coarse to vote (a small object at a small input
    size); the mask source's own rule decides then.
    ``min_score_rigid`` / ``min_score_unconfirmed``: the thresholds of a candidate confirmed by ``min_votes_rigid``
    votes agreeing in 3D / of one that is not (rule 4; :class:`DepthViews` given). ``max_colour_difference``: a demo
    cell votes only for live cells whose r and g chromaticity agree within this (rule 3b; images given).
    ``rigid_cells``: the rigid fit's tolerance in live cells, turned into metres at the votes' median depth (coarse
    cells sample each view up to half a cell off, in both views). The defaults were set on ``soco bench
    localisation``'s frames (seed 0): every distractor-only frame refused, 28 of 31 frames with the object found.
    ``pool_votes``: rule 4b, the frame's votes pooled when no group is confirmed (docs/live_object.md)."""

    enabled: bool = True
    min_score: float = 0.05
    group_radius: int = 1
    box_margin: float = 1.0
    box_grow: float = 0.2
    min_votes: int = 4
    inlier_cells: float = 1.5
    min_demo_cells: int = 16
    min_score_rigid: float = 0.01
    min_votes_rigid: int = 5
    min_score_unconfirmed: float = 0.07
    rigid_cells: float = 1.5
    max_colour_difference: float = 0.08
    pool_votes: bool = True

    def __post_init__(self) -> None:
        for name in ("min_score", "min_score_rigid", "min_score_unconfirmed"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"localisation {name} must be in [0, 1], got {value}")
        if not (math.isfinite(self.rigid_cells) and self.rigid_cells > 0):
            raise ConfigError(f"localisation rigid_cells must be > 0, got {self.rigid_cells}")
        if int(self.group_radius) < 0 or self.box_margin < 0 or self.box_grow < 0 or int(self.min_votes) < 1:
            raise ConfigError("localisation group_radius, box_margin and box_grow must be >= 0 and min_votes >= 1")


@dataclass(frozen=True, eq=False)
class DepthViews:
    """Metric depth (HxW, metres, or a :class:`~correspondence.lifting.DepthMap` of it) and intrinsics of the demo
    and the live view: enables the rigid 3D check. Arrays are wrapped in a ``DepthMap`` here, so every candidate's
    lifting checks and filters each map once; a caller that localises with several demo views on one frame passes
    the frame's ``DepthMap`` to each, and it is filtered once per frame."""

    demo_depth: np.ndarray | DepthMap
    demo_intrinsics: CameraIntrinsics
    live_depth: np.ndarray | DepthMap
    live_intrinsics: CameraIntrinsics

    def __post_init__(self) -> None:
        object.__setattr__(self, "demo_depth", depth_map(self.demo_depth, self.demo_intrinsics))
        object.__setattr__(self, "live_depth", depth_map(self.live_depth, self.live_intrinsics))


@dataclass(frozen=True)
class Candidate:
    """One place in the live frame where demo cells vote, with the prompt it gives a mask source."""

    score: float  # weighted share of the demo object's cells voting here, consistently with one affine map
    votes_xy: np.ndarray  # (N, 2) live pixels (cell centres) of the votes (those agreeing with the affine map)
    weights: np.ndarray  # (N,) cosine similarity of each vote
    demo_xy: np.ndarray  # (N, 2) the demo pixels they come from
    total_votes: int  # before the affine check
    affine_score: float  # the same share counting the affine-consistent votes (== score without depth)
    rigid: bool  # confirmed in 3D: the score counts only the (>= min_votes_rigid) votes of one rigid motion
    point: tuple[float, float]  # the vote nearest the weighted centre of the votes (it lies on the object)
    box: tuple[float, float, float, float]  # the votes' box plus a margin, clipped to the image
    pooled: bool = False  # its votes come from anywhere in the frame (no group held enough): judged by min_score
    signature: dict | None = None  # its surface's height, footprint and colours vs the demo object's (rule 6)

    @property
    def prompt(self) -> Prompt:
        return Prompt(point=self.point, box=self.box)

    def as_dict(self) -> dict:
        return {"score": round(self.score, 4), "affine_score": round(self.affine_score, 4), "rigid": bool(self.rigid),
                "pooled": bool(self.pooled), "signature": self.signature,
                "votes": int(len(self.votes_xy)), "all_votes": self.total_votes,
                "similarity": round(float(self.weights.mean()), 4),
                "point": [round(v, 1) for v in self.point], "box": [round(v, 1) for v in self.box]}


@dataclass(frozen=True)
class Localisation:
    """Where the demo object is in one live frame: the candidates (best first) and the choice.

    ``found``: the best candidate reached ``min_score``. ``matched``: at least one demo cell had a mutual match
    (else the mask source's own rule decides, and ``found`` is False)."""

    candidates: tuple[Candidate, ...]
    found: bool
    min_score: float
    demo_cells: int
    votes: int
    details: dict = field(default_factory=dict)
    matches: int | None = None  # mutual matches before the colour gate (None: no gate, the votes)

    @property
    def matched(self) -> bool:
        return (self.votes if self.matches is None else self.matches) > 0

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def best_score(self) -> float:
        return self.candidates[0].score if self.candidates else 0.0

    @property
    def by_signature(self) -> bool:
        """Found by rule 6 (height, footprint, colours) because no candidate's votes passed: a rescue, weaker
        evidence than votes that pass, and its score (the surface's share of all votes) is not comparable with theirs."""
        return bool(self.found and self.best.signature is not None and self.best.signature["agrees"])

    @property
    def reason(self) -> str:
        if self.found:
            shape = " and its height, footprint and colours match the demo object's" if self.by_signature else ""
            return f"object found: candidate 1 of {len(self.candidates)}, score {self.best_score:.3f}{shape}"
        if not self.matched:
            return "no demo cell matched the live frame"
        if not self.candidates:
            colour = "" if self.matches is None else f" of the colour of the demo's cells ({self.matches} without)"
            return (f"object not found: no candidate (best score 0; {self.votes} scattered matches{colour}, none "
                    f"{self.details.get('min_votes', '')} agreeing in one place)"
                    f"{signature_reason(self.details.get('signature'))}")
        return (f"object not found: best of {len(self.candidates)} candidates scores {self.best_score:.3f} < "
                f"{self.min_score:g}{signature_reason(self.details.get('signature'))}")

    def as_dict(self) -> dict:
        return {"found": self.found, "reason": self.reason, "chosen": 0 if self.found else None,
                "min_score": self.min_score, "demo_cells": self.demo_cells, "votes": self.votes,
                "matches": self.matches,
                "candidates": [c.as_dict() for c in self.candidates], **self.details}


def localise(demo: FeatureMap, demo_valid: torch.Tensor | np.ndarray, live: FeatureMap,
             settings: LocaliseSettings | None = None, depths: DepthViews | None = None,
             images: tuple[np.ndarray, np.ndarray] | None = None, *, signature: SignatureCue | None = None,
             live_chroma: np.ndarray | None = None) -> Localisation:
    """Locate the demo object (its ``demo_valid`` cells) in the live frame (all its image cells); see the module
    docstring for the rule. ``depths``: both views' depth, for the rigid 3D check (rule 4); ``images``: (demo RGB, live
    RGB), HxWx3, the sizes the feature maps were made from, for the colour check (rule 3b); ``signature``: the demo
    object's height, footprint and colours and the live frame's vertical (rule 6). ``live_chroma``: the live cells'
    colours (:func:`live_cell_chromaticity` of ``live`` and the live RGB), when a caller that localises several demo
    views on one frame has sampled them once."""
    settings = settings or LocaliseSettings()
    demo_valid = torch.as_tensor(demo_valid, dtype=torch.bool).flatten().to(demo.features.device)
    if demo_valid.numel() != demo.grid_wh[0] * demo.grid_wh[1]:
        raise InputError(f"demo_valid has {demo_valid.numel()} cells, the demo feature grid has "
                         f"{demo.grid_wh[0]}x{demo.grid_wh[1]}")
    cells = torch.nonzero(demo_valid).flatten()
    n_demo = int(cells.numel())
    if n_demo == 0:
        raise InputError("the demo object covers no feature cell; localisation needs the demo object's cells")
    live_valid = live.image_cells().flatten().to(live.features.device)
    source = demo.flat()[cells].float()
    target = live.flat().to(source.device).float()
    demo_cell_xy = demo.cell_to_original(demo.index_to_uv(to_numpy(cells, np.int64)))
    matches = None
    if images is None:
        result = mutual_nearest_neighbors(source, target, None, live_valid)
        forward, score, mutual = result.forward.index, result.forward.score, result.mutual
    else:  # a demo cell votes only among the live cells of its colour
        if live_chroma is None:
            live_chroma = live_cell_chromaticity(live, images[1])
        same = _colour_agrees(patch_chromaticity(images[0], demo_cell_xy), live_chroma, settings.max_colour_difference)
        similarity = normalise(source) @ normalise(target).T  # once, for the ungated count and the gated votes
        ungated = _mutual_where(similarity, live_valid[None].expand(source.shape[0], -1))[2]
        matches = int(ungated.sum())
        forward, score, mutual = _mutual_where(similarity, torch.as_tensor(same, device=source.device)
                                               & live_valid[None])
    mutual = to_numpy(mutual, bool)
    index = to_numpy(forward, np.int64)[mutual]
    demo_xy = demo_cell_xy[mutual]
    weight = np.clip(to_numpy(score.float(), np.float64)[mutual], 0.0, None)
    w, h = live.grid_wh
    width, height = live.geometry.original_width, live.geometry.original_height
    candidates = []
    if index.size:
        groups = _group(index, w, h, int(settings.group_radius))
        cell_px = np.array(live.cell_size_px())
        for label in np.unique(groups):
            members = groups == label
            if members.sum() < settings.min_votes:
                continue
            xy = live.cell_to_original(live.index_to_uv(index[members]))
            agree = _affine_inliers(demo_xy[members], xy, settings.inlier_cells * float(cell_px.max()))
            if agree.sum() < settings.min_votes:
                continue
            vote_xy, vote_w, vote_demo = xy[agree], weight[members][agree], demo_xy[members][agree]
            affine_score = float(vote_w.sum() / n_demo)
            extent = None  # where the box must reach beyond the votes
            if depths is not None:
                rigid, motion = _rigid_inliers(vote_demo, vote_xy, depths,
                                               settings.rigid_cells * float(cell_px.max()))
                confirmed = bool(rigid.sum() >= settings.min_votes_rigid)
                if confirmed:  # else the candidate stands on its 2D votes, judged by the stricter threshold
                    vote_xy, vote_w, vote_demo = vote_xy[rigid], vote_w[rigid], vote_demo[rigid]
                    if motion is not None:  # the whole demo object moved by the votes' motion, projected live
                        extent = _projected(demo_cell_xy, depths, motion)
            else:
                confirmed = False
            candidates.append(_candidate(vote_xy, vote_w, vote_demo, int(members.sum()), affine_score,
                                         confirmed, n_demo, cell_px * settings.box_margin,
                                         settings.box_grow, width, height, extent))

    if depths is not None and settings.pool_votes and index.size >= settings.min_votes_rigid:
        candidates += _pooled(index, demo_xy, weight, live, depths, settings, n_demo, demo_cell_xy, candidates)

    def threshold(candidate: Candidate) -> float:
        if depths is None or candidate.pooled:
            return settings.min_score
        return settings.min_score_rigid if candidate.rigid else settings.min_score_unconfirmed

    candidates.sort(key=lambda c: (c.score >= threshold(c), c.rigid, c.score), reverse=True)
    min_score = threshold(candidates[0]) if candidates else (settings.min_score if depths is None
                                                             else settings.min_score_rigid)
    found = bool(candidates) and candidates[0].score >= min_score
    rule = ("mutual NN votes of the demo object's cells, grouped, affine-consistent"
            + (", same colour" if images is not None else "") + (", rigid in 3D" if depths is not None else ""))
    details = {"min_votes": int(settings.min_votes), "rule": rule}
    pooled_only = found and candidates[0].pooled  # rule 6c: scattered votes yield to a surface of the object's shape
    if (not found or pooled_only) and signature is not None and signature.settings.enabled and index.size:
        xy = live.cell_to_original(live.index_to_uv(index))
        surfaces = signature.vote_components(xy, weight, n_demo)
        details["signature"] = signature_record(signature, surfaces)
        shaped = [replace(_candidate(xy[s.members], weight[s.members], demo_xy[s.members], int(s.members.sum()),
                                     s.score, False, n_demo, np.array(live.cell_size_px()) * settings.box_margin,
                                     settings.box_grow, width, height, s.box), signature=s.match.as_dict())
                  for s in surfaces if s.match.agrees]
        if shaped:  # rule 6: the surface whose shape and colours are the demo object's, its votes saying where
            candidates = shaped + candidates
            min_score, found = signature.settings.min_score, True
            details["rule"] = rule + ("; chosen by height, footprint and colours before votes pooled over the frame"
                                      if pooled_only else "; chosen by height, footprint and colours (votes too weak)")
    return Localisation(tuple(candidates), found, float(min_score), n_demo, int(index.size), details, matches)


def live_cell_chromaticity(live: FeatureMap, image: np.ndarray) -> np.ndarray:
    """(N_live_cells, 2): the chromaticity of the 5 x 5 px around every live cell's centre (rule 3b's live side)."""
    return patch_chromaticity(image, live.cell_to_original(live.index_to_uv(np.arange(live.grid_wh[0]
                                                                                       * live.grid_wh[1]))))


def _colour_agrees(demo_chroma: np.ndarray, live_chroma: np.ndarray, tolerance: float) -> np.ndarray:
    """(N_demo, N_live) bool: the demo and live cells' 5 x 5 px colours (:func:`patch_chromaticity`) have the same
    chromaticity within ``tolerance``: the descriptor of a weight-free backbone sees texture, not hue, and another
    instance of the category has other colours."""
    # r and g compared apart: the same test as the max over both, without numpy's slow reduction over a 2-long axis
    # (about 30x faster on 250 x 1024 cells; NaN fails both ways)
    return ((np.abs(demo_chroma[:, None, 0] - live_chroma[None, :, 0]) <= tolerance)
            & (np.abs(demo_chroma[:, None, 1] - live_chroma[None, :, 1]) <= tolerance))


def _mutual_where(similarity: torch.Tensor, allowed: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mutual nearest neighbours in the (N_source, N_target) cosine ``similarity`` among the ``allowed`` pairs only:
    the forward index, its similarity and whether the pair is mutual (a row with no allowed pair is not)."""
    similarity = similarity.masked_fill(~allowed, float("-inf"))
    rows = similarity.max(dim=1)
    cols = similarity.max(dim=0)
    mutual = (cols.indices[rows.indices] == torch.arange(similarity.shape[0], device=similarity.device))
    return rows.indices, rows.values, mutual & torch.isfinite(rows.values)


def _rigid_inliers(demo_xy: np.ndarray, live_xy: np.ndarray, depths: DepthViews, tolerance_px: float) -> np.ndarray:
    """The votes whose demo and live pixels, lifted with each view's depth, agree with one rigid 3D motion, and that
    motion (4x4, demo camera -> live camera; None when the agreeing set is too small or flat to fix it). The
    tolerance is ``tolerance_px`` turned into metres at the votes' median live depth (votes without depth fail)."""
    demo_points, demo_ok = lift(demo_xy, depths.demo_depth, depths.demo_intrinsics)
    live_points, live_ok = lift(live_xy, depths.live_depth, depths.live_intrinsics)
    ok = demo_ok & live_ok
    if ok.sum() < 3:
        return np.zeros(len(demo_xy), bool), None
    metres = tolerance_px * float(np.median(live_points[ok, 2])) / float(depths.live_intrinsics.fx)
    fit = ransac_rigid(demo_points, live_points, threshold=metres, min_inliers=3, min_inlier_ratio=0.0)
    # A set too small or too flat for a trustworthy pose still agrees in its distances: its votes count (the
    # score and min_votes weigh how much), its pose is not used.
    return np.asarray(fit.inliers, bool) & ok, fit.transform


def _pooled(index: np.ndarray, demo_xy: np.ndarray, weight: np.ndarray, live: FeatureMap, depths: DepthViews,
            settings: LocaliseSettings, n_demo: int, demo_cell_xy: np.ndarray, candidates: list) -> list:
    """One more candidate from *every* vote of the frame: those agreeing with one distance-keeping motion, wherever
    they lie. Why: a thin or turned object's votes are too few, or too scattered (a stool's seat and legs), to
    form a group of ``min_votes`` by adjacency; their 3D agreement does not need adjacency. Only when no grouped
    candidate is already confirmed; [] when fewer than ``min_votes_rigid`` agree."""
    if any(c.rigid for c in candidates):
        return []
    cell_px = np.array(live.cell_size_px())
    xy = live.cell_to_original(live.index_to_uv(index))
    rigid, motion = _rigid_inliers(demo_xy, xy, depths, settings.rigid_cells * float(cell_px.max()))
    if rigid.sum() < settings.min_votes_rigid:
        return []
    width, height = live.geometry.original_width, live.geometry.original_height
    extent = None if motion is None else _projected(demo_cell_xy, depths, motion)
    pooled = _candidate(xy[rigid], weight[rigid], demo_xy[rigid], int(len(index)), float(weight[rigid].sum() / n_demo),
                        True, n_demo, cell_px * settings.box_margin, settings.box_grow, width, height, extent)
    return [replace(pooled, pooled=True)]


def _projected(demo_xy: np.ndarray, depths: DepthViews, motion: np.ndarray) -> np.ndarray | None:
    """(M, 2) live pixels of the demo pixels ``demo_xy`` lifted with the demo depth and moved by ``motion`` (demo
    camera -> live camera); those in front of the live camera only. None when none is."""
    points, ok = lift(demo_xy, depths.demo_depth, depths.demo_intrinsics)
    moved = points[ok] @ motion[:3, :3].T + motion[:3, 3]
    moved = moved[moved[:, 2] > 1e-6]
    return depths.live_intrinsics.project(moved) if len(moved) else None


def _group(index: np.ndarray, w: int, h: int, radius: int) -> np.ndarray:
    """Candidate label of each vote: 8-connected components of the vote grid dilated by ``radius`` cells."""
    from scipy import ndimage

    grid = np.zeros((h, w), bool)
    grid.flat[index] = True
    if radius:
        grid = ndimage.binary_dilation(grid, structure=np.ones((3, 3), bool), iterations=radius)
    labels, _ = ndimage.label(grid, structure=np.ones((3, 3), bool))
    return labels.flat[index]


def _affine_inliers(src: np.ndarray, dst: np.ndarray, threshold: float) -> np.ndarray:
    """The votes agreeing with one 2D affine map demo -> live (OpenCV RANSAC, deterministic seed)."""
    import cv2

    if len(src) < 3:
        return np.zeros(len(src), bool)
    cv2.setRNGSeed(0)
    model, inliers = cv2.estimateAffine2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC,
                                          ransacReprojThreshold=float(threshold), maxIters=500, confidence=0.99)
    if model is None or inliers is None:
        return np.zeros(len(src), bool)
    return inliers.ravel().astype(bool)


def _candidate(xy: np.ndarray, weights: np.ndarray, demo_xy: np.ndarray, total: int, affine_score: float,
               rigid: bool, n_demo: int, margin: np.ndarray, grow: float, width: int, height: int,
               extent: np.ndarray | None = None) -> Candidate:
    """The candidate's point (the vote nearest the votes' weighted centre) and box: the votes' box grown by
    ``margin`` and ``grow`` of its size, or, with ``extent`` (the demo object's cells projected live by the votes'
    rigid motion), the box of votes and extent grown by ``margin`` only (the object is then known whole)."""
    centre = (xy * weights[:, None]).sum(0) / max(weights.sum(), 1e-12)
    point = xy[int(np.argmin(np.linalg.norm(xy - centre, axis=1)))]
    reach = xy if extent is None else np.vstack([xy, extent])
    margin = margin + (grow * (xy.max(0) - xy.min(0)) if extent is None else 0.0)
    x0, y0 = reach.min(0) - margin
    x1, y1 = reach.max(0) + margin
    x0, y0 = max(0.0, float(x0)), max(0.0, float(y0))
    x1, y1 = min(float(width), float(x1)), min(float(height), float(y1))
    px = float(np.clip(point[0], 0, np.nextafter(width, 0)))
    py = float(np.clip(point[1], 0, np.nextafter(height, 0)))
    return Candidate(float(weights.sum() / n_demo), xy, weights, demo_xy, total, affine_score, rigid, (px, py),
                     (x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)))


class ObjectNotFound(NoMaskError):
    """The demo object is not in this frame: no candidate matched well enough. Carries the localisation (every
    candidate's score) so the caller can report the best one."""

    def __init__(self, localisation: Localisation):
        super().__init__(localisation.reason)
        self.localisation = localisation


__all__ = ["Candidate", "DepthViews", "Localisation", "LocaliseSettings", "ObjectNotFound", "live_cell_chromaticity",
           "localise"]
