"""Summaries, tables and plots of ``soco bench alignment`` (rows from
:func:`~correspondence.benchmarks.alignment.run_alignment_benchmark`): success overall, per kind and mask source,
and per condition (yaw bin, camera distance, occlusion, distractors), BOP's MSSD / ADD-S recall, the live mask's
IoU and the keypoints' pixel error. JSON + markdown + PNG."""
from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..io import write_json

SUCCESS_DEG, SUCCESS_M = 5.0, 0.02
KEYPOINT_PX = 5.0  # a keypoint within this many pixels of its true projection is "accurate"
MASK_IOU = 0.8
KIND_SAME = "same instance, keypoints"
KIND_FUNCTIONAL = "different instances, functional"
YAW_BINS = ((0, 30, "|yaw| < 30 deg"), (30, 90, "30-90 deg"), (90, 181, "90-180 deg"))
DISTANCE_BINS = ((0, 0.8, "< 0.8"), (0.8, 1.25, "0.8-1.25"), (1.25, np.inf, ">= 1.25"))  # live / demo distance
VISIBLE_BINS = ((0, 0.7, "< 70 %"), (0.7, 0.95, "70-95 %"), (0.95, 2, ">= 95 %"))  # target pixels not occluded


def _percent(values) -> float | None:
    values = list(values)
    return 100.0 * float(np.mean(values)) if values else None


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def _causes(rows: list[dict]) -> dict:
    """Keypoints over KEYPOINT_PX where the pose succeeded, counted by cause (alignment._keypoint_errors)."""
    causes = [d.get("cause", "?") for r in rows if r.get("success") for d in r.get("keypoint_detail", {}).values()
              if d["error_px"] > KEYPOINT_PX]
    return {c: causes.count(c) for c in sorted(set(causes))}


def _visibility(rows: list[dict]) -> dict:
    """The pipeline's visibility verdicts (pose_keypoints.py) against the truth where the pose succeeded."""
    total: dict[str, int] = {}
    for r in rows:
        for key, n in (r.get("keypoint_visibility") or {}).items() if r.get("success") else ():
            total[key] = total.get(key, 0) + n
    return dict(sorted(total.items()))


def summarise(rows: list[dict]) -> dict:
    aligned = [r for r in rows if "rotation_error_deg" in r]
    refused = [r for r in rows if "rotation_error_deg" not in r]
    bop = [r for r in aligned if "mssd_ok" in r]
    ious = [r["mask_iou"] for r in rows if r.get("mask_iou") is not None]
    # the IoU target is a share of *trials*: a trial whose mask source found nothing ("object not found", or an
    # InputError such as an empty mask) has no mask and counts as below the bar, never left out of the count
    masked = [r for r in rows if "mask_iou" in r or str(r.get("reason", "")).startswith("InputError")]
    kp_all = [e for r in rows for e in r.get("keypoint_errors_px", [])]
    kp_success = [e for r in rows if r.get("success") for e in r.get("keypoint_errors_px", [])]
    return {
        "trials": len(rows), "success_rate": _percent(r["success"] for r in rows),
        "alignment_returned": 100.0 * len(aligned) / max(len(rows), 1),
        # the outcome a robot must not act on: a pose was published and it is wrong (a refusal is safer)
        "wrong_pose_returned": 100.0 * sum(not r["success"] for r in aligned) / max(len(rows), 1),
        "mssd_recall": _percent(r.get("mssd_ok", False) for r in rows) if bop else None,
        "adds_recall": _percent(r.get("adds_ok", False) for r in rows) if bop else None,
        "median_rotation_error_deg": _median(r["rotation_error_deg"] for r in aligned),
        "median_translation_error_cm": _median(r["translation_error_cm"] for r in aligned),
        "refined_by_icp": 100.0 * sum(r.get("refined", False) for r in aligned) / max(len(aligned), 1),
        "not_in_view": sum(r.get("reason") == "object not in view" for r in rows),
        "median_mask_iou": _median(ious), "mask_iou_at_least_0.8": _percent(
            r.get("mask_iou") is not None and r["mask_iou"] >= MASK_IOU for r in masked),
        "keypoints_within_5px": _percent(e <= KEYPOINT_PX for e in kp_all),
        "keypoints_within_5px_where_pose_succeeded": _percent(e <= KEYPOINT_PX for e in kp_success),
        "median_keypoint_error_px": _median(kp_all), "keypoints_scored": len(kp_all),
        "keypoints_off_where_pose_succeeded_by_cause": _causes(rows),
        "keypoint_visibility_where_pose_succeeded": _visibility(rows),
        # ambiguous refusals judged on the truth: a right best refused costs a success, a wrong one was kept away
        "ambiguous_refusals": {"trials": sum(r.get("ambiguous", False) for r in refused),
                               "best_right": sum(r.get("refused_best_right", False) for r in refused),
                               "rival_right": sum(r.get("rival_right", False) for r in refused)},
        "failure_reasons": {k: sum(1 for r in refused if r.get("reason") == k)
                            for k in sorted({r.get("reason", "") for r in refused})}}


