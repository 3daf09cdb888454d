"""``soco bench alignment --diagnose-pose``: why the pose search fails where it fails, trial by trial.

For each same-instance trial of the alignment bench (by default with the true mask, so segmentation is out of the
question) the pose search's exact inputs are recorded and, beside its choice, the *true* pose is scored with the
same scorer (:func:`~correspondence.pose_search.score_pose`), before and after the guarded ICP. The verdict:

* ``ok``: the chosen pose is right (rotation < 5 deg, translation < 2 cm, against the nearest symmetric pose);
* ``scorer``: the chosen pose is wrong and scores higher than the truth: no generator can help, the score must change;
* ``generator``: the truth scores higher, but no hypothesis came within 10 deg of it;
* ``ambiguous``: a hypothesis near the truth existed and the search refused to choose between it and a rival;
* ``fit``: a hypothesis within 10 deg of the truth existed, but placed worse than the truth and scoring below the
  chosen wrong pose (the generator's fit, not the score, is at fault);
* ``choice``: a hypothesis near the truth existed and scored higher, yet another (or none) was chosen.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import pipeline as pipeline_module
from ..errors import ConfigError
from ..icp import refine
from ..pipeline import TransferPipeline
from ..cloud_visibility import visible_points
from ..pose_search import score_pose
from ..world.render import RenderSettings
from ..world.scene import SceneNotVisible
from ..world.symmetry import object_symmetry
from .alignment import (LIVE_IMAGE, AlignmentBenchConfig, make_scene_trial, pipeline_settings_for, symmetric_errors,
                        trial_demo)
from .alignment_report import SUCCESS_DEG, SUCCESS_M

NEAR_DEG = 10.0  # a hypothesis this near the truth (rotation) could have been refined onto it


class _Recorder:
    """Wraps :func:`correspondence.pose_search.search_pose` as the pipeline calls it and keeps its arguments."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.inner(*args, **kwargs)


def diagnose_trial(pipeline: TransferPipeline, scene, obj, demo_view, up, live_depth=None) -> dict:
    """``live_depth``: the live depth as the trial's camera senses it (default: the rendered depth)."""
    recorder = _Recorder(pipeline_module.search_pose)
    pipeline_module.search_pose = recorder
    try:
        result = pipeline.process(scene.view.rgb, scene.view.depth if live_depth is None else live_depth,
                                  scene.view.target.intrinsics,
                                  mask=scene.view.target_mask, up=up)
    finally:
        pipeline_module.search_pose = recorder.inner
    row: dict = {}
    search = result.pose_search
    if not recorder.calls or search is None:
        return {"verdict": "no search", "reason": result.alignment.reason if result.alignment else "no alignment"}
    args, kwargs = recorder.calls[-1]
    demo_points, demo_descriptors, live, _matches_pose, settings = args[:5]
    icp = args[5] if len(args) > 5 else kwargs.get("icp")
    colors = kwargs.get("demo_colors")
    symmetry = object_symmetry(obj)
    centre = demo_view.pose[:3, :3] @ obj.center + demo_view.pose[:3, 3]
    truth = scene.truth
    errors = lambda T: symmetric_errors(T, truth, demo_view.pose, symmetry, centre)  # noqa: E731
    inferred = kwargs.get("inferred")  # a mirror-completed demo cloud: scored and fitted as the search does
    fit = demo_points if inferred is None else visible_points(demo_points, truth, live.intrinsics)
    true_score = score_pose(truth, demo_points, demo_descriptors, live, settings, colors, inferred)
    true_refined = refine(fit, live.cloud, truth, icp)
    true_refined_score = (score_pose(true_refined.transform, demo_points, demo_descriptors, live, settings,
                                     colors, inferred)
                          if true_refined.accepted else None)
    hypotheses = []
    for h in search.hypotheses:
        r, t = errors(h.transform)
        hypotheses.append({"source": h.source, "score": h.score.score, "rotation_error_deg": r,
                           "translation_error_cm": 100 * t, "refined": bool(h.refinement and h.refinement.accepted)})
    nearest = min(hypotheses, key=lambda h: h["rotation_error_deg"]) if hypotheses else None
    row.update(symmetry=symmetry.label, ambiguous=search.ambiguous, reason=search.reason,
               equivalent_rivals=len(search.equivalent),  # rivals returned through, not refused: same surface
               hypotheses=len(hypotheses), true_score=true_score.as_dict(),
               true_refined_score=None if true_refined_score is None else true_refined_score.as_dict(),
               nearest=nearest, timings_s=result.timings_s)
    chosen = search.chosen
    if chosen is not None:
        r, t = errors(chosen.transform)
        row.update(chosen_source=chosen.source, chosen_score=chosen.score.as_dict(), rotation_error_deg=r,
                   translation_error_cm=100 * t)
    ok = chosen is not None and not search.ambiguous and row["rotation_error_deg"] < SUCCESS_DEG \
        and row["translation_error_cm"] < 100 * SUCCESS_M
    best_truth = max(true_score.score, true_refined_score.score if true_refined_score else -np.inf)
    if ok:
        verdict = "ok"
    elif chosen is not None and best_truth < chosen.score.score and not (
            chosen is not None and row["rotation_error_deg"] < SUCCESS_DEG):
        verdict = "scorer"
    elif nearest is None or nearest["rotation_error_deg"] > NEAR_DEG:
        verdict = "generator"
    elif search.ambiguous:
        verdict = "ambiguous"
    elif chosen is not None and nearest["score"] < chosen.score.score:
        verdict = "fit"  # turned about right, but placed worse than the truth would be: it lost to a wrong pose
    else:
        verdict = "choice"
    row["verdict"] = verdict
    return row


