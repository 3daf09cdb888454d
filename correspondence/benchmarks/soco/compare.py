"""``soco bench compare``: several results.json side by side, and the paper's published rows as a side.

An entry is a ``results.json`` path (or its folder), ``published`` (every published model) or ``published:MODEL``
(one row, e.g. ``published:DINOv2``), read from the paper-table folder (see :mod:`.published`).
"""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import InputError
from .categories import SUPERCATEGORIES
from .published import PublishedTables
from .report import fmt2, fmt_published

MAIN = ("cc", "soc", "cross", "geo")


def _load(path: str) -> dict:
    target = Path(path)
    if target.is_dir():
        target = target / "results.json"
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
        data["summary"], data["protocol"]  # noqa: B018  (both must exist)
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise InputError(f"{path} is not a soco bench results.json ({exc})") from exc
    return data


def compare_table(entries: list[str], paper_tables: str | None = None) -> str:
    published = None
    if any(e == "published" or e.startswith("published:") for e in entries):
        published = PublishedTables.load(paper_tables)
        if published is None:
            raise InputError("published rows asked for, but the paper-table folder was not found: give "
                             "--paper-tables DIR or set SOCO_PAPER_TABLES")
    main, thresholds = [], []
    for entry in entries:
        if entry == "published" or entry.startswith("published:"):
            wanted = entry.split(":", 1)[1] if ":" in entry else None
            models = [wanted] if wanted else published.models("table2")
            for model in models:
                t2, r2, r3 = (published.row(t, model) for t in ("table2", "r2", "r3"))
                if t2 is None:
                    raise InputError(f"no published row {model!r}; published: {', '.join(published.models())}")
                r2, r3 = r2 or {}, r3 or {}
                cells = [fmt_published(t2.get(k)) for k in ("CC", "SOC", "Cross-SOC")]
                cells += [fmt_published(r2.get("SOC_geo")), fmt_published(published.geo_chance),
                          fmt_published(t2.get("Avg"))]
                cells += [fmt_published(t2.get(f"SOC_{s}")) for s in SUPERCATEGORIES]
                main.append(f"| *published: {model}* | paper (Table 2, r2) | PCK@0.1 | " + " | ".join(cells) + " |")
                thresholds.append(f"| *published: {model}* | pair | " + " | ".join(
                    fmt_published(r3.get(f"pair_{t}@{a:.2f}")) for a in (0.1, 0.05, 0.02) for t in ("SOC", "CC"))
                    + " |")
            continue
        data = _load(entry)
        summary, protocol = data["summary"], data["protocol"]
        alpha = 0.1 if 0.1 in protocol["alphas"] else protocol["alphas"][0]
        key = f"{alpha:g}"
        cells = [fmt2(summary["overall"].get(t, {}).get(key)) for t in MAIN]
        cells.insert(4, fmt2(summary.get("geo", {}).get("chance")))
        cells += [fmt2(summary.get("avg"))]
        cells += [fmt2(summary["supercategory"].get("soc", {}).get(key, {}).get(s)) for s in SUPERCATEGORIES]
        label = data.get("label", entry)
        departed = protocol.get("departures", protocol.get("extra", {}).get("variants", []))
        name = protocol["name"] + (f" (variant: {', '.join(departed)}; not the paper protocol)" if departed else "")
        main.append(f"| {label} | {name} | PCK@{key} | " + " | ".join(cells) + " |")
        thresholds.append(f"| {label} | {protocol.get('reduction', '')} | " + " | ".join(
            fmt2(summary["overall"].get(t, {}).get(f"{a:g}")) for a in (0.1, 0.05, 0.02) for t in ("soc", "cc"))
            + " |")
    head = ("| backbone | protocol | metric | CC | SOC | Cross-SOC | SOC-geo | SOC-geo chance | Avg | "
            + " | ".join(f"SOC {s}" for s in SUPERCATEGORIES) + " |\n|" + "---|" * 13 + "\n")
    head2 = ("\n\n| backbone | reduction | SOC@0.1 | CC@0.1 | SOC@0.05 | CC@0.05 | SOC@0.02 | CC@0.02 |\n|"
             + "---|" * 8 + "\n")
    return head + "\n".join(main) + head2 + "\n".join(thresholds)
