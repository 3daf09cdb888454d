"""Approximate-time pairing of RGB, depth and mask messages (``message_filters`` is not in the wheels).

:class:`ApproximateSync` keeps a bounded queue per input. Whenever a message arrives it looks, for every input,
for the queued message nearest in time to the newest message of the arriving input; if all those stamps lie
within ``slop`` seconds of each other the set is emitted (in input order) and every queued message up to and
including the emitted ones is discarded, so a set is emitted once and time never goes backwards. Messages that
age out of a full queue, or that are older than an emitted set, are counted in ``unmatched``.

It is deliberately simpler than ``message_filters.ApproximateTimeSynchronizer`` (which searches for the
tightest set over all queues); with one camera driver that stamps RGB and depth from the same exposure, both
emit the same pairs. The node uses ``message_filters`` instead when it is importable and
``sync_backend`` is ``auto`` or ``message_filters``.

Thread-safe (one lock): ROS callbacks of a multi-threaded executor may call :meth:`add` concurrently.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Sequence


class ApproximateSync:
    def __init__(self, names: Sequence[str], slop_s: float, callback: Callable[..., None],
                 queue_size: int = 10) -> None:
        if not names:
            raise ValueError("ApproximateSync needs at least one input")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.names = tuple(names)
        self.slop_ns = int(round(float(slop_s) * 1e9))
        self.callback = callback
        self.queue_size = int(queue_size)
        self._queues: list[deque[tuple[int, Any]]] = [deque() for _ in self.names]
        self._last_emitted_ns: int | None = None
        self._lock = threading.Lock()
        self.emitted = 0
        self.unmatched = 0

    @property
    def slop_s(self) -> float:
        return self.slop_ns / 1e9

    @slop_s.setter
    def slop_s(self, value: float) -> None:
        self.slop_ns = int(round(float(value) * 1e9))

    def reset(self) -> None:
        with self._lock:
            for q in self._queues:
                q.clear()
            self._last_emitted_ns = None

    def add(self, name: str, stamp_ns: int, msg: Any) -> None:
        """Queue ``msg`` (stamped ``stamp_ns``) for input ``name``; calls the callback outside the lock."""
        index = self.names.index(name)
        emitted = None
        with self._lock:
            if self._last_emitted_ns is not None and stamp_ns <= self._last_emitted_ns:
                self.unmatched += 1  # older than a set already emitted: it can never pair
                return
            queue = self._queues[index]
            queue.append((stamp_ns, msg))
            if len(queue) > self.queue_size:
                queue.popleft()
                self.unmatched += 1
            emitted = self._try_emit(stamp_ns)
        if emitted is not None:
            self.callback(*emitted)

    def _try_emit(self, pivot_ns: int) -> tuple | None:
        chosen = []
        for queue in self._queues:
            if not queue:
                return None
            chosen.append(min(queue, key=lambda item: abs(item[0] - pivot_ns)))
        stamps = [stamp for stamp, _ in chosen]
        if max(stamps) - min(stamps) > self.slop_ns:
            return None
        for queue, (stamp, _) in zip(self._queues, chosen):
            while queue and queue[0][0] <= stamp:
                if queue[0][0] != stamp:
                    self.unmatched += 1
                queue.popleft()
        self._last_emitted_ns = max(stamps)
        self.emitted += 1
        return tuple(msg for _, msg in chosen)

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues)
