"""Helpers for the ROS tests: DDS isolation, the node as a subprocess, a synthetic scene.

Isolation: every test leases its own ``ROS_DOMAIN_ID`` (:func:`lease_domain`: an exclusive file lock per domain,
``soco_ros.isolation``), so no two tests, and no two concurrent runs of the suite or the benchmark on this
machine, share a domain; and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, so no DDS traffic leaves loopback.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soco_ros.isolation import DomainLease

REPO = Path(__file__).resolve().parents[1]
NODE = "/correspondence_node"
BASE = {"backbone": "daisy", "image_size": 224, "segmentation": "depth", "diagnostics_period": 0.5,
        "torch_threads": 2}
TOPIC_REMAPS = {"image": "/camera/color/image_raw", "depth": "/camera/depth/image_raw",
                "camera_info": "/camera/color/camera_info", "mask": "/camera/mask", "prompt": "/camera/prompt"}


def lease_domain() -> DomainLease:
    """A domain id no other lease holder on this machine has, until ``.release()`` (or the process ends)."""
    return DomainLease()


def ros_env(domain: int, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_STATIC_PEERS="",
               RMW_IMPLEMENTATION="rmw_fastrtps_cpp", ROS_LOG_DIR=str(tmp / "ros_log"), SOCO_OFFLINE="1",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"))
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


class NodeProcess:
    """``python -m soco_ros.node`` with parameters and remaps; its log goes to a file the test can search."""

    def __init__(self, tmp: Path, domain: int, params: dict, name: str = "correspondence_node",
                 remaps: dict[str, str] | None = None, extra_args: list[str] | None = None,
                 ignore_sigint: bool = False) -> None:
        """``ignore_sigint``: start it with SIGINT ignored, as a shell starts a background job of a script."""
        self.log_path = tmp / f"{name}.log"
        args = [sys.executable, "-m", "soco_ros.node", "--ros-args", "-r", f"__node:={name}"]
        for key, value in {**TOPIC_REMAPS, **(remaps or {})}.items():
            args += ["-r", f"{key}:={value}"]
        for key, value in params.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if isinstance(value, str):
                text = f"'{value}'" if value == "" else value
            args += ["-p", f"{key}:={text}"]
        args += extra_args or []
        self.args = args
        self._log = open(self.log_path, "w", encoding="utf-8")
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, cwd=REPO, env=ros_env(domain, tmp), stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=ignore)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, pattern: str, timeout: float = 60.0, start: int = 0) -> re.Match | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log()[start:])
            if match:
                return match
            if self.proc.poll() is not None:
                return re.search(pattern, self.log()[start:])
            time.sleep(0.1)
        return None

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS")

    def catches(self, signum: int) -> bool:
        """Whether the process has a handler for ``signum`` installed (``SigCgt`` in /proc/<pid>/status)."""
        try:
            with open(f"/proc/{self.proc.pid}/status", encoding="utf-8") as handle:
                mask = next(int(line.split()[1], 16) for line in handle if line.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return False
        return bool(mask & (1 << (signum - 1)))

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if it still runs after ``timeout`` s."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def ros(tmp_path, monkeypatch, request):
    """Start nodes and a peer on a test-unique domain; everything is stopped at the end."""
    from soco_ros.peer import Peer

    lease = lease_domain()
    domain = lease.domain
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    started = []

    class Ros:
        def __init__(self):
            self.domain, self.tmp = domain, tmp_path

        def node(self, params, **kwargs):
            node = NodeProcess(tmp_path, domain, {**BASE, **params}, **kwargs)
            started.append(node)
            return node

        def peer(self, **kwargs):
            peer = Peer(domain, **kwargs)
            started.append(peer)
            return peer

    try:
        yield Ros()
        for thing in reversed(started):
            if isinstance(thing, NodeProcess):
                code = thing.stop()
                assert "Traceback" not in thing.log(), thing.log()[-4000:]
                assert code == 0, f"node exited with {code} after SIGINT:\n{thing.log()[-4000:]}"
            else:
                thing.close()
    finally:
        for thing in started:
            if isinstance(thing, NodeProcess) and thing.alive():
                thing.stop()
        lease.release()


def start(node, peer, timeout=90, **topics):
    """Until the node is active and the peer's publishers are matched by its subscriptions."""
    assert node.wait_log(r"\]: active:", timeout), node.log()[-3000:]
    assert peer.wait_for_subscribers(20, **topics), "the node's subscriptions were never matched"
    time.sleep(1.0)  # discovery is matched on both sides a little later than the publisher reports it
