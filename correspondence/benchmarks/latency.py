"""Feature-extraction latency: warm-up, then N timed forward passes per (backbone, size)."""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backbones import create_backbone
from ..features import ExtractionSettings, FeatureExtractor
from ..io import write_json
from ..preprocessing import PreprocessSettings


@dataclass(frozen=True)
class LatencyConfig:
    backbones: tuple[str, ...]
    sizes: tuple[int, ...]
    runs: int = 10
    warmup: int = 2
    random_weights: bool = True
    device: str = "cpu"
    threads: int | None = None


@dataclass(frozen=True)
class LatencyReport:
    rows: list[dict]
    markdown: str
    json_path: Path
    markdown_path: Path


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run_latency_benchmark(config: LatencyConfig, out_dir: str | Path) -> LatencyReport:
    if config.threads:
        torch.set_num_threads(config.threads)
    rng = np.random.default_rng(0)
    rows = []
    steps = [(b, s) for b in config.backbones for s in config.sizes]
    for name, size in tqdm(steps, desc="latency", unit="setting"):
        loaded = create_backbone(name, random_init=config.random_weights)
        extractor = FeatureExtractor(loaded, ExtractionSettings(PreprocessSettings(size=size)), device=config.device,
                                     cache_size=0)
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        times = []
        for i in range(config.warmup + config.runs):
            extractor.clear_cache()
            image[0, 0, 0] = i % 255  # a new image each run: no cache hit can flatter the figure
            if config.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fmap = extractor(image)
            if config.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= config.warmup:
                times.append(time.perf_counter() - start)
        median = _percentile(times, 50)
        rows.append({"backbone": name, "weights": loaded.weights.kind, "size": fmap.processed_wh[0],
                     "grid": fmap.grid_wh[0], "runs": config.runs, "median_ms": 1e3 * median,
                     "p95_ms": 1e3 * _percentile(times, 95), "fps": 1.0 / median})
    header = "| backbone | weights | size | grid | median ms | p95 ms | frames/s |\n|---|---|---|---|---|---|---|\n"
    lines = [f"| {r['backbone']} | {r['weights']} | {r['size']} | {r['grid']}x{r['grid']} | {r['median_ms']:.1f} | "
             f"{r['p95_ms']:.1f} | {r['fps']:.2f} |" for r in rows]
    machine = (f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads, device {config.device}")
    markdown = f"Feature extraction latency (preprocessing + forward), {machine}\n\n" + header + "\n".join(lines) + "\n"
    out = Path(out_dir)
    json_path = write_json(out / "latency.json", {"config": asdict(config), "machine": machine, "rows": rows})
    markdown_path = out / "latency.md"
    markdown_path.write_text(markdown, encoding="utf-8")
    return LatencyReport(rows, markdown, json_path, markdown_path)