def _bin_label(bins, value: float) -> str:
    return next(label for lo, hi, label in bins if lo <= value < hi)


CONDITIONS = {
    "yaw": lambda r: _bin_label(YAW_BINS, abs(r["yaw_deg"])) if "yaw_deg" in r else None,
    "camera distance (x demo)": lambda r: (_bin_label(DISTANCE_BINS, r["distance_factor"])
                                           if "distance_factor" in r else None),
    "target unoccluded": lambda r: (_bin_label(VISIBLE_BINS, r["visible_fraction"])
                                    if "visible_fraction" in r else None),
    "distractors": lambda r: str(r["distractors"]) if "distractors" in r else None,
    "symmetry": lambda r: r.get("symmetry"),
}


_BINS = {"yaw": YAW_BINS, "camera distance (x demo)": DISTANCE_BINS, "target unoccluded": VISIBLE_BINS}


def by_condition(rows: list[dict]) -> dict:
    """condition -> mask source -> bin -> summary, for same-instance rows that were drawn."""
    out: dict = {}
    for condition, key in CONDITIONS.items():
        table: dict = {}
        for r in rows:
            label = key(r)
            if label is not None:
                table.setdefault(r["mask_source"], {}).setdefault(label, []).append(r)
        order = {label: i for i, (_, _, label) in enumerate(_BINS.get(condition, ()))}
        out[condition] = {source: {label: summarise(bins[label])
                                   for label in sorted(bins, key=lambda lb: (order.get(lb, len(order)), lb))}
                          for source, bins in table.items()}
    return out


def _fmt(value, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.1f}{suffix}" if suffix else f"{value:.2f}"


def _groups(rows: list[dict]) -> list[tuple[str, str, list[dict]]]:
    groups = []
    for kind in (KIND_SAME, KIND_FUNCTIONAL):
        for source in dict.fromkeys(r.get("mask_source", "depth") for r in rows if r["kind"] == kind):
            chosen = [r for r in rows if r["kind"] == kind and r.get("mask_source", "depth") == source]
            if chosen:
                groups.append((kind, source, chosen))
    return groups


def _source_label(source: str) -> str:
    return "true mask (oracle)" if source == "oracle" else source


