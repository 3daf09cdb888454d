"""A multi-view demo in the per-frame pipeline (:class:`~correspondence.pipeline.TransferPipeline`): every demo
view (:mod:`correspondence.demo_views`) looks for the object, the view that finds it best gives the appearance
matches, and their pose is composed with the view's known pose so that it is the pose of the primary demo frame.

* **localisation**: each view's object cells vote in the live frame (:func:`~correspondence.localise.localise`,
  with its rigid 3D check on that view's depth); the view whose best candidate scores highest is chosen — the side
  of the object that faces the live camera. Its candidate prompts the mask source;
* **matches pose**: each candidate view's dense matches are lifted with that view's depth and moved into the
  primary frame with ``T_primary_from_view``, so RANSAC returns primary -> live directly (``T_live_from_view @
  T_view_from_primary``), fitted with the guarded ICP of that view's own cloud onto the live object (the view and
  the live camera see the same side, so ICP converges on the truth rather than on the largest overlap);
* **choice after the search** (:func:`choose_searched`): every candidate's pose goes through the pose search (a
  turned view's in its own camera frame, :meth:`MultiViewDemo.search_from_view`), and the searched poses are scored
  on the fused cloud's visible part (with the vertical, a round object's points weighed by how much they fix its turn,
  :mod:`~correspondence.revolution`); the best wins, a turned view only by ``PRIMARY_MARGIN`` over the primary.
  When a pose turned far from the chosen one (another view's, or the chosen view's pool's) explains the fused cloud
  about as well, the views disagree and the frame is refused as ambiguous (:func:`~correspondence.view_pool.
  refuse_rival`).
  Without a live frame the candidate with the most RANSAC inliers is searched alone;
* **pose search** (the search above): by default (``PipelineSettings.multiview_cloud = "view"``) on each
  candidate view's own cloud: the one-view search from the side that faces the camera. ``"fused"``: against the
  union of every view's object cloud in the primary frame (descriptors and colours from each view), each
  hypothesis fitted (snap, guarded ICP) with the part of that cloud the live camera would see under it
  (:func:`~correspondence.cloud_visibility.visible_points`, a z-buffer), since the far side would pull the fit onto the near surface. Not the
  default: measured worse, because a whole cloud turned by 180 deg fills the truth's volume for shape-symmetric
  objects and the ambiguity test refuses (docs/multiview_demo.md).

Each view's features are computed once per pipeline (the extractor caches by image as well).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .dense_transfer import DenseMatches, DenseSettings, dense_matches
from .demo_views import DemoView
from .device import to_numpy
from .errors import InputError
from .icp import IcpSettings, IcpTarget, masked_cloud, masked_pixels_and_cloud, refine
from .depth_holes import depth_holes
from .lifting import DepthMap
from .localise import DepthViews, Localisation, LocaliseSettings, live_cell_chromaticity, localise
from .object_colour import ColourModel
from .pose_search import Hypothesis, LiveFrame, PoseSearchResult, PoseSearchSettings, score_pose, search_pose
from .preprocessing import to_rgb_array
from .revolution import Revolution, fit_revolution
from .segmentation import DepthForeground, Prompt
from .cloud_visibility import visible_mask
from .view_choice import PRIMARY_MARGIN, choose_searched  # noqa: F401  (re-exported)
from .view_pool import FusedFit, maps_onto_itself

PRIMARY_PREFERENCE = 1.25  # another view is chosen over the primary only when its localisation score is this many
# times the primary's: sides that look alike (a bus's two ends) score alike, and the object is more often near its
# demo pose (README "Multi-view demos", +-30 deg, 40 trials: with 1.0 six failures had chosen a turned view, with
# 1.25 five; 77.5 % success vs 92.5 % with one view: the view choice is what is left)
SECOND_VIEW_SHARE = 0.5  # another view's pose is tried too when its localisation score is at least this share of the
# best: the localisation alone chose a turned view in 5 of 40 +-30 deg trials (look-alike sides), the pose score decides
MAX_CANDIDATES = 3  # views whose poses are computed and scored per frame (the localised one, the primary, the next)


def object_cloud(depth: np.ndarray, intrinsics, region: np.ndarray | None, rgb, fmap, depth_range: tuple,
                 max_points: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One view's object cloud for the pose search: (points in its camera, descriptors sampled from ``fmap`` or
    None, RGB colours), row-aligned."""
    xy, points = masked_pixels_and_cloud(depth, intrinsics, region, depth_range, max_points)
    descriptors = to_numpy(fmap.sample(xy).float()) if fmap is not None and len(xy) else None
    pixels = xy.astype(np.int64)
    return points, descriptors, to_rgb_array(rgb)[pixels[:, 1], pixels[:, 0]]


