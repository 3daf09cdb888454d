"""What the node's diagnostics say, decided from what happened to the frames (no rclpy: testable on its own).

:class:`Health` records events with their time: a sensor message arriving (``input``), a synchronised frame
entering the node (``frame``), an output published (``published``) and every frame that ended without output for
a reason that is a problem (``problem``: rejected input, a processing failure, a stale frame). Frames that a newer
frame replaced before the worker took them (``dropped_overwritten``) are *not* problems: keeping only the newest
frame is how the node bounds its latency with a slow model.

:meth:`Health.assess` turns that into a level and a message, worst first:

* ERROR -- the node is unconfigured because configure failed (the message says why);
* WARN  -- the node is not active (unconfigured / inactive / finalized), or has no demo;
* WARN  -- no image arrived for ``timeout_s`` seconds, or none yet since start-up: nothing to publish (a stopped
  camera, a topic or transport that does not match) is not OK either;
* WARN  -- images arrive but nothing was published for ``timeout_s`` seconds (the dominant reason named, and
  how long ago the last image came: the message never claims frames arrive when they stopped);
* WARN  -- nothing published yet since start-up or ``~/reset`` (the reason named): OK needs an output;
* WARN  -- over the last ``window_s`` seconds more than ``max_problem_ratio`` of the frames were rejected,
  failed or went stale (the dominant reason and its last message named);
* OK    -- otherwise.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

OK, WARN, ERROR = 0, 1, 2
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}
PROBLEM_KINDS = ("rejected", "failed", "stale")
MIN_FRAMES_FOR_RATIO = 3  # a ratio over fewer frames says nothing


@dataclass(frozen=True)
class Problem:
    time: float
    kind: str  # rejected / failed / stale
    reason: str  # a short stable key (the rejection reason, the error type, "stale")
    message: str  # the last full message, for the diagnostics text


class Health:
    def __init__(self, window_s: float = 10.0, timeout_s: float = 5.0, max_problem_ratio: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.timeout_s, self.max_problem_ratio = float(window_s), float(timeout_s), \
            float(max_problem_ratio)
        self.clock = clock
        self._lock = threading.Lock()
        self._frames: deque[float] = deque()
        self._problems: deque[Problem] = deque()
        self._last_input: float | None = None
        self._last_published: float | None = None
        self._waiting_since: float | None = None  # first input since the last output

    # ------------------------------------------------------------------------------------------------ events
    def input(self) -> None:
        now = self.clock()
        with self._lock:
            self._last_input = now
            if self._waiting_since is None:
                self._waiting_since = now

    def frame(self) -> None:
        now = self.clock()
        with self._lock:
            self._frames.append(now)
            self._last_input = now
            if self._waiting_since is None:
                self._waiting_since = now
            self._trim(now)

    def published(self) -> None:
        now = self.clock()
        with self._lock:
            self._last_published = now
            self._waiting_since = None

    def problem(self, kind: str, reason: str, message: str) -> None:
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"kind must be one of {PROBLEM_KINDS}, got {kind!r}")
        now = self.clock()
        with self._lock:
            self._problems.append(Problem(now, kind, reason, message))
            self._trim(now)

    def reset(self) -> None:
        with self._lock:
            self._frames.clear()
            self._problems.clear()
            self._last_input = self._last_published = self._waiting_since = None

    def _trim(self, now: float) -> None:
        horizon = now - max(self.window_s, self.timeout_s)
        while self._frames and self._frames[0] < horizon:
            self._frames.popleft()
        while self._problems and self._problems[0].time < horizon:
            self._problems.popleft()

    # ------------------------------------------------------------------------------------------------ verdict
    def window(self) -> dict:
        """Frames and problems of the last ``window_s`` seconds: counts, ratio and the dominant reason."""
        now = self.clock()
        with self._lock:
            self._trim(now)
            start = now - self.window_s
            frames = sum(1 for t in self._frames if t >= start)
            problems = [p for p in self._problems if p.time >= start]
        by_key = Counter((p.kind, p.reason) for p in problems)
        dominant = None
        if by_key:
            (kind, reason), count = by_key.most_common(1)[0]
            last = next(p.message for p in reversed(problems) if (p.kind, p.reason) == (kind, reason))
            dominant = {"kind": kind, "reason": reason, "count": count, "message": last}
        # a frame counts once even if it produced several problem events; stale / failed frames are frames too
        total = max(frames, len(problems))
        return {"frames": total, "problems": len(problems),
                "ratio": (len(problems) / total) if total else 0.0, "dominant": dominant,
                "by_kind": dict(Counter(p.kind for p in problems))}

    def input_age(self) -> float | None:
        """Seconds since the last input (None: none yet)."""
        with self._lock:
            return None if self._last_input is None else self.clock() - self._last_input

    def last_published_age(self) -> float | None:
        """Seconds since the last output (None: nothing published since start-up or the last reset)."""
        with self._lock:
            return None if self._last_published is None else self.clock() - self._last_published

    def silent_for(self) -> float | None:
        """Seconds without output while inputs kept arriving (None when inputs stopped or output flows)."""
        now = self.clock()
        with self._lock:
            if self._waiting_since is None or self._last_input is None:
                return None
            if now - self._last_input > self.timeout_s:  # no input at all: assess() says so (its own rule)
                return None
            return now - self._waiting_since

    def assess(self, state: str, configure_error: str | None = None, has_demo: bool = True,
               ok_text: str = "", idle_hint: str = "", input_hint: str = "") -> tuple[int, str]:
        """(level, message). ``idle_hint``: the likely reason for "no output" when no frame problem explains it
        (e.g. messages that never synchronise); ``input_hint``: where inputs are expected (the topics)."""
        if configure_error:
            return ERROR, f"configure failed: {configure_error}"
        if state == "finalized":
            return WARN, "finalized: the node was shut down and publishes nothing (start it again)"
        if state != "active":
            return WARN, f"{state}" + ("" if has_demo or state == "unconfigured" else ", no demo")
        window = self.window()
        dominant = window["dominant"]
        because = ""
        if dominant is not None:
            because = (f"; mostly {dominant['kind']} ({dominant['reason']}, {dominant['count']}x): "
                       f"{dominant['message']}")
        if not has_demo:
            return WARN, "no demo loaded (set demo_path or publish a path on ~/set_demo_path)" + because
        age = self.input_age()
        if age is None or age > self.timeout_s:
            waiting = "no image received yet" if age is None else f"no image for {age:.1f} s"
            return WARN, f"no input: {waiting}, so nothing is published{input_hint}"
        silent = self.silent_for()
        if silent is not None and silent >= self.timeout_s:
            return WARN, f"no output for {silent:.1f} s (last image {age:.1f} s ago){because or idle_hint}"
        if self.last_published_age() is None:
            return WARN, f"no output yet (last image {age:.1f} s ago){because or idle_hint}"
        if window["frames"] >= MIN_FRAMES_FOR_RATIO and window["ratio"] > self.max_problem_ratio:
            return WARN, (f"{window['problems']} of {window['frames']} frames in the last {self.window_s:g} s "
                          f"not published{because}")
        return OK, ok_text or "ok"
