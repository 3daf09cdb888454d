"""The SOCO paper's published numbers, read at run time from the paper-table folder (never copied into the project).

The folder (``soco_table2.tsv``, ``soco_table_r1_supercategories.tsv``, ``soco_table_r2_protocols.tsv``,
``soco_table_r3_thresholds.tsv``, ``soco_table_r6_per_category_dinov2b.tsv``) is found from ``--paper-tables``,
``$SOCO_PAPER_TABLES`` or ``../shared/data/paper_tables`` next to the project or the working directory. A backbone
is matched to a published row by name (``dinov2_vitb14`` <-> ``DINOv2``); ``--paper-model`` names one explicitly.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import InputError

FILES = {"table2": "soco_table2.tsv", "r1": "soco_table_r1_supercategories.tsv", "r2": "soco_table_r2_protocols.tsv",
         "r3": "soco_table_r3_thresholds.tsv", "r6": "soco_table_r6_per_category_dinov2b.tsv"}
# registry name -> the paper's row name (only where the paper's backbone is known to be that model and size)
PAPER_NAMES = {"dinov2_vitb14": "DINOv2"}
R6_MODEL = "DINOv2"  # Table r6 is DINOv2-B per category


def find_tables(explicit: str | Path | None = None) -> Path | None:
    """The paper-table folder, or None. An explicit folder that does not hold the tables is an error."""
    if explicit:
        folder = Path(explicit).expanduser()
        if not (folder / FILES["table2"]).is_file():
            raise InputError(f"{str(folder)!r} holds no {FILES['table2']}: not the paper-table folder")
        return folder
    candidates = [os.environ.get("SOCO_PAPER_TABLES")]
    project = Path(__file__).resolve().parents[3]
    candidates += [project.parent / "shared" / "data" / "paper_tables", Path.cwd().parent / "shared" / "data" /
                   "paper_tables", Path.cwd() / "shared" / "data" / "paper_tables"]
    for candidate in candidates:
        if candidate and (Path(candidate) / FILES["table2"]).is_file():
            return Path(candidate)
    return None


class Published(float):
    """A published number that prints as the paper printed it (``78.90`` stays ``78.90``)."""

    text: str

    def __new__(cls, text: str) -> "Published":
        value = super().__new__(cls, float(text))
        value.text = text.strip()
        return value

    def __str__(self) -> str:
        return self.text


def _read(path: Path) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            key_name = next(iter(row))
            rows[row[key_name]] = {k: Published(v) for k, v in row.items() if k != key_name and v not in (None, "")}
    return rows


@dataclass
class PublishedTables:
    folder: Path
    tables: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    geo_chance: float | None = None

    @classmethod
    def load(cls, explicit: str | Path | None = None) -> "PublishedTables | None":
        folder = find_tables(explicit)
        if folder is None:
            return None
        tables = {name: _read(folder / file) for name, file in FILES.items() if (folder / file).is_file()}
        chance = None
        readme = folder / "README.md"
        if readme.is_file():
            found = re.search(r"chance level\s+([0-9.]+)\s*%", readme.read_text(encoding="utf-8"))
            chance = Published(found.group(1)) if found else None
        return cls(folder, tables, chance)

    def row(self, table: str, model: str) -> dict[str, float] | None:
        """A model's row, matched without regard to case (Table r1 writes ``DINOV2``)."""
        for name, values in self.tables.get(table, {}).items():
            if name.lower() == model.lower():
                return values
        return None

    def models(self, table: str = "table2") -> list[str]:
        return list(self.tables.get(table, {}))

    def categories(self) -> list[str]:
        """The 100 released categories (Table r6 lists them all), in the paper's order."""
        return list(self.tables.get("r6", {}))


def paper_model(backbone: str, explicit: str | None = None) -> str | None:
    """The paper's row name for a backbone (``dinov2_vitb14`` -> ``DINOv2``), or None when none matches."""
    if explicit:
        return explicit
    return PAPER_NAMES.get(backbone)
