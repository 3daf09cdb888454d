"""``soco bench alignment``: end-to-end accuracy of the demo-to-live pipeline on the procedural world.

Each trial renders a demo view of an instance and a live view of the same instance after a random rigid motion
(rotation about the vertical axis up to ``max_rotation_deg`` and a translation up to ``max_translation_m``),
runs segmentation (depth foreground), keypoint transfer and RANSAC alignment, and compares the estimated
demo-camera -> live-camera transform with the exact one. Success: rotation error < 5 deg and translation < 2 cm
(a failed alignment counts as a failure); the translation error is measured at the object's centre. The per-stage latency of every frame is recorded.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..alignment import rotation_error_deg
from ..api import Matcher
from ..demo_spec import DemoSpec
from ..io import KeypointSet, NamedPoint, write_json
from ..pipeline import PipelineSettings, TransferPipeline
from ..segmentation import DepthForeground
from ..world.families import make_instance
from ..world.mesh import rot_z
from ..world.render import Renderer, RenderSettings, sample_pose

SUCCESS_DEG, SUCCESS_M = 5.0, 0.02
DEFAULT_CATEGORIES = ("car", "bus", "truck", "chair", "stool", "mug", "kettle", "jug")


@dataclass(frozen=True)
class AlignmentBenchConfig:
    trials: int = 100
    size: int = 448
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    max_rotation_deg: float = 30.0
    max_translation_m: float = 0.05
    ransac_threshold: float = 0.01
    seed: int = 0


def make_trial(rng: np.random.Generator, category: str, index: int, config: AlignmentBenchConfig,
               settings: RenderSettings):
    """Demo and live views of one instance after a random motion; returns (object, demo view, live view, the true
    demo-camera -> live-camera transform, the object's centre in the demo camera frame)."""
    obj = make_instance(category, index, config.seed)
    renderer = Renderer(obj)
    pose = sample_pose(rng, obj, intrinsics=settings.intrinsics)
    motion = np.eye(4)  # object motion in its own frame: about the vertical axis through its centre, then a shift
    motion[:3, :3] = rot_z(np.radians(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg)))
    motion[:3, 3] = obj.center - motion[:3, :3] @ obj.center
    motion[:2, 3] += rng.uniform(-config.max_translation_m, config.max_translation_m, 2)
    live_pose = pose @ motion  # the moved object's point p is seen at pose @ motion @ p
    demo_view = renderer.render(pose, settings, seed=int(rng.integers(1 << 30)))
    live_view = renderer.render(live_pose, settings, seed=int(rng.integers(1 << 30)))
    truth = live_pose @ np.linalg.inv(pose)
    centre = pose[:3, :3] @ obj.center + pose[:3, 3]  # the object's centre in the demo camera frame
    return obj, demo_view, live_view, truth, centre


def object_translation_error(estimate: np.ndarray, truth: np.ndarray, centre: np.ndarray) -> float:
    """Where the estimate puts the object's centre vs where it is (metres): the translation error of the object
    pose, not of the camera-frame transform, whose translation a small rotation error inflates by the distance."""
    return float(np.linalg.norm((estimate[:3, :3] - truth[:3, :3]) @ centre + estimate[:3, 3] - truth[:3, 3]))


