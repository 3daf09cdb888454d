"""The per-frame job a robot runs: segment the live object, find the demo's keypoints (or its functional part) in
it, lift both sides with depth and estimate the rigid demo-to-live transform — completely without ROS.

The demo's camera frame is the demo object frame: a demo pixel lifted with the demo depth lives there, and the
estimated transform maps it into the live camera frame. Without demo or live depth the result is 2D only (the
matches and a 2D similarity transform). A failed alignment is reported with its reason, never as a pose.

Two transfer modes, chosen by the demo:

* **keypoints** — each named demo keypoint -> its best live match inside the live mask, with score, mutual-NN
  and cycle flags and the rejection rules of :class:`PipelineSettings`.
* **functional** — dense correspondences from the demo's functional part to the live object, top-k by the
  discovery score (features of a trained functional head when one is given, else the backbone's own).

The 3D alignment is driven by ``alignment_source``: ``"dense"`` (default) uses dense matches from the whole demo
object (its mask, else its depth foreground) — a few hundred correspondences, which RANSAC needs; a handful of
named keypoints, many on silhouettes where depth is unreliable, rarely gives a pose. ``"keypoints"`` uses only the
accepted keypoint matches (useful when keypoints are many and reliable, and what a caller with its own matcher
uses). In functional mode the functional matches themselves drive the alignment.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .alignment import Alignment2DResult, AlignmentResult, estimate_alignment, lift, no_pose_reason, similarity_2d
from . import depth as depth_module
from .camera import CameraIntrinsics
from .cloud_visibility import visible_points
from .demo_spec import DemoSpec
from .device import to_numpy
from .dense_transfer import DenseMatches, dense_matches
from .errors import ConfigError, InputError
from .deprecation import renamed_kwarg
from .icp import masked_cloud
from .lifting import DepthMap
from .pose_keypoints import keypoints_from_pose, surface_points
from .mirror_symmetry import complete_with_mirror, estimate_mirror_plane
from .pose_confirmation import confirm, without_contradicted_rivals
from .pose_search import LiveFrame, PoseSearchResult, search_pose
from .keypoint_matching import KeypointMatch, KeypointMatcher, match_prepared, prepare_demo
from .localise import ObjectNotFound
from .multiview_confirmation import confirm_fused, fused_check
from .multiview_pose import MultiViewDemo, object_cloud
from .object_colour import ColourModel
from .one_view_handle import handle_search
from .preprocessing import to_rgb_array
from .tracking import MaskTracker
from .view_choice import choose_searched
from .view_schedule import ViewSchedule
from .segmentation import DepthForeground, MaskSource, Prompt
from .support_plane import SupportPlane, find_support_plane
from .depth_holes import depth_holes

from .pipeline_types import ALIGNMENT_SOURCES, FrameResult, PipelineSettings  # noqa: F401 (re-exported)
from .pipeline_segment import LiveObjectStage

MAX_PLAUSIBLE_DEPTH_M = depth_module.MAX_PLAUSIBLE_DEPTH_M  # beyond this median: a unit mistake


class TransferPipeline(LiveObjectStage):
    """Built once per demo (its features are cached by the extractor), called per live frame.

    ``functional``: for a functional demo, an embedder ``(image, function) -> (FeatureMap, predicted mask|None)``
    such as :class:`~correspondence.functional.inference.FunctionalEmbedder` (a trained head); without one the
    matcher's backbone features are used directly (the paper's "base features" row).
    """

    def __init__(self, demo: DemoSpec, matcher: "Matcher | KeypointMatcher", settings: PipelineSettings | None = None,
                 mask_source: MaskSource | None = None, functional: Any = None, *,
                 segmenter: MaskSource | None = None) -> None:
        self.demo = demo
        self.matcher = matcher
        self.settings = settings or PipelineSettings()
        self.mask_source = renamed_kwarg("segmenter", "mask_source", segmenter, mask_source)
        self.functional = functional
        self.mode = demo.mode
        self.demo_points = np.zeros((0, 3))
        if self.mode == "keypoints":
            self.demo_points = np.full((len(demo.keypoints.points), 3), np.nan)
            if demo.has_3d:
                points, valid = lift(demo.keypoints.xy, demo.depth, demo.intrinsics, self.settings.depth_range)
                self.demo_points = np.where(valid[:, None], points, np.nan)
        self.demo_region = self._demo_region()
        self.demo_object = demo.mask if demo.mask is not None else self._depth_foreground()  # localisation's cells
        self._demo_object_cells = None  # computed once, on the first localised frame
        self._demo_colours: ColourModel | None = None  # likewise
        self._demo_signature: tuple | None = None  # (the demo vertical, its ObjectSignature), likewise
        self._demo_object_count = 0
        self.tracker = MaskTracker(self.settings.track) if self.settings.track is not None else None
        self._demo_features = None  # functional mode: (FeatureMap, valid cells), computed once
        self._demo_cloud = None  # the demo region's depth cloud for ICP, computed once
        self._mirror = None  # (demo vertical, its mirror completion of _demo_cloud or None), once per vertical
        self._live_holes = None  # the current frame's depth holes before the support plane's removal (process())
        self._demo_holes = None  # the demo depth's holes (depth_holes): the demo-view frames' unknown pixels, once
        self._demo_depth = None  # the demo depth prepared for lifting (lifting.DepthMap), once
        self._keypoint_surface = None  # the demo keypoints' 3D points for pose predictions, computed once
        self._demo_fmap = None  # keypoint mode: the demo's feature map, computed once
        self._demo_query = None  # keypoint mode: the demo prepared for matching (and refinement), computed once
        self._features = _feature_matcher(matcher)
        self.views = None  # a multi-view demo's views (multiview_pose.py): localisation, matches pose, fused cloud
        if demo.views:
            if self.mode != "keypoints" or self._features is None:
                raise ConfigError("a multi-view demo needs a keypoint (same-object) demo and a Matcher with features")
            self.views = MultiViewDemo(demo.all_views, matcher.extractor, self.settings.depth_range)
        self.view_schedule = (ViewSchedule(self.settings.view_schedule)  # a stream: the last pose's view votes first
                              if self.views is not None and self.settings.view_schedule is not None else None)
        if self.mode == "functional" and self._features is None and functional is None:
            raise ConfigError("a functional demo needs a Matcher with a feature extractor (or a functional head)")
        if self.settings.alignment_source == "dense" and self.mode == "keypoints" and self._features is None:
            raise ConfigError("dense alignment needs a Matcher with a feature extractor; this matcher only returns "
                              "keypoint matches: use alignment_source='keypoints'")

    def _demo_region(self) -> np.ndarray | None:
        """Where dense matches may start in the demo: the functional part, else the object mask, else the depth
        foreground; None (the whole image) when none is known."""
        if self.mode == "functional":
            return self.demo.function_mask
        if self.demo.mask is not None:
            return self.demo.mask
        return self._depth_foreground()

    def _depth_foreground(self) -> np.ndarray | None:
        if self.demo.depth is None:
            return None
        depth, plane = self.demo.depth, self.settings.support_plane
        try:
            if plane is not None and self.demo.intrinsics is not None:  # the demo's table out too
                depth = find_support_plane(depth, self.demo.intrinsics, None, plane).without_plane(depth)
            return DepthForeground(self.settings.depth_range).segment(self.demo.rgb, Prompt.auto(), depth).mask
        except InputError:
            return None

    def _accept(self, matches: tuple[KeypointMatch, ...]) -> np.ndarray:
        s = self.settings
        return np.array([m.accepted and (s.min_score is None or m.score >= s.min_score)
                         and (not s.require_mutual or m.mutual)
                         and (s.max_cycle_px is None or m.cycle_distance_px <= s.max_cycle_px) for m in matches],
                        dtype=bool)

    # ------------------------------------------------------------------------------------------ per frame

    def process(self, rgb, depth: np.ndarray | None = None, intrinsics: CameraIntrinsics | None = None,
                mask: np.ndarray | None = None, prompt: Prompt | None = None, up: tuple | None = None) -> FrameResult:
        """``up``: optional (the vertical in the demo camera, in the live camera), e.g. from TF: the pose search
        then also tries every turn about it (an object standing on a table turns only so)."""
        timings: dict[str, float] = {}
        image = to_rgb_array(rgb)
        depth = self._check_depth(depth, image, intrinsics)
        support = self._support_plane(depth, intrinsics, None if up is None else up[1], timings)
        # the camera's holes, found before the table is taken out (the table's pixels were seen): the pose scores
        # read them as unknown, not as free space (correspondence/depth_holes.py)
        self._live_holes = None if depth is None or support is None else depth_holes(depth)
        depth = depth if support is None else support.without_plane(depth)  # every later stage: no table
        result = self._process(image, depth, intrinsics, mask, prompt, up, timings)
        return result if support is None else replace(result, support_plane=support)

    def _process(self, image: np.ndarray, depth: np.ndarray | None, intrinsics: CameraIntrinsics | None,
                 mask: np.ndarray | None, prompt: Prompt | None, up: tuple | None,
                 timings: dict[str, float]) -> FrameResult:
        """:meth:`process` after the depth check and the support plane's removal."""
        three_d = depth is not None and intrinsics is not None and self.demo.has_3d
        live_map = DepthMap(depth, intrinsics) if three_d else None  # checked and filtered once for every lift
        live_fmap = None
        if mask is None and prompt is None and self._can_localise():  # the frame's features find the object first
            start = time.perf_counter()
            live_fmap = self.matcher.extractor.extract_batch([image], cache=False)[0]  # a live frame: never hashed
            timings["features"] = time.perf_counter() - start
        try:
            mask_result, localisation = self._segment(image, depth, mask, prompt, live_fmap, timings,
                                                      intrinsics if three_d else None, live_map, up)
        except ObjectNotFound as exc:
            return self._not_found(exc.localisation, three_d, timings)
        live_mask = mask_result.mask if mask_result else None
        if self.mode == "functional":
            return replace(self._functional(image, depth, intrinsics, live_mask, mask_result, three_d, timings,
                                            live_fmap), localisation=localisation)

        matches, demo_fmap, live_fmap = self._match_keypoints(image, live_mask, timings, live_fmap)
        dense = None
        accepted = self._accept(matches)
        live_xy = np.array([m.live_xy for m in matches], dtype=np.float64).reshape(-1, 2)
        live_points = np.full((len(matches), 3), np.nan)
        if three_d:
            points, valid = lift(live_xy, live_map, intrinsics, self.settings.depth_range)
            live_points = np.where(valid[:, None], points, np.nan)
        source = self.settings.alignment_source
        multi_view, view_index = source == "dense" and three_d and self.views is not None, None
        if source == "dense" and not multi_view:
            start = time.perf_counter()
            demo_valid = (demo_fmap.cell_mask(self.demo_region, min_fraction=0.5) if self.demo_region is not None
                          else None)
            dense = self._dense(demo_fmap, demo_valid, live_fmap, live_mask)
            timings["matching"] += time.perf_counter() - start
        start = time.perf_counter()
        weights = np.array([max(m.score, 1e-3) for m in matches]) * accepted
        dense_points = view_scores = searched = live = None
        if multi_view:  # the views' matches: the best view's pose composed into the primary frame
            live = (self._live_frame(depth, intrinsics, live_mask, live_fmap, image) if live_mask is not None
                    else None)  # each candidate view's pose is scored against it (multiview_pose.py)
            candidates, view_scores = self.views.align_candidates(
                localisation, live_fmap, live_mask, self.settings.dense,
                lambda d, view: self._align_dense(d, live_map, intrinsics, three_d, view), depth, intrinsics,
                self.settings.icp if self.settings.refine == "icp" else None, live, self.settings.pose_search)
            if live is not None and self.settings.refine != "none":  # each candidate view's pose searched, the
                # searched poses scored on the fused cloud (view_choice.choose_searched)
                fused = self.views.fused_cloud(self.settings.icp.max_points)
                sources = self.views.fused_sources(self.settings.icp.max_points)
                check = lambda T: fused_check(T, fused[0], fused[2], live, self.settings.pose_search,  # noqa: E731
                                              None if up is None else up[0], self.settings.fused_confirmation,
                                              sources)
                chosen, searched, view_scores = choose_searched(candidates, lambda c: self._refine(
                    c.result[0], depth, intrinsics, live_mask, demo_fmap, live_fmap, three_d, up, image, c.index,
                    live),
                    lambda T: self.views.pose_score(T, live, self.settings.pose_search, self.settings.icp, up),
                    fitter=(self.views.fused_fitter(live, self.settings.pose_search, self.settings.icp, up,
                                                    self.settings.multiview_handle,
                                                    check if self.settings.fused_confirmation.judge_rivals else None)
                            if self.settings.multiview_pool else None), check=check)
                searched = confirm_fused(searched, check)  # a pose the frame contradicts: refused
            else:
                chosen = candidates[0]
            view_index, dense, (alignment, alignment_2d, dense_points) = chosen.index, chosen.dense, chosen.result
        elif source == "dense":
            alignment, alignment_2d, dense_points = self._align_dense(dense, live_map if three_d else depth,
                                                                      intrinsics, three_d)
        elif three_d:
            use = accepted & np.isfinite(live_points).all(1) & np.isfinite(self.demo_points).all(1)
            alignment, alignment_2d = self._align_3d(self.demo_points, live_points, np.where(use, weights, 0)), None
        else:
            demo_xy = np.where(accepted[:, None], self.demo.keypoints.xy, np.nan)
            alignment, alignment_2d = None, self._align_2d(demo_xy, live_xy, weights)
        alignment, search = searched or self._refine(alignment, depth, intrinsics, live_mask, demo_fmap, live_fmap,
                                                     three_d, up, image, view_index, live)
        geometry, pose_keypoints = getattr(matches, "geometry", None), None
        if three_d and alignment is not None and alignment.success and self.settings.keypoint_pose.enabled:
            # the pose, not each keypoint's own match, says where the demo keypoints are (pose_keypoints.py)
            if self._keypoint_surface is None:  # every keypoint's 3D point, silhouette ones included, once
                self._keypoint_surface = surface_points(self.demo.keypoints.xy, self.demo.depth, self.demo.intrinsics,
                                                        self.demo.mask, self.settings.depth_range)
            matches, pose_keypoints = keypoints_from_pose(matches, self._keypoint_surface, alignment.transform, depth,
                                                          intrinsics, self.settings.keypoint_pose)
            moved = self._keypoint_surface @ alignment.transform[:3, :3].T + alignment.transform[:3, 3]
            live_points = np.where(np.isfinite(moved).all(1, keepdims=True), moved, live_points)
        timings["alignment"] = time.perf_counter() - start
        if multi_view and self.view_schedule is not None and localisation is not None:  # the next frame's first view
            self.view_schedule.used(view_index if alignment is not None and alignment.success else None)
        return FrameResult("keypoints", tuple(matches), accepted, self.demo_points, live_points, alignment,
                           alignment_2d, mask_result, timings, dense, source, search and search.refinement,
                           dense_points, geometry, search, pose_keypoints,
                           localisation, view_index, view_scores)

    def prepare(self) -> "TransferPipeline":
        """Compute the demo's features now instead of on the first frame (a stream's set-up, like loading the demo;
        ``soco bench tracking`` calls it before the stream so its first frame is timed as a frame)."""
        if self._features is not None:
            self._demo_feature_map()
        if self.views is not None:  # every view's features, cells, depth and clouds: the first frame's cost otherwise
            self.views.prepare(self.settings.icp.max_points)
        elif self.demo_region is not None:
            self._demo_unknown()
        return self

    def _demo_unknown(self) -> np.ndarray:
        """The demo depth's holes (:func:`~correspondence.depth_holes.depth_holes`), once: the demo depth is constant,
        and the demo-view frames of every live frame's pose search would otherwise find them again."""
        if self.views is not None:
            return self.views.unknown(0)  # the primary view is the demo
        if self._demo_holes is None:
            self._demo_holes = depth_holes(self.demo.depth)
        return self._demo_holes

    def _match_keypoints(self, image: np.ndarray, live_mask, timings: dict[str, float], live_fmap=None):
        """Keypoint matches (and the two feature maps, for dense matching). Each frame's features are computed
        once. A matcher without an extractor (any callable with :class:`Matcher`'s signature, e.g. an external
        matcher) gives keypoint matches only."""
        if self._features is None:  # a keypoints-only matcher
            result = self.matcher(self.demo.rgb, self.demo.keypoints, image, live_mask=live_mask,
                                  demo_mask=self.demo.mask)
            timings["features"] = result.timings_s.get("features", 0.0)
            timings["matching"] = result.timings_s.get("matching", 0.0)
            return tuple(result.matches), None, None
        start = time.perf_counter()
        demo_fmap = self._demo_feature_map()
        if live_fmap is None:
            live_fmap = self.matcher.extractor.extract_batch([image], cache=False)[0]  # a live frame: never hashed
            timings["features"] = time.perf_counter() - start
        start = time.perf_counter()
        if self._demo_query is None:  # keypoints, dense cells and the demo's pixels for refinement, once
            self._demo_query = prepare_demo(demo_fmap, self.demo.keypoints, self.demo.mask, self.matcher.settings,
                                            demo_image=self.demo.rgb, extractor=self.matcher.extractor)
        matches, _ = match_prepared(self._demo_query, live_fmap, live_mask, self.matcher.settings, live_image=image)
        timings["matching"] = time.perf_counter() - start  # refinement and verification included
        return matches, demo_fmap, live_fmap  # a MatchList: the keypoint geometry (if verified) travels with it

    def _functional(self, image: np.ndarray, depth, intrinsics, live_mask, mask_result, three_d: bool,
                    timings: dict[str, float], live_fmap=None) -> FrameResult:
        start = time.perf_counter()
        if self._demo_features is None:
            demo_fmap = self._demo_feature_map() if self.functional is None else self._embed(self.demo.rgb)[0]
            self._demo_features = (demo_fmap, demo_fmap.cell_mask(self.demo.function_mask, min_fraction=0.5))
        demo_fmap, demo_valid = self._demo_features
        predicted = None
        if live_fmap is None:  # already computed when localisation ran (the backbone's features, no head)
            live_fmap, predicted = self._embed(image)
        timings["features"] = timings.get("features", 0.0) + time.perf_counter() - start
        start = time.perf_counter()
        live_valid = live_fmap.cell_mask(live_mask, min_fraction=0.5).flatten() if live_mask is not None else None
        if predicted is not None:  # a trained head also says where the functional part is: stay inside it
            inside = torch.from_numpy(predicted.flatten() >= 0.5).to(live_fmap.features.device)
            restricted = inside if live_valid is None else live_valid & inside
            if restricted.any():
                live_valid = restricted
        dense = dense_matches(demo_fmap, demo_valid, live_fmap, live_valid, self.settings.dense)
        timings["matching"] = time.perf_counter() - start
        start = time.perf_counter()
        alignment, alignment_2d, dense_points = self._align_dense(dense, depth, intrinsics, three_d)
        alignment, search = self._refine(alignment, depth, intrinsics, live_mask)
        timings["alignment"] = time.perf_counter() - start
        empty = np.zeros((0, 3))
        return FrameResult("functional", (), np.zeros(0, dtype=bool), empty, empty.copy(), alignment, alignment_2d,
                           mask_result, timings, dense, "dense", search and search.refinement, dense_points,
                           pose_search=search)

    def _embed(self, image: np.ndarray):
        if self.functional is not None:
            return self.functional(image, self.demo.function)
        return self.matcher.extractor.extract_batch([image], cache=False)[0], None  # each image once: no hashing

    def _dense(self, demo_fmap, demo_valid, live_fmap, live_mask) -> DenseMatches:
        if demo_valid is None:
            demo_valid = torch.ones(demo_fmap.grid_wh[0] * demo_fmap.grid_wh[1], dtype=torch.bool,
                                    device=demo_fmap.features.device)
        live_valid = live_fmap.cell_mask(live_mask, min_fraction=0.5) if live_mask is not None else None
        return dense_matches(demo_fmap, demo_valid, live_fmap, live_valid, self.settings.dense)

    # ------------------------------------------------------------------------------------------ alignment

    def _align_dense(self, dense: DenseMatches, depth, intrinsics, three_d: bool, view=None):
        """(3D result, 2D result, the dense matches' live points or None). ``view``: the multi-view demo's view
        the matches start in (lifted with its depth, moved into the primary frame)."""
        weights = np.maximum(dense.score, 1e-3)
        if not three_d:
            return None, self._align_2d(dense.demo_xy, dense.live_xy, weights), None
        demo = self.demo if view is None else view
        demo_map = self._demo_depth_map() if view is None else self.views.depth_map(view)
        demo_points, demo_ok = lift(dense.demo_xy, demo_map, demo.intrinsics, self.settings.depth_range)
        demo_points = demo_points if view is None else view.to_primary(demo_points)
        live_points, live_ok = lift(dense.live_xy, depth, intrinsics, self.settings.depth_range)
        use = demo_ok & live_ok
        return self._align_3d(demo_points, live_points, np.where(use, weights, 0.0)), None, live_points

    def _live_frame(self, depth, intrinsics, live_mask, live_fmap, image) -> LiveFrame:
        """What a pose is scored against: the live depth, mask, object cloud, descriptors and image."""
        live_cloud = masked_cloud(depth, intrinsics, live_mask, self.settings.depth_range, self.settings.icp.max_points)
        sampler = None
        if live_fmap is not None:
            sampler = lambda xy: to_numpy(live_fmap.sample(  # noqa: E731
                np.clip(xy, 0, [intrinsics.width - 1e-3, intrinsics.height - 1e-3])).float())
        holes = self._live_holes if self._live_holes is not None and self._live_holes.shape == depth.shape else None
        return LiveFrame(depth, intrinsics, np.asarray(live_mask, dtype=bool), live_cloud, sampler, image, holes)

    def _refine(self, alignment: AlignmentResult | None, depth, intrinsics, live_mask, demo_fmap=None,
                live_fmap=None, three_d: bool = False, up: tuple | None = None, image: np.ndarray | None = None,
                view: int | None = None, live: LiveFrame | None = None
                ) -> tuple[AlignmentResult | None, PoseSearchResult | None]:
        """The pose search (:mod:`correspondence.pose_search`): the correspondence pose and, for a same-object
        (keypoint) demo, global FPFH + RANSAC / FGR hypotheses on the two clouds, scored against the live frame and
        refined with the guarded ICP. Needs a live mask (without one the live cloud would include the
        background). An ambiguous turn replaces the pose with a refusal that says so. ``live``: the frame's
        :class:`LiveFrame` when the caller built it already (the multi-view pose scores), else built here."""
        if self.settings.refine == "none" or live_mask is None or alignment is None:
            return alignment, None
        search_settings = self.settings.pose_search
        if self.mode != "keypoints" or not three_d or self.settings.alignment_source != "dense":
            # global hypotheses belong with the dense matches of the same object; a caller who aligns on the
            # keypoints alone (or a functional demo, another instance) gets the matches' pose and the ICP only
            search_settings = replace(search_settings, global_hypotheses=False)
        if not alignment.success and not search_settings.global_hypotheses:
            return alignment, None
        icp = self.settings.icp
        if self._demo_cloud is None and self.views is None:
            self._demo_cloud = object_cloud(self.demo.depth, self.demo.intrinsics, self.demo_region, self.demo.rgb,
                                            demo_fmap, self.settings.depth_range, icp.max_points)
        fit = None  # a multi-view demo: the chosen view's cloud or the fused one, in the primary frame
        demo_points, demo_descriptors, demo_colors = (self._demo_cloud if self.views is None else
                                                      self.views.search_cloud(view or 0, icp.max_points,
                                                                              self.settings.multiview_cloud))
        inferred = None
        if (self.views is None and up is not None and self.demo_region is not None
                and search_settings.mirror_completion and search_settings.global_hypotheses):
            completion = self._mirror_completion(np.asarray(up[0], dtype=np.float64))
            if completion is not None:
                demo_points, demo_descriptors, demo_colors = completion.points, completion.descriptors, completion.colors
                inferred = completion.inferred
        if self.views is not None and self.settings.multiview_cloud == "fused":
            fit = lambda T: visible_points(demo_points, T, intrinsics)  # noqa: E731 (the side the camera sees)
        live = live if live is not None else self._live_frame(depth, intrinsics, live_mask, live_fmap, image)
        start_pose = alignment.transform if alignment.success else None
        own_view = self.views is None or (not view and self.settings.multiview_cloud == "view")
        demo_view = (None if self.demo_region is None or not own_view else  # the demo's own view: symmetric rivals
                     LiveFrame(self.demo.depth, self.demo.intrinsics, np.asarray(self.demo_region, dtype=bool),
                               demo_points, None, to_rgb_array(self.demo.rgb), self._demo_unknown()))
        if self.views is not None and view and self.settings.multiview_cloud == "view":  # a turned view: the search
            # in its own frame, with its depth and mask as the demo view (symmetric rivals)
            search = self.views.search_from_view(view, start_pose, live, search_settings, icp, up, icp.max_points)
        else:
            search = search_pose(demo_points, demo_descriptors, live, start_pose, search_settings, icp, up=up,
                                 demo_colors=demo_colors, demo_view=demo_view, fit_points=fit, inferred=inferred)
        if self.views is None and self.settings.one_view_handle and search_settings.global_hypotheses:
            search = handle_search(search, demo_points, demo_descriptors, demo_colors, inferred, live,
                                   search_settings, icp, up, demo_view=demo_view)  # a round body's turn read
            # from its handle or spout
            if search.unconfirmed:  # the handle contradicts the pose: no pose (not the matches' in its place)
                return replace(alignment, success=False, transform=None, reason=search.reason), search
        if self.views is None and search.ambiguous:  # one view: rivals the frame contradicts are none
            search = without_contradicted_rivals(search, live, self.settings.confirmation)
        if self.views is None and search.transform is not None:  # one view: is the turn confirmed, or a guess?
            search = confirm(search, demo_points, demo_descriptors, live, search_settings, demo_colors, inferred,
                             self.settings.confirmation, None if up is None else up[0])
            if search.unconfirmed:
                return replace(alignment, success=False, transform=None, reason=search.reason), search
        if search.transform is None:
            if search.ambiguous:
                return replace(alignment, success=False, transform=None, reason=search.reason), search
            if not alignment.success:  # neither gave a pose: say what each found, not the matches' bare word
                return replace(alignment, reason=no_pose_reason(alignment, search.reason)), search
            return alignment, search
        chosen = search.chosen
        solver = alignment.solver if chosen.source == "matches" else chosen.source
        solver += "+icp" if chosen.refinement is not None and chosen.refinement.accepted else ""
        if chosen.source == "matches" and solver == alignment.solver:
            return alignment, search
        return replace(alignment, success=True, transform=search.transform, reason="ok", solver=solver), search

    def _mirror_completion(self, up_demo: np.ndarray):
        """The one-view demo cloud completed with its vertical mirror plane (None: no plane with strong evidence),
        once per demo vertical (:mod:`correspondence.mirror_symmetry`)."""
        key = tuple(np.round(up_demo / np.linalg.norm(up_demo), 3))
        if self._mirror is None or self._mirror[0] != key:
            points, descriptors, colors = self._demo_cloud
            view = LiveFrame(self.demo.depth, self.demo.intrinsics, np.asarray(self.demo_region, dtype=bool), points,
                             None, to_rgb_array(self.demo.rgb), self._demo_unknown())
            plane = estimate_mirror_plane(points, view, up_demo)
            self._mirror = (key, None if plane is None else
                            complete_with_mirror(points, descriptors, colors, view, plane))
        return self._mirror[1]

    def _align_3d(self, src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> AlignmentResult:
        use = weights > 0
        s = self.settings
        return estimate_alignment(np.where(use[:, None], src, np.nan), np.where(use[:, None], dst, np.nan),
                                  weights=weights, solver=s.solver, threshold=s.ransac_threshold,
                                  iterations=s.ransac_iterations, min_inliers=s.min_inliers)

    def _align_2d(self, demo_xy: np.ndarray, live_xy: np.ndarray, weights: np.ndarray) -> Alignment2DResult:
        return similarity_2d(demo_xy, live_xy, weights=weights, threshold=self.settings.pixel_threshold,
                             min_inliers=self.settings.min_inliers)

    def _check_depth(self, depth, image: np.ndarray, intrinsics: CameraIntrinsics | None) -> np.ndarray | None:
        return depth_module.check_live_depth(depth, image, intrinsics, self.settings.depth_scale)

    def _support_plane(self, depth: np.ndarray | None, intrinsics: CameraIntrinsics | None, up,
                       timings: dict[str, float]) -> SupportPlane | None:
        """The frame's table (:mod:`~correspondence.support_plane`), once; None when not looked for (off, or no
        depth or intrinsics to lift it with)."""
        settings = self.settings.support_plane
        if settings is None or depth is None or intrinsics is None:
            return None
        start = time.perf_counter()
        support = find_support_plane(depth, intrinsics, up, settings)
        timings["support_plane"] = time.perf_counter() - start
        return support


def _feature_matcher(matcher) -> "Matcher | None":
    """The library's :class:`Matcher` (features for dense matching and refinement), or None for any other
    :class:`KeypointMatcher` (keypoint matches only); anything else is refused here, not on the first frame."""
    from .api import Matcher
    if isinstance(matcher, Matcher):
        return matcher
    if isinstance(matcher, KeypointMatcher):
        return None
    raise ConfigError(f"matcher must be a correspondence.Matcher or a callable keypoint matcher, got "
                      f"{type(matcher).__name__}")