def check_diagnosable(config: AlignmentBenchConfig) -> None:
    """Refuse, before any model is loaded, what the diagnosis cannot show: the search is recorded once per frame,
    and a multi-view demo runs one search per view and picks among them."""
    if config.demo_views > 1:
        raise ConfigError(f"--diagnose-pose diagnoses one-view demos; demo_views={config.demo_views} runs one pose "
                          "search per view and picks among them (docs/alignment.md): diagnose with --demo-views 1")


def run_pose_diagnosis(matcher, config: AlignmentBenchConfig, out: str | Path, progress: bool = True) -> dict:
    """Every same-instance trial of ``config`` (or ``config.only_trials``) diagnosed (module doc), with the bench's
    demo, depth noise, table and support-plane settings; writes pose_diagnosis.json / .md."""
    check_diagnosable(config)
    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    pipeline_settings = pipeline_settings_for(config)
    rows = []
    for trial in tqdm(range(config.trials), desc="pose diagnosis", unit="trial", disable=not progress):
        category = config.categories[trial % len(config.categories)]
        base = {"trial": trial, "category": category}
        wanted = not config.only_trials or trial in config.only_trials
        try:
            obj, demo_view, scene = make_scene_trial(rng, category, trial, config, settings)  # drawn either way
        except SceneNotVisible:
            rows += [{**base, "verdict": "not in view"}] if wanted else []
            continue
        if not wanted:
            continue
        visible = [(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, demo_view.keypoints_xy,
                                                           demo_view.keypoints_visible) if v]
        if not visible:
            rows.append({**base, "verdict": "no visible demo keypoint"})
            continue
        demo, sensed = trial_demo(config, trial, obj, demo_view, visible, settings)
        pipeline = TransferPipeline(demo, matcher, pipeline_settings, None)
        up = (demo_view.pose[:3, 2], scene.camera_pose[:3, 2]) if config.gravity else None
        live_depth = sensed(scene.view.depth, scene.view.target.intrinsics, LIVE_IMAGE)
        rows.append({**base, "yaw_deg": scene.conditions.get("yaw_deg"),
                     **diagnose_trial(pipeline, scene, obj, demo_view, up, live_depth)})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pose_diagnosis.json").write_text(json.dumps(rows, indent=1, default=float))
    markdown = diagnosis_table(rows)
    (out / "pose_diagnosis.md").write_text(markdown)
    return {"rows": rows, "markdown": markdown}


def diagnosis_table(rows: list[dict]) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| trial | category | symmetry | yaw | verdict | chosen | chosen score | rot err | true score "
             "(ICP) | nearest hyp. (deg, score) | hyps | time s |", "|" + "---|" * 12]
    for r in rows:
        chosen, truth, refined, near = (r.get("chosen_score") or {}), (r.get("true_score") or {}), \
            (r.get("true_refined_score") or {}), (r.get("nearest") or {})
        yaw = r.get("yaw_deg")
        lines.append(f"| {r['trial']} | {r['category']} | {r.get('symmetry', '-')} | "
                     f"{'-' if yaw is None else f'{yaw:.0f}'} | {r['verdict']} | {r.get('chosen_source', '-')} | "
                     f"{fmt(chosen.get('score'))} | {fmt(r.get('rotation_error_deg'))} | {fmt(truth.get('score'))} "
                     f"({fmt(refined.get('score'))}) | {fmt(near.get('rotation_error_deg'))}, {fmt(near.get('score'))}"
                     f" | {r.get('hypotheses', '-')} | {fmt(sum((r.get('timings_s') or {}).values()))} |")
    counts: dict = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    lines += ["", "verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    return "\n".join(lines) + "\n"
