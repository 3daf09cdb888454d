"""Which views of a multi-view demo localise the object on a stream's frame: the one that gave the last pose first,
the others only when it does not find the object clearly, or on a schedule.

Why: every view votes on every frame otherwise (:meth:`~correspondence.multiview_pose.MultiViewDemo.localise`), and
each vote costs a full cell-to-cell similarity, a colour gate and a rigid check (docs/multiview_demo.md, "Cost"). On a
stream the object turns a few degrees a frame, so the side that faced the camera on the last frame almost always
still does; localising with it alone and stopping there when it is confirmed with a clear margin (found, rigid in 3D,
score at least ``min_score``) keeps one view's cost, and also one candidate pose fewer (only the views that voted are
candidates, the primary always). When it is not confirmed (the object turned away, left, or the score fell), the
other views vote too and the choice is the same as without a schedule; every ``every`` frames they vote anyway, so
a side that would now score higher is not missed for long. State is per pipeline (a new demo is a new pipeline)
and, like :class:`~correspondence.tracking.MaskTracker`'s, it forgets the view when a frame yields no pose.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError
from .localise import Localisation


@dataclass(frozen=True)
class ViewScheduleSettings:
    """``min_score``: the last view's localisation score (the rigid votes' weighted share of its object cells) that
    stops the search there; ``every``: all views vote at least every this many frames (1: every frame, i.e. no
    schedule)."""

    min_score: float = 0.15
    every: int = 10

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_score) and 0.0 <= self.min_score <= 1.0):
            raise ConfigError(f"view_schedule min_score must be in [0, 1], got {self.min_score}")
        if int(self.every) < 1:
            raise ConfigError(f"view_schedule every must be >= 1 frame, got {self.every}")


class ViewSchedule:
    """The per-stream state: the view whose pose was used last and the frames since every view voted."""

    def __init__(self, settings: ViewScheduleSettings | None = None) -> None:
        self.settings = settings or ViewScheduleSettings()
        self.view: int | None = None
        self.since_all = 0

    def first(self) -> int | None:
        """The view to localise with alone first, or None: every view votes on this frame."""
        if self.view is None or self.since_all + 1 >= self.settings.every:
            return None
        return self.view

    def confirmed(self, localisation: Localisation | None) -> bool:
        """Whether the first view's localisation ends the search: found, confirmed in 3D, by a clear margin."""
        return bool(localisation is not None and localisation.found and localisation.best is not None
                    and localisation.best.rigid and localisation.best_score >= self.settings.min_score)

    def localised(self, all_views: bool) -> None:
        """Count the frame: every view voted on it or only the first."""
        self.since_all = 0 if all_views else self.since_all + 1

    def used(self, view: int | None) -> None:
        """The view whose pose the frame reported (None: no pose; every view votes on the next frame)."""
        self.view = view

    def reset(self) -> None:
        self.view, self.since_all = None, 0
