"""``soco bench ...``: benchmark commands that write JSON + Markdown reports."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks (reports as JSON + Markdown)")
    bench = parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    latency = bench.add_parser("latency", help="feature-extraction latency per backbone and image size")
    latency.add_argument("--backbones", default="dinov2_vits14,daisy", help="comma-separated registry names")
    latency.add_argument("--sizes", default="224,448", help="comma-separated image sizes in px")
    latency.add_argument("--runs", type=int, default=10, help="timed runs per setting (default: %(default)s)")
    latency.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs (default: %(default)s)")
    latency.add_argument("--random-weights", action="store_true", help="seeded random weights (no download)")
    latency.add_argument("--device", default="cpu")
    latency.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    latency.add_argument("--out", default="bench_out/latency")
    latency.set_defaults(handler=run_latency)


def run_latency(args: argparse.Namespace) -> int:
    from ..benchmarks.latency import LatencyConfig, run_latency_benchmark

    config = LatencyConfig(backbones=tuple(filter(None, args.backbones.split(","))),
                           sizes=tuple(int(s) for s in args.sizes.split(",") if s), runs=args.runs,
                           warmup=args.warmup, random_weights=args.random_weights, device=args.device,
                           threads=args.threads)
    report = run_latency_benchmark(config, args.out)
    print(report.markdown)
    print(f"wrote {report.json_path} and {report.markdown_path}")
    return 0