def markdown(rows: list[dict], name: str, size: int, latency: dict, conditions: dict) -> str:
    md = ("| backbone | size | trials | mask | success (<5 deg, <2 cm; symmetric: best turn) | pose returned | "
          "wrong pose returned | MSSD < 0.1 d | ADD-S < 0.1 d | median rot. err (deg) | median transl. err (cm) | refined by ICP | "
          "mask IoU >= 0.8 | keypoints <= 5 px (all / pose succeeded) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for kind, source, group in _groups(rows):
        k = summarise(group)
        md += (f"| {name} | {size} | {k['trials']} ({kind}) | {_source_label(source)} | {_fmt(k['success_rate'], ' %')}"
               f" | {_fmt(k['alignment_returned'], ' %')} | {_fmt(k['wrong_pose_returned'], ' %')} | "
               f"{_fmt(k['mssd_recall'], ' %')} | "
               f"{_fmt(k['adds_recall'], ' %')} | {_fmt(k['median_rotation_error_deg'])} | "
               f"{_fmt(k['median_translation_error_cm'])} | {k['refined_by_icp']:.0f} % | "
               f"{_fmt(k['mask_iou_at_least_0.8'], ' %')} | {_fmt(k['keypoints_within_5px'], ' %')} / "
               f"{_fmt(k['keypoints_within_5px_where_pose_succeeded'], ' %')} |\n")
    for kind, source, group in _groups(rows):
        causes = summarise(group)["keypoints_off_where_pose_succeeded_by_cause"]
        if causes:
            md += (f"\nKeypoints over {KEYPOINT_PX:g} px where the pose succeeded ({kind}, {_source_label(source)}), "
                   "by cause (pose: the pose is that far off; demo point: the keypoint's 3D point is; match: its own "
                   "match was published): " + ", ".join(f"{c} {n}" for c, n in causes.items()) + "\n")
    for kind, source, group in _groups(rows):
        verdicts = summarise(group)["keypoint_visibility_where_pose_succeeded"]
        if verdicts:
            md += (f"\nKeypoint visibility where the pose succeeded ({kind}, {_source_label(source)}), truth / the "
                   "pipeline's verdict: " + ", ".join(f"{k} {n}" for k, n in verdicts.items()) + "\n")
    reasons = []
    for kind, source, group in _groups(rows):
        k = summarise(group)
        if k["failure_reasons"]:
            reasons.append(f"{kind}, {_source_label(source)}: "
                           + "; ".join(f"{reason} x{n}" for reason, n in k["failure_reasons"].items()))
    md += "\nRefusals (no pose returned): " + (" | ".join(reasons) or "none") + "\n"
    judged = [f"{kind}, {_source_label(source)}: {a['trials']}, the refused best right in {a['best_right']}, a rival "
              f"right in {a['rival_right']}" for kind, source, group in _groups(rows)
              for a in [summarise(group)["ambiguous_refusals"]] if a["trials"]]
    if judged:
        md += "\nAmbiguous refusals judged on the truth (< 5 deg, < 2 cm): " + " | ".join(judged) + "\n"
    for condition, per_source in conditions.items():
        if not per_source or all(len(bins) < 2 for bins in per_source.values()):
            continue  # one bin only: nothing to break down
        md += (f"\nBy {condition}\n\n| mask | {condition} | trials | success | pose returned | wrong pose "
               f"| median rot. err (deg) | keypoints <= 5 px |\n|---|---|---|---|---|---|---|---|\n")
        for source, bins in per_source.items():
            for label, k in bins.items():
                md += (f"| {_source_label(source)} | {label} | {k['trials']} | {_fmt(k['success_rate'], ' %')} | "
                       f"{_fmt(k['alignment_returned'], ' %')} | {_fmt(k['wrong_pose_returned'], ' %')} | "
                       f"{_fmt(k['median_rotation_error_deg'])} | "
                       f"{_fmt(k['keypoints_within_5px'], ' %')} |\n")
    if latency:
        md += "\nPer-frame latency (median / p95, ms)\n\n| stage | median | p95 |\n|---|---|---|\n"
        md += "".join(f"| {s} | {v['median_ms']:.0f} | {v['p95_ms']:.0f} |\n" for s, v in latency.items())
    return md


#: The per-frame stages the report times, in pipeline order (a stage shows when every timed trial has it: the support
#: plane only with a table in view and the removal on).
STAGES = ("support_plane", "segmentation", "localisation", "features", "matching", "alignment", "total", "demo_setup")


def stage_latency(rows: list[dict]) -> dict:
    """stage -> median / p95 ms over the trials that were timed, for the stages every one of them has."""
    timed = [r["timings_s"] for r in rows if "timings_s" in r]
    stages = [s for s in STAGES if timed and all(s in t for t in timed)]
    return {s: {"median_ms": 1e3 * float(np.median([t[s] for t in timed])),
                "p95_ms": 1e3 * float(np.percentile([t[s] for t in timed], 95))} for s in stages}


def write_report(rows: list[dict], matcher, config, out: Path) -> dict:
    latency = stage_latency(rows)
    groups = {f"{kind} | {_source_label(source)}": summarise(group) for kind, source, group in _groups(rows)}
    by_kind = {k: summarise([r for r in rows if r["kind"] == k]) for k in (KIND_SAME, KIND_FUNCTIONAL)
               if any(r["kind"] == k for r in rows)}
    conditions = by_condition([r for r in rows if r["kind"] == KIND_SAME])
    summary = {**summarise(rows), "by_kind": by_kind, "by_kind_and_mask": groups, "by_condition": conditions,
               "latency": latency}
    settings = matcher.extractor.describe()
    record = {"config": asdict(config), "features": settings, "summary": summary, "rows": rows,
              "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "alignment.json", record)
    name = settings["backbone"]["name"]
    md = markdown(rows, name, settings["effective_image_size"], latency, conditions)
    (out / "alignment.md").write_text(md, encoding="utf-8")
    _plot(rows, out / "alignment_errors.png", name)
    _plot_conditions(conditions, out / "alignment_by_condition.png", name)
    return {"summary": summary, "markdown": md, "rows": rows}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _plot(rows: list[dict], path: Path, name: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for (kind, source, group), marker in zip(_groups(rows), "o^sDv<>"):
        aligned = [r for r in group if "rotation_error_deg" in r]
        if aligned:
            ax.scatter([r["rotation_error_deg"] for r in aligned], [r["translation_error_cm"] for r in aligned], s=12,
                       marker=marker, label=f"{kind}, {_source_label(source)} ({len(aligned)} poses)")
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


def _plot_conditions(conditions: dict, path: Path, name: str) -> None:
    """Success per bin of each condition that has more than one bin, one bar per mask source."""
    shown = {c: s for c, s in conditions.items() if s and any(len(b) > 1 for b in s.values())}
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(3.6 * max(len(shown), 1), 3.4), squeeze=False)
    for ax, (condition, per_source) in zip(axes[0], shown.items()):
        labels = sorted({label for bins in per_source.values() for label in bins})
        width = 0.8 / max(len(per_source), 1)
        for j, (source, bins) in enumerate(per_source.items()):
            ax.bar(np.arange(len(labels)) + j * width, [bins.get(lb, {}).get("success_rate") or 0 for lb in labels],
                   width, label=_source_label(source))
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, fontsize=7, rotation=20)
        ax.set_ylim(0, 100)
        ax.set_title(condition, fontsize=9)
        ax.set_ylabel("success (%)")
        ax.legend(fontsize=6)
    if not shown:
        axes[0][0].text(0.5, 0.5, "one condition bin only", ha="center")
    fig.suptitle(f"success by condition: {name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
