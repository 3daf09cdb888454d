"""``soco bench latency``: backbone latency per runtime (torch eager / compiled / CUDA graphs, onnxruntime,
tensorrt) and image size, against the machine's own limit, plus the keypoint frame and the whole per-frame
pipeline per runtime.

For every (backbone, size, runtime): warm-up, then N timed forward passes of the runtime on a preprocessed batch
of one (median, p95, frames/s, the speed-up over torch eager measured in the same run) and the extractor call
around it (preprocessing included). The physical reference is the device's measured matmul throughput: with the
model's FLOPs at that size (counted by torch's FLOP counter), ``FLOPs / median`` over it is the fraction of the
machine's limit a runtime reaches. The pipeline rows time segmentation + features + matching + alignment on a
synthetic RGB-D demo/live pair (a new live frame each run, the demo's features cached as in deployment). The
keypoint-frame rows time what a robot's matcher does per camera frame: a 640 x 480 live image preprocessed,
encoded and matched against a prepared demo with 32 keypoints (``Matcher.prepare`` / ``Matcher.match_live``).
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..backbones import create_backbone
from ..backbones.registry import LoadedBackbone
from ..errors import SocoError
from ..features import ExtractionSettings, FeatureExtractor
from ..io import write_json
from ..preprocessing import effective_size
from ..runtimes.deps import tensorrt_missing
from .latency_variants import (Skip, Variant, alternating_times, exported_variant, features_of, pair_batch, parity_vs,
                               photo_pair, torch_variant)

# The torch runtime's variants, each a row of its own: eager, torch.compile, CUDA-graph replay (and both).
TORCH_VARIANTS = {"torch": {}, "torch-compile": {"compile": True}, "torch-cudagraphs": {"cuda_graphs": True},
                  "torch-compile-cudagraphs": {"compile": True, "cuda_graphs": True}}
RUNTIME_CHOICES = tuple(TORCH_VARIANTS) + ("onnxruntime", "tensorrt")
FRAME_WH = (640, 480)
FRAME_KEYPOINTS = 32


@dataclass(frozen=True)
class LatencyConfig:
    backbones: tuple[str, ...]
    sizes: tuple[int, ...]
    runs: int = 10
    warmup: int = 2
    random_weights: bool = True
    device: str = "cpu"
    threads: int | None = None
    runtimes: tuple[str, ...] = ("torch",)
    fp16: bool = False
    weights: str | None = None
    onnx_provider: str = "cpu"
    pipeline: bool = True
    models_dir: str | None = None  # where exported models go (default: <out>/models)
    # fp32 | bf16 | fp16 | auto | int8, each runtime at each it supports (empty: fp16 with ``fp16``, else fp32)
    precisions: tuple[str, ...] = ()
    frames: str = "all"  # keypoint-frame / pipeline rows for: all | default (torch fp32 and torch auto only)
    # Random weights only: set every LayerScale (DINOv2's ls1/ls2 gamma, 1e-5 at init) to this value. At init each
    # block adds ~1e-5 of the residual stream, so no reduced-precision error inside the blocks can show in the
    # parity columns; 1.0 lets the blocks count, as they do in trained weights. None: the init as it is.
    layer_scale: float | None = None

    @property
    def precision_list(self) -> tuple[str, ...]:
        return self.precisions or (("fp16",) if self.fp16 else ("fp32",))


@dataclass(frozen=True)
class LatencyReport:
    rows: list[dict]
    markdown: str
    json_path: Path
    markdown_path: Path
    pipeline_rows: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    plot_path: Path | None = None


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[int], object], runs: int, warmup: int, device: str) -> list[float]:
    """Seconds of ``runs`` calls after ``warmup`` untimed ones (the CUDA queue drained around each)."""
    times = []
    for i in range(warmup + runs):
        _sync(device)
        start = time.perf_counter()
        fn(i)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def matmul_throughput(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
                      budget_s: float = 0.6) -> dict:
    """Measured dense matmul GFLOP/s of the device (the best of repeated ``n x n`` products)."""
    n = n or (4096 if str(device).startswith("cuda") else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    best, spent = float("inf"), 0.0
    while spent < budget_s or best == float("inf"):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return {"gflops": 2 * n ** 3 / best / 1e9, "n": n, "dtype": str(dtype).replace("torch.", "")}


def model_flops(loaded: LoadedBackbone, size: int) -> float | None:
    """FLOPs of one forward pass at ``size`` px (matmuls, convolutions and attention, via torch's counter).

    Attention is counted on the explicit softmax(QK^T)V path: the counter does not see every fused CPU kernel."""
    from torch.utils.flop_counter import FlopCounterMode
    module = loaded.module.to("cpu").eval()
    fused = [(m, m.fused_attn) for m in module.modules() if hasattr(m, "fused_attn")]
    images = torch.zeros(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    try:
        for m, _ in fused:
            m.fused_attn = False
        with counter, torch.no_grad():
            module.forward_dense(images)
    finally:
        for m, flag in fused:
            m.fused_attn = flag
    total = counter.get_total_flops()
    return float(total) if total else None


def vit_flops(dim: int, depth: int, tokens: int, patches: int, patch: int, mlp_ratio: float = 4.0) -> float:
    """Analytical ViT forward FLOPs (2 per multiply-add): patch embedding, qkv/proj/MLP matmuls, attention."""
    embed = 2 * patches * 3 * patch * patch * dim
    per_block = 2 * tokens * dim * dim * (4 + 2 * mlp_ratio) + 4 * tokens * tokens * dim
    return float(embed + depth * per_block)


def set_layer_scale(module: torch.nn.Module, value: float) -> int:
    """Fill every LayerScale gamma (parameters named ``*.gamma``) with ``value``; returns how many."""
    count = 0
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith(".gamma"):
                param.fill_(value)
                count += 1
    return count


def _variants(loaded: LoadedBackbone, size: int, config: LatencyConfig, models: Path, skipped: list) -> list[Variant]:
    """Every (runtime, precision) of the config that can run here; the others go to ``skipped`` with the reason."""
    variants = []
    cuda = config.device.startswith("cuda")
    for runtime_name in config.runtimes:
        for precision in config.precision_list:
            key = {"backbone": loaded.spec.name, "size": size, "runtime": runtime_name, "precision": precision}
            try:
                if runtime_name in TORCH_VARIANTS:
                    if TORCH_VARIANTS[runtime_name].get("cuda_graphs") and not cuda:
                        raise Skip("CUDA graphs need a CUDA device (run with --device cuda)")
                    variants.append(torch_variant(runtime_name, TORCH_VARIANTS[runtime_name], precision, loaded,
                                                  size, config.device))
                    continue
                if runtime_name == "tensorrt":
                    missing = tensorrt_missing()
                    if missing:
                        raise Skip("; ".join(missing))
                    options = {}
                    device = config.device if cuda else "cuda"
                else:
                    options = {"provider": config.onnx_provider, "threads": config.threads}
                    device = config.device
                variants.append(exported_variant(runtime_name, precision, loaded, size, models, options, device))
            except (Skip, SocoError) as exc:
                skipped.append({**key, "reason": str(exc)})
    return variants


def _row(variant: Variant, loaded: LoadedBackbone, size: int, times: list[float], median: float, base: float | None,
         config: LatencyConfig, rng, flops_cache: dict, peaks: dict) -> dict:
    """The backbone figures of one variant (forward timed alternately with the others, then extraction)."""
    extractor = FeatureExtractor(loaded, variant.settings, device=config.device, cache_size=0,
                                 runtime=variant.runtime, precision=variant.choice)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)

    def extract(i: int) -> None:
        image[0, 0, 0] = i % 251  # a new image each run: no cache hit can flatter the figure
        extractor(image)

    extract_times = timed(extract, config.runs, 1, config.device)
    side = extractor.describe()["effective_image_size"]
    if (loaded.spec.name, side) not in flops_cache:
        flops_cache[(loaded.spec.name, side)] = model_flops(loaded, side)
    flops = flops_cache[(loaded.spec.name, side)]
    tag = variant.label.split("(")[-1].rstrip(")")
    peak = peaks.get(tag, peaks["fp32"])["gflops"]
    achieved = flops / median / 1e9 if flops else None
    described = variant.runtime.describe()
    return {"backbone": loaded.spec.name, "weights": loaded.weights.kind, "size": side,
            "grid": side // loaded.spec.contract.patch_size, "runtime": variant.runtime_name,
            "precision": variant.label, "precision_record": variant.choice.as_dict() if variant.choice else None,
            "provider": ",".join(described.get("providers_in_use", [])) or described.get("device", config.device),
            "runs": config.runs, "median_ms": 1e3 * median, "p95_ms": 1e3 * _percentile(times, 95),
            "fps": 1.0 / median, "extract_median_ms": 1e3 * _percentile(extract_times, 50),
            "speedup_vs_torch": base / median if base else None,
            "gflop": flops / 1e9 if flops else None, "achieved_gflops": achieved,
            "peak_fraction": achieved / peak if achieved else None, "runtime_record": described}


def _trial_frames(size: int):
    """A synthetic RGB-D demo (with keypoints) and a live frame of the same object after a known motion."""
    from ..demo_spec import DemoSpec
    from ..io import KeypointSet, NamedPoint
    from ..world.render import RenderSettings
    from .alignment import AlignmentBenchConfig, make_trial

    config = AlignmentBenchConfig(trials=1, size=size)
    rng = np.random.default_rng(0)
    for trial, category in enumerate(config.categories * 2):
        obj, demo_view, live_view, _, _ = make_trial(rng, category, trial, config, RenderSettings(size, size))
        visible = [(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, demo_view.keypoints_xy,
                                                           demo_view.keypoints_visible) if v]
        if len(visible) >= 4:
            demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, demo_view.mask,
                            KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None)
            return demo, live_view
    raise Skip("no synthetic trial with 4 visible keypoints")


def _pipeline_row(extractor: FeatureExtractor, frames, config: LatencyConfig) -> dict:
    from ..api import Matcher
    from ..keypoint_matching import MatchSettings
    from ..pipeline import TransferPipeline
    from ..segmentation import DepthForeground

    demo, live = frames
    pipeline = TransferPipeline(demo, Matcher(extractor, MatchSettings()), mask_source=DepthForeground((0.05, 5.0)))
    rgb = live.rgb.copy()
    stages: dict[str, list[float]] = {}
    totals = []
    for i in range(config.warmup + config.runs):
        rgb[0, 0, 0] = i % 251  # a new live frame each run: its features are never a cache hit
        _sync(config.device)
        start = time.perf_counter()
        result = pipeline.process(rgb, live.depth, live.intrinsics)
        _sync(config.device)
        if i >= config.warmup:
            totals.append(time.perf_counter() - start)
            for key, value in result.timings_s.items():
                stages.setdefault(key, []).append(value)
    median = _percentile(totals, 50)
    return {"stages_median_ms": {k: 1e3 * _percentile(v, 50) for k, v in stages.items()},
            "total_median_ms": 1e3 * median, "total_p95_ms": 1e3 * _percentile(totals, 95), "fps": 1.0 / median,
            "aligned": bool(result.success)}


def _frame_images(size: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """A textured 640 x 480 demo, a shifted live frame and 32 demo keypoints on a grid."""
    import cv2
    rng = np.random.default_rng(1)
    w, h = FRAME_WH
    noise = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    demo = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    live = np.roll(demo, (9, 13), axis=(0, 1)).copy()
    xs, ys = np.meshgrid(np.linspace(60, w - 60, 8), np.linspace(60, h - 60, FRAME_KEYPOINTS // 8))
    keypoints = {"keypoints": [{"name": f"k{i}", "xy": [float(x), float(y)]}
                               for i, (x, y) in enumerate(zip(xs.ravel(), ys.ravel()))]}
    return demo, live, keypoints


def _keypoint_frame_row(extractor: FeatureExtractor, config: LatencyConfig) -> dict:
    """Median ms of one live frame, the demo prepared once: preprocess + features + 32-keypoint matching (coarse:
    the device's share, what a CUDA graph replays), and the same with the default refinement at the original
    resolution (host work after it)."""
    from ..api import Matcher
    from ..keypoint_matching import MatchSettings
    demo, live, keypoints = _frame_images()
    out: dict = {"frame_wh": list(FRAME_WH), "frame_keypoints": FRAME_KEYPOINTS}
    for prefix, settings in (("frame", MatchSettings(refine=False)), ("refined_frame", MatchSettings())):
        matcher = Matcher(extractor, settings)
        query = matcher.prepare(demo, keypoints)
        stages: dict[str, list[float]] = {}

        def frame(i: int) -> None:
            live[0, 0, 0] = i % 251
            result = matcher.match_live(query, live)
            for key, value in result.timings_s.items():
                stages.setdefault(key, []).append(value)

        times = timed(frame, config.runs, config.warmup, config.device)
        out.update({f"{prefix}_median_ms": 1e3 * _percentile(times, 50), f"{prefix}_p95_ms": 1e3 * _percentile(times, 95),
                    f"{prefix}_stages_median_ms": {k: 1e3 * _percentile(v[config.warmup:], 50)
                                                   for k, v in stages.items()}})
    return out


def run_latency_benchmark(config: LatencyConfig, out_dir: str | Path, progress: bool = True) -> LatencyReport:
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(out_dir)
    models = Path(config.models_dir) if config.models_dir else out / "models"
    rng = np.random.default_rng(0)
    peaks = {"fp32": matmul_throughput(config.device, torch.float32)}
    if config.device.startswith("cuda"):
        peaks["fp16"] = matmul_throughput(config.device, torch.float16)
    if {"bf16", "auto"} & set(config.precision_list):
        peaks["bf16"] = matmul_throughput(config.device, torch.bfloat16)
    rows, pipeline_rows, skipped = [], [], []
    frames_cache: dict[int, object] = {}
    loaded_cache: dict[str, LoadedBackbone] = {}
    flops_cache: dict[tuple[str, int], float | None] = {}
    pair, pair_source = photo_pair()
    steps = [(b, s) for b in config.backbones for s in config.sizes]
    for name, size in tqdm(steps, desc="latency", unit="setting", disable=not progress):
        if name not in loaded_cache:
            loaded_cache[name] = create_backbone(name, weights=config.weights, random_init=config.random_weights)
            if config.layer_scale is not None and loaded_cache[name].weights.kind == "random":
                set_layer_scale(loaded_cache[name].module, config.layer_scale)
        loaded = loaded_cache[name]
        variants = _variants(loaded, size, config, models, skipped)
        if not variants:
            continue
        side = effective_size(size, loaded.spec.contract.patch_size, variants[0].settings.preprocess.size_policy)
        batch = torch.randn(1, 3, side, side, device=config.device)

        def forward_of(variant: Variant) -> Callable[[int], None]:
            def forward(_: int) -> None:
                with torch.no_grad():
                    variant.runtime.forward(batch, variant.settings.kind, variant.settings.layers)
            return forward

        all_times = alternating_times([forward_of(v) for v in variants], config.runs, config.warmup,
                                      lambda: _sync(config.device))
        medians = [_percentile(t, 50) for t in all_times]
        base = next((m for v, m in zip(variants, medians) if v.runtime_name == "torch" and v.requested == "fp32"),
                    None)
        pair_images = pair_batch(loaded, size, pair, config.device)
        reference = next((features_of(v, pair_images) for v in variants
                          if v.runtime_name == "torch" and v.requested == "fp32"), None)
        base_pipeline = None
        for variant, times, median in zip(variants, all_times, medians):
            row = _row(variant, loaded, size, times, median, base, config, rng, flops_cache, peaks)
            if reference is not None:
                row["parity_vs_fp32"] = {**parity_vs(reference, features_of(variant, pair_images)),
                                         "images": pair_source}
            rows.append(row)
            if config.frames != "all" and not (variant.runtime_name == "torch" and variant.requested in ("fp32", "auto")):
                continue
            extractor = FeatureExtractor(loaded, variant.settings, device=config.device, cache_size=0,
                                         runtime=variant.runtime, precision=variant.choice)
            row.update(_keypoint_frame_row(extractor, config))
            row["frame_over_backbone"] = row["frame_median_ms"] / (1e3 * median)
            if config.pipeline:
                key = {"backbone": name, "size": size, "runtime": variant.runtime_name, "precision": variant.label}
                try:
                    if size not in frames_cache:
                        frames_cache[size] = _trial_frames(size)
                    prow = _pipeline_row(extractor, frames_cache[size], config)
                except (Skip, SocoError) as exc:
                    skipped.append({**key, "reason": f"pipeline: {exc}"})
                    continue
                if variant.runtime_name == "torch" and variant.requested == "fp32":
                    base_pipeline = prow["total_median_ms"]
                pipeline_rows.append({**key, "size": row["size"], **prow, "speedup_vs_torch":
                                      base_pipeline / prow["total_median_ms"] if base_pipeline else None})
    gpu = torch.cuda.get_device_name(torch.device(config.device)) if config.device.startswith("cuda") else None
    machine = (f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} threads, device {config.device}"
               + (f" ({gpu})" if gpu else ""))
    markdown = _markdown(rows, pipeline_rows, skipped, peaks, machine, config)
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_json(out / "latency.json", {"config": asdict(config), "machine": machine, "gpu": gpu,
                                                  "torch": torch.__version__, "matmul_peak": peaks,
                                                  "rows": rows, "pipeline": pipeline_rows, "skipped": skipped})
    markdown_path = out / "latency.md"
    markdown_path.write_text(markdown, encoding="utf-8")
    plot_path = _plot(rows, out / "latency.png")
    return LatencyReport(rows, markdown, json_path, markdown_path, pipeline_rows, skipped, plot_path)


def _fmt(value, spec: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _markdown(rows, pipeline_rows, skipped, peaks, machine, config: LatencyConfig) -> str:
    peak_text = ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s ({v['n']}x{v['n']} matmul)" for k, v in peaks.items())
    lines = [f"Backbone latency per runtime, {machine}", "",
             *([f"Random weights with every LayerScale set to {config.layer_scale} (--layer-scale).", ""]
               if config.layer_scale is not None else []),
             f"Measured matmul peak: {peak_text}. Forward = the runtime on a preprocessed batch of 1 "
             f"({config.warmup} warm-up + {config.runs} timed runs); extract = preprocessing + forward; "
             "x torch = torch eager median / this median (same run); % peak = model FLOPs / forward median / "
             "measured matmul peak.", "",
             f"Keypoint frame = a {FRAME_WH[0]} x {FRAME_WH[1]} live image preprocessed, encoded and matched against "
             f"a prepared demo with {FRAME_KEYPOINTS} keypoints (coarse cell matches); / backbone = frame median / "
             "forward median; + refinement = the same frame with the default refinement at the original resolution "
             "(host work).", "",
             "Variants of one backbone and size are timed alternately (one forward of each in turn), so machine load "
             "drifts equally over all of them. x torch = torch fp32 median / this median. vs fp32 = features of a "
             "photo pair against torch fp32: min / mean per-patch cosine and the share of identical argmax matches "
             f"image 1 -> 2 ({_pair_source(rows)}).", "",
             "| backbone | weights | size | grid | runtime | precision | provider | median ms | p95 ms | frames/s | "
             "x torch | vs fp32: min / mean cos | argmax agree | GFLOP | GFLOP/s | % peak | extract ms | "
             "keypoint frame ms | / backbone | + refinement ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        parity = r.get("parity_vs_fp32")
        cos = f"{parity['min_cosine']:.5f} / {parity['mean_cosine']:.5f}" if parity else "-"
        lines.append(f"| {r['backbone']} | {r['weights']} | {r['size']} | {r['grid']}x{r['grid']} | {r['runtime']} | "
                     f"{r['precision']} | {r['provider']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | {r['fps']:.1f} | "
                     f"{_fmt(r['speedup_vs_torch'], '.2f')} | {cos} | "
                     f"{_fmt(parity and 100 * parity['argmax_agreement'], '.1f')}{' %' if parity else ''} | "
                     f"{_fmt(r['gflop'], '.2f')} | "
                     f"{_fmt(r['achieved_gflops'], '.1f')} | {_fmt(r['peak_fraction'] and 100 * r['peak_fraction'], '.1f')} | "
                     f"{r['extract_median_ms']:.2f} | {_fmt(r.get('frame_median_ms'), '.2f')} | "
                     f"{_fmt(r.get('frame_over_backbone'), '.2f')} | {_fmt(r.get('refined_frame_median_ms'), '.2f')} |")
    if pipeline_rows:
        lines += ["", "Whole per-frame pipeline (synthetic RGB-D trial: support plane + depth segmentation + features + "
                      "matching + RANSAC alignment; demo features cached), medians in ms:", "",
                  "| backbone | size | runtime | precision | support plane | segmentation | features | matching | "
                  "alignment | total | p95 | frames/s | x torch | aligned |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in pipeline_rows:
            s = r["stages_median_ms"]
            lines.append(f"| {r['backbone']} | {r['size']} | {r['runtime']} | {r['precision']} | "
                         f"{s.get('support_plane', 0):.1f} | {s.get('segmentation', 0):.1f} | "
                         f"{s.get('features', 0):.1f} | {s.get('matching', 0):.1f} | {s.get('alignment', 0):.1f} | "
                         f"{r['total_median_ms']:.1f} | {r['total_p95_ms']:.1f} | {r['fps']:.2f} | "
                         f"{_fmt(r['speedup_vs_torch'], '.2f')} | {'yes' if r['aligned'] else 'no'} |")
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {s['backbone']} {s['size']} px {s['runtime']}"
                                         f"{' ' + s['precision'] if s.get('precision') else ''}: {s['reason']}"
                                         for s in skipped]
    return "\n".join(lines) + "\n"


def _pair_source(rows: list[dict]) -> str:
    return next((r["parity_vs_fp32"]["images"] for r in rows if r.get("parity_vs_fp32")), "no torch fp32 row")


def _plot(rows: list[dict], path: Path) -> Path | None:
    if not rows:
        return None
    from ..viz import save_line_plot
    series: dict[str, tuple[list, list]] = {}
    for r in rows:
        xs, ys = series.setdefault(f"{r['backbone']} {r['runtime']} {r['precision']}", ([], []))
        xs.append(r["size"])
        ys.append(r["median_ms"])
    return save_line_plot(series, path, "image size (px)", "forward median (ms)", "Backbone latency per runtime")
