"""Reports of a SOCO run: results.json (every setting recorded), Markdown tables laid out like the paper's
Tables 2, r1, r2, r3 and r6 with the published rows beside ours (labelled as published; see :mod:`.published`),
and plots (PCK vs alpha, per-category bars, qualitative matches)."""
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
        summary["reductions"][task] = {red: {f"{a:g}": overall(run.records, task, i, red)
                                             for i, a in enumerate(settings.alphas)}
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


def write_reports(run: EvaluationRun, summary: dict, record: dict, out: Path, label: str,
                  paper_tables: str | None = None, paper_model_name: str | None = None) -> dict[str, Path]:
    from .published import PublishedTables, paper_model

    out.mkdir(parents=True, exist_ok=True)
    published = PublishedTables.load(paper_tables)
    backbone = str(record.get("features", {}).get("backbone", {}).get("name", label))
    model = paper_model(backbone, paper_model_name)
    released = is_released(Path(record["dataset"]["root"]), published)
    record = {**record, "published": {"folder": str(published.folder) if published else None, "model": model,
                                      "released_dataset": released}}
    results = write_json(out / "results.json", {**record, "summary": summary})
    markdown = report_markdown(run, summary, label, published, model, released)
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


# ---- published rows beside ours ---------------------------------------------------------------------------------

def fmt2(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def fmt_published(value: float | None) -> str:
    return "n/a" if value is None else str(value) if hasattr(value, "text") else f"{value:g}"


def is_released(root: Path, published) -> bool:
    """The released SOCO v1: not written by ``soco synth soco`` and every intra category is a released one."""
    generation = root / "Metadata" / "generation.json"
    if generation.is_file() and "soco synth" in generation.read_text(encoding="utf-8", errors="replace"):
        return False
    names = set(published.categories()) if published is not None else set()
    intra = root / "PairAnnotations" / "intra"
    groups = {p.name for p in intra.iterdir() if p.is_dir()} if intra.is_dir() else set()
    return bool(names and groups and groups <= names)


def _at(summary: dict, task: str, alpha: float, key: str = "overall") -> float | None:
    return summary.get(key, {}).get(task, {}).get(f"{alpha:g}")


def _published_models(published, model: str | None, table: str) -> tuple[list[str], str]:
    if model and published.row(table, model) is not None:
        return [model], f"published row: {model}"
    return published.models(table), ("no published row is this backbone: every published row shown"
                                      if not model else f"{model} is not in this table: every published row shown")


def published_exclusions(settings) -> dict[str, str]:
    """Tables whose published rows would sit beside numbers of another protocol, and why they are left out: all of
    them for a variant run (any departure from the paper protocol, however spelled); for a paper run under
    soft-argmax, those published as argmax; under another reduction, those published per pair."""
    from .protocol import departures
    departed = departures(settings)
    if departed:
        reason = f"this run is a variant ({', '.join(departed)}), not the paper protocol"
        return {t: reason for t in ("table2", "r1", "r2", "r3", "r6")}
    out = {}
    if settings.method == "soft-argmax":
        for t in ("table2", "r1", "r3", "r6"):
            out[t] = "the paper's numbers here are argmax and this run is soft-argmax (Table r2 has its column)"
    if settings.reduction != "pair-category-mean":
        for t in ("table2", "r1", "r6"):
            out.setdefault(t, f"the paper's numbers here are pair-category means and this run is {settings.reduction}")
    return out


def _published_rows(published, model: str | None, table: str, label: str, keys: list[str],
                    excluded: dict[str, str] | None = None) -> str:
    """The paper's rows of ``table`` (the backbone's, else all), one markdown line each, ``keys`` in column order;
    none, with the reason, where ``excluded`` names the table."""
    if excluded and table in excluded:
        return f"\n\n(published rows left out: {excluded[table]})"
    text = ""
    for name in _published_models(published, model, table)[0]:
        values = published.row(table, name) or {}
        text += f"\n| *published: {name}* ({label}) | " + " | ".join(fmt_published(values.get(k)) for k in keys) + " |"
    return text


def report_markdown(run: EvaluationRun, summary: dict, label: str, published, model: str | None,
                    released: bool) -> str:
    from .protocol import departures
    settings = run.settings
    alpha = 0.1 if 0.1 in settings.alphas else settings.alphas[0]
    departed = departures(settings)
    excluded = published_exclusions(settings)
    ours = f"ours: {label} (`{settings.name}`" + (f", variant: {', '.join(departed)})" if departed else ")")
    text = (f"# SOCO results: {label}\n\nProtocol `{settings.name}` ({settings.method}, reduction "
            f"`{settings.reduction}`, SOC-geo `{settings.reduction_for('geo')}` with >= {settings.geo_min_candidates} "
            f"candidate(s)), {run.pairs} pairs.")
    if departed:
        text += (f" **Variant run, not the paper protocol**: {', '.join(departed)}. The published rows are left out "
                 "of every table below, so no column puts this run's numbers beside the paper's.")
    if published is None:
        text += ("\n\nPublished numbers: the paper-table folder was not found (give `--paper-tables DIR` or set "
                 "`SOCO_PAPER_TABLES`); only our rows are shown.")
    elif not departed:
        text += (f"\n\nRows marked *published* are the paper's numbers (arXiv 2605.31597, from `{published.folder}`), "
                 "measured on the released SOCO v1 with the released weights; ours are this run's.")
    # Table 2
    cols = ["CC", "SOC", "Cross-SOC", "Avg"] + [f"SOC {s}" for s in SUPERCATEGORIES]
    text += f"\n\n## Table 2 layout (PCK@{alpha:g})\n\n| backbone | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1)
    main = [_at(summary, t, alpha) for t in ("cc", "soc", "cross")]
    present = [v for v in main if v is not None]
    row = [fmt2(v) for v in main] + [fmt2(float(np.mean(present)) if present else None)]
    row += [fmt2(summary.get("supercategory", {}).get("soc", {}).get(f"{alpha:g}", {}).get(s)) for s in SUPERCATEGORIES]
    text += f"\n| {ours} | " + " | ".join(row) + " |"
    if published is not None:
        note = _published_models(published, model, "table2")[1]
        text += _published_rows(published, model, "table2", "Table 2, PCK@0.1",
                                ["CC", "SOC", "Cross-SOC", "Avg"] + [f"SOC_{s}" for s in SUPERCATEGORIES], excluded)
        if "table2" not in excluded:
            text += f"\n\n({note})"
    # Table r1
    cols = [f"{s} {t}" for s in SUPERCATEGORIES for t in ("SOC", "CC")]
    text += f"\n\n## SOC and CC per super-category (Table r1 layout, PCK@{alpha:g})\n\n| backbone | " + \
        " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1)
    row = [fmt2(summary.get("supercategory", {}).get(t.lower(), {}).get(f"{alpha:g}", {}).get(s))
           for s in SUPERCATEGORIES for t in ("SOC", "CC")]
    text += f"\n| {ours} | " + " | ".join(row) + " |"
    if published is not None:
        text += _published_rows(published, model, "r1", "Table r1",
                                [f"{s}_{t}" for s in SUPERCATEGORIES for t in ("SOC", "CC")], excluded)
    # Table r2
    geo = _at(summary, "geo", alpha)
    geo_chance = summary.get("geo", {}).get("chance")
    soft = _at(summary, "soc", alpha) if settings.method == "soft-argmax" else None
    probe = summary.get("linear_probe", {}).get("probe", {}).get("soc", {}).get(f"{alpha:g}")
    text += (f"\n\n## Protocol variants (Table r2 layout, PCK@{alpha:g})\n\n| backbone | SOC soft-argmax | "
             "SOC linear probe | SOC-geo | SOC-geo chance |\n|---|---|---|---|---|")
    text += (f"\n| {ours} | {fmt2(soft) if soft is not None else 'not run (--soft-argmax)'} | "
             f"{fmt2(probe) if probe is not None else 'not run (--linear-probe)'} | {fmt2(geo)} | {fmt2(geo_chance)} |")
    if published is not None and "r2" in excluded:
        text += _published_rows(published, model, "r2", "Table r2", [], excluded)
    elif published is not None:
        models, _ = _published_models(published, model, "r2")
        for name in models:
            values = published.row("r2", name) or {}
            text += (f"\n| *published: {name}* (Table r2) | {fmt_published(values.get('SOC_soft_argmax'))} | "
                     f"{fmt_published(values.get('SOC_linear_probe'))} | {fmt_published(values.get('SOC_geo'))} | "
                     f"{fmt_published(published.geo_chance)} |")
    text += ("\n\nSOC-geo: argmax over the target patches holding a keypoint of the same concept, keypoints with "
             f"at least {settings.geo_min_candidates} candidate(s); chance = 1 / number of candidates per keypoint, "
             "reduced like the score.")
    # Table r3
    wanted = [a for a in (0.1, 0.05, 0.02) if a in settings.alphas]
    cols = [f"{red} {t}@{a:g}" for red in ("pair", "kpt") for a in wanted for t in ("SOC", "CC")]
    text += "\n\n## Thresholds and reductions (Table r3 layout)\n\n| backbone | " + " | ".join(cols) + " |\n|" + \
        "---|" * (len(cols) + 1)
    reductions = summary.get("reductions", {})
    row = [fmt2(reductions.get(t.lower(), {}).get(red, {}).get(f"{a:g}"))
           for red in ("pair-category-mean", "keypoint-category-mean") for a in wanted for t in ("SOC", "CC")]
    text += f"\n| {ours} | " + " | ".join(row) + " |"
    if published is not None:
        text += _published_rows(published, model, "r3", "Table r3",
                                [f"{red}_{t}@{a:.2f}" for red in ("pair", "kpt") for a in wanted for t in ("SOC", "CC")],
                                excluded)
    # Table r6
    text += "\n\n## Per category (Table r6 layout)\n\n"
    if released and published is not None and "r6" not in excluded:
        text += table_r6_released(summary, settings.alphas, published)
    else:
        text += table_r6(summary, settings.alphas)
        if released and published is not None:
            text += f"\n(published per-category rows left out: {excluded['r6']})\n"
    return text + "\n" + extra_sections(summary, settings.alphas[0])


def table_r6_released(summary: dict, alphas: tuple[float, ...], published) -> str:
    """All 100 released categories in the paper's order, ours beside the published DINOv2-B numbers."""
    wanted = [a for a in (0.1, 0.05, 0.02) if a in alphas]
    cols = [f"{t} @{a:g}" for a in wanted for t in ("CC", "SOC")]
    head = ("| category | " + " | ".join(f"ours {c}" for c in cols) + " | "
            + " | ".join(f"*published DINOv2-B* {c}" for c in cols) + " |\n|" + "---|" * (2 * len(cols) + 1) + "\n")
    lines = []
    for category in published.categories():
        ours = [fmt2(summary.get("per_category", {}).get(t.lower(), {}).get(f"{a:g}", {}).get(category))
                for a in wanted for t in ("CC", "SOC")]
        values = published.row("r6", category) or {}
        theirs = [fmt_published(values.get(f"{t}@{a:.2f}")) for a in wanted for t in ("CC", "SOC")]
        lines.append(f"| {category} | " + " | ".join(ours + theirs) + " |")
    return head + "\n".join(lines) + "\n"
