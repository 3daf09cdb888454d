"""Reports of a SOCO run: results.json (every setting recorded), Markdown tables laid out like the paper's
Table 2 and Table r6, and plots (PCK vs alpha, per-category bars, qualitative matches)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...io import write_json
from .categories import SUPERCATEGORIES, supercategory_of
from .evaluator import EvaluationRun
from .reductions import by_supercategory, chance, overall, per_category

MAIN_TASKS = (("cc", "CC"), ("soc", "SOC"), ("cross", "Cross-SOC"), ("geo", "SOC-geo"))


def summarise(run: EvaluationRun, root: Path) -> dict:
    settings = run.settings
    tasks = sorted({r.task for r in run.records})
    summary: dict = {"overall": {}, "per_category": {}, "supercategory": {}, "reductions": {}}
    for task in tasks:
        reduction = settings.reduction_for(task)
        summary["overall"][task] = {f"{a:g}": overall(run.records, task, i, reduction)
                                    for i, a in enumerate(settings.alphas)}
        summary["per_category"][task] = {f"{a:g}": per_category(run.records, task, i, reduction)
                                         for i, a in enumerate(settings.alphas)}
        summary["supercategory"][task] = {
            f"{a:g}": by_supercategory(summary["per_category"][task][f"{a:g}"], lambda c: supercategory_of(c, root))
            for a in settings.alphas}
        summary["reductions"][task] = {red: overall(run.records, task, 0, red)
                                       for red in ("pair-category-mean", "keypoint-category-mean", "pooled")}
    if "geo" in tasks:
        summary["geo"] = {"chance": chance(run.records, "geo", settings.reduction_for("geo")),
                          "reduction": settings.reduction_for("geo"), "min_candidates": settings.geo_min_candidates,
                          "candidates": settings.geo_candidates}
    counts = {task: sum(1 for r in run.records if r.task == task) for task in tasks}
    summary["keypoints_evaluated"] = counts
    summary["pairs_skipped_without_valid_match"] = dict(run.skipped)
    main = [summary["overall"].get(t, {}).get(f"{settings.alphas[0]:g}") for t in ("cc", "soc", "cross")]
    present = [v for v in main if v is not None]
    summary["avg"] = float(np.mean(present)) if present else None
    return summary


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def table2(label: str, summary: dict, alpha: float) -> str:
    key = f"{alpha:g}"
    cols = ["CC", "SOC", "Cross-SOC", "Avg"] + [f"SOC {s}" for s in SUPERCATEGORIES]
    row = [fmt(summary["overall"].get(t, {}).get(key)) for t, _ in MAIN_TASKS[:3]] + [fmt(summary["avg"])]
    row += [fmt(summary["supercategory"].get("soc", {}).get(key, {}).get(s)) for s in SUPERCATEGORIES]
    return (f"| backbone | {' | '.join(cols)} |\n|{'---|' * (len(cols) + 1)}\n| {label} | {' | '.join(row)} |\n")


def table_r6(summary: dict, alphas: tuple[float, ...]) -> str:
    cats = sorted(set(summary["per_category"].get("soc", {}).get(f"{alphas[0]:g}", {}))
                  | set(summary["per_category"].get("cc", {}).get(f"{alphas[0]:g}", {})))
    head = "| category | " + " | ".join(f"{name} @{a:g}" for name in ("CC", "SOC") for a in alphas) + " |\n"
    head += "|---|" + "---|" * (2 * len(alphas)) + "\n"
    lines = []
    for c in cats:
        cells = [fmt(summary["per_category"].get(t, {}).get(f"{a:g}", {}).get(c)) for t in ("cc", "soc") for a in alphas]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def plots(run: EvaluationRun, summary: dict, out: Path, label: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ...viz import match_overlay, save

    paths = []
    from ...viz import save_line_plot
    alphas = sorted(run.settings.alphas)
    series = {name: (alphas, [summary["overall"][task][f"{a:g}"] for a in alphas]) for task, name in MAIN_TASKS
              if task in summary["overall"]}
    paths.append(save_line_plot(series, out / "pck_vs_alpha.png", "alpha (x max side of the target box)", "PCK (%)",
                                f"PCK vs alpha: {label}", ylim=(0, 100)))
    key = f"{run.settings.alphas[0]:g}"
    soc = summary["per_category"].get("soc", {}).get(key, {})
    cc = summary["per_category"].get("cc", {}).get(key, {})
    if soc or cc:
        cats = sorted(set(soc) | set(cc))
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * len(cats) + 2), 3.5))
        x = np.arange(len(cats))
        ax.bar(x - 0.2, [cc.get(c, 0) for c in cats], 0.4, label="CC")
        ax.bar(x + 0.2, [soc.get(c, 0) for c in cats], 0.4, label="SOC")
        ax.set_xticks(x, cats, rotation=60, ha="right")
        ax.set_ylabel(f"PCK@{key} (%)")
        ax.set_ylim(0, 100)
        ax.legend()
        fig.tight_layout()
        paths.append(out / "per_category.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    alpha = run.settings.alphas[0]
    for i, item in enumerate(run.qualitative):
        pair = item["pair"]
        side = pair.target.bbox_max_side
        semantic = {m.source_indices[0]: m.target_indices[0] for m in pair.semantic_matches}
        shown = sorted(semantic)
        if not shown:
            continue
        correct = [np.linalg.norm(item["prediction"][s] - item["targets"][semantic[s]]) < alpha * side for s in shown]
        image = match_overlay(pair.source.image, pair.target.image,
                              np.array([pair.source.keypoints[s].xy for s in shown]), item["prediction"][shown],
                              [pair.source.keypoints[s].name for s in shown], title=f"{label}: pair {pair.pair_id} "
                              f"({pair.pair_group}), SOC green = correct @{alpha:g}",
                              colors=[(40, 200, 40) if c else (220, 40, 40) for c in correct])
        paths.append(save(image, out / f"qualitative_{i}.png"))
    return paths


def write_reports(run: EvaluationRun, summary: dict, record: dict, out: Path, label: str) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results = write_json(out / "results.json", {**record, "summary": summary})
    alpha = run.settings.alphas[0]
    markdown = (f"# SOCO results: {label}\n\nProtocol `{run.settings.name}`, reduction `{run.settings.reduction}`, "
                f"{run.pairs} pairs.\n\n## Table 2 layout (PCK@{alpha:g})\n\n" + table2(label, summary, alpha)
                + "\n## Per category (Table r6 layout)\n\n" + table_r6(summary, run.settings.alphas)
                + extra_sections(summary, alpha))
    table = out / "results.md"
    table.write_text(markdown, encoding="utf-8")
    figures = plots(run, summary, out, label)
    return {"results": results, "table": table, **{p.stem: p for p in figures}}


def extra_sections(summary: dict, alpha: float) -> str:
    """Markdown for the optional linear-probe and 4-choice results."""
    key = f"{alpha:g}"
    text = ""
    if "linear_probe" in summary:
        lp = summary["linear_probe"]
        text += (f"\n## Linear probe (trainsplits/test, PCK@{key})\n\n| features | CC | SOC |\n|---|---|---|\n"
                 f"| frozen | {fmt(lp['base']['cc'][key])} | {fmt(lp['base']['soc'][key])} |\n"
                 f"| + linear probe | {fmt(lp['probe']['cc'][key])} | {fmt(lp['probe']['soc'][key])} |\n")
    if "four_choice" in summary:
        text += "\n## 4-choice protocol (CircularEval)\n\n| method | circular acc. | average acc. | questions |\n|---|---|---|---|\n"
        for name, row in summary["four_choice"].items():
            text += f"| {name} | {fmt(row['circular_accuracy'])} | {fmt(row['average_accuracy'])} | {row['questions']} |\n"
    return text
