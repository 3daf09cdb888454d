"""SOCO's categories and super-categories.

The released benchmark's 100 categories and their 4 super-categories ship with the package
(``correspondence/data/soco_categories.json``); a dataset's own ``Metadata/keypoint_taxonomy.json`` can add to
them (our procedural sets declare theirs there), so super-category columns work for both.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "soco_categories.json"
SUPERCATEGORIES = ("Transportation", "Hand-held", "Furniture", "Animals")


@lru_cache(maxsize=1)
def released_categories() -> dict[str, str]:
    """category -> super-category for the released SOCO v1 (empty if the data file is absent)."""
    if not DATA.is_file():
        return {}
    table = json.loads(DATA.read_text(encoding="utf-8"))
    return {category: supercategory for supercategory, members in table["supercategories"].items()
            for category in members}


@lru_cache(maxsize=16)
def dataset_categories(root: str) -> dict[str, str]:
    path = Path(root) / "Metadata" / "keypoint_taxonomy.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    categories = data.get("categories", {}) if isinstance(data, dict) else {}
    return {name: str(entry.get("supercategory")) for name, entry in categories.items()
            if isinstance(entry, dict) and entry.get("supercategory")}


def supercategory_of(category: str, root: str | Path | None = None) -> str | None:
    table = dict(released_categories())
    if root is not None:
        table.update(dataset_categories(str(root)))
    return table.get(category)
