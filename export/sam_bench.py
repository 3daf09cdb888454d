"""SAM image-encoder latency per precision: fp32, bf16 autocast and the verified ONNX Runtime export, timed
alternately in one run, with each one's parity against fp32 (embedding cosine, mask IoU on point prompts).

``python -m export.sam_bench --model sam2.1_hiera_t --size 1024 --runs 3 --out bench_out/sam_encoder`` writes
``sam_encoder.json`` and ``sam_encoder.md``. Random weights (the sam2 package's config, or segment-anything's
registry for ``vit_b``); the encoder's cost does not depend on the weights. Lives in ``export/`` because it exports.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from correspondence.benchmarks.latency_variants import alternating_times
from correspondence.photo_pair import image_pair
from correspondence.runtimes.precision import cpu_bf16_support
from correspondence.runtimes.sam_encoder import AutocastEncoder, OnnxEncoder, encoder_kind, encoder_parity

from .sam_onnx import export_sam_encoder

SAM2_CONFIGS = {"sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
                "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml"}


def build_model(name: str, size: int):
    """A random-init SAM 2.1 (``sam2.1_hiera_t`` ...) at ``size`` px or segment-anything ``vit_b`` (1024 px)."""
    torch.manual_seed(0)
    if name in SAM2_CONFIGS:
        from sam2.build_sam import build_sam2
        return build_sam2(SAM2_CONFIGS[name], ckpt_path=None, device="cpu",
                          hydra_overrides_extra=[f"++model.image_size={size}"]).eval()
    from segment_anything import sam_model_registry
    return sam_model_registry[name](checkpoint=None).eval()


VARIANTS = ("fp32", "bf16", "onnx", "onnx-int8")


def run(name: str, size: int, runs: int, warmup: int, out: Path, parity: bool = True,
        variants_wanted: tuple[str, ...] = VARIANTS[:3]) -> dict:
    model = build_model(name, size)
    kind = encoder_kind(model)
    side = model.image_size if kind == "sam2" else model.image_encoder.img_size
    out.mkdir(parents=True, exist_ok=True)
    variants = {"torch fp32": model.image_encoder}
    if "bf16" in variants_wanted:
        variants["torch bf16 autocast"] = AutocastEncoder(model.image_encoder)
    reports = {}
    for precision in [p for p, v in (("fp32", "onnx"), ("int8", "onnx-int8")) if v in variants_wanted]:
        path, reports[precision] = export_sam_encoder(model, out / f"{name}_{side}_encoder_{precision}.onnx",
                                                      log=print, precision=precision)
        if reports[precision].passed:
            variants[f"onnxruntime {precision} (CPU EP)"] = OnnxEncoder(path, kind)
    images = torch.randn(1, 3, side, side)

    def call(encoder):
        def fn(_: int) -> None:
            with torch.no_grad():
                encoder(images)
        return fn

    times = alternating_times([call(e) for e in variants.values()], runs, warmup, lambda: None)
    base = float(np.median(times[0]))
    pair = list(image_pair(side=512)) if parity else None
    rows = []
    for (label, encoder), t in zip(variants.items(), times):
        median = float(np.median(t))
        row = {"encoder": label, "median_ms": 1e3 * median, "min_ms": 1e3 * min(t), "runs": len(t),
               "time_vs_fp32": median / base}
        if parity and label != "torch fp32":
            row["parity"] = encoder_parity(model, encoder, pair)
        rows.append(row)
    result = {"model": name, "kind": kind, "size": side, "weights": "random", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "cpu": cpu_bf16_support().describe(),
              "machine": platform.processor() or platform.machine(),
              "onnx_verification": {k: r.as_dict() for k, r in reports.items()},
              "rows": rows, "command": f"python -m export.sam_bench --model {name} --size {size} --runs {runs} "
                         f"--variants {','.join(variants_wanted)}"}
    (out / "sam_encoder.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "sam_encoder.md").write_text(markdown(result), encoding="utf-8")
    return result


def markdown(result: dict) -> str:
    lines = [f"{result['model']} image encoder at {result['size']} px, random weights, torch {result['torch']}, "
             f"{result['threads']} threads, CPU: {result['cpu']}. Variants timed alternately (one call of each in "
             "turn). Parity against fp32 on the photo-like pair: embedding cosine per location, mask IoU of 9 point "
             "prompts per image.", "",
             "| encoder | median ms | min ms | time / fp32 | min / mean embedding cosine | min / mean mask IoU |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        p = r.get("parity")
        cos = f"{p['min_cosine']:.5f} / {p['mean_cosine']:.5f}" if p else "-"
        iou = f"{p['min_mask_iou']:.4f} / {p['mean_mask_iou']:.4f}" if p else "-"
        lines.append(f"| {r['encoder']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['time_vs_fp32']:.2f} | "
                     f"{cos} | {iou} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam2.1_hiera_t", help="sam2.1_hiera_t | sam2.1_hiera_s | vit_b")
    parser.add_argument("--size", type=int, default=1024, help="SAM 2 input side in px (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-parity", dest="parity", action="store_false",
                        help="skip the parity runs of the timed variants (the ONNX exports are verified anyway)")
    parser.add_argument("--variants", default="fp32,bf16,onnx",
                        help=f"comma-separated, fp32 always: {', '.join(VARIANTS)} (default: %(default)s)")
    parser.add_argument("--out", default="bench_out/sam_encoder")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = run(args.model, args.size, args.runs, args.warmup, Path(args.out), args.parity,
                 tuple(v for v in args.variants.split(",") if v))
    print(markdown(result))
    print(f"wrote {args.out}/sam_encoder.json and sam_encoder.md ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
