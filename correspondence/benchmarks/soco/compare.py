"""``soco bench compare``: several results.json side by side (Table 2 layout, first alpha)."""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import InputError
from .categories import SUPERCATEGORIES
from .report import fmt


def compare_table(paths: list[str]) -> str:
    rows = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            summary, protocol = data["summary"], data["protocol"]
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise InputError(f"{path} is not a soco bench results.json ({exc})") from exc
        key = f"{protocol['alphas'][0]:g}"
        cells = [fmt(summary["overall"].get(t, {}).get(key)) for t in ("cc", "soc", "cross", "geo")]
        cells += [fmt(summary["avg"])]
        cells += [fmt(summary["supercategory"].get("soc", {}).get(key, {}).get(s)) for s in SUPERCATEGORIES]
        rows.append(f"| {data.get('label', path)} | {protocol['name']} | PCK@{key} | " + " | ".join(cells) + " |")
    head = ("| backbone | protocol | metric | CC | SOC | Cross-SOC | SOC-geo | Avg | "
            + " | ".join(f"SOC {s}" for s in SUPERCATEGORIES) + " |\n|" + "---|" * 12 + "\n")
    return head + "\n".join(rows)
