"""``make gpu-check``: the GPU tier, the latency targets and the SOCO encoding throughput, in one short run.

Runs from the source tree (``PYTHONPATH=.``) on a bare GPU machine with torch, timm, numpy, OpenCV and scikit-image;
nothing is installed. Stages, each bounded, in order of importance:

1. ``pytest -m gpu tests/test_gpu.py`` (CPU vs CUDA parity, CUDA graphs, fp16, pipeline, SOCO evaluator, functional
   head, node processor; parts whose packages are absent skip with the reason);
2. ``soco bench latency --device cuda --fp16``: ViT-S/14 at 224 and 448 px, eager / CUDA graphs (and
   ``torch.compile`` unless ``--no-compile``), backbone and keypoint-frame rows;
3. ``soco bench soco --device cuda --fp16`` with ViT-B/14 on the 840 px (60-patch) protocol over a generated set of
   640 x 480 textured images: images decoded and encoded per second.

Writes ``bench_out/gpu_check/summary.md`` (+ the reports of each stage) and exits non-zero when a stage fails or a
target is missed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = {"backbone_ms": 1.5, "frame_ms": 2.5, "frame_over_backbone": 1.5, "soco_images_per_s": 100.0}


def stage_tests(out: Path, log) -> bool:
    try:
        import pytest  # noqa: F401
    except ImportError:
        log("GPU tier: SKIPPED, pytest is not importable here (pip install pytest, or carry it on PYTHONPATH)")
        return True
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-q", "-rs",
                             "-p", "no:cacheprovider", f"--junitxml={out / 'gpu_tests.xml'}"],
                            cwd=REPO, capture_output=True, text=True)
    (out / "gpu_tests.txt").write_text(result.stdout + result.stderr)
    tail = [line for line in result.stdout.strip().splitlines() if line.strip()][-12:]
    log(f"GPU tier ({time.time() - start:.0f} s): exit {result.returncode}\n    " + "\n    ".join(tail))
    return result.returncode == 0


def stage_latency(out: Path, log, compile_rows: bool) -> tuple[bool, dict]:
    from correspondence.cli import main
    runtimes = "torch,torch-cudagraphs" + (",torch-compile" if compile_rows else "")
    start = time.time()
    code = main(["bench", "latency", "--backbones", "dinov2_vits14", "--random-weights", "--sizes", "224,448",
                 "--device", "cuda", "--fp16", "--runtimes", runtimes, "--runs", "50", "--warmup", "10",
                 "--no-pipeline", "--out", str(out / "latency")])
    report = json.loads((out / "latency" / "latency.json").read_text())
    rows = {(r["runtime"], r["size"]): r for r in report["rows"]}
    best = rows.get(("torch-cudagraphs", 448), {})
    figures = {"backbone_ms": best.get("median_ms"), "frame_ms": best.get("frame_median_ms"),
               "frame_over_backbone": best.get("frame_over_backbone"),
               "refined_frame_ms": best.get("refined_frame_median_ms"), "gpu": report.get("gpu"),
               "torch": report.get("torch")}
    log(f"latency ({time.time() - start:.0f} s): exit {code}; ViT-S/14 @448 fp16 CUDA graphs: backbone "
        f"{_f(figures['backbone_ms'])} ms, keypoint frame {_f(figures['frame_ms'])} ms "
        f"({_f(figures['frame_over_backbone'])} x backbone), with refinement {_f(figures['refined_frame_ms'])} ms; "
        f"eager {_f(rows.get(('torch', 448), {}).get('median_ms'))} ms")
    return code == 0, figures


def stage_soco(out: Path, log, images: int) -> tuple[bool, dict]:
    from correspondence.cli import main
    sys.path.insert(0, str(REPO / "tests"))
    from test_gpu import write_textured_soco
    data = out / "soco_data"
    if not data.exists():
        write_textured_soco(data, pairs=images // 2, size=(640, 480))
    start = time.time()
    code = main(["bench", "soco", "--root", str(data), "--backbone", "dinov2_vitb14", "--random-weights",
                 "--protocol", "soco-grid60", "--device", "cuda", "--fp16", "--task", "cc,soc", "--no-progress",
                 "--out", str(out / "soco")])
    results = json.loads((out / "soco" / "results.json").read_text())
    timing = results.get("timing", {})
    encoded = timing.get("images_encoded")
    seconds = timing.get("encode_seconds") or timing.get("features_seconds")
    rate = timing.get("images_per_second") or (encoded / seconds if encoded and seconds else None)
    log(f"SOCO ViT-B/14 @840 px on cuda ({time.time() - start:.0f} s): exit {code}; {encoded} images encoded in "
        f"{_f(seconds)} s = {_f(rate)} images/s (waits: decode {_f(timing.get('decode_wait_seconds'))} s, disk "
        f"{_f(timing.get('write_wait_seconds'))} s; untimed warm-up {_f(timing.get('stages', {}).get('warm_up'))} s)"
        f"; timing record {json.dumps(timing)}")
    return code == 0, {"soco_images_per_s": rate, "soco_timing": timing}


def _f(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_out/gpu_check")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (slow to compile)")
    parser.add_argument("--soco-images", type=int, default=400)
    parser.add_argument("--only", default="tests,latency,soco")
    args = parser.parse_args()
    import torch
    if not torch.cuda.is_available():
        print("gpu-check: CUDA is not available on this machine; nothing to check", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(message: str) -> None:
        print(message, flush=True)
        lines.append(message)

    log(f"gpu-check on {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    ok, figures = True, {}
    stages = args.only.split(",")
    if "tests" in stages:
        ok &= stage_tests(out, log)
    if "latency" in stages:
        passed, found = stage_latency(out, log, not args.no_compile)
        ok &= passed
        figures.update(found)
    if "soco" in stages:
        passed, found = stage_soco(out, log, args.soco_images)
        ok &= passed
        figures.update(found)
    missed = [f"{k} {_f(figures.get(k))} (target {'>=' if k == 'soco_images_per_s' else '<='} {v})"
              for k, v in TARGETS.items() if k in figures and figures[k] is not None
              and ((figures[k] < v) if k == "soco_images_per_s" else (figures[k] > v))]
    log("targets: " + ("all met" if not missed else "missed: " + "; ".join(missed)))
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(figures, indent=1, default=str))
    return 0 if ok and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
