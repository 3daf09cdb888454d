"""Keep only the latest frame and process it on one worker thread, so ROS callbacks never wait for the model.

* :class:`LatestSlot` holds at most one pending item: a newer item replaces an unprocessed one, which is counted
  as ``overwritten`` (the backlog can never grow beyond one frame, and memory stays flat).
* :class:`Worker` takes the pending item, drops it as ``stale`` if it is older than ``max_age_s`` by the time the
  worker is free (``on_stale(item, age_s)`` is told), otherwise runs ``process(item)``; exceptions are caught and
  counted (``failed``), never raised into the thread. Jobs (:meth:`Worker.run_job`: a demo load, say) run on the
  same thread before the next frame, so the ROS executor never waits for them and a frame never runs while
  the demo is being swapped.
* :class:`LatencyStats`: a bounded window of latencies with p50/p95/max.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


class LatestSlot:
    def __init__(self) -> None:
        self._item: Any = None
        self._jobs: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.submitted = 0
        self.overwritten = 0

    def put_job(self, job: Callable[[], None]) -> None:
        """Queue ``job``; jobs are taken before the pending item, in order, and never dropped."""
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()

    def put(self, item: Any) -> bool:
        """Store ``item``; returns True if it replaced an unprocessed one (counted in ``overwritten``)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self.submitted += 1
            self.overwritten += int(replaced)
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Any:
        """The first queued job, else the pending item (removing it), or None after ``timeout`` / when closed."""
        with self._cond:
            if self._item is None and not self._jobs and not self._closed:
                self._cond.wait(timeout)
            if self._jobs:
                return Job(self._jobs.popleft())
            item, self._item = self._item, None
            return item

    def clear(self) -> bool:
        with self._cond:
            had = self._item is not None
            self._item = None
            return had

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


class LatencyStats:
    """The last ``window`` latencies (seconds); percentiles in milliseconds."""

    def __init__(self, window: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(float(seconds))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def summary(self) -> dict[str, float]:
        with self._lock:
            values = np.array(self._values, dtype=np.float64)
        if values.size == 0:
            return {"count": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan")}
        return {"count": int(values.size), "p50_ms": 1e3 * float(np.percentile(values, 50)),
                "p95_ms": 1e3 * float(np.percentile(values, 95)), "max_ms": 1e3 * float(values.max())}


@dataclass
class Job:
    """A queued call (see :meth:`LatestSlot.put_job`)."""

    call: Callable[[], None]


@dataclass
class WorkItem:
    """What the worker needs: the payload and the time it was captured (``stamp_s``, wall clock seconds)."""

    payload: Any
    stamp_s: float


class Worker:
    def __init__(self, process: Callable[[WorkItem], None], max_age_s: float = 1.0,
                 on_error: Callable[[WorkItem, BaseException], None] | None = None,
                 clock: Callable[[], float] = time.time, name: str = "soco-worker",
                 on_stale: Callable[[WorkItem, float], None] | None = None, nice: int = 0) -> None:
        self.slot = LatestSlot()
        self.process = process
        self.max_age_s = float(max_age_s)
        self.on_error = on_error
        self.on_stale = on_stale
        self.clock = clock
        self.nice = int(nice)
        self.processed = 0
        self.stale = 0
        self.failed = 0
        self.busy = False
        self._name = name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.slot.reopen()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the current item; returns False if the thread is still busy after ``timeout``."""
        self._stop.set()
        self.slot.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def submit(self, item: WorkItem) -> bool:
        """Offer a frame; returns True if it replaced one the worker had not started (a dropped frame)."""
        return self.slot.put(item)

    def run_job(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the worker thread before the next frame (errors go to ``on_error`` with item None)."""
        self.slot.put_job(job)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until no frame or job is being processed; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self.busy

    @property
    def overwritten(self) -> int:
        return self.slot.overwritten

    def reset_counters(self) -> None:
        self.processed = self.stale = self.failed = 0
        self.slot.overwritten = 0
        self.slot.submitted = 0

    def _run(self) -> None:
        if self.nice:
            try:  # Linux: a thread id is a valid "process" for setpriority; only this thread gets nicer
                import os

                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except (AttributeError, OSError):
                pass
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.2)
            if item is None:
                continue
            if isinstance(item, Job):
                self.busy = True
                try:
                    item.call()
                except BaseException as exc:  # noqa: BLE001
                    self._report(None, exc)
                finally:
                    self.busy = False
                continue
            age = self.clock() - item.stamp_s
            if self.max_age_s > 0 and age > self.max_age_s:
                self.stale += 1
                if self.on_stale is not None:
                    try:
                        self.on_stale(item, age)
                    except Exception:  # noqa: BLE001
                        pass
                continue
            self.busy = True
            try:
                self.process(item)
                self.processed += 1
            except BaseException as exc:  # noqa: BLE001 - the worker must survive anything a frame provokes
                self.failed += 1
                self._report(item, exc)
            finally:
                self.busy = False

    def _report(self, item: WorkItem | None, exc: BaseException) -> None:
        if self.on_error is not None:
            try:
                self.on_error(item, exc)
            except Exception:  # noqa: BLE001
                pass
