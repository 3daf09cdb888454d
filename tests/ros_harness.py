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

from soco_ros.isolation import DomainLease

REPO = Path(__file__).resolve().parents[1]
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
                 remaps: dict[str, str] | None = None, extra_args: list[str] | None = None) -> None:
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
        self.proc = subprocess.Popen(args, cwd=REPO, env=ros_env(domain, tmp), stdout=self._log,
                                     stderr=subprocess.STDOUT)

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
