"""Procedural object families. Categories within a family share concepts, as SOCO's taxonomy does."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...errors import ConfigError
from ..types import ObjectInstance


@dataclass(frozen=True)
class CategorySpec:
    name: str
    family: str
    supercategory: str
    build: Callable[[np.random.Generator, str, int], ObjectInstance]


_CATEGORIES: dict[str, CategorySpec] = {}


def register(name: str, family: str, supercategory: str):
    def wrap(build):
        _CATEGORIES[name] = CategorySpec(name, family, supercategory, build)
        return build
    return wrap


def categories(family: str | None = None) -> list[CategorySpec]:
    _load()
    return [c for c in _CATEGORIES.values() if family is None or c.family == family]


def get_category(name: str) -> CategorySpec:
    _load()
    if name not in _CATEGORIES:
        raise ConfigError(f"unknown category {name!r}; known: {', '.join(sorted(_CATEGORIES))}")
    return _CATEGORIES[name]


def families() -> list[str]:
    return sorted({c.family for c in categories()})


def make_instance(category: str, index: int, seed: int = 0) -> ObjectInstance:
    """The ``index``-th instance of a category: deterministic in (category, index, seed)."""
    spec = get_category(category)
    entropy = [seed, index] + [ord(c) for c in category]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    return spec.build(rng, f"{category}_{index:04d}", seed)


def _load() -> None:
    from . import containers, furniture, tools, vehicles  # noqa: F401  (registration side effects)
