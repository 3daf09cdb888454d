"""Which views of a multi-view demo localise the object on a stream's frame: the one that gave the last pose first,
the others only when it does not find the object clearly, or on a schedule.

Why: every view votes on every frame otherwise (:meth:`~correspondence.multiview_pose.MultiViewDemo.localise`), and
each vote costs a full cell-to-cell similarity, a colour gate and a rigid check (docs/multiview_demo.md, "Cost"). On a
stream the object turns a few degrees a frame, so the side that faced the camera on the last frame almost always
still does. Localising with it alone, and stopping there when it is confirmed with a clear margin (found, rigid in
3D, scoring at least ``keep`` of what it scored when every view last voted and at least ``min_score``), costs one
view's votes instead of K, and one candidate pose fewer (only the views that voted are candidates; the primary
always is). When it is not confirmed (the object turned away, left, or the score fell), the other views vote too and
the choice is the one without a schedule; every ``every`` frames they vote anyway, so a side that would now score
higher is not missed for long. State is per pipeline (a new demo is a new pipeline) and, like
:class:`~correspondence.tracking.MaskTracker`'s, the view is forgotten when a frame yields no pose.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError
from .localise import Localisation


@dataclass(frozen=True)
class ViewScheduleSettings:
    """``keep``: the share of its score at the last vote of every view that the last pose's view must still reach
    alone (scores depend on the object and the scene: on ``soco bench alignment``'s +-180 deg scenes the chosen
    view scored 0.09-0.14 and the others 0.04-0.08, so a view that kept 0.8 of its winning score still stands
    clear of them); ``min_score``: and at least this score (the rigid votes' weighted share of its object cells);
    ``every``: all views vote at least every this many frames (1: every frame, i.e. no schedule)."""

    keep: float = 0.8
    min_score: float = 0.05
    every: int = 10

    def __post_init__(self) -> None:
        for name in ("keep", "min_score"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"view_schedule {name} must be in [0, 1], got {value}")
        if int(self.every) < 1:
            raise ConfigError(f"view_schedule every must be >= 1 frame, got {self.every}")


class ViewSchedule:
    """The per-stream state: the view whose pose was used last, its score when every view last voted, and the
    frames since then."""

    def __init__(self, settings: ViewScheduleSettings | None = None) -> None:
        self.settings = settings or ViewScheduleSettings()
        self.view: int | None = None
        self.reference: float | None = None  # the view's score at the last vote of every view
        self.since_all = 0
        self._scores: dict[int, float] = {}  # every view's score at that vote

    def first(self) -> int | None:
        """The view to localise with alone first, or None: every view votes on this frame."""
        if self.view is None or self.reference is None or self.since_all + 1 >= self.settings.every:
            return None
        return self.view

    def confirmed(self, localisation: Localisation | None) -> bool:
        """Whether the first view's localisation ends the search: found, confirmed in 3D, by a clear margin."""
        need = max(self.settings.min_score, self.settings.keep * (self.reference or 0.0))
        return bool(localisation is not None and localisation.found and localisation.best is not None
                    and localisation.best.rigid and localisation.best_score >= need)

    def localised(self, scores: dict[int, float] | None) -> None:
        """Count the frame: every view voted on it (``scores``: each one's) or only the first (None)."""
        if scores is None:
            self.since_all += 1
        else:
            self.since_all, self._scores = 0, dict(scores)

    def used(self, view: int | None) -> None:
        """The view whose pose the frame reported (None: no pose; every view votes on the next frame). After a
        vote of every view its score there becomes the reference the view must keep."""
        if view is None or (view != self.view and self.since_all):
            self.reference = None  # no pose, or another view than the one voted alone: every view next
        elif not self.since_all:
            self.reference = self._scores.get(view)
        self.view = view

    def reset(self) -> None:
        self.view, self.reference, self.since_all, self._scores = None, None, 0, {}
