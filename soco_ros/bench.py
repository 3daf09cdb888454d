"""End-to-end latency of the node: image stamp -> ``~/matches`` received by a subscriber, per image size.

    python -m soco_ros.bench --sizes 224 448 --backbone daisy --rate 2 --frames 40 --out bench_out

For each size the node runs as a subprocess (``python -m soco_ros.node``) on a private DDS domain restricted to
localhost; the synthetic RGB-D scene (``soco_ros.synthetic``) is published at ``--rate`` Hz (slow enough that the
node is idle when a frame arrives, so the figure is the latency of one frame, not of a queue), each frame
slightly different so no feature cache can serve it. Writes ``ros_latency.json`` and ``ros_latency.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _node(tmp: Path, domain: int, params: dict) -> tuple[subprocess.Popen, Path]:
    log = tmp / "node.log"
    args = [sys.executable, "-m", "soco_ros.node", "--ros-args", "-r", "image:=/camera/color/image_raw",
            "-r", "depth:=/camera/depth/image_raw", "-r", "camera_info:=/camera/color/camera_info"]
    for key, value in params.items():
        args += ["-p", f"{key}:={str(value).lower() if isinstance(value, bool) else value}"]
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "SOCO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    handle = open(log, "w", encoding="utf-8")
    return subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT), log


def measure(size: int, backbone: str, rate: float, frames: int, domain: int, warmup: int = 3,
            reliability: str = "reliable", transport: str = "raw") -> dict:
    """``transport`` compressed: the camera streams PNG colour and compressedDepth (image_transport), so the node
    decodes every frame; raw: sensor_msgs/Image."""
    os.environ.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                      RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
    from .peer import Peer
    from .synthetic import make_scene, varied

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        scene = make_scene(tmp / "demo", size=size)
        proc, log = _node(tmp, domain, {"demo_path": str(scene.demo_dir), "backbone": backbone, "image_size": size,
                                        "segmentation": "depth", "diagnostics_period": 0.5,
                                        "qos_reliability": reliability,
                                        **TRANSPORTS[transport]})
        peer = Peer(domain, name="soco_bench_peer", **TRANSPORTS[transport])
        try:
            deadline = time.monotonic() + 120
            while "]: active:" not in log.read_text() and time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"the node exited:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
            if not peer.wait_for_subscribers(30):
                raise RuntimeError("the node's subscriptions were never matched")
            time.sleep(1.0)
            stamps = []
            for i in range(warmup + frames):
                stamps.append(peer.send_frame(varied(scene.rgb, i), scene.depth, intrinsics=scene.intrinsics))
                time.sleep(1.0 / rate)
            time.sleep(3.0)
            received = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: t for t, m in peer.timed("matches")}
            latencies = [1e3 * (received[s] - s / 1e9) for s in stamps[warmup:] if s in received]
            diag = peer.diagnostics() or {}
        finally:
            peer.close()
            proc.send_signal(2)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    values = np.array(latencies)
    return {"size": size, "backbone": backbone, "transport": transport, "rate_hz": rate, "frames_sent": frames,
            "frames_received": len(latencies),
            "p50_ms": float(np.percentile(values, 50)) if len(values) else None,
            "p95_ms": float(np.percentile(values, 95)) if len(values) else None,
            "mean_ms": float(values.mean()) if len(values) else None,
            "node_processing_p50_ms": float(diag.get("processing_p50_ms", "nan")),
            "node_latency_p50_ms": float(diag.get("latency_p50_ms", "nan")),
            "node_frames_dropped": int(diag.get("frames_dropped", 0))}


TRANSPORTS = {"raw": {"image_transport": "raw", "depth_transport": "raw"},
              "compressed": {"image_transport": "compressed", "depth_transport": "compressedDepth"}}


def _f(value) -> str:
    return "-" if value is None or value != value else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    parser.add_argument("--backbone", default="daisy")
    parser.add_argument("--rate", type=float, default=2.0, help="frames per second sent (keep the node idle)")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--domain", type=int, default=None,
                        help="ROS_DOMAIN_ID (default: a free one, leased with a file lock: soco_ros.isolation)")
    parser.add_argument("--out", default="bench_out")
    parser.add_argument("--transports", nargs="+", default=["raw"], choices=sorted(TRANSPORTS),
                        help="how the camera streams: raw Images, or compressed (PNG colour + compressedDepth); "
                             "each is measured")
    parser.add_argument("--reliability", default="reliable", choices=("reliable", "best_effort"),
                        help="sensor QoS of the node: Fast DDS best effort loses large (448 px) frames on loopback")
    args = parser.parse_args(argv)
    import torch

    from .isolation import DomainLease

    lease = DomainLease() if args.domain is None else None
    domain = args.domain if lease is None else lease.domain
    try:  # one size after the other on the same private domain (each node is stopped before the next starts)
        rows = [measure(size, args.backbone, args.rate, args.frames, domain, reliability=args.reliability,
                        transport=transport) for transport in args.transports for size in args.sizes]
    finally:
        if lease is not None:
            lease.release()
    record = {"rows": rows, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                                       f"{torch.get_num_threads()} threads", "command": " ".join(sys.argv)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ros_latency.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(rows, indent=1))
    md = ["| backbone | size | transport | frames (received/sent) | stamp -> ~/matches p50 (ms) | p95 (ms) | "
          "node processing p50 (ms) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['backbone']} | {r['size']} | {r['transport']} | {r['frames_received']}/{r['frames_sent']} | "
                  f"{_f(r['p50_ms'])} | "
                  f"{_f(r['p95_ms'])} | {_f(r['node_processing_p50_ms'])} |")
    text = "\n".join(md) + f"\n\nCPU only: {record['machine']}; {args.rate:g} Hz, RGB-D synthetic scene, sensor QoS {args.reliability}.\n"
    (out / "ros_latency.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
