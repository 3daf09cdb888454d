"""``soco bench latency`` produces a well-formed report on a tiny model (1 run; the benchmark itself is not a test)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from correspondence.backbones import create_backbone  # noqa: E402
from correspondence.benchmarks.latency import model_flops, vit_flops  # noqa: E402
from correspondence.cli import main  # noqa: E402


def test_flop_count_matches_the_analytical_vit_formula():
    tiny = create_backbone("test_vit_tiny")
    grid = 112 // 14
    assert model_flops(tiny, 112) == vit_flops(dim=64, depth=4, tokens=grid * grid + 1, patches=grid * grid, patch=14)


def test_latency_command_reports_runtimes_ratio_peak_and_pipeline(tmp_path, capsys):
    try:
        import open3d  # noqa: F401
        pipeline = []
    except ImportError:
        pipeline = ["--no-pipeline"]
    out = tmp_path / "lat"
    code = main(["bench", "latency", "--backbone", "test_vit_tiny", "--sizes", "56", "--runtimes",
                 "torch,onnxruntime,tensorrt", "--runs", "1", "--warmup", "0", "--out", str(out), *pipeline])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| backbone | weights | size |" in printed and "% peak" in printed
    report = json.loads((out / "latency.json").read_text())
    assert report["matmul_peak"]["fp32"]["gflops"] > 0
    rows = {r["runtime"]: r for r in report["rows"]}
    assert set(rows) >= {"torch", "onnxruntime"}
    assert rows["torch"]["speedup_vs_torch"] == 1.0
    onnx_row = rows["onnxruntime"]
    assert onnx_row["speedup_vs_torch"] == pytest.approx(rows["torch"]["median_ms"] / onnx_row["median_ms"])
    assert onnx_row["provider"] == "CPUExecutionProvider" and onnx_row["size"] == 56 and onnx_row["grid"] == 4
    assert onnx_row["gflop"] == pytest.approx(vit_flops(64, 4, 17, 16, 14) / 1e9)
    assert 0 < onnx_row["peak_fraction"] == pytest.approx(
        onnx_row["achieved_gflops"] / report["matmul_peak"]["fp32"]["gflops"])
    if "tensorrt" not in rows:
        assert any(s["runtime"] == "tensorrt" and "tensorrt" in s["reason"] for s in report["skipped"])
    if not pipeline:
        stages = {r["runtime"]: r["stages_median_ms"] for r in report["pipeline"]}
        assert set(stages) == {"torch", "onnxruntime"}
        assert set(stages["onnxruntime"]) == {"support_plane", "segmentation", "features", "matching", "alignment"}
    assert (out / "latency.md").is_file() and (out / "latency.png").stat().st_size > 1000
    assert (out / "models" / "test_vit_tiny_56_fp32.onnx.verify.json").is_file()


def test_latency_command_keeps_the_makefile_flags():
    from correspondence.cli import build_parser
    args = build_parser().parse_args(["bench", "latency", "--backbones", "dinov2_vits14,daisy", "--sizes", "224,448",
                                      "--random-weights", "--out", "bench_out/latency"])
    assert args.backbones == "dinov2_vits14,daisy" and args.runtimes == "torch" and args.random_weights


def test_unknown_runtime_is_rejected(tmp_path, capsys):
    assert main(["bench", "latency", "--backbone", "test_vit_tiny", "--runtimes", "torch,openvino",
                 "--out", str(tmp_path)]) == 1
    assert "openvino" in capsys.readouterr().err


def test_latency_rows_for_every_precision_on_every_runtime_in_one_run(tmp_path, capsys):
    pytest.importorskip("onnxruntime.quantization")
    out = tmp_path / "lat"
    code = main(["bench", "latency", "--backbone", "test_vit_tiny", "--sizes", "56", "--runtimes",
                 "torch,onnxruntime", "--precisions", "fp32,bf16,auto,int8", "--frames", "default", "--no-pipeline", "--layer-scale", "1",
                 "--runs", "1", "--warmup", "0", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "latency.json").read_text())
    rows = {(r["runtime"], r["precision"].split(" ")[0]): r for r in report["rows"]}
    assert set(rows) == {("torch", "fp32"), ("torch", "bf16"), ("torch", "auto"), ("onnxruntime", "fp32"),
                         ("onnxruntime", "int8")}
    skipped = {(s["runtime"], s["precision"]) for s in report["skipped"]}
    assert skipped == {("torch", "int8"), ("onnxruntime", "bf16"), ("onnxruntime", "auto")}
    reference = rows[("torch", "fp32")]
    assert reference["speedup_vs_torch"] == 1.0
    assert reference["parity_vs_fp32"]["min_cosine"] == pytest.approx(1.0)
    assert reference["parity_vs_fp32"]["argmax_agreement"] == 1.0
    for key in (("torch", "bf16"), ("onnxruntime", "int8")):  # reduced precisions measured, not assumed
        parity = rows[key]["parity_vs_fp32"]  # with the blocks counting (--layer-scale 1) their error shows
        assert 0.9 < parity["min_cosine"] <= parity["mean_cosine"] < 1.0 - 1e-7 and parity["matches"] > 0
    auto = rows[("torch", "auto")]
    assert auto["precision"] in ("auto (fp32)", "auto (bf16)") and auto["precision_record"]["requested"] == "auto"
    assert "frame_median_ms" in auto and "frame_median_ms" not in rows[("torch", "bf16")]
    assert rows[("onnxruntime", "int8")]["runtime_record"]["precision"] == "int8"
    assert "argmax agree" in capsys.readouterr().out
