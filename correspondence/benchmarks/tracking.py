"""``soco bench tracking``: per-frame cost of a stream when the live mask is tracked instead of re-segmented.

A procedural object turns and slides in front of a fixed camera for ``frames`` frames (``yaw_step_deg`` and
``shift_step_m`` per frame; the background and light stay, as a robot's camera sees them). The demo is the first
view. The same frames run through the pipeline

* **tracked**: the mask carried between frames by the backbone's features (:mod:`~correspondence.tracking`), the
  mask source run again on schedule or when the localisation disagrees;
* **segmented every frame**: the same mask source, prompted by the localisation on each frame (what a user gets
  without tracking), over the first ``baseline_frames`` frames (each costs an image-encoder pass);
* **backbone only**: the feature extractor alone on each frame, timed alternately with the tracked frames, so
  both see the same machine load.

The backbone and the mask source are each called once before the stream (their first-call set-up is not a frame's
cost; the mask source with the kind of prompt the stream's segmentations use, a point and a box, on an image that is
not a frame), and the demo's features are computed before it (:meth:`~correspondence.pipeline.TransferPipeline.
prepare`: the stream's set-up, like loading the demo); both times are in the report. A source that counts its encoder
passes (SAM, SAM 2: ``embeddings_computed``) has them reported per mode: one per full segmentation, never more.

With ``demo_views`` K > 1 the demo is recorded from K sides (the object turned by 360/K on the table,
:func:`~correspondence.benchmarks.alignment.demo_views_around`) and a fourth mode runs beside the tracked one, frame by
frame alternately:

* **all views every frame**: the tracked pipeline without the view schedule (:mod:`~correspondence.view_schedule`):
  every view localises the object on every frame; the tracked mode localises with the last pose's view first.

Reported per mode: mean and median frame time, the share of features, localisation and segmentation, the number
of full segmentations, and the live mask's IoU with the true mask (meaningful with real weights or the weight-free
sources; random weights only time the path); the views that localised per frame, and the share of frames whose pose
is within 5 deg and 2 cm (at the object's centre) of the renderer's truth.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..alignment import rotation_error_deg
from ..api import Matcher
from .alignment import demo_views_around, object_translation_error
from .alignment_report import SUCCESS_DEG, SUCCESS_M
from ..demo_spec import DemoSpec
from ..errors import ConfigError
from ..io import KeypointSet, NamedPoint
from ..pipeline import PipelineSettings, TransferPipeline
from ..segmentation import MaskSource, Prompt
from ..tracking import TrackSettings
from ..world.families import make_instance
from ..world.mesh import rot_z
from ..world.render import Renderer, RenderSettings, sample_pose
from .localisation import iou, write_record

STAGES = ("features", "localisation", "segmentation", "matching", "alignment")
ALL_VIEWS = "all views every frame"


@dataclass(frozen=True)
class TrackingBenchConfig:
    frames: int = 30
    size: int = 448
    category: str = "car"
    yaw_step_deg: float = 1.5
    shift_step_m: float = 0.003
    every: int = 30  # the tracker's schedule: a full segmentation at least every N frames
    baseline_frames: int = 5  # frames segmented every time (each one an encoder pass)
    seed: int = 0
    demo_views: int = 1  # > 1: a multi-view demo (the object turned by 360/K), and the "all views every frame" mode

    def __post_init__(self) -> None:
        if not 1 <= self.demo_views <= 36:
            raise ConfigError(f"demo_views must be 1 to 36 views, got {self.demo_views}")


def make_sequence(config: TrackingBenchConfig):
    """The demo view and the live views of the moving object (fixed camera, background and light)."""
    rng = np.random.default_rng(config.seed)
    obj = make_instance(config.category, 0, config.seed)
    settings = RenderSettings(width=config.size, height=config.size, background="gradient", light="headlight")
    pose = sample_pose(rng, obj, distance_factor=(2.2, 2.4), elevation_deg=(25, 35), intrinsics=settings.intrinsics)
    renderer = Renderer(obj)
    views = []
    for t in range(config.frames):
        motion = np.eye(4)
        motion[:3, :3] = rot_z(np.radians(t * config.yaw_step_deg))
        motion[:3, 3] = obj.center - motion[:3, :3] @ obj.center
        motion[0, 3] += t * config.shift_step_m
        views.append(renderer.render(pose @ motion, settings, seed=config.seed))
    return views[0], views


def _demo(view, config: TrackingBenchConfig | None = None) -> DemoSpec:
    visible = [(f"k{i}", tuple(xy)) for i, (xy, v) in enumerate(zip(view.keypoints_xy, view.keypoints_visible)) if v]
    views = ()
    if config is not None and config.demo_views > 1:  # the object turned on the table, as make_sequence renders it
        obj = make_instance(config.category, 0, config.seed)
        settings = RenderSettings(width=config.size, height=config.size, background="gradient", light="headlight")
        views = demo_views_around(obj, view, config.demo_views, settings, seed=config.seed)
    return DemoSpec(None, view.rgb, view.depth, view.intrinsics, view.mask,
                    KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None, views)


def _pose_fields(result, view, demo_view, centre: np.ndarray) -> dict:
    """Views that localised and whether the pose is the renderer's truth (5 deg, 2 cm at the object's centre)."""
    localisation = result.localisation
    scores = None if localisation is None else localisation.details.get("demo_view_scores")
    alignment = result.alignment
    correct = False
    if alignment is not None and alignment.success:
        truth = view.pose @ np.linalg.inv(demo_view.pose)
        correct = bool(rotation_error_deg(alignment.transform, truth) < SUCCESS_DEG
                       and object_translation_error(alignment.transform, truth, centre) < SUCCESS_M)
    return {"views_localised": None if scores is None else len(scores), "demo_view": result.demo_view,
            "pose_correct": correct}


def run_tracking_benchmark(matcher: Matcher, mask_source: MaskSource, source_name: str, config: TrackingBenchConfig,
                           out: str | Path, progress: bool = True) -> dict:
    demo_view, views = make_sequence(config)
    demo = _demo(demo_view, config)
    obj = make_instance(config.category, 0, config.seed)
    centre = demo_view.pose[:3, :3] @ obj.center + demo_view.pose[:3, 3]  # the object's centre, demo camera
    matcher.extractor.extract_batch([demo_view.rgb], cache=False)  # warm-up: first-call set-up is not a frame
    start = time.perf_counter()
    height, width = demo_view.mask.shape
    warm = np.ascontiguousarray(demo_view.rgb[::-1])  # not a frame of the stream: its embedding must not be reused
    mask_source.segment(warm, Prompt(point=(width / 2, height / 2), box=(width / 4, height / 4, 3 * width / 4,
                                                                         3 * height / 4)),
                        np.ascontiguousarray(demo_view.depth[::-1]))  # a localised segmentation's prompt: point + box
    warm_up_s = time.perf_counter() - start
    tracked = TransferPipeline(demo, matcher, PipelineSettings(track=TrackSettings(every=config.every)), mask_source)
    start = time.perf_counter()
    tracked.prepare()
    demo_features_s = time.perf_counter() - start
    passes = {"start": getattr(mask_source, "embeddings_computed", None)}
    every_view = None
    if config.demo_views > 1:  # the same tracked stream without the view schedule, frame by frame alternately
        every_view = TransferPipeline(demo, matcher, PipelineSettings(track=TrackSettings(every=config.every),
                                                                      view_schedule=None), mask_source).prepare()
    rows = []
    for t, view in enumerate(tqdm(views, desc="tracking", unit="frame", disable=not progress)):
        start = time.perf_counter()
        matcher.extractor.extract_batch([view.rgb], cache=False)
        backbone_s = time.perf_counter() - start
        start = time.perf_counter()
        result = tracked.process(view.rgb, view.depth, view.intrinsics)
        frame_s = time.perf_counter() - start
        mask = result.mask
        rows.append({"frame": t, "mode": "tracked", "frame_s": frame_s, "backbone_s": backbone_s,
                     **{f"{k}_s": result.timings_s.get(k, 0.0) for k in STAGES},
                     "segmented": bool(mask is not None and not mask.details.get("tracked", False)),
                     "why": None if mask is None else mask.details.get("why"),
                     "iou": None if mask is None else iou(mask.mask, view.mask), "success": result.success,
                     **_pose_fields(result, view, demo_view, centre)})
        if every_view is not None:
            start = time.perf_counter()
            result = every_view.process(view.rgb, view.depth, view.intrinsics)
            frame_s, mask = time.perf_counter() - start, result.mask
            rows.append({"frame": t, "mode": ALL_VIEWS, "frame_s": frame_s,
                         **{f"{k}_s": result.timings_s.get(k, 0.0) for k in STAGES},
                         "segmented": bool(mask is not None and not mask.details.get("tracked", False)),
                         "iou": None if mask is None else iou(mask.mask, view.mask), "success": result.success,
                         **_pose_fields(result, view, demo_view, centre)})
    passes["tracked"] = getattr(mask_source, "embeddings_computed", None)
    if hasattr(mask_source, "forget_image"):  # the tracked stream's last embedding may be of frame 0: not reused here
        mask_source.forget_image()
    baseline = TransferPipeline(demo, matcher, PipelineSettings(), mask_source).prepare()
    for t, view in enumerate(tqdm(views[:config.baseline_frames], desc="segment every frame", unit="frame",
                                  disable=not progress)):
        start = time.perf_counter()
        result = baseline.process(view.rgb, view.depth, view.intrinsics)
        frame_s = time.perf_counter() - start
        rows.append({"frame": t, "mode": "segmented every frame", "frame_s": frame_s,
                     **{f"{k}_s": result.timings_s.get(k, 0.0) for k in STAGES}, "segmented": True,
                     "iou": None if result.mask is None else iou(result.mask.mask, view.mask),
                     "success": result.success, **_pose_fields(result, view, demo_view, centre)})
    passes["segmented every frame"] = getattr(mask_source, "embeddings_computed", None)
    encoder_passes = None if passes["start"] is None else {
        "tracked": passes["tracked"] - passes["start"],
        "segmented every frame": passes["segmented every frame"] - passes["tracked"]}
    return _report(rows, matcher, source_name, config, Path(out), warm_up_s, demo_features_s, encoder_passes)


def _mode_summary(rows: list[dict]) -> dict:
    frame = np.array([r["frame_s"] for r in rows])
    front = np.array([r["features_s"] + r["segmentation_s"] for r in rows])  # segmentation includes localisation
    ious = [r["iou"] for r in rows if r["iou"] is not None]
    return {"frames": len(rows), "mean_frame_ms": 1e3 * float(frame.mean()),
            "median_frame_ms": 1e3 * float(np.median(frame)),
            "mean_features_plus_segmentation_ms": 1e3 * float(front.mean()),
            **{f"mean_{k}_ms": 1e3 * float(np.mean([r[f"{k}_s"] for r in rows])) for k in STAGES},
            "segmentations": int(sum(r["segmented"] for r in rows)),
            "mean_iou": float(np.mean(ious)) if ious else None,
            "pose_success": 100.0 * float(np.mean([r["success"] for r in rows])),
            "pose_correct": 100.0 * float(np.mean([r["pose_correct"] for r in rows])),
            "mean_views_localised": (float(np.mean([r["views_localised"] for r in rows]))
                                     if all(r["views_localised"] is not None for r in rows) else None)}


def _report(rows: list[dict], matcher: Matcher, source_name: str, config: TrackingBenchConfig, out: Path,
            warm_up_s: float, demo_features_s: float, encoder_passes: dict | None) -> dict:
    tracked = [r for r in rows if r["mode"] == "tracked"]
    modes = ("tracked", ALL_VIEWS, "segmented every frame")
    summary = {mode: _mode_summary([r for r in rows if r["mode"] == mode])
               for mode in modes if any(r["mode"] == mode for r in rows)}
    for mode in summary:
        summary[mode]["encoder_passes"] = (None if encoder_passes is None or mode not in encoder_passes
                                           else encoder_passes[mode])
    backbone_ms = 1e3 * float(np.mean([r["backbone_s"] for r in tracked]))
    summary["backbone_only"] = {"frames": len(tracked), "mean_frame_ms": backbone_ms}
    summary["mask_source_warm_up_ms"] = 1e3 * warm_up_s  # one untimed call before the stream, as the backbone's
    summary["demo_features_ms"] = 1e3 * demo_features_s  # the stream's set-up (TransferPipeline.prepare)
    t = summary["tracked"]
    summary["ratio_frame_to_backbone"] = t["mean_frame_ms"] / backbone_ms
    summary["ratio_features_plus_segmentation_to_backbone"] = t["mean_features_plus_segmentation_ms"] / backbone_ms
    settings = write_record(out / "tracking.json", matcher, config, summary, rows, mask_source=source_name)
    name = settings["backbone"]["name"]
    md = (f"{config.frames} frames of a moving {config.category} ({config.yaw_step_deg:g} deg and "
          f"{1000 * config.shift_step_m:g} mm per frame), demo views {config.demo_views}, {name} at "
          f"{settings['effective_image_size']} px, mask source "
          f"{source_name}, {platform.machine()} CPU, {torch.get_num_threads()} threads\n\n"
          "| mode | frames | mean frame (ms) | median (ms) | features | localisation | segmentation (incl. "
          "localisation) | matching | alignment | full segmentations | mean mask IoU | pose correct | views "
          "localised |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for mode in modes:
        if mode not in summary:
            continue
        m = summary[mode]
        views = m["mean_views_localised"]
        md += (f"| {mode} | {m['frames']} | {m['mean_frame_ms']:.0f} | {m['median_frame_ms']:.0f} | "
               f"{m['mean_features_ms']:.0f} | {m['mean_localisation_ms']:.0f} | {m['mean_segmentation_ms']:.0f} | "
               f"{m['mean_matching_ms']:.0f} | {m['mean_alignment_ms']:.0f} | {m['segmentations']} | "
               f"{'n/a' if m['mean_iou'] is None else format(m['mean_iou'], '.3f')} | {m['pose_correct']:.1f} % | "
               f"{'n/a' if views is None else format(views, '.2f')} |\n")
    md += f"| backbone only | {len(tracked)} | {backbone_ms:.0f} | | {backbone_ms:.0f} | | | | | | | | |\n"
    md += (f"\nTracked, per frame: features + localisation + segmentation = "
           f"{summary['ratio_features_plus_segmentation_to_backbone']:.2f} x the backbone's time; the whole frame "
           f"(with matching, RANSAC and ICP) = {summary['ratio_frame_to_backbone']:.2f} x. The backbone and the mask "
           f"source were each called once before the stream (mask source: {1e3 * warm_up_s:.0f} ms) and the demo's "
           f"features computed before it ({1e3 * demo_features_s:.0f} ms), so set-up is not counted as a frame.")
    if encoder_passes is not None:
        md += " Encoder passes: " + ", ".join(f"{mode} {encoder_passes[mode]}" for mode in summary
                                              if mode in encoder_passes) + "."
    md += "\n"
    (out / "tracking.md").write_text(md, encoding="utf-8")
    _plot(tracked, backbone_ms, out / "tracking_frames.png", name, source_name)
    return {"summary": summary, "markdown": md, "rows": rows}


def _plot(rows: list[dict], backbone_ms: float, path: Path, name: str, source: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    frames = [r["frame"] for r in rows]
    ax.bar(frames, [1e3 * r["features_s"] for r in rows], label="features")
    ax.bar(frames, [1e3 * r["segmentation_s"] for r in rows], bottom=[1e3 * r["features_s"] for r in rows],
           label="localisation + segmentation / tracking")
    ax.axhline(backbone_ms, color="black", lw=0.8, label="backbone alone (mean)")
    ax.set_yscale("log")
    ax.set_xlabel("frame")
    ax.set_ylabel("ms")
    ax.set_title(f"tracked stream: {name}, {source}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