def run_alignment_benchmark(matcher: Matcher, config: AlignmentBenchConfig, out: str | Path,
                            progress: bool = True) -> dict:
    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    rows = []
    for trial in tqdm(range(config.trials), desc="alignment", unit="trial", disable=not progress):
        category = config.categories[trial % len(config.categories)]
        obj, demo_view, live_view, truth, centre = make_trial(rng, category, trial, config, settings)
        visible = [(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, demo_view.keypoints_xy,
                                                           demo_view.keypoints_visible) if v]
        row = {"trial": trial, "category": category, "keypoints": len(visible)}
        if len(visible) < 3:
            rows.append({**row, "success": False, "reason": "fewer than 3 visible demo keypoints"})
            continue
        demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, demo_view.mask,
                        KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None)
        pipeline = TransferPipeline(demo, matcher, PipelineSettings(ransac_threshold=config.ransac_threshold),
                                    segmenter=DepthForeground((0.05, 5.0)))
        start = time.perf_counter()
        result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
        row["timings_s"] = {**result.timings_s, "total": time.perf_counter() - start}
        alignment = result.alignment
        row.update(reason=alignment.reason, inliers=alignment.num_inliers)
        if alignment.success:
            r_err = rotation_error_deg(alignment.transform, truth)
            t_err = object_translation_error(alignment.transform, truth, centre)
            row.update(rotation_error_deg=r_err, translation_error_cm=100 * t_err,
                       success=bool(r_err < SUCCESS_DEG and t_err < SUCCESS_M))
        else:
            row.update(success=False)
        rows.append(row)
    return _report(rows, matcher, config, Path(out))


def _report(rows: list[dict], matcher: Matcher, config: AlignmentBenchConfig, out: Path) -> dict:
    aligned = [r for r in rows if "rotation_error_deg" in r]
    timed = [r["timings_s"] for r in rows if "timings_s" in r]
    stages = ("segmentation", "features", "matching", "alignment", "total")
    latency = {s: {"median_ms": 1e3 * float(np.median([t[s] for t in timed])),
                   "p95_ms": 1e3 * float(np.percentile([t[s] for t in timed], 95))} for s in stages} if timed else {}
    summary = {
        "trials": len(rows), "success_rate": 100.0 * float(np.mean([r["success"] for r in rows])),
        "alignment_returned": 100.0 * len(aligned) / max(len(rows), 1),
        "median_rotation_error_deg": float(np.median([r["rotation_error_deg"] for r in aligned])) if aligned else None,
        "median_translation_error_cm": float(np.median([r["translation_error_cm"] for r in aligned])) if aligned else None,
        "failure_reasons": {k: sum(1 for r in rows if not r.get("rotation_error_deg") and r.get("reason") == k)
                            for k in sorted({r.get("reason", "") for r in rows if "rotation_error_deg" not in r})},
        "latency": latency}
    settings = matcher.extractor.describe()
    record = {"config": asdict(config), "features": settings, "summary": summary, "rows": rows,
              "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "alignment.json", record)
    name = settings["backbone"]["name"]
    md = ("| backbone | size | trials | success (<5 deg, <2 cm) | pose returned | median rot. err (deg) | "
          "median transl. err (cm) |\n|---|---|---|---|---|---|---|\n"
          f"| {name} | {settings['effective_image_size']} | {summary['trials']} | {summary['success_rate']:.1f} % | "
          f"{summary['alignment_returned']:.1f} % | {_fmt(summary['median_rotation_error_deg'])} | "
          f"{_fmt(summary['median_translation_error_cm'])} |\n")
    if latency:
        md += "\nPer-frame latency (median / p95, ms)\n\n| stage | median | p95 |\n|---|---|---|\n"
        md += "".join(f"| {s} | {latency[s]['median_ms']:.0f} | {latency[s]['p95_ms']:.0f} |\n" for s in stages)
    (out / "alignment.md").write_text(md, encoding="utf-8")
    _plot(aligned, out / "alignment_errors.png", name)
    return {"summary": summary, "markdown": md, "rows": rows}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _plot(aligned: list[dict], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    if aligned:
        ax.scatter([r["rotation_error_deg"] for r in aligned], [r["translation_error_cm"] for r in aligned], s=10)
    ax.axvline(SUCCESS_DEG, color="green", lw=0.8)
    ax.axhline(100 * SUCCESS_M, color="green", lw=0.8)
    ax.set_xscale("symlog")
    ax.set_yscale("symlog")
    ax.set_xlabel("rotation error (deg)")
    ax.set_ylabel("translation error (cm)")
    ax.set_title(f"pose errors: {name} (success box: green)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
