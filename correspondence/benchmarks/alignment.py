"""``soco bench alignment``: end-to-end accuracy of the demo-to-live pipeline on the procedural world.

Two kinds of trial, each a demo view and a live view after a random rigid motion (rotation about the vertical
axis up to ``max_rotation_deg`` and a translation up to ``max_translation_m``), run through segmentation (depth
foreground), transfer and alignment, comparing the estimated demo-camera -> live-camera transform with the exact
one:

* **same instance, keypoint demo** — the truth is the motion itself; the translation error is measured at the
  object's centre;
* **different instances, functional demo** (a function and its part in the demo view; the live view shows
  another instance of the category) — the truth is the known functional alignment (the demo part fitted onto the
  live part in 3D, :func:`~correspondence.world.groundtruth.align_functional_parts`, a similarity because the
  instances differ in size); the rotation error is against its rotation and the translation error is measured at
  the demo part's centre.

Success: rotation error < 5 deg and translation < 2 cm (a refused alignment counts as a failure). The per-stage
latency of every frame is recorded.
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
DEFAULT_FUNCTIONS = (("mug", "pour-with"), ("kettle", "pour-with"), ("jug", "pour-with"), ("pan", "scoop-with"),
                     ("hammer", "pound-with"), ("spatula", "lift-with"), ("cup", "pour-with"), ("mug", "hang-onto"))
KIND_SAME = "same instance, keypoints"
KIND_FUNCTIONAL = "different instances, functional"


@dataclass(frozen=True)
class AlignmentBenchConfig:
    trials: int = 100
    size: int = 448
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    max_rotation_deg: float = 30.0
    max_translation_m: float = 0.05
    ransac_threshold: float = 0.015
    seed: int = 0
    functional_trials: int = 0  # trials of the second kind (different instances, functional demo)
    functions: tuple[tuple[str, str], ...] = DEFAULT_FUNCTIONS  # (category, function) pairs they cycle through
    refine: str = "icp"  # the pipeline's refinement: icp | none


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


def make_functional_trial(rng: np.random.Generator, category: str, function: str, index: int,
                          config: AlignmentBenchConfig, settings: RenderSettings):
    """A demo view of instance A and a live view of instance B (same category, moved); returns (A, B, demo view,
    live view, the true demo-camera -> live-camera similarity, the demo part's centre in the demo camera, the
    demo functional-part mask)."""
    from ..world.groundtruth import align_functional_parts, sample_surface
    a = make_instance(category, 2 * index, config.seed)
    b = make_instance(category, 2 * index + 1, config.seed)
    alignment = align_functional_parts(a, b, function, seed=index)
    pose = sample_pose(rng, a, intrinsics=settings.intrinsics)
    motion = np.eye(4)
    motion[:3, :3] = rot_z(np.radians(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg)))
    motion[:3, 3] = b.center - motion[:3, :3] @ b.center
    motion[:2, 3] += rng.uniform(-config.max_translation_m, config.max_translation_m, 2)
    live_pose = pose @ motion
    demo_view = Renderer(a).render(pose, settings, seed=int(rng.integers(1 << 30)))
    live_view = Renderer(b).render(live_pose, settings, seed=int(rng.integers(1 << 30)))
    truth = live_pose @ alignment.transform @ np.linalg.inv(pose)
    part = sample_surface(a, a.function_face_mask(function), 500, np.random.default_rng(index)).mean(0)
    centre = pose[:3, :3] @ part + pose[:3, 3]
    part_mask = np.isin(demo_view.part_map, [a.part_id(p) for p in a.functional_parts[function]]) & demo_view.mask
    return a, b, demo_view, live_view, truth, centre, part_mask


def rigid_part(T: np.ndarray) -> np.ndarray:
    """The rotation and translation of a similarity (its scale divided out of the upper-left block)."""
    out = np.array(T, dtype=np.float64)
    out[:3, :3] /= np.cbrt(abs(np.linalg.det(out[:3, :3])))
    return out


def object_translation_error(estimate: np.ndarray, truth: np.ndarray, centre: np.ndarray) -> float:
    """Where the estimate puts the object's centre vs where it is (metres): the translation error of the object
    pose, not of the camera-frame transform, whose translation a small rotation error inflates by the distance."""
    return float(np.linalg.norm((estimate[:3, :3] - truth[:3, :3]) @ centre + estimate[:3, 3] - truth[:3, 3]))


def _score(row: dict, result, truth: np.ndarray, centre: np.ndarray) -> dict:
    alignment = result.alignment
    row.update(reason=alignment.reason, inliers=alignment.num_inliers,
               matches=len(result.dense) if result.dense is not None else None,
               refined=bool(result.refinement is not None and result.refinement.accepted))
    if alignment.success:
        r_err = rotation_error_deg(alignment.transform, rigid_part(truth))
        t_err = object_translation_error(alignment.transform, truth, centre)
        row.update(rotation_error_deg=r_err, translation_error_cm=100 * t_err,
                   success=bool(r_err < SUCCESS_DEG and t_err < SUCCESS_M))
    else:
        row.update(success=False)
    return row


def run_alignment_benchmark(matcher: Matcher, config: AlignmentBenchConfig, out: str | Path,
                            progress: bool = True) -> dict:
    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    pipeline_settings = PipelineSettings(ransac_threshold=config.ransac_threshold, refine=config.refine)
    mask_source = DepthForeground((0.05, 5.0))
    rows = []
    total = config.trials + config.functional_trials
    with tqdm(total=total, desc="alignment", unit="trial", disable=not progress) as bar:
        for trial in range(config.trials):
            category = config.categories[trial % len(config.categories)]
            obj, demo_view, live_view, truth, centre = make_trial(rng, category, trial, config, settings)
            visible = [(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, demo_view.keypoints_xy,
                                                               demo_view.keypoints_visible) if v]
            row = {"trial": trial, "kind": KIND_SAME, "category": category, "keypoints": len(visible)}
            bar.update()
            if not visible:
                rows.append({**row, "success": False, "reason": "no visible demo keypoint"})
                continue
            demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, demo_view.mask,
                            KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None)
            rows.append(_run(TransferPipeline(demo, matcher, pipeline_settings, mask_source), live_view, row, truth,
                             centre))
        for trial in range(config.functional_trials):
            category, function = config.functions[trial % len(config.functions)]
            _, _, demo_view, live_view, truth, centre, part = make_functional_trial(rng, category, function, trial,
                                                                                    config, settings)
            row = {"trial": trial, "kind": KIND_FUNCTIONAL, "category": category, "function": function,
                   "part_pixels": int(part.sum())}
            bar.update()
            if part.sum() < 20:
                rows.append({**row, "success": False, "reason": "functional part hardly visible in the demo view"})
                continue
            demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, demo_view.mask, None,
                            function, part)
            rows.append(_run(TransferPipeline(demo, matcher, pipeline_settings, mask_source), live_view, row, truth,
                             centre))
    return _report(rows, matcher, config, Path(out))


def _run(pipeline: TransferPipeline, live_view, row: dict, truth: np.ndarray, centre: np.ndarray) -> dict:
    start = time.perf_counter()
    result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
    row["timings_s"] = {**result.timings_s, "total": time.perf_counter() - start}
    return _score(row, result, truth, centre)


def _summary(rows: list[dict]) -> dict:
    aligned = [r for r in rows if "rotation_error_deg" in r]
    refused = [r for r in rows if "rotation_error_deg" not in r]
    return {
        "trials": len(rows), "success_rate": 100.0 * float(np.mean([r["success"] for r in rows])) if rows else None,
        "alignment_returned": 100.0 * len(aligned) / max(len(rows), 1),
        "median_rotation_error_deg": float(np.median([r["rotation_error_deg"] for r in aligned])) if aligned else None,
        "median_translation_error_cm": float(np.median([r["translation_error_cm"] for r in aligned]))
        if aligned else None,
        "refined_by_icp": 100.0 * sum(r.get("refined", False) for r in aligned) / max(len(aligned), 1),
        "failure_reasons": {k: sum(1 for r in refused if r.get("reason") == k)
                            for k in sorted({r.get("reason", "") for r in refused})}}


def _report(rows: list[dict], matcher: Matcher, config: AlignmentBenchConfig, out: Path) -> dict:
    timed = [r["timings_s"] for r in rows if "timings_s" in r]
    stages = ("segmentation", "features", "matching", "alignment", "total")
    latency = {s: {"median_ms": 1e3 * float(np.median([t[s] for t in timed])),
                   "p95_ms": 1e3 * float(np.percentile([t[s] for t in timed], 95))} for s in stages} if timed else {}
    kinds = [k for k in (KIND_SAME, KIND_FUNCTIONAL) if any(r["kind"] == k for r in rows)]
    by_kind = {k: _summary([r for r in rows if r["kind"] == k]) for k in kinds}
    summary = {**_summary(rows), "by_kind": by_kind, "latency": latency}
    settings = matcher.extractor.describe()
    record = {"config": asdict(config), "features": settings, "summary": summary, "rows": rows,
              "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "alignment.json", record)
    name = settings["backbone"]["name"]
    md = ("| backbone | size | trials | success (<5 deg, <2 cm) | pose returned | median rot. err (deg) | "
          "median transl. err (cm) | refined by ICP |\n|---|---|---|---|---|---|---|---|\n")
    for kind, k in by_kind.items():
        md += (f"| {name} | {settings['effective_image_size']} | {k['trials']} ({kind}) | {k['success_rate']:.1f} % | "
               f"{k['alignment_returned']:.1f} % | {_fmt(k['median_rotation_error_deg'])} | "
               f"{_fmt(k['median_translation_error_cm'])} | {k['refined_by_icp']:.0f} % |\n")
    md += "\nRefusals (no pose returned): " + (", ".join(
        f"{kind}: " + "; ".join(f"{reason} x{n}" for reason, n in k["failure_reasons"].items())
        for kind, k in by_kind.items() if k["failure_reasons"]) or "none") + "\n"
    if latency:
        md += "\nPer-frame latency (median / p95, ms)\n\n| stage | median | p95 |\n|---|---|---|\n"
        md += "".join(f"| {s} | {latency[s]['median_ms']:.0f} | {latency[s]['p95_ms']:.0f} |\n" for s in stages)
    (out / "alignment.md").write_text(md, encoding="utf-8")
    _plot(rows, out / "alignment_errors.png", name)
    return {"summary": summary, "markdown": md, "rows": rows}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _plot(rows: list[dict], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for kind, marker in ((KIND_SAME, "o"), (KIND_FUNCTIONAL, "^")):
        aligned = [r for r in rows if r["kind"] == kind and "rotation_error_deg" in r]
        if aligned:
            ax.scatter([r["rotation_error_deg"] for r in aligned], [r["translation_error_cm"] for r in aligned], s=12,
                       marker=marker, label=f"{kind} ({len(aligned)} poses)")
    ax.axvline(SUCCESS_DEG, color="green", lw=0.8)
    ax.axhline(100 * SUCCESS_M, color="green", lw=0.8)
    ax.set_xscale("symlog")
    ax.set_yscale("symlog")
    ax.set_xlabel("rotation error (deg)")
    ax.set_ylabel("translation error (cm)")
    ax.set_title(f"pose errors: {name} (success box: green)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
