"""``soco bench localisation``: does the live mask cover the demo object when other objects share the view?

Each trial shows the demo object alone (the demo view) and a live view of it among ``distractors`` other objects
(other instances of its category and other categories, scaled to a similar size, placed beside it on the table
plane; the camera looks at the group, so the target is rarely at the image centre). Objects are rendered one by
one with the same camera and composited by depth, so the true live mask is exact (the target's pixels that no
distractor hides). A share of trials (``absent_fraction``) leaves the target out: the right answer there is
"object not found".

For every weight-free mask source (depth foreground, GrabCut) the live mask is made two ways from the same frame:
the source's own rule without a prompt (the image-centre / nearest-surface fallback) and prompted by the
correspondence localisation (:mod:`~correspondence.localise`). Reported: the mask's IoU with the true mask, the
share of trials with IoU >= 0.8, how often the chosen candidate is the target, and the "not found" answers on
target-absent frames.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..api import Matcher
from ..errors import InputError
from ..io import write_json
from ..localise import DepthViews, LocaliseSettings, localise
from ..localised_mask import segment_localised
from ..object_colour import ColourModel
from ..object_signature import ObjectSignature, SignatureCue, SignatureSettings
from ..segmentation import DepthForeground, GrabCutBox, Prompt
from ..world.families import make_instance
from ..world.mesh import rot_z
from ..world.render import Renderer, RenderSettings, look_at_pose, sample_pose
from ..world.types import ObjectInstance
from .alignment import DEFAULT_CATEGORIES

IOU_GOOD = 0.8


@dataclass(frozen=True)
class LocalisationBenchConfig:
    trials: int = 40
    size: int = 448
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    distractors: int = 2
    same_category: bool = True  # one distractor is another instance of the target's category
    max_rotation_deg: float = 30.0  # live camera azimuth relative to the demo's
    absent_fraction: float = 0.2  # trials whose live view shows only the distractors
    sources: tuple[str, ...] = ("depth", "grabcut")
    seed: int = 0
    rigid: bool = True  # localisation with both views' colour and depth (colour + rigid 3D checks); False: 2D votes
    gravity: bool = True  # with ``rigid``: the vertical in both cameras (a robot has it from TF): rule 6, the
    # height, footprint and colours of the surfaces under the votes (correspondence/object_signature.py)


@dataclass(frozen=True)
class Scene:
    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray  # the target's visible pixels (empty when it is absent)
    intrinsics: object
    camera: np.ndarray  # table (target object) frame -> camera


def _scaled(obj: ObjectInstance, scale: float) -> ObjectInstance:
    """The object uniformly scaled about its frame's origin (the floor point stays on the floor)."""
    keypoints = tuple(replace(k, position=np.asarray(k.position) * scale) for k in obj.keypoints)
    return replace(obj, vertices=np.asarray(obj.vertices) * scale, keypoints=keypoints)


def _placement(obj: ObjectInstance, position: np.ndarray, yaw: float) -> np.ndarray:
    """Object frame -> table frame: the object's floor centre moved to ``position``, turned by ``yaw``."""
    floor = np.array([obj.center[0], obj.center[1], obj.vertices[:, 2].min()])
    M = np.eye(4)
    M[:3, :3] = rot_z(yaw)
    M[:3, 3] = position - M[:3, :3] @ floor
    return M