@dataclass(frozen=True)
class ViewCandidate:
    """One candidate view's matches pose: its dense matches, ``align(dense, view)``'s result (alignment, 2D
    alignment, live points) after the view's ICP, and that pose's score against the live frame (None: none)."""

    index: int
    dense: DenseMatches
    result: tuple
    score: float | None


@dataclass
class _ViewState:
    view: DemoView
    region: np.ndarray | None  # the view's object: its mask, else its depth foreground
    fmap: object = None
    cells: object = None
    colours: ColourModel | None = None
    search_cloud: tuple | None = None  # (points in the primary frame, descriptors, colours) at max_points
    depth_map: DepthMap | None = None  # the view's depth prepared for lifting
    holes: np.ndarray | None = None  # the view's depth holes (depth_holes): its demo-view frames' unknown pixels


class MultiViewDemo:
    """The views of one demo with what the pipeline computes from each, once."""

    def __init__(self, views: tuple[DemoView, ...], extractor, depth_range: tuple[float, float]) -> None:
        if len(views) < 2:
            raise InputError("a multi-view demo needs the primary view and at least one extra view")
        self.extractor = extractor
        self.depth_range = depth_range
        self.states = [_ViewState(v, v.mask if v.mask is not None else _depth_foreground(v, depth_range))
                       for v in views]
        self._cloud = None
        self._view_clouds = None  # per view: (points in the primary frame, descriptors, colours)
        self._normals = None  # the fused cloud's outward normals (:meth:`fused_normals`), estimated once
        self._live_colours = None  # (live feature map, live image, their cells' chromaticity): once per frame
        self._revolution = None  # (demo vertical, its fitted surface of revolution or None), once per vertical

    def __len__(self) -> int:
        return len(self.states)

    def view(self, index: int) -> DemoView:
        return self.states[index].view

    def feature_map(self, index: int):
        state = self.states[index]
        if state.fmap is None:
            state.fmap = self.extractor(state.view.rgb)
        return state.fmap

    def prepare(self, max_points: int | None = None) -> None:
        """What every frame uses from each view, computed now (each once): features, object cells and depth map;
        with ``max_points`` also the fused cloud the candidate poses are scored on."""
        for i, state in enumerate(self.states):
            if state.region is not None:
                self._cells(i)
                self.depth_map(i)
                self.unknown(i)
        if max_points is not None:
            self.fused_cloud(max_points)

    def depth_map(self, view: DemoView | int) -> DepthMap:
        """A view's depth prepared for lifting (:class:`~correspondence.lifting.DepthMap`), once per pipeline; by
        index or by the view itself."""
        state = (self.states[view] if isinstance(view, int) else
                 next(s for s in self.states if s.view is view))
        if state.depth_map is None:
            state.depth_map = DepthMap(state.view.depth, state.view.intrinsics)
        return state.depth_map

    def unknown(self, index: int) -> np.ndarray:
        """A view's depth holes (:func:`~correspondence.depth_holes.depth_holes`), once per pipeline: the view's
        depth is constant, and its demo-view frames are built for every live frame's pose search."""
        state = self.states[index]
        if state.holes is None:
            state.holes = depth_holes(state.view.depth)
        return state.holes

    def _cells(self, index: int):
        """The view's object cells on its feature grid (localisation's voters, dense matching's sources), once."""
        state = self.states[index]
        if state.cells is None:
            state.cells = self.feature_map(index).cell_mask(state.region, min_fraction=0.5)
        return state.cells

    # ------------------------------------------------------------------------------------------ localisation

    def localise(self, live_fmap, settings: LocaliseSettings, depth: "np.ndarray | DepthMap | None", intrinsics,
                 image: np.ndarray, known: dict[int, Localisation] | None = None, signature=None) -> Localisation:
        """Every view votes; the localisation of the view that found the object best (highest best score, found
        first), with ``details["demo_view"]`` its index and ``details["demo_view_scores"]`` every view's score.
        ``known``: views already localised on this frame (a stream's schedule tried one first), not redone.
        ``signature``: the demo object's :class:`~correspondence.object_signature.SignatureCue` for localisation's
        rule 6 in every view (one cue: the frame's depth components are labelled once)."""
        if depth is not None and intrinsics is not None and not isinstance(depth, DepthMap):
            depth = DepthMap(depth, intrinsics)  # the frame's depth filtered once for every view's rigid check
        results = dict(known or {})
        for i in range(len(self.states)):
            if i not in results:
                localisation = self.localise_view(i, live_fmap, settings, depth, intrinsics, image, signature)
                if localisation is not None:
                    results[i] = localisation
        return self.choose(results)

    def localise_view(self, index: int, live_fmap, settings: LocaliseSettings, depth: "np.ndarray | DepthMap | None",
                      intrinsics, image: np.ndarray, signature=None) -> Localisation | None:
        """One view's votes (:func:`~correspondence.localise.localise` with its rigid check on that view's depth);
        None when the view has no object region or covers too few cells to vote from."""
        state = self.states[index]
        if state.region is None or int(self._cells(index).sum()) < settings.min_demo_cells:
            return None  # nothing, or too coarse, to vote from this side
        depths = (DepthViews(self.depth_map(index), state.view.intrinsics, depth, intrinsics)
                  if depth is not None and intrinsics is not None else None)
        return localise(self.feature_map(index), state.cells, live_fmap, settings, depths,
                        (to_rgb_array(state.view.rgb), image), signature=signature,
                        live_chroma=self._live_chroma(live_fmap, image))

    def _live_chroma(self, live_fmap, image: np.ndarray) -> np.ndarray:
        """The live cells' colours for every view's colour gate, sampled once per frame (this frame's feature map and
        image, by identity)."""
        cached = self._live_colours
        if cached is None or cached[0] is not live_fmap or cached[1] is not image:
            self._live_colours = cached = (live_fmap, image, live_cell_chromaticity(live_fmap, image))
        return cached[2]

    @staticmethod
    def choose(results: dict[int, Localisation]) -> Localisation:
        """The localisation of the view that found the object best among ``results`` (view index -> localisation),
        with the chosen index and every voting view's score in its details. A view whose votes passed comes before
        one that found the object by rule 6 alone (:attr:`~correspondence.localise.Localisation.by_signature`)."""
        if not results:
            raise InputError("no demo view covers enough feature cells to localise the object")
        ordered = sorted(results.items())  # by index: of equal scores the lower index wins, as it always did
        best_index, best = max(ordered, key=lambda r: (r[1].found, not r[1].by_signature,  # votes before rule 6
                                                       r[1].best_score * (PRIMARY_PREFERENCE if r[0] == 0 else 1.0)))
        scores = {i: round(loc.best_score, 4) for i, loc in ordered}
        signature = [i for i, loc in ordered if loc.by_signature]  # their scores are vote shares of a surface
        return replace(best, details={**best.details, "demo_view": best_index, "demo_view_scores": scores,
                                      "demo_view_by_signature": signature})

    def colours(self, localisation: Localisation | None) -> ColourModel | None:
        """The colours of the view that localised the object (they cut a touching look-alike off)."""
        index = chosen_view(localisation)
        state = self.states[0 if index is None else index]
        if state.region is None:
            return None
        if state.colours is None:
            state.colours = ColourModel.from_image(to_rgb_array(state.view.rgb), state.region)
        return state.colours

    # ------------------------------------------------------------------------------------------ matches pose

    def candidates(self, localisation: Localisation | None) -> list[int]:
        """The views whose poses are tried: the localised view, the primary (the object is most often near its demo
        pose; its pose score, not its localisation, decides) and the next best view when it scored at least
        ``SECOND_VIEW_SHARE`` of the localised one (at most ``MAX_CANDIDATES``); without a localisation every view.
        As in :meth:`choose`, a view whose votes passed comes before one found by rule 6 alone, whose score (a
        surface's share of the votes) is not comparable with theirs."""
        if localisation is None or "demo_view_scores" not in localisation.details:
            return [i for i, s in enumerate(self.states) if s.region is not None]
        scores = localisation.details["demo_view_scores"]
        best = localisation.details["demo_view"]
        signature = set(localisation.details.get("demo_view_by_signature", ()))
        plausible = [i for i in sorted(scores, key=lambda i: (i != 0, i in signature, -scores[i]))  # primary, votes
                     if i != best and (i == 0 or i in signature or scores[i] >= SECOND_VIEW_SHARE * scores[best] > 0)]
        return [best] + plausible[:MAX_CANDIDATES - 1]

    def align(self, localisation: Localisation | None, live_fmap, live_mask, settings: DenseSettings,
              align: Callable[[DenseMatches, DemoView], tuple], live_depth=None, live_intrinsics=None,
              icp: IcpSettings | None = None, live: LiveFrame | None = None,
              search: PoseSearchSettings | None = None) -> tuple[int, DenseMatches, tuple, dict[int, float] | None]:
        """(view index, its dense matches, ``align(dense, view)``'s result, each candidate's pose score or None):
        the best of :meth:`align_candidates`."""
        ranked, scores = self.align_candidates(localisation, live_fmap, live_mask, settings, align, live_depth,
                                               live_intrinsics, icp, live, search)
        best = ranked[0]
        return best.index, best.dense, best.result, scores

    def align_candidates(self, localisation: Localisation | None, live_fmap, live_mask, settings: DenseSettings,
                         align: Callable[[DenseMatches, DemoView], tuple], live_depth=None, live_intrinsics=None,
                         icp: IcpSettings | None = None, live: LiveFrame | None = None,
                         search: PoseSearchSettings | None = None
                         ) -> tuple[list["ViewCandidate"], dict[int, float] | None]:
        """Every candidate view's matches pose, best first, and each one's pose score (None without a live frame).
        Each candidate view's matches give a pose (RANSAC in the primary frame), fitted with the live depth and mask
        by the guarded ICP of that view's cloud (``solver`` gains ``+view-icp``). With ``live`` the candidate whose
        pose scores best against the live frame (:func:`~correspondence.pose_search.score_pose` on the part of the
        fused cloud the camera would see under it, so every candidate is judged on the same model) wins: sides that
        look alike localise alike, the pose tells them apart; ties go to the localised view. Without ``live``: the
        most RANSAC inliers."""
        live_valid = live_fmap.cell_mask(live_mask, min_fraction=0.5) if live_mask is not None else None
        live_cloud = (None if icp is None or live_depth is None or live_mask is None else  # once, for every candidate
                      IcpTarget(live.cloud if live is not None else  # the live frame's cloud is this same cloud
                                masked_cloud(live_depth, live_intrinsics, live_mask, self.depth_range, icp.max_points)))
        tried = []
        for i in self.candidates(localisation):
            state = self.states[i]
            dense = dense_matches(self.feature_map(i), self._cells(i), live_fmap, live_valid, settings)
            result = self._view_icp(i, align(dense, state.view), live_cloud, icp)
            alignment = result[0]
            ok = bool(alignment is not None and alignment.success)
            inliers = 0 if alignment is None else int(alignment.num_inliers)
            score = (self.pose_score(alignment.transform, live, search or PoseSearchSettings(), icp)
                     if ok and live is not None else None)
            tried.append(((ok, -np.inf if score is None else score, inliers), i, dense, result, score))
        scored = {i: round(score, 4) for _, i, _, _, score in tried if score is not None}
        if not scored:  # no live frame, or nothing aligned: the most RANSAC inliers (a successful one first)
            tried = [((t[0][0], t[0][2]), *t[1:]) for t in tried]
        ranked = sorted(tried, key=lambda t: t[0], reverse=True)  # stable: the first of equals stays first
        return [ViewCandidate(i, dense, result, score) for _, i, dense, result, score in ranked], (scored or None)

    def _view_icp(self, index: int, result: tuple, live_cloud: "IcpTarget | None", icp: IcpSettings | None) -> tuple:
        alignment = result[0]
        if (icp is None or alignment is None or not alignment.success
                or live_cloud is None):  # icp None: the caller asked for no refinement; no live depth or mask
            return result
        fitted = refine(self.view_cloud(index, icp.max_points), live_cloud, alignment.transform, icp)
        if not fitted.accepted:
            return result
        return (replace(alignment, transform=fitted.transform, solver=alignment.solver + "+view-icp"), *result[1:])

    def pose_score(self, T: np.ndarray, live: LiveFrame, settings: PoseSearchSettings,
                   icp: IcpSettings | None, up: tuple | None = None) -> float:
        """How well the primary -> live pose ``T`` explains the live frame: the pose search's score of the part of
        the fused cloud (descriptors, colours) the live camera would see under ``T``. With the vertical (``up``, as
        the pipeline's) and a round object, its points weighed by how much they fix the turn
        (:mod:`~correspondence.revolution`)."""
        points, descriptors, colours = self.fused_cloud(icp.max_points if icp is not None else IcpSettings().max_points)
        seen = visible_mask(points, T, live.intrinsics)
        return score_pose(T, points[seen], None if descriptors is None else descriptors[seen], live, settings,
                          colours[seen], turn_weights=self.revolution(points, up)).score

    def revolution(self, points: np.ndarray, up: tuple | None) -> Revolution | None:
        """The fused cloud's surface of revolution about the demo vertical ``up[0]`` (None without one, or when the
        object is not round), fitted once per vertical."""
        if up is None:
            return None
        vertical = tuple(np.round(np.asarray(up[0], dtype=np.float64), 6))
        if self._revolution is None or self._revolution[0] != vertical:
            self._revolution = (vertical, fit_revolution(points, np.asarray(vertical)))
        return self._revolution[1]

    def fused_fitter(self, live: LiveFrame, settings: PoseSearchSettings, icp: IcpSettings | None,
                     up: tuple | None, handle: bool = True, check=None) -> FusedFit:
        """What the pooled view choice (:mod:`~correspondence.view_pool`) fits and scores poses with: the fused
        cloud, the live frame, :meth:`pose_score`, the live vertical (``up[1]``), half the sweep step, with
        ``handle`` the fused cloud's round body (:mod:`~correspondence.handle_turn`); ``check``: a pose's
        contradiction of the frame (a rival it refuses is no rival)."""
        max_points = icp.max_points if icp is not None else IcpSettings().max_points
        points = self.fused_cloud(max_points)[0]
        revolution = self.revolution(points, up) if handle else None
        return FusedFit(points, live, lambda T: self.pose_score(T, live, settings, icp, up),
                        lambda p, T: visible_mask(p, T, live.intrinsics),
                        None if up is None else np.asarray(up[1], dtype=np.float64), settings.sweep_step_deg / 2,
                        icp, settings.ambiguity_deg, settings.ambiguity_margin,
                        self._equivalent(max_points, settings, up),
                        revolution, check, self.fused_normals(max_points) if revolution is not None else None)

    def _equivalent(self, max_points: int, settings: PoseSearchSettings, up: tuple | None):
        """``(A, B) -> bool``: whether two primary -> live poses put the object's surface in the same place: the fused
        cloud maps onto itself under the motion between them (:func:`~correspondence.view_pool.maps_onto_itself`,
        a round object's points weighed as in the score), or the primary view's own cloud, depth and silhouette say
        so (:func:`~correspondence.pose_equivalence.equivalent_poses`). A 2-fold stool turned by 180 deg is no rival."""
        from .pose_equivalence import equivalent_poses

        fused = self.fused_cloud(max_points)[0]
        revolution = self.revolution(fused, up)
        weights = None if revolution is None else revolution.weights(fused)
        state = self.states[0]
        points = self.search_cloud(0, max_points)[0]  # the primary frame is the primary view's camera
        own = (None if state.region is None else
               LiveFrame(state.view.depth, state.view.intrinsics, np.asarray(state.region, dtype=bool), points, None,
                         to_rgb_array(state.view.rgb), self.unknown(0)))
        return lambda a, b: (maps_onto_itself(fused, np.linalg.inv(a) @ b, settings.surface_m, weights)
                             or equivalent_poses(a, b, points, own, settings))

    def search_cloud(self, index: int, max_points: int, source: str = "view") -> tuple:
        """The pose search's demo cloud in the primary frame (points, descriptors, colours): ``view`` the chosen
        view's own (``max_points``), ``fused`` every view's (:meth:`fused_cloud`)."""
        if source == "fused":
            return self.fused_cloud(max_points)
        state = self.states[index]
        if state.search_cloud is None:
            points, descriptors, colours = object_cloud(state.view.depth, state.view.intrinsics, state.region,
                                                        state.view.rgb, self.feature_map(index), self.depth_range,
                                                        max_points)
            state.search_cloud = (state.view.to_primary(points), descriptors, colours)
        return state.search_cloud

    def search_from_view(self, index: int, start_pose: np.ndarray | None, live: LiveFrame,
                         settings: PoseSearchSettings, icp: IcpSettings, up: tuple | None,
                         max_points: int) -> PoseSearchResult:
        """The one-view pose search run in view ``index``'s own camera frame, on its own cloud, with its depth and
        mask as the demo view, its poses moved back to primary -> live. Why: the search tells a symmetric object's
        other turn (which puts the surface where the best does, :mod:`~correspondence.pose_equivalence`) from a real
        ambiguity with the demo view's own depth and silhouette; run from the primary frame on a turned view's
        cloud it has none, and refused 2-fold stools that one view accepts."""
        state = self.states[index]
        T_primary_from_view = state.view.T_primary_from_view
        T_view_from_primary = np.linalg.inv(T_primary_from_view)
        points, descriptors, colours = self.search_cloud(index, max_points)
        points = points @ T_view_from_primary[:3, :3].T + T_view_from_primary[:3, 3]  # back in the view's camera
        own = LiveFrame(state.view.depth, state.view.intrinsics, np.asarray(state.region, dtype=bool), points, None,
                        to_rgb_array(state.view.rgb), self.unknown(index))
        up_view = None if up is None else (T_view_from_primary[:3, :3] @ np.asarray(up[0], dtype=np.float64), up[1])
        start = None if start_pose is None else start_pose @ T_primary_from_view  # view -> live
        result = search_pose(points, descriptors, live, start, settings, icp, up=up_view, demo_colors=colours,
                             demo_view=own)
        return _result_to_primary(result, T_view_from_primary)

    def view_cloud(self, index: int, max_points: int) -> np.ndarray:
        """One view's object cloud in the primary frame."""
        return self._parts(max_points)[index][0]

    # ------------------------------------------------------------------------------------------ scoring

    def fused_cloud(self, max_points: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The union of every view's object cloud in the primary frame, with descriptors and colours; each view
        gives ``2 * max_points / views`` points (the views overlap), so the pose search's cost grows gently."""
        if self._cloud is None:
            parts = self._parts(max_points)
            points = np.concatenate([p[0] for p in parts])
            descriptors = (np.concatenate([p[1] for p in parts]) if all(p[1] is not None for p in parts) else None)
            self._cloud = (points, descriptors, np.concatenate([p[2] for p in parts]))
        return self._cloud


    def fused_normals(self, max_points: int, neighbours: int = 12) -> np.ndarray:
        """The fused cloud's normals, each estimated on its own view's cloud (one surface seen from one side) and
        turned towards the camera that saw it: which side of the surface a point is on, so that the inside of a
        mug's wall is not taken for its outside (:mod:`~correspondence.upright_icp`)."""
        if self._normals is not None:
            return self._normals
        rows, centres = self.fused_sources(max_points)
        normals = np.concatenate([np.asarray(IcpTarget(part[0]).cloud(neighbours).normals)
                                  for part in self._parts(max_points)])
        points = self.fused_cloud(max_points)[0]
        flip = np.einsum("ij,ij->i", normals, centres[rows] - points) < 0
        normals[flip] *= -1
        self._normals = normals
        return normals

    def fused_sources(self, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        """(each fused row's view index, each view's camera centre in the primary frame): which camera saw a
        point, for the rules that trust a view only where it sees the surface as the live camera does."""
        parts = self._parts(max_points)
        rows = np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)])
        return rows, np.stack([s.view.T_primary_from_view[:3, 3] for s in self.states])

    def _parts(self, max_points: int) -> list[tuple]:
        if self._view_clouds is None:
            per_view = max(2 * max_points // len(self.states), 200)
            self._view_clouds = []
            for i, state in enumerate(self.states):
                points, descriptors, colours = object_cloud(state.view.depth, state.view.intrinsics, state.region,
                                                            state.view.rgb, self.feature_map(i), self.depth_range,
                                                            per_view)
                self._view_clouds.append((state.view.to_primary(points), descriptors, colours))
        return self._view_clouds


def _result_to_primary(result: PoseSearchResult, T_view_from_primary: np.ndarray) -> PoseSearchResult:
    """A search run in a view's camera frame (poses view -> live) with its poses as primary -> live."""
    def move(h: Hypothesis | None) -> Hypothesis | None:
        if h is None:
            return None
        refinement = (None if h.refinement is None else
                      replace(h.refinement, transform=h.refinement.transform @ T_view_from_primary))
        return replace(h, transform=h.transform @ T_view_from_primary, refinement=refinement)

    moved = {id(h): move(h) for h in (*result.hypotheses, *result.equivalent, *result.rivals, result.chosen)
             if h is not None}
    return replace(result, transform=None if result.transform is None else result.transform @ T_view_from_primary,
                   chosen=None if result.chosen is None else moved[id(result.chosen)],
                   hypotheses=tuple(moved[id(h)] for h in result.hypotheses),
                   equivalent=tuple(moved[id(h)] for h in result.equivalent),
                   rivals=tuple(moved[id(h)] for h in result.rivals))


def chosen_view(localisation: Localisation | None) -> int | None:
    return None if localisation is None else localisation.details.get("demo_view")


def _depth_foreground(view: DemoView, depth_range: tuple[float, float]) -> np.ndarray | None:
    try:
        return DepthForeground(depth_range).segment(view.rgb, Prompt.auto(), view.depth).mask
    except InputError:
        return None
