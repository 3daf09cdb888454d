"""Throttled warnings: a camera at 30 Hz with a bad setting must not flood the log, yet every cause is seen.

:class:`ThrottledLog` prints one line per key per ``period`` seconds; the next line for that key says how many
were suppressed in between, so the log still accounts for every event (the counters in the diagnostics hold the
exact numbers).
"""
from __future__ import annotations

import threading
import time

WARN_PERIOD_S = 5.0


class ThrottledLog:
    """One warning per reason per ``period`` seconds; the next one says how many were suppressed."""

    def __init__(self, logger, period: float = WARN_PERIOD_S) -> None:
        self.logger, self.period = logger, period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warn(self, reason: str, message: str, level: str = "warning", key: str | None = None) -> None:
        """Throttled per ``key`` (default: the reason and the start of the message, so different topics or causes
        are each reported)."""
        now = time.monotonic()
        key = key or f"{reason}|{message[:40]}"
        with self._lock:
            if now - self._last.get(key, -1e18) < self.period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        suffix = f" ({suppressed} similar suppressed)" if suppressed else ""
        getattr(self.logger, level)(f"[{reason}] {message}{suffix}")

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
            self._suppressed.clear()