def make_scene(rng: np.random.Generator, target: ObjectInstance, others: list[ObjectInstance], present: bool,
               demo_azimuth: float, config: LocalisationBenchConfig, settings: RenderSettings) -> Scene:
    """The target (at the table origin, unturned) and ``others`` beside it, seen from a camera whose azimuth is
    within ``max_rotation_deg`` of the demo's, looking at the group; composited by depth."""
    if not present and not others:
        raise InputError("a scene without the target needs at least one distractor")
    size = float(target.extent.max())
    floor = np.array([target.center[0], target.center[1], target.vertices[:, 2].min()])
    placed = [(target, np.eye(4) if present else None)]
    angle0 = rng.uniform(0, 2 * np.pi)
    for k, other in enumerate(others):
        angle = angle0 + 2 * np.pi * k / max(len(others), 1) + rng.uniform(-0.4, 0.4)
        distance = size * rng.uniform(0.9, 1.3)
        position = floor + distance * np.array([np.cos(angle), np.sin(angle), 0.0])
        placed.append((other, _placement(other, position, rng.uniform(-np.pi, np.pi))))
    centres = [floor] + [M[:3, 3] for _, M in placed[1:]]
    group_centre = np.mean(centres, axis=0) + np.array([0, 0, 0.4 * target.extent[2]])
    spread = size + max(np.linalg.norm(c - floor) for c in centres)
    elevation = np.radians(rng.uniform(25, 50))
    azimuth = demo_azimuth + np.radians(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
    direction = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                          np.sin(elevation)])
    camera = look_at_pose(group_centre + 1.4 * spread * direction, group_centre)  # table frame -> camera
    view_seed = int(rng.integers(1 << 30))
    rgb = depth = mask = None
    for i, (obj, M) in enumerate(placed):
        if M is None:
            continue
        view = Renderer(obj).render(camera @ M, settings, seed=view_seed)
        if rgb is None:
            rgb, depth = view.rgb.copy(), np.where(view.mask, view.depth, np.inf)
            mask = view.mask.copy() if i == 0 else np.zeros_like(view.mask)
            continue
        nearer = view.mask & (view.depth < depth)
        rgb[nearer] = view.rgb[nearer]
        depth[nearer] = view.depth[nearer]
        mask &= ~nearer
    depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    return Scene(rgb, depth, mask, settings.intrinsics, camera)


def _distractors(rng: np.random.Generator, category: str, trial: int, config: LocalisationBenchConfig,
                 target: ObjectInstance) -> list[ObjectInstance]:
    others = []
    for k in range(config.distractors):
        if k == 0 and config.same_category:
            other = make_instance(category, 1000 + trial, config.seed)
        else:
            pool = [c for c in config.categories if c != category]
            other = make_instance(pool[int(rng.integers(len(pool)))], 2000 + 10 * trial + k, config.seed)
        scale = float(target.extent.max()) / float(other.extent.max()) * rng.uniform(0.8, 1.1)
        others.append(_scaled(other, scale))
    return others


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _source(name: str):
    if name == "depth":
        return DepthForeground((0.05, 5.0))
    if name == "grabcut":
        return GrabCutBox()
    raise InputError(f"unknown weight-free mask source {name!r}; choose depth or grabcut")


