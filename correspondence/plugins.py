"""Optional parts of soco_ros that build on the core, found through Python entry points.

The core never imports them by name: ``export/`` (ONNX / TensorRT export and verification) depends on
``correspondence``, not the other way round. It declares in ``setup.py`` what it adds -- a ``soco`` sub-command
(group ``soco_ros.cli``) and export functions the latency benchmark and the TensorRT runtime call (group
``soco_ros.exporters``) -- and an installation without it simply lacks those.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

CLI_GROUP = "soco_ros.cli"
EXPORTER_GROUP = "soco_ros.exporters"


def load_all(group: str) -> list[Any]:
    """Every object registered under ``group``, in name order."""
    return [ep.load() for ep in sorted(entry_points(group=group), key=lambda ep: ep.name)]


def load(group: str, name: str) -> Any | None:
    """The object registered as ``name`` in ``group``, or None when no installed package provides it."""
    for ep in entry_points(group=group):
        if ep.name == name:
            return ep.load()
    return None
