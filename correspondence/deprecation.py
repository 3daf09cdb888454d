"""Renamed public names keep working for one release, with a warning that names the new one.

One helper for every rename (module attributes, keyword arguments, result fields, node parameters), so the
message and the warning class are the same everywhere: :class:`DeprecationWarning`, raised at the caller's line.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

REMOVED_IN = "0.2"


def renamed_message(old: str, new: str, what: str = "name") -> str:
    """``"the <what> 'old' is renamed 'new'; the old <what> is removed in 0.2"``: one wording everywhere."""
    return f"the {what} {old!r} is renamed {new!r}; the old {what} is removed in {REMOVED_IN}"


def warn_renamed(old: str, new: str, what: str = "name", stacklevel: int = 3) -> None:
    warnings.warn(renamed_message(old, new, what), DeprecationWarning, stacklevel=stacklevel)


def module_getattr(module: str, namespace: dict[str, Any], renames: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that hands out ``namespace[renames[old]]`` for an old name, with a warning, and
    raises the usual AttributeError for anything else."""

    def __getattr__(name: str) -> Any:
        if name in renames:
            warn_renamed(f"{module}.{name}", f"{module}.{renames[name]}")
            return namespace[renames[name]]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def renamed_kwarg(old: str, new: str, old_value: Any, new_value: Any, unset: Any = None) -> Any:
    """The value for keyword ``new`` when a caller may still pass the old keyword ``old`` (a warning when it
    does); passing both is a TypeError, as Python does for a repeated argument. ``unset`` marks "not given"."""
    if old_value is unset:
        return new_value
    if new_value is not unset:
        raise TypeError(f"got both {old!r} and its new name {new!r}; pass only {new!r}")
    warn_renamed(old, new, "keyword argument", stacklevel=4)
    return old_value