def run_localisation_benchmark(matcher: Matcher, config: LocalisationBenchConfig, out: str | Path,
                               progress: bool = True) -> dict:
    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    loc_settings = LocaliseSettings()
    sources = {name: _source(name) for name in config.sources}
    rows = []
    for trial in tqdm(range(config.trials), desc="localisation", unit="trial", disable=not progress):
        category = config.categories[trial % len(config.categories)]
        target = make_instance(category, trial, config.seed)
        pose = sample_pose(rng, target, elevation_deg=(25, 50), intrinsics=settings.intrinsics)
        eye = -pose[:3, :3].T @ pose[:3, 3]
        demo_azimuth = float(np.arctan2(eye[1] - target.center[1], eye[0] - target.center[0]))
        demo = Renderer(target).render(pose, settings, seed=int(rng.integers(1 << 30)))
        present = rng.uniform() >= config.absent_fraction
        scene = make_scene(rng, target, _distractors(rng, category, trial, config, target), present, demo_azimuth,
                           config, settings)
        row = {"trial": trial, "category": category, "present": bool(present),
               "target_pixels": int(scene.mask.sum())}
        start = time.perf_counter()
        demo_fmap, live_fmap = matcher.extractor.extract_batch([demo.rgb, scene.rgb], cache=False)
        row["features_s"] = time.perf_counter() - start
        start = time.perf_counter()
        demo_cells = demo_fmap.cell_mask(demo.mask, min_fraction=0.5)
        depths = (DepthViews(demo.depth, settings.intrinsics, scene.depth, scene.intrinsics) if config.rigid
                  else None)
        cue = None
        if config.rigid and config.gravity:  # the table's +z in the demo camera and in the live camera
            cue = SignatureCue(ObjectSignature.measure(demo.rgb, demo.depth, settings.intrinsics, demo.mask,
                                                       pose[:3, 2]), scene.rgb, scene.depth, scene.intrinsics,
                               scene.camera[:3, 2])
        located = localise(demo_fmap, demo_cells, live_fmap, loc_settings, depths,
                           (demo.rgb, scene.rgb) if config.rigid else None, signature=cue)
        row["localisation_s"] = time.perf_counter() - start
        colours = ColourModel.from_image(demo.rgb, demo.mask) if config.rigid else None
        if config.rigid:  # the 2D rule on the same frame, for the comparison in the report
            row["found_2d"] = localise(demo_fmap, demo_cells, live_fmap, loc_settings).found
        row["localisation"] = located.as_dict()
        row["found"] = located.found
        if located.candidates:
            votes = located.best.votes_xy.astype(int)
            row["best_on_target"] = bool(scene.mask[votes[:, 1].clip(0, config.size - 1),
                                                    votes[:, 0].clip(0, config.size - 1)].mean() > 0.5)
        for name, source in sources.items():
            for how in ("auto", "localised"):
                key = f"{name}/{how}"
                try:
                    if how == "auto":
                        result = source.segment(scene.rgb, Prompt.auto(), scene.depth)
                    else:
                        result = segment_localised(source, scene.rgb, scene.depth, located, colours, cue)
                    row[key] = iou(result.mask, scene.mask) if present else None
                except InputError as exc:  # ObjectNotFound and NoMaskError: no mask for this frame
                    row[key] = 0.0 if present else None
                    row[f"{key}_error"] = type(exc).__name__
        rows.append(row)
    return _report(rows, matcher, config, Path(out))


def _summary(rows: list[dict], sources: tuple[str, ...]) -> dict:
    present = [r for r in rows if r["present"]]
    absent = [r for r in rows if not r["present"]]
    masks = {}
    for name in sources:
        for how in ("auto", "localised"):
            values = np.array([r[f"{name}/{how}"] for r in present], dtype=float)
            masks[f"{name}/{how}"] = {"mean_iou": float(values.mean()) if values.size else None,
                                      "iou_ge_0_8": 100.0 * float((values >= IOU_GOOD).mean()) if values.size else None}
    return {"trials": len(rows), "present": len(present), "absent": len(absent),
            "found_when_present": 100.0 * float(np.mean([r["found"] for r in present])) if present else None,
            "best_candidate_on_target": 100.0 * float(np.mean([r.get("best_on_target", False) for r in present]))
            if present else None,
            "not_found_when_absent": 100.0 * float(np.mean([not r["found"] for r in absent])) if absent else None,
            "found_when_present_2d": _share([r.get("found_2d") for r in present]),
            "not_found_when_absent_2d": _share([None if r.get("found_2d") is None else not r["found_2d"]
                                                for r in absent]),
            "best_score_present_median": float(np.median([r["localisation"]["candidates"][0]["score"]
                                                          for r in present if r["localisation"]["candidates"]]
                                                         or [0.0])),
            "best_score_absent_median": float(np.median([r["localisation"]["candidates"][0]["score"]
                                                         for r in absent if r["localisation"]["candidates"]]
                                                        or [0.0])),
            "masks": masks,
            "localisation_ms_median": 1e3 * float(np.median([r["localisation_s"] for r in rows])),
            "features_ms_median": 1e3 * float(np.median([r["features_s"] for r in rows]))}


