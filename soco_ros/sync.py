"""Approximate-time pairing of RGB, depth and mask messages (``message_filters`` is not in the wheels).

:class:`ApproximateSync` keeps a bounded queue per input. Whenever a message arrives it looks, for every input,
for the queued message nearest in time to the newest message of the arriving input; if all those stamps lie
within ``slop`` seconds of each other the set is emitted (in input order) and every queued message up to and
including the emitted ones is discarded, so a set is emitted once and time never goes backwards.

Every message that is dropped is reported with its cause (``on_drop``, a :class:`Drop`), so the node can log and
count it: ``out_of_order`` (stamped at or before a set already emitted: it can never pair), ``no_partner`` (it
left a full queue, or a later set was emitted past it, without a partner within ``slop``; :attr:`Drop.gaps` says
how far the nearest message of each other input was). ``unmatched`` counts both.

A stamp more than ``jump_s`` seconds behind the newest stamp of its input is a jump back (a looped bag, a clock
reset), not a late message: the synchroniser re-arms itself (queues cleared, "now" forgotten), reports it
(``on_rearm``) and takes the message, so the stream after the jump is served. Without this one message stamped
far ahead (a bad clock) would make every later message "out of order" until a reset.

It is deliberately simpler than ``message_filters.ApproximateTimeSynchronizer`` (which searches for the
tightest set over all queues); with one camera driver that stamps RGB and depth from the same exposure, both
emit the same pairs.

Thread-safe (one lock): ROS callbacks of a multi-threaded executor may call :meth:`add` concurrently. The callbacks
run outside the lock.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

DROP_CAUSES = ("out_of_order", "no_partner")


@dataclass(frozen=True)
class Drop:
    """A message the synchroniser dropped: its input, its stamp and why."""

    name: str
    stamp_ns: int
    cause: str  # one of DROP_CAUSES
    behind_ns: int = 0  # out_of_order: how far before the last emitted set it was stamped
    gaps: dict[str, int | None] = field(default_factory=dict)  # no_partner: other input -> nearest |dt| (None: empty)


class ApproximateSync:
    def __init__(self, names: Sequence[str], slop_s: float, callback: Callable[..., None],
                 queue_size: int = 10, jump_s: float = 1.0, on_drop: Callable[[Drop], None] | None = None,
                 on_rearm: Callable[[str, int, int], None] | None = None) -> None:
        if not names:
            raise ValueError("ApproximateSync needs at least one input")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.names = tuple(names)
        self.slop_ns = int(round(float(slop_s) * 1e9))
        self.jump_ns = int(round(float(jump_s) * 1e9))
        self.callback = callback
        self.on_drop, self.on_rearm = on_drop, on_rearm
        self.queue_size = int(queue_size)
        self._queues: list[deque[tuple[int, Any]]] = [deque() for _ in self.names]
        self._newest: dict[str, int] = {}
        self._last_emitted_ns: int | None = None
        self._lock = threading.Lock()
        self.emitted = 0
        self.unmatched = 0
        self.rearmed = 0

    @property
    def slop_s(self) -> float:
        return self.slop_ns / 1e9

    @slop_s.setter
    def slop_s(self, value: float) -> None:
        self.slop_ns = int(round(float(value) * 1e9))

    @property
    def jump_s(self) -> float:
        return self.jump_ns / 1e9

    @jump_s.setter
    def jump_s(self, value: float) -> None:
        self.jump_ns = int(round(float(value) * 1e9))

    def reset(self) -> None:
        """Forget the queues and "now" (the counters stay: :meth:`reset_counters`)."""
        with self._lock:
            self._clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.emitted = self.unmatched = self.rearmed = 0

    def _clear(self) -> None:
        for q in self._queues:
            q.clear()
        self._newest.clear()
        self._last_emitted_ns = None

    def add(self, name: str, stamp_ns: int, msg: Any) -> None:
        """Queue ``msg`` (stamped ``stamp_ns``) for input ``name``; calls the callbacks outside the lock."""
        index = self.names.index(name)
        emitted, drops, rearm = None, [], None
        with self._lock:
            newest = self._newest.get(name)
            if newest is not None and newest - stamp_ns > self.jump_ns:
                self._clear()
                self.rearmed += 1
                rearm = (name, stamp_ns, newest - stamp_ns)
            if self._last_emitted_ns is not None and stamp_ns <= self._last_emitted_ns:
                self.unmatched += 1  # older than a set already emitted: it can never pair
                drops.append(Drop(name, stamp_ns, "out_of_order", behind_ns=self._last_emitted_ns - stamp_ns))
            else:
                self._newest[name] = stamp_ns if newest is None or rearm else max(newest, stamp_ns)
                queue = self._queues[index]
                queue.append((stamp_ns, msg))
                if len(queue) > self.queue_size:
                    old, _ = queue.popleft()
                    self.unmatched += 1
                    drops.append(self._no_partner(index, old))
                emitted = self._try_emit(stamp_ns, drops)
        if rearm is not None and self.on_rearm is not None:
            self.on_rearm(*rearm)
        if self.on_drop is not None:
            for drop in drops:
                self.on_drop(drop)
        if emitted is not None:
            self.callback(*emitted)

    def _no_partner(self, index: int, stamp_ns: int) -> Drop:
        gaps = {other: (min(abs(s - stamp_ns) for s, _ in queue) if queue else None)
                for i, (other, queue) in enumerate(zip(self.names, self._queues)) if i != index}
        return Drop(self.names[index], stamp_ns, "no_partner", gaps=gaps)

    def _try_emit(self, pivot_ns: int, drops: list[Drop]) -> tuple | None:
        chosen = []
        for queue in self._queues:
            if not queue:
                return None
            chosen.append(min(queue, key=lambda item: abs(item[0] - pivot_ns)))
        stamps = [stamp for stamp, _ in chosen]
        if max(stamps) - min(stamps) > self.slop_ns:
            return None
        passed = []  # (input, stamp) of the queued messages the set leaves behind, judged before any is removed
        for index, (queue, (stamp, _)) in enumerate(zip(self._queues, chosen)):
            for queued, _ in queue:
                if queued > stamp:
                    break
                if queued != stamp:
                    passed.append((index, queued))
        for index, queued in passed:
            self.unmatched += 1
            drops.append(self._no_partner(index, queued))
        for queue, (stamp, _) in zip(self._queues, chosen):
            while queue and queue[0][0] <= stamp:
                queue.popleft()
        self._last_emitted_ns = max(stamps)
        self.emitted += 1
        return tuple(msg for _, msg in chosen)

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues)
