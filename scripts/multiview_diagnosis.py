"""Why a multi-view demo's pose fails, trial by trial: ``soco bench alignment`` with the view choice recorded.

    PYTHONPATH=. python scripts/multiview_diagnosis.py OUT [soco bench alignment flags, e.g. --backbone daisy
        --trials 32 --functional-trials 0 --max-rotation 180 --distractors 2 --mask-source depth --demo-views 4]

Runs the bench unchanged (same scenes, same report in OUT) and, per same-instance trial, wraps the multi-view
choice (:func:`correspondence.multiview_pose.choose_searched`) to record each candidate view's matches pose and its
searched pose — error against the truth (the nearest symmetric pose) and score on the fused cloud — the true pose's
score with the same scorer, and the view chosen. Writes OUT/multiview_diagnosis.json and .md. A failure whose truth
scores above the chosen pose, with no candidate near the truth, is the search's (generator / fit) from the right
view; one whose truth scores below the chosen pose is the scorer's (look-alike sides). The wrapping re-scores each
pose, so its timings are not the bench's.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import correspondence.benchmarks.alignment as bench
import correspondence.pipeline as pipeline_module
from correspondence import cli
from correspondence.benchmarks.pose_diagnosis import symmetric_errors
from correspondence.world.symmetry import object_symmetry

TRIAL: dict = {}
RECORDS: list[dict] = []


def _errors(T) -> dict:
    if T is None:
        return {"rot_deg": None, "trans_cm": None}
    obj, demo, scene = TRIAL["obj"], TRIAL["demo"], TRIAL["scene"]
    centre = demo.pose[:3, :3] @ obj.center + demo.pose[:3, 3]
    r, t = symmetric_errors(T, scene.truth, demo.pose, object_symmetry(obj), centre)
    return {"rot_deg": round(r, 1), "trans_cm": round(100 * t, 1)}


def _make_scene_trial(inner):
    def wrapped(rng, category, index, config, settings):
        out = inner(rng, category, index, config, settings)
        TRIAL.update(obj=out[0], demo=out[1], scene=out[2], category=category, trial=index)
        return out
    return wrapped


def _choose_searched(inner):
    def wrapped(candidates, search, score, **kwargs):
        rows = []

        def recorded(candidate):
            alignment, result = search(candidate)
            matches = candidate.result[0]
            start = matches.transform if matches is not None and matches.success else None
            pose = alignment.transform if alignment is not None and alignment.success else None
            matches_score = None if candidate.score is None else round(candidate.score, 4)
            rows.append({"view": candidate.index, "matches_pose": {**_errors(start), "score": matches_score},
                         "searched": {**_errors(pose), "score": None if pose is None else round(score(pose), 4),
                                      "reason": None if alignment is None else alignment.reason[:80]}})
            return alignment, result

        chosen = inner(candidates, recorded, score, **kwargs)
        truth = bench.rigid_part(TRIAL["scene"].truth)
        RECORDS.append({"trial": TRIAL["trial"], "category": TRIAL["category"],
                        "yaw_deg": round(TRIAL["scene"].conditions.get("yaw_deg", float("nan")), 1),
                        "candidates": rows, "chosen": chosen[0].index, "truth_score": round(score(truth), 4)})
        return chosen
    return wrapped


def _score_symmetric(inner):
    def wrapped(row, result, *args):
        row = inner(row, result, *args)
        if RECORDS and RECORDS[-1]["trial"] == row["trial"] and "success" not in RECORDS[-1]:
            RECORDS[-1].update(success=bool(row.get("success")), reason=row.get("reason"),
                               rot_deg=row.get("rotation_error_deg"), trans_cm=row.get("translation_error_cm"))
        return row
    return wrapped


def _markdown(records: list[dict]) -> str:
    lines = ["| trial | category | yaw | success | chosen | truth score | candidate: matches pose (deg, score) -> "
             "searched pose (deg, cm, score) |", "|---|---|---|---|---|---|---|"]
    for r in records:
        cells = "; ".join(
            f"v{c['view']}: ({c['matches_pose']['rot_deg']}, {c['matches_pose']['score']}) -> "
            f"({c['searched']['rot_deg']}, {c['searched']['trans_cm']}, {c['searched']['score']})"
            for c in r["candidates"])
        lines.append(f"| {r['trial']} | {r['category']} | {r['yaw_deg']} | {r.get('success')} | {r['chosen']} | "
                     f"{r['truth_score']} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    out = Path(argv[0])
    bench.make_scene_trial = _make_scene_trial(bench.make_scene_trial)
    bench._score_symmetric = _score_symmetric(bench._score_symmetric)
    pipeline_module.choose_searched = _choose_searched(pipeline_module.choose_searched)
    try:
        cli.main(["bench", "alignment", *argv[1:], "--out", str(out)])
    finally:
        out.mkdir(parents=True, exist_ok=True)
        (out / "multiview_diagnosis.json").write_text(json.dumps(RECORDS, indent=1, default=float))
        (out / "multiview_diagnosis.md").write_text(_markdown(RECORDS))


if __name__ == "__main__":
    main(sys.argv[1:])