def _report(rows: list[dict], matcher: Matcher, config: LocalisationBenchConfig, out: Path) -> dict:
    summary = _summary(rows, config.sources)
    settings = write_record(out / "localisation.json", matcher, config, summary, rows)
    name = settings["backbone"]["name"]
    md = (f"{name}, {settings['effective_image_size']} px, {summary['trials']} trials ({summary['present']} with the "
          f"target, {summary['absent']} distractors only), {config.distractors} distractors, live azimuth within "
          f"+-{config.max_rotation_deg:g} deg of the demo's\n\n"
          "| mask source | rule | mean IoU with the true mask | IoU >= 0.8 |\n|---|---|---|---|\n")
    for key, m in summary["masks"].items():
        name_, how = key.split("/")
        rule = "own rule (no prompt)" if how == "auto" else "prompted by correspondence localisation"
        md += f"| {name_} | {rule} | {_fmt(m['mean_iou'])} | {_pct(m['iou_ge_0_8'])} |\n"
    defaults = LocaliseSettings()
    threshold = (f"confirmed in 3D with score >= {defaults.min_score_rigid:g}, votes pooled over the frame and "
                 f"confirmed with score >= {defaults.min_score:g}, else score >= {defaults.min_score_unconfirmed:g}"
                 + (f"; else a surface whose height, footprint and colours match the demo object's, score >= "
                    f"{SignatureSettings().min_score:g}" if config.gravity else "")
                 if config.rigid else f"score >= {defaults.min_score:g}")
    rule = ("2D votes + colour + rigid 3D checks" + (" + height, footprint and colours (rule 6)" if config.gravity
                                                      else "") if config.rigid else "2D votes")
    md += (f"\nLocalisation ({rule}): best candidate on the target in {_pct(summary['best_candidate_on_target'])} of "
           f"frames with the target; found ({threshold}) in "
           f"{_pct(summary['found_when_present'])}; 'object not found' in {_pct(summary['not_found_when_absent'])} "
           f"of distractor-only frames"
           + (f" (2D votes only, same frames: found {_pct(summary['found_when_present_2d'])}, 'object not found' "
              f"{_pct(summary['not_found_when_absent_2d'])})" if config.rigid else "")
           + f". Median best score: {summary['best_score_present_median']:.3f} with the "
           f"target, {summary['best_score_absent_median']:.3f} without. Median time: localisation "
           f"{summary['localisation_ms_median']:.1f} ms, features (demo + live) "
           f"{summary['features_ms_median']:.0f} ms.\n")
    (out / "localisation.md").write_text(md, encoding="utf-8")
    _plot(rows, config, out / "localisation_iou.png", name)
    return {"summary": summary, "markdown": md, "rows": rows}


def write_record(path: Path, matcher: Matcher, config, summary: dict, rows: list[dict], **extra) -> dict:
    """A benchmark's JSON record (config, feature settings, summary, rows, machine); returns the feature settings."""
    settings = matcher.extractor.describe()
    record = {"config": asdict(config), **extra, "features": settings, "summary": summary, "rows": rows,
              "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return settings


def _share(flags: list) -> float | None:
    """Percentage of True among the flags that are not None (None when there are none)."""
    known = [bool(f) for f in flags if f is not None]
    return 100.0 * float(np.mean(known)) if known else None


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0f} %"


def _plot(rows: list[dict], config: LocalisationBenchConfig, path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [r for r in rows if r["present"]]
    fig, axes = plt.subplots(1, len(config.sources), figsize=(4.5 * len(config.sources), 4.0), squeeze=False)
    for ax, source in zip(axes[0], config.sources):
        auto = [r[f"{source}/auto"] for r in present]
        loc = [r[f"{source}/localised"] for r in present]
        ax.scatter(auto, loc, s=14)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("IoU, own rule (no prompt)")
        ax.set_ylabel("IoU, prompted by localisation")
        ax.set_title(f"{source}: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
