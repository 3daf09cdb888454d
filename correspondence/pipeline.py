"""The per-frame job a robot runs: segment the live object, find the demo's keypoints in it, lift both sides
with depth and estimate the rigid demo-to-live transform — completely without ROS.

The demo's camera frame is the demo object frame: a demo keypoint lifted with the demo depth lives there, and the
estimated transform maps it into the live camera frame. Without demo or live depth the result is 2D only (the
matches and a 2D similarity transform). A failed alignment is reported with its reason, never as a pose.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .alignment import Alignment2DResult, AlignmentResult, estimate_alignment, lift, similarity_2d
from .api import Matcher
from .camera import CameraIntrinsics
from .demo_spec import DemoSpec
from .errors import InputError
from .keypoint_matching import KeypointMatch
from .preprocessing import to_rgb_array
from .segmentation import GivenMask, MaskProvider, MaskResult, Prompt


@dataclass(frozen=True)
class PipelineSettings:
    min_score: float | None = None  # reject matches with a lower cosine score
    require_mutual: bool = False  # reject matches that are not mutual nearest neighbours
    max_cycle_px: float | None = None  # reject matches whose cycle distance (demo px) is larger
    depth_range: tuple[float, float] = (0.05, 5.0)
    ransac_threshold: float = 0.01  # metres
    ransac_iterations: int = 1000
    min_inliers: int = 4
    solver: str = "ransac"  # ransac | open3d
    pixel_threshold: float = 8.0  # 2D similarity inlier threshold (px)


@dataclass(frozen=True)
class FrameResult:
    matches: tuple[KeypointMatch, ...]
    accepted: np.ndarray  # (K,) bool, after the rejection rules
    demo_points: np.ndarray  # (K, 3) demo camera frame, NaN where not lifted
    live_points: np.ndarray  # (K, 3) live camera frame, NaN where not lifted or without live depth
    alignment: AlignmentResult | None  # 3D, when demo and live depth + intrinsics exist
    alignment_2d: Alignment2DResult | None  # otherwise
    mask: MaskResult | None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        result = self.alignment if self.alignment is not None else self.alignment_2d
        return bool(result is not None and result.success)


class TransferPipeline:
    """Built once per demo (its features are cached by the matcher's extractor), called per live frame."""

    def __init__(self, demo: DemoSpec, matcher: Matcher, settings: PipelineSettings | None = None,
                 segmenter: MaskProvider | None = None) -> None:
        if demo.keypoints is None:
            raise InputError("this pipeline transfers keypoints; the demo has a function instead "
                             "(functional transfer is not wired into the pipeline yet)")
        self.demo = demo
        self.matcher = matcher
        self.settings = settings or PipelineSettings()
        self.segmenter = segmenter
        self.demo_points = np.full((len(demo.keypoints.points), 3), np.nan)
        if demo.has_3d:
            points, valid = lift(demo.keypoints.xy, demo.depth, demo.intrinsics, self.settings.depth_range)
            self.demo_points = np.where(valid[:, None], points, np.nan)

    def _accept(self, matches: tuple[KeypointMatch, ...]) -> np.ndarray:
        s = self.settings
        return np.array([m.accepted and (s.min_score is None or m.score >= s.min_score)
                         and (not s.require_mutual or m.mutual)
                         and (s.max_cycle_px is None or m.cycle_distance_px <= s.max_cycle_px) for m in matches],
                        dtype=bool)

    def process(self, rgb, depth: np.ndarray | None = None, intrinsics: CameraIntrinsics | None = None,
                mask: np.ndarray | None = None, prompt: Prompt | None = None) -> FrameResult:
        timings: dict[str, float] = {}
        image = to_rgb_array(rgb)
        if depth is not None and depth.shape != image.shape[:2]:
            raise InputError(f"live depth is {depth.shape[1]}x{depth.shape[0]} but the RGB frame is "
                             f"{image.shape[1]}x{image.shape[0]}")
        start = time.perf_counter()
        mask_result = None
        provider = GivenMask(mask) if mask is not None else self.segmenter
        if provider is not None:
            mask_result = provider.segment(image, prompt or Prompt.auto(), depth)
        timings["segmentation"] = time.perf_counter() - start
        result = self.matcher(self.demo.rgb, self.demo.keypoints, image,
                              live_mask=mask_result.mask if mask_result else None, demo_mask=self.demo.mask)
        timings["features"] = result.timings_s.get("features", 0.0)
        timings["matching"] = result.timings_s.get("matching", 0.0)
        accepted = self._accept(result.matches)
        start = time.perf_counter()
        live_points = np.full((len(result.matches), 3), np.nan)
        alignment = alignment_2d = None
        weights = np.array([max(m.score, 1e-3) for m in result.matches]) * accepted
        if depth is not None and intrinsics is not None and self.demo.has_3d:
            points, valid = lift(result.live_xy, depth, intrinsics, self.settings.depth_range)
            live_points = np.where(valid[:, None], points, np.nan)
            use = accepted & valid & np.isfinite(self.demo_points).all(1)
            alignment = estimate_alignment(np.where(use[:, None], self.demo_points, np.nan),
                                           np.where(use[:, None], live_points, np.nan), weights=np.where(use, weights, 0),
                                           solver=self.settings.solver, threshold=self.settings.ransac_threshold,
                                           iterations=self.settings.ransac_iterations,
                                           min_inliers=self.settings.min_inliers)
        else:
            demo_xy = np.where(accepted[:, None], self.demo.keypoints.xy, np.nan)
            alignment_2d = similarity_2d(demo_xy, result.live_xy, weights=weights,
                                         threshold=self.settings.pixel_threshold, min_inliers=self.settings.min_inliers)
        timings["alignment"] = time.perf_counter() - start
        return FrameResult(result.matches, accepted, self.demo_points, live_points, alignment, alignment_2d,
                           mask_result, timings)
