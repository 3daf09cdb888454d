"""The linear probe's section of ``results.md``: which recipe ran, and the paper's linear-probe rows beside ours.

The paper's Table r2 has one linear-probe column, SOC at PCK@0.1 (``SOC_linear_probe``), measured by the released
script: the best epoch chosen on the test split, keypoints pooled per class. Ours is printed with the epoch choice
that produced it, so a ``last``-epoch number is never mistaken for the published protocol.
"""
from __future__ import annotations

from pathlib import Path

from .published import PublishedTables, paper_model

PUBLISHED_COLUMN = "SOC_linear_probe"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _published_rows(published: PublishedTables, model: str | None) -> tuple[list[str], str]:
    """The row matching the backbone, or every row of Table r2 (saying why)."""
    if model and published.row("r2", model) is not None:
        return [model], f"published row: {model}"
    why = "no published row is this backbone" if not model else f"{model} is not in Table r2"
    return published.models("r2"), f"{why}: every published row shown"


def _epoch_text(record: dict) -> str:
    recipe = record["recipe"]
    if recipe["epoch_selection"] == "best-on-test":
        return (f"epoch {record['selected_epoch']} of {recipe['epochs']}, the best on the test split (the reference's "
                "choice, which the published numbers used)")
    return (f"the last epoch ({recipe['epochs']}); the reference keeps the best epoch on the test split "
            "(`epoch_selection=\"best-on-test\"`), so the published numbers are not this protocol")


def recipe_table(record: dict) -> str:
    """What ran, one line per convention."""
    recipe = record["recipe"]
    losses = ", ".join(f"{v:.4f}" for v in record["epoch_losses"])
    rows = [("source", recipe["source"]), ("probe", recipe["probe"]), ("loss", recipe["loss"]),
            ("optimiser", recipe["optimiser"]), ("batches", recipe["batches"]),
            ("evaluated probe", _epoch_text(record)),
            ("evaluation", record["evaluation"]),
            ("features", "as the reference (`soco-798`)" if not record["protocol_differences"]
             else "differ from the reference's `soco-798`: " + "; ".join(record["protocol_differences"])),
            ("train pairs", f"{record['train_pairs']} ({record['train_pairs_with_soc']} with SOC matches; "
                            f"{record['pairs_per_epoch']} per epoch in {record['batches_per_epoch']} "
                            f"batch{'' if record['batches_per_epoch'] == 1 else 'es'})"),
            ("test pairs", f"{record['test_pairs']} in {record['test_classes']} classes"),
            ("epoch losses", losses)]
    return "| setting | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def scores_table(record: dict, label: str, published: PublishedTables | None, model: str | None) -> str:
    """SOC and CC at the recipe's threshold: before training, after, and the paper's linear-probe rows."""
    key = f"{record['recipe']['thresh']:g}"
    text = f"| features | SOC@{key} | CC@{key} |\n|---|---|---|\n"
    for name, row in (("frozen (identity probe)", record["base"]), ("+ linear probe", record["probe"])):
        text += f"| ours: {label}, {name} | {_fmt(row['soc'][key])} | {_fmt(row['cc'][key])} |\n"
    if published is None:
        return text + "\n(published rows: the paper-table folder was not found)\n"
    models, note = _published_rows(published, model)
    for name in models:
        value = (published.row("r2", name) or {}).get(PUBLISHED_COLUMN)
        text += f"| *published: {name}* (Table r2, best epoch on test) | {'n/a' if value is None else value} | n/a |\n"
    return text + f"\n({note}; the paper publishes SOC only)\n"


def markdown(record: dict, label: str, published: PublishedTables | None, model: str | None) -> str:
    return ("\n## Linear probe: the reference's recipe\n\n" + recipe_table(record) + "\n"
            + scores_table(record, label, published, model))


def append_to_results(table: Path, record: dict, label: str, backbone: str, paper_tables: str | None,
                      paper_model_name: str | None) -> None:
    """Append the section to ``results.md`` (written by the report; the probe's recipe is recorded here)."""
    published = PublishedTables.load(paper_tables)
    text = markdown(record, label, published, paper_model(backbone, paper_model_name))
    with Path(table).open("a", encoding="utf-8") as handle:
        handle.write(text)
