"""DDS isolation for tests and benchmarks: a ``ROS_DOMAIN_ID`` nobody else on this machine is using.

:class:`DomainLease` takes the first free domain in ``[first, last]`` by holding an exclusive ``flock`` on
``<lock dir>/domain-<id>.lock`` for as long as the lease lives. Every process that allocates through it (two
pytest runs, a benchmark, two tests in one run) gets a different domain; a crashed holder's lock disappears with
its process, so nothing is leaked. Domains 0..101 are the ones whose ports are safe on Linux; 0 is everyone's
default, so the range starts above it. Combine with ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` so no traffic
leaves loopback.
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path

FIRST, LAST = 20, 101
LOCK_DIR = Path(os.environ.get("SOCO_ROS_DOMAIN_LOCK_DIR", Path(tempfile.gettempdir()) / "soco_ros_domains"))


class NoFreeDomain(RuntimeError):
    pass


class DomainLease:
    def __init__(self, first: int = FIRST, last: int = LAST, lock_dir: Path | str | None = None) -> None:
        if not 0 <= first <= last <= 232:
            raise ValueError(f"domain range must lie in [0, 232], got [{first}, {last}]")
        directory = Path(lock_dir) if lock_dir is not None else LOCK_DIR
        directory.mkdir(parents=True, exist_ok=True)
        self.domain: int | None = None
        self._fd: int | None = None
        start = first + os.getpid() % (last - first + 1)  # spread concurrent runs; the lock decides
        for i in range(last - first + 1):
            domain = first + (start - first + i) % (last - first + 1)
            fd = os.open(directory / f"domain-{domain}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue
                raise
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.domain, self._fd = domain, fd
            return
        raise NoFreeDomain(f"every ROS domain in [{first}, {last}] is leased (locks in {directory})")

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "DomainLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - a safety net; callers release explicitly
        try:
            self.release()
        except Exception:  # noqa: BLE001
            pass
