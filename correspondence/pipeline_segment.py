"""The live object stage of :class:`~correspondence.pipeline.TransferPipeline`: the live mask, from the caller's
mask or prompt, else the mask source prompted where the demo object's features are found
(:mod:`~correspondence.localise`, one view or a multi-view demo's views), else the source's own rule; and the frame
result of "object not found". Why apart: finding the object is one job, matching and aligning it another; the
pipeline's per-frame code reads as the stages it runs."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .alignment import Alignment2DResult, AlignmentResult
from .lifting import DepthMap
from .localise import DepthViews, Localisation, ObjectNotFound, localise
from .localised_mask import segment_localised
from .object_colour import ColourModel
from .object_signature import ObjectSignature, SignatureCue
from .pipeline_types import FrameResult
from .preprocessing import to_rgb_array
from .segmentation import GivenMask, MaskResult, Prompt


class LiveObjectStage:
    """Mixed into :class:`~correspondence.pipeline.TransferPipeline`, whose attributes it uses (``demo``,
    ``settings``, ``mask_source``, ``views``, ``view_schedule``, ``tracker`` and the demo caches it fills once)."""

    def _can_localise(self) -> bool:
        """Localisation needs a mask source to prompt, the library's features (no trained functional head, whose
        features differ) and the demo object's cells."""
        return (self.settings.localise.enabled and self.mask_source is not None and self._features is not None
                and self.functional is None and self.demo_object is not None)

    def _segment(self, image, depth, mask, prompt, live_fmap, timings: dict[str, float], intrinsics=None,
                 live_map: DepthMap | None = None, up: tuple | None = None
                 ) -> tuple[MaskResult | None, Localisation | None]:
        """The live mask: the caller's mask or prompt when given; else the mask source prompted where the demo
        object's features are found (:mod:`~correspondence.localise`); else the source's own rule. ``live_map``:
        the frame's depth prepared for lifting (the localisations' rigid checks share it)."""
        start = time.perf_counter()
        localisation = None
        if mask is not None:
            result = GivenMask(mask).segment(image, prompt or Prompt.auto(), depth)
        elif self.mask_source is None:
            result = None
        elif live_fmap is None:
            result = self.mask_source.segment(image, prompt or Prompt.auto(), depth)
        else:
            demo_fmap = self._demo_feature_map()  # the demo's features once, counted as features, not segmentation
            if self.views is not None:  # likewise every view's (a stream computes them in prepare())
                self.views.prepare()
            timings["features"] = timings.get("features", 0.0) + time.perf_counter() - start
            start = time.perf_counter()
            if self._demo_object_cells is None:
                self._demo_object_cells = demo_fmap.cell_mask(self.demo_object, min_fraction=0.5)
                self._demo_object_count = int(self._demo_object_cells.sum())
            if self._demo_object_count < self.settings.localise.min_demo_cells:  # too coarse to vote
                result = self.mask_source.segment(image, Prompt.auto(), depth)
                timings["segmentation"] = time.perf_counter() - start
                why = (f"fallback: the source's own rule (the demo object covers {self._demo_object_count} < "
                       f"{self.settings.localise.min_demo_cells} feature cells, too few to localise)")
                return MaskResult(result.mask, result.score, result.source, result.prompt,
                                  {**result.details, "localised": why}), None
            live_map = live_map if live_map is not None or intrinsics is None else DepthMap(depth, intrinsics)
            depths = (DepthViews(self._demo_depth_map(), self.demo.intrinsics, live_map, intrinsics)
                      if intrinsics is not None else None)  # RGB-D: the rigid 3D check tells object from look-alike
            demo_rgb = to_rgb_array(self.demo.rgb)
            cue = self._signature_cue(up, demo_rgb, image, live_map)  # rule 6: height, footprint, colours
            localisation = (self._localise_views(live_fmap, live_map, intrinsics, image, cue)
                            if self.views is not None else  # the views vote (multiview_pose.py, view_schedule.py)
                            localise(demo_fmap, self._demo_object_cells, live_fmap, self.settings.localise, depths,
                                     (demo_rgb, image), signature=cue))
            if self._demo_colours is None:  # the demo object's colours, once: they cut a touching look-alike off
                self._demo_colours = ColourModel.from_image(demo_rgb, self.demo_object)
            colours = self._demo_colours if self.views is None else self.views.colours(localisation)
            timings["localisation"] = time.perf_counter() - start
            try:
                if self.tracker is None:
                    result = segment_localised(self.mask_source, image, depth, localisation, colours, cue,
                                               self.settings.mask_completion)
                elif localisation.matched and not localisation.found:  # the key frame stays: the box test
                    raise ObjectNotFound(localisation)  # decides when the object is back whether it moved
                else:
                    result = self.tracker.step(live_fmap, localisation,
                                               lambda: segment_localised(self.mask_source, image, depth, localisation,
                                                                         colours, cue, self.settings.mask_completion))
            finally:  # "object not found" is a frame result too: its time counts
                timings["segmentation"] = time.perf_counter() - start
        timings["segmentation"] = time.perf_counter() - start
        return result, localisation

    def _signature_cue(self, up: tuple | None, demo_rgb: np.ndarray, image: np.ndarray,
                       live_map: DepthMap | None) -> SignatureCue | None:
        """With the vertical and depth in both views: the demo object's height, footprint and colours (measured once
        per demo vertical) and the live frame, for localisation's rule 6 (:mod:`~correspondence.object_signature`)."""
        if up is None or live_map is None or self.settings.signature is None or not self.settings.signature.enabled:
            return None
        key = tuple(np.round(np.asarray(up[0], dtype=np.float64).ravel(), 6))
        if self._demo_signature is None or self._demo_signature[0] != key:
            self._demo_signature = (key, ObjectSignature.measure(demo_rgb, self._demo_depth_map(),
                                                                 self.demo.intrinsics, self.demo_object, up[0],
                                                                 self.settings.signature))
        return SignatureCue(self._demo_signature[1], image, live_map, live_map.intrinsics, np.asarray(up[1]),
                            self.settings.signature)

    def _localise_views(self, live_fmap, live_map, intrinsics, image, signature=None) -> Localisation:
        """A multi-view demo's localisation: the view of the last pose alone when :class:`ViewSchedule` says so and
        it confirms the object clearly; else every view (those already tried on this frame not redone).
        ``signature``: rule 6's cue (the primary view's object signature), in every view."""
        settings, schedule, known = self.settings.localise, self.view_schedule, {}
        first = None if schedule is None else schedule.first()
        if first is not None:
            localisation = self.views.localise_view(first, live_fmap, settings, live_map, intrinsics, image, signature)
            if schedule.confirmed(localisation):
                schedule.localised(None)
                chosen = self.views.choose({first: localisation})
                return replace(chosen, details={**chosen.details, "views_localised": "last pose's view, confirmed"})
            known = {} if localisation is None else {first: localisation}
        localisation = self.views.localise(live_fmap, settings, live_map, intrinsics, image, known=known,
                                           signature=signature)
        if schedule is not None:
            schedule.localised(localisation.details["demo_view_scores"])
        return localisation

    def _not_found(self, localisation: Localisation, three_d: bool, timings: dict[str, float]) -> FrameResult:
        """No pose for a frame without the demo object; the reason carries the best candidate's score."""
        if self.view_schedule is not None:
            self.view_schedule.used(None)
        timings.setdefault("matching", 0.0)
        timings.setdefault("alignment", 0.0)
        reason = localisation.reason
        empty = np.zeros((0, 3))
        alignment = alignment_2d = None
        if three_d:
            alignment = AlignmentResult(False, None, np.zeros(0, dtype=bool), 0.0, float("nan"), 0, reason, "none")
        else:
            alignment_2d = Alignment2DResult(False, None, None, None, np.zeros(0, dtype=bool), 0.0, float("nan"), 0,
                                             reason, "none")
        return FrameResult(self.mode, (), np.zeros(0, dtype=bool), empty, empty.copy(), alignment, alignment_2d, None,
                           timings, None, self.settings.alignment_source if self.mode == "keypoints" else "dense",
                           localisation=localisation)

    def _demo_depth_map(self) -> DepthMap:
        """The demo's depth prepared for lifting, once per pipeline."""
        if self._demo_depth is None:
            self._demo_depth = DepthMap(self.demo.depth, self.demo.intrinsics)
        return self._demo_depth

    def _demo_feature_map(self):
        """The demo's features, computed once per pipeline (not left to the extractor's cache, which a live stream
        may keep small or off)."""
        if self._demo_fmap is None:
            self._demo_fmap = self.matcher.extractor(self.demo.rgb)
        return self._demo_fmap


__all__ = ["LiveObjectStage"]
