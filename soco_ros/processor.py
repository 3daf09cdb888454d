"""The ROS-free half of the node: build the matcher, load demos, keep the pipeline settings, process one frame.

Everything here is plain Python on top of :mod:`correspondence`; :mod:`soco_ros.node` only moves messages in and
out. Thread model: the node's worker thread calls :meth:`FrameProcessor.process` and installs new demos
(:meth:`FrameProcessor.install_demo`, then :meth:`FrameProcessor.warmup`, which extracts the demo's features);
parameter and service callbacks only validate a demo (:meth:`FrameProcessor.load_spec`: reads and checks the
files) and call :meth:`FrameProcessor.update` from the executor thread. The current pipeline is swapped atomically under a lock and a
frame always runs on the pipeline it started with.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from correspondence.api import Matcher
from correspondence.camera import CameraIntrinsics
from correspondence.demo_spec import DemoSpec, load_demo
from correspondence.dense_transfer import DenseSettings
from correspondence.errors import ConfigError, InputError
from correspondence.mask_completion import CompletionSettings
from correspondence.pipeline import FrameResult, PipelineSettings, TransferPipeline
from correspondence.segmentation import MaskSource, Prompt, auto_mask_source, mask_source_from_name
from correspondence.support_plane import SupportPlaneSettings
from correspondence.tracking import TrackSettings
from correspondence.view_schedule import ViewScheduleSettings

from . import parameters as P

# Settings that rebuild the pipeline (cheap: the demo keypoints are re-lifted) when they change.
PIPELINE_KEYS = ("min_score", "require_mutual", "max_cycle_px", "depth_min", "depth_max", "solver",
                 "ransac_threshold", "ransac_iterations", "min_inliers", "pixel_threshold", "segmentation", "sam2_model", "sam2_image_size", "track_every",
                 "alignment_source", "refine", "dense_top_k", "view_schedule_every", "view_schedule_keep",
                 "support_plane", "support_plane_min_area", "mask_completion", "mask_completion_grow")


@dataclass
class Frame:
    """One synchronised live frame, already converted and validated."""

    rgb: np.ndarray
    stamp_ns: int
    frame_id: str
    depth: np.ndarray | None = None
    intrinsics: CameraIntrinsics | None = None
    mask: np.ndarray | None = None
    prompt: Prompt | None = None


@dataclass
class Processed:
    frame: Frame
    result: FrameResult
    demo: DemoSpec
    names: tuple[str, ...]
    timings_s: dict[str, float] = field(default_factory=dict)
    up: tuple[np.ndarray, np.ndarray] | None = None  # the verticals (demo camera, live camera) the frame ran with


def build_matcher(params: dict[str, Any]) -> Matcher:
    """``Matcher.create`` from node parameters. The feature cache holds two images: the demo (used every frame)
    and the current frame; a larger one would fill with live frames that never come back."""
    runtime = params["runtime"]
    model = params.get("runtime_model") or None
    if runtime != "torch" and model is None:
        raise ConfigError(f"runtime {runtime!r} needs runtime_model (the exported .onnx / .processor file)")
    if runtime == "torch":
        spec = {"name": "torch", "cuda_graphs": bool(params.get("cuda_graphs", False))}
    else:
        spec = {"name": runtime, "model": model, "provider": params.get("runtime_provider", "cpu"),
                "fp16": bool(params.get("runtime_fp16", False)),
                "allow_unverified": bool(params.get("runtime_allow_unverified", False))}
    return Matcher.create(params["backbone"], weights=params["weights"] or None,
                          random_weights=bool(params["random_weights"]), size=int(params["image_size"]) or None,
                          device=params["device"], dtype=params.get("dtype", "auto"),
                          method=params["match_method"], allow_download=False, runtime=spec, cache_size=2,
                          protocol=params.get("match_protocol", "default"),
                          refine=bool(params.get("refine_keypoints", True)),
                          refinement={"candidates": int(params.get("refine_candidates", 1))},
                          geometry=params.get("geometry", "none"))


def functional_embedder(params: dict[str, Any], matcher: Matcher):
    """A trained functional head for functional demos when ``functional_head`` is set; else None (the pipeline
    then matches with the backbone's own features)."""
    path = params.get("functional_head") or ""
    if not path:
        return None
    from correspondence.functional.checkpoint import HeadCheckpoint
    from correspondence.functional.inference import FunctionalEmbedder
    return FunctionalEmbedder.create(HeadCheckpoint.load(path), matcher.extractor.backbone,
                                     image_size=matcher.extractor.settings.preprocess.size, device=params["device"])


def pipeline_settings(params: dict[str, Any]) -> PipelineSettings:
    """Node parameters -> PipelineSettings."""
    return PipelineSettings(
        min_score=(None if params["min_score"] <= -1.0 else float(params["min_score"])),
        require_mutual=bool(params["require_mutual"]),
        max_cycle_px=float(params["max_cycle_px"]) or None,
        depth_range=(float(params["depth_min"]), float(params["depth_max"])),
        ransac_threshold=float(params["ransac_threshold"]), ransac_iterations=int(params["ransac_iterations"]),
        min_inliers=int(params["min_inliers"]), solver=params["solver"],
        pixel_threshold=float(params["pixel_threshold"]), alignment_source=params["alignment_source"],
        refine=params["refine"], dense=DenseSettings(top_k=int(params["dense_top_k"])),
        track=TrackSettings(every=int(params["track_every"])) if int(params["track_every"]) > 0 else None,
        view_schedule=view_schedule(params),
        support_plane=(SupportPlaneSettings(min_area=float(params.get("support_plane_min_area",
                                                                      SupportPlaneSettings.min_area)))
                       if params.get("support_plane", True) else None),
        mask_completion=(CompletionSettings(grow=float(params.get("mask_completion_grow", CompletionSettings.grow)))
                         if params.get("mask_completion", True) else None))


def view_schedule(params: dict[str, Any]) -> ViewScheduleSettings | None:
    """``view_schedule_every`` / ``view_schedule_keep`` -> a multi-view demo's view schedule; None (every view
    localises on every frame) for ``view_schedule_every`` 0."""
    every = int(params.get("view_schedule_every", ViewScheduleSettings.every))
    if every <= 0:
        return None
    return ViewScheduleSettings(keep=float(params.get("view_schedule_keep", ViewScheduleSettings.keep)), every=every)


def gravity(params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """``up`` / ``demo_up`` -> the pipeline's ``up`` (the vertical in the demo camera, in the live camera), unit
    vectors; None while ``up`` is [0, 0, 0] (no gravity prior). ``demo_up`` [0, 0, 0] = the same as ``up``. A bad
    value is a :class:`ConfigError` naming it (the node refuses it earlier, with the same reason)."""
    for name in ("up", "demo_up"):
        reason = P.validate(name, P.coerce(name, params.get(name, [0.0, 0.0, 0.0])))
        if reason is not None:
            raise ConfigError(reason)
    live = P.direction(P.coerce("up", params.get("up", [0.0, 0.0, 0.0])))
    if live is None:
        return None
    demo = P.direction(P.coerce("demo_up", params.get("demo_up", [0.0, 0.0, 0.0]))) or live
    return np.array(demo), np.array(live)


def make_mask_source(params: dict[str, Any]) -> tuple[MaskSource | None, str]:
    """The live mask source and why it was chosen (the mask topic, when used, overrides it per frame)."""
    name = params["segmentation"]
    depth_range = (float(params["depth_min"]), float(params["depth_max"]))
    if name == "none":
        return None, "none: matching over the whole image"
    if name == "auto":
        return auto_mask_source(depth=bool(params["use_depth"]), device=params["device"], depth_range=depth_range,
                                sam2_model_type=params["sam2_model"], sam2_image_size=int(params["sam2_image_size"]))
    if name == "depth":
        return mask_source_from_name("depth", depth_range=depth_range), "depth: nearest depth surface"
    if name == "sam":
        return mask_source_from_name("sam", allow_download=False, device=params["device"]), "sam"
    if name == "sam2":
        return (mask_source_from_name("sam2", model_type=params["sam2_model"], allow_download=False,
                                      device=params["device"], image_size=int(params["sam2_image_size"])),
                f"sam2: SAM 2.1 {params['sam2_model']} at {int(params['sam2_image_size'])} px")
    return mask_source_from_name(name), name


class FrameProcessor:
    """One frame in, one :class:`Processed` out, on the current demo's pipeline (named so as not to be confused
    with a TensorRT engine, which a runtime may run underneath)."""

    def __init__(self, params: dict[str, Any], matcher: Matcher | None = None) -> None:
        self.params = dict(params)
        self.matcher = matcher if matcher is not None else build_matcher(self.params)
        self.up = gravity(self.params)
        self.mask_source, self.mask_source_reason = make_mask_source(self.params)
        self.functional = functional_embedder(self.params, self.matcher)
        self._lock = threading.Lock()
        self._pipeline: TransferPipeline | None = None
        self._build_lock = threading.Lock()  # one demo install or settings update at a time (cheap, no model)
        self.demo: DemoSpec | None = None
        self.demo_path = ""

    # ------------------------------------------------------------------------------------------------ demo
    def set_demo(self, path: str) -> DemoSpec:
        """Load ``path`` and make it the current demo; on any error the previous demo stays (and it raises)."""
        demo = self.load_spec(path)
        self.install_demo(demo, path)
        return demo

    @staticmethod
    def load_spec(path: str) -> DemoSpec:
        """Read and check the demo at ``path`` (files, sizes, keypoints); no model work. Raises with the reason."""
        path = str(path).strip()
        if not path:
            raise InputError("demo path is empty")
        if not Path(path).expanduser().exists():
            raise InputError(f"demo {path!r} does not exist (give a folder or a YAML file)")
        return load_demo(Path(path).expanduser())

    def install_demo(self, demo: DemoSpec, path: str) -> None:
        """Make ``demo`` (from :meth:`load_spec`) the current one."""
        with self._build_lock:  # never interleaved with update(): the pipeline gets the settings in force
            pipeline = self._pipeline_for(demo, self.params, self.mask_source)
            with self._lock:
                self._pipeline, self.demo, self.demo_path = pipeline, demo, str(path).strip()

    def _pipeline_for(self, demo: DemoSpec, params: dict[str, Any], mask_source) -> TransferPipeline:
        """A pipeline for ``demo`` with the demo's set-up done (:meth:`TransferPipeline.prepare`: its features, a
        multi-view demo's per-view features, cells, depth and clouds) while the previous pipeline still serves, so
        the first frame is timed and delayed as a frame, not as the demo's set-up."""
        return TransferPipeline(demo, self.matcher, pipeline_settings(params), mask_source,
                                functional=self.functional).prepare()

    def warmup(self) -> float:
        """Run the current demo through the pipeline once (its features get cached, torch warms up); seconds."""
        import time

        with self._lock:
            pipeline, demo = self._pipeline, self.demo
        if pipeline is None or demo is None:
            return 0.0
        start = time.perf_counter()
        pipeline.process(demo.rgb, depth=demo.depth, intrinsics=demo.intrinsics,
                         mask=demo.mask if demo.mask is not None else None)
        return time.perf_counter() - start

    @property
    def has_demo(self) -> bool:
        return self._pipeline is not None

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """What ``index`` in ``~/matches`` refers to: the demo keypoint names, or for a functional demo the
        function alone (there, ``index`` is the match's rank, best first)."""
        return demo_names(self.demo) if self.demo is not None else ()

    # ------------------------------------------------------------------------------------------------ settings
    def update(self, changes: dict[str, Any]) -> None:
        """Apply reconfigurable parameter changes (validated by the caller). All or nothing: if the new mask_source
        or pipeline cannot be built, it raises and the previous settings stay."""
        with self._build_lock:
            params = {**self.params, **changes}
            up = gravity(params)
            mask_source, reason = self.mask_source, self.mask_source_reason
            if changes.keys() & {"segmentation", "sam2_model", "sam2_image_size", "depth_min", "depth_max"}:
                mask_source, reason = make_mask_source(params)
            pipeline = None
            if self.demo is not None and any(key in PIPELINE_KEYS for key in changes):
                pipeline = self._pipeline_for(self.demo, params, mask_source)
            with self._lock:
                self.params, self.mask_source, self.mask_source_reason, self.up = params, mask_source, reason, up
                if pipeline is not None:
                    self._pipeline = pipeline

    # ------------------------------------------------------------------------------------------------ frames
    def process(self, frame: Frame) -> Processed:
        with self._lock:
            pipeline, demo, up = self._pipeline, self.demo, self.up
        if pipeline is None or demo is None:
            raise InputError("no demo loaded (set the demo_path parameter or publish a path on ~/set_demo_path)")
        if frame.prompt is not None:
            frame.prompt.check_inside(frame.rgb.shape[1], frame.rgb.shape[0])
        result = pipeline.process(frame.rgb, depth=frame.depth, intrinsics=frame.intrinsics, mask=frame.mask,
                                  prompt=frame.prompt, up=up)
        return Processed(frame, result, demo, demo_names(demo), dict(result.timings_s), up)


def demo_names(demo: DemoSpec) -> tuple[str, ...]:
    return tuple(p.name for p in demo.keypoints.points) if demo.keypoints is not None else (demo.function,)
