"""ONNX export of a tiny random ViT and a tiny functional head on CPU: metadata, graph properties, the parity
thresholds of the issue (cosine >= 0.9999 fp32 / 0.999 fp16, >= 99% identical argmax matches fp32, max abs error
relative to the feature scale, mask-logit parity), and only verified exports reaching the requested path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from correspondence.backbones import create_backbone  # noqa: E402
from correspondence.cli import main  # noqa: E402
from correspondence.errors import ConfigError, CorruptCheckpointError  # noqa: E402
from correspondence.functional.checkpoint import HeadCheckpoint  # noqa: E402
from correspondence.functional.model import FunctionalHead, HeadConfig  # noqa: E402
from correspondence.runtimes.metadata import VERIFICATION_KEY, ModelMetadata  # noqa: E402
from correspondence.runtimes.onnx_runtime import read_metadata  # noqa: E402
from export.onnx_export import export_backbone, export_head, mask_logit_checks  # noqa: E402
from export.staging import move_model  # noqa: E402
from export.verify import THRESHOLDS, parity_checks  # noqa: E402

SIZE = 84  # 6 x 6 grid, not the tiny ViT's native 8 x 8: the positional embedding really is resized and frozen


@pytest.fixture(scope="module")
def tiny():
    return create_backbone("test_vit_tiny")


def _check(report, name_part):
    return next(c for c in report.checks if name_part in c.name)


def test_fp32_export_passes_parity_with_metadata_and_a_static_graph(tiny, tmp_path):
    result = export_backbone(tiny, SIZE, tmp_path / "tiny.onnx", log=lambda m: None)
    report = result.report
    assert report.passed, report.text()
    assert _check(report, "min cosine").value >= THRESHOLDS["fp32"]["min_cosine"] == 0.9999
    assert _check(report, "argmax").value >= THRESHOLDS["fp32"]["argmax_agreement"] == 0.99
    assert report.details["argmax"]["matches"] == (SIZE // 14) ** 2
    assert "CPUExecutionProvider" in report.candidate
    saved = json.loads(result.report_path.read_text())
    assert saved["passed"] is True and result.report_path.name == "tiny.onnx.verify.json"
    assert result.deployed and result.path == result.requested == tmp_path / "tiny.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.onnx", "tiny.onnx.verify.json"]  # staging removed
    error = _check(report, "max abs error")
    assert error.threshold == THRESHOLDS["fp32"]["max_relative_error"] and 0 < error.value <= error.threshold

    model = onnx.load(str(result.path))
    ops = {node.op_type for node in model.graph.node}
    assert "LayerNormalization" in ops  # opset >= 17: one op per LayerNorm
    assert not ops & {"Resize", "Upsample"}  # the positional embedding is a constant, not a bicubic resize
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["features"]
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, SIZE, SIZE]

    meta = read_metadata(result.path)
    assert (meta.backbone, meta.size, meta.output_kind, meta.precision) == ("test_vit_tiny", SIZE, "last_raw", "fp32")
    assert meta.weights_kind == "random" and len(meta.weights_sha256) == 16
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["soco.preprocessing"])["mean"] == list(tiny.spec.preprocessing.mean)
    assert ModelMetadata.from_props(props, "x") == meta
    # the verification record travels inside the model: pass/fail, the report's name and every figure
    record = meta.verification
    assert record.passed and record.report == "tiny.onnx.verify.json" and record.precision == "fp32"
    assert [c["name"] for c in record.checks] == [c.name for c in report.checks]
    assert [c["value"] for c in record.checks] == [c.value for c in report.checks]
    assert json.loads(props[VERIFICATION_KEY])["passed"] is True


def test_blocks_export_names_one_output_per_block(tiny, tmp_path):
    result = export_backbone(tiny, SIZE, tmp_path / "blocks.onnx", kind="blocks", layers=(-3, -2, -1),
                             log=lambda m: None)
    assert result.report.passed, result.report.text()
    assert [o.name for o in onnx.load(str(result.path)).graph.output] == ["block_1", "block_2", "block_3"]
    assert read_metadata(result.path).layers == (1, 2, 3)


def test_fp16_export_meets_fp16_thresholds_and_says_what_was_checked(tiny, tmp_path):
    result = export_backbone(tiny, SIZE, tmp_path / "tiny16.onnx", fp16=True, log=lambda m: None)
    report = result.report
    assert report.passed, report.text()
    assert _check(report, "min cosine").value >= THRESHOLDS["fp16"]["min_cosine"] == 0.999
    assert read_metadata(result.path).precision == "fp16"
    model = onnx.load(str(result.path))
    dtypes = {init.data_type for init in model.graph.initializer if len(init.dims) >= 2}
    assert onnx.TensorProto.FLOAT16 in dtypes  # the matmul weights really are half precision
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O
    casts = report.details["cast_nodes"]
    if casts["after_onnxruntime_optimisation"] > casts["exported"]:  # CPU computed some fp16 ops in fp32: said so
        assert any("not fp16 arithmetic" in note for note in report.notes)


def test_a_wrong_export_fails_verification_and_the_command(tiny, tmp_path, monkeypatch, capsys):
    import export.modules as modules
    monkeypatch.setattr(modules.FrozenGridViT, "patch_pos_embed", lambda self, h, w: self.frozen_patch_pos * 0)
    out = tmp_path / "bad.onnx"
    out.write_bytes(b"an older export this one was meant to replace")
    (tmp_path / "bad.onnx.verify.json").write_text('{"passed": true}')
    code = main(["export", "onnx", "--backbone", "test_vit_tiny", "--size", str(SIZE), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED" in captured.out and "failed verification" in captured.err and "not written" in captured.err
    # nothing deployable at the requested path (the older file is gone too), the rejected model kept to inspect
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.rejected.onnx", "bad.rejected.onnx.verify.json"]
    assert "bad.rejected.onnx" in captured.err
    assert json.loads((tmp_path / "bad.rejected.onnx.verify.json").read_text())["passed"] is False
    record = read_metadata(tmp_path / "bad.rejected.onnx").verification
    assert not record.passed and record.report == "bad.rejected.onnx.verify.json"
    assert "min cosine" in record.failures


def test_a_tight_threshold_rejects_the_export_and_keeps_it_for_inspection(tiny, tmp_path, monkeypatch):
    # the real max-abs-error threshold fails an export whose error (~1e-6 of the scale) exceeds it
    monkeypatch.setitem(THRESHOLDS["fp32"], "max_relative_error", 1e-12)
    result = export_backbone(tiny, SIZE, tmp_path / "m.onnx", log=lambda m: None)
    assert not result.report.passed and not result.deployed
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.onnx.verify.json").exists()
    assert result.path == tmp_path / "m.rejected.onnx" and result.report_path == tmp_path / "m.rejected.onnx.verify.json"
    failed = [c for c in result.report.checks if not c.passed]
    assert [c.name.split(":")[1].strip().split(" (")[0] for c in failed] == ["max abs error / max |reference|"]
    record = read_metadata(result.path).verification
    assert record is not None and not record.passed and "needs <= 1e-12" in record.failures
    # a passing export to the same path supersedes the rejected attempt
    monkeypatch.setitem(THRESHOLDS["fp32"], "max_relative_error", 1e-3)
    again = export_backbone(tiny, SIZE, tmp_path / "m.onnx", log=lambda m: None)
    assert again.deployed and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.verify.json"]


def test_an_onnx_checker_rejection_is_a_failed_report_not_a_deployed_file(tiny, tmp_path, monkeypatch):
    import export.onnx_export as onnx_export
    from export.verify import VerificationError

    def reject(path):
        raise VerificationError(f"ONNX checker rejected {path}: simulated")
    monkeypatch.setattr(onnx_export, "check_onnx", reject)
    result = export_backbone(tiny, SIZE, tmp_path / "c.onnx", log=lambda m: None)
    assert not result.deployed and not (tmp_path / "c.onnx").exists()
    assert [c.passed for c in result.report.checks] == [False] and "simulated" in result.report.notes[0]


def test_parity_checks_catch_a_perturbed_feature():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 16, 5, 5)).astype(np.float32)
    good, _ = parity_checks([ref], [ref + 1e-6], ["features"], "fp32")
    assert all(c.passed for c in good)
    bad = ref.copy()
    bad[0, :, 2, 3] = rng.normal(size=16)
    checks, details = parity_checks([ref], [bad], ["features"], "fp32")
    assert not next(c for c in checks if "min cosine" in c.name).passed
    assert details["features"]["max_abs_error"] > 0.1


def test_max_abs_error_has_a_threshold_relative_to_the_feature_scale():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 64, 5, 5)).astype(np.float32)
    scale = float(np.abs(ref).max())

    def error_check(candidate, precision="fp32"):
        checks, _ = parity_checks([ref], [candidate], ["features"], precision)
        return next(c for c in checks if "max abs error" in c.name), checks

    # one element off by 1% of the scale: every cosine stays >= 0.9999, the max-abs check fails it
    local = ref.copy()
    local[0, 5, 2, 3] += 0.01 * scale
    check, checks = error_check(local)
    assert not check.passed and check.value == pytest.approx(0.01, rel=1e-3)
    assert all(c.passed for c in checks if "max abs error" not in c.name)
    assert error_check(local, "fp16")[0].passed  # within the fp16 bound (5e-2)
    # the bound scales with the features: the same relative error passes at any magnitude
    scaled_ref = ref * 1000
    checks, _ = parity_checks([scaled_ref], [scaled_ref + 1e-4 * float(np.abs(scaled_ref).max())], ["features"], "fp32")
    assert next(c for c in checks if "max abs error" in c.name).passed
    # NaN is never within a bound
    broken = ref.copy()
    broken[1, 0, 0, 0] = np.nan
    assert not error_check(broken)[0].passed


def test_mask_logit_parity_has_thresholds():
    rng = np.random.default_rng(1)
    ref = rng.normal(scale=3.0, size=(2, 200)).astype(np.float32)
    assert all(c.passed for c in mask_logit_checks(ref, ref + 1e-6, "fp32")[0])
    off = ref.copy()
    off[0, 7] += 0.05 * np.abs(ref).max()  # one logit off by 5% of the scale
    error, decisions = mask_logit_checks(ref, off, "fp32")[0]
    assert not error.passed and error.threshold == THRESHOLDS["fp32"]["max_relative_error"]
    flipped = ref.copy()
    flipped[:, :10] *= -1  # 5% of the mask decisions change
    checks, details = mask_logit_checks(ref, flipped, "fp32")
    assert not checks[1].passed and checks[1].value == pytest.approx(0.95) and details["identical_decisions"] == 380
    assert not any(c.passed for c in mask_logit_checks(ref, np.full_like(ref, np.nan), "fp32")[0])
    assert not mask_logit_checks(ref, ref[:, :10], "fp32")[0][0].passed


def test_moving_a_model_with_external_data_keeps_it_loadable(tiny, tmp_path):
    import onnxruntime
    result = export_backbone(tiny, 56, tmp_path / "src" / "m.onnx", log=lambda m: None)
    model = onnx.load(str(result.path))
    staged = tmp_path / "src" / "x.onnx"
    onnx.save(model, str(staged), save_as_external_data=True, location="x.onnx.data", size_threshold=0)
    assert (tmp_path / "src" / "x.onnx.data").is_file()
    moved = tmp_path / "x.rejected.onnx"
    move_model(staged, moved)
    assert not staged.exists() and not (tmp_path / "src" / "x.onnx.data").exists()
    assert (tmp_path / "x.rejected.onnx.data").is_file()
    feed = {"images": np.random.default_rng(0).normal(size=(1, 3, 56, 56)).astype(np.float32)}
    want = onnxruntime.InferenceSession(str(result.path)).run(None, feed)[0]
    got = onnxruntime.InferenceSession(str(moved)).run(None, feed)[0]
    np.testing.assert_array_equal(want, got)


def test_cli_export_onnx_writes_model_and_report(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", "onnx", "--backbone", "test_vit_tiny", "--size", "56", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PASSED" in text and "min cosine" in text and out.is_file()
    assert (tmp_path / "cli.onnx.verify.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--backbone", "test_vit_tiny", "--size", "100"], "not a multiple of test_vit_tiny's patch size 14"),
    (["--backbone", "daisy", "--size", "56"], "'daisy'"),
    (["--backbone", "test_vit_tiny", "--size", "56", "--opset", "16"], "opset 16 is too old"),
])
def test_cli_export_rejects_bad_requests_clearly(argv, message, tmp_path, capsys):
    assert main(["export", "onnx", *argv, "--out", str(tmp_path / "x.onnx")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_file_without_soco_metadata_is_refused(tmp_path):
    torch.onnx.export(torch.nn.Linear(3, 3), (torch.zeros(1, 3),), str(tmp_path / "plain.onnx"), dynamo=False)
    with pytest.raises(CorruptCheckpointError, match="no soco_ros export metadata"):
        read_metadata(tmp_path / "plain.onnx")


def _tiny_head(tmp_path, tiny):
    torch.manual_seed(0)
    head = FunctionalHead(HeadConfig(feature_dim=tiny.spec.contract.feature_dim, text_dim=8, hidden=64, output=16))
    torch.nn.init.normal_(head.block_logits)  # a trained-looking head: non-uniform block weights
    table = {"grasp": torch.nn.functional.normalize(torch.randn(8), dim=0),
             "pour": torch.nn.functional.normalize(torch.randn(8), dim=0)}
    return HeadCheckpoint(head.eval(), "test_vit_tiny", (-3, -2, -1), "all-MiniLM-L6-v2", table).save(tmp_path / "head")


@pytest.mark.parametrize("function", [None, "pour"])
def test_functional_head_exports_with_text_input_or_baked_function(function, tiny, tmp_path):
    path = _tiny_head(tmp_path, tiny)
    result = export_head(path, tiny, SIZE, tmp_path / "head.onnx", function=function, log=lambda m: None)
    report = result.report
    assert report.passed, report.text()
    assert _check(report, "min cosine").value >= 0.9999 and _check(report, "argmax").value >= 0.99
    model = onnx.load(str(result.path))
    inputs = [i.name for i in model.graph.input]
    assert inputs == ["block_1", "block_2", "block_3", "grid"] + ([] if function else ["text"])
    assert [o.name for o in model.graph.output] == ["embeddings", "mask_logits"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["soco.model"] == "functional_head" and props["soco.function"] == (function or "")
    assert json.loads(props[VERIFICATION_KEY])["passed"] is True
    mask_checks = [c for c in report.checks if c.name.startswith("mask_logits")]
    assert len(mask_checks) == 2 and all(c.threshold is not None and c.passed for c in mask_checks)
    with pytest.raises(ConfigError, match="functional_head"):
        read_metadata(result.path)  # a head is not a backbone runtime model


def test_functional_head_failing_its_mask_logit_parity_is_not_deployed(tiny, tmp_path, monkeypatch):
    import export.modules as modules
    path = _tiny_head(tmp_path, tiny)
    original = modules.ExportableHead.forward

    def shifted(self, *args):
        embeddings, logits = original(self, *args)
        return embeddings, logits + 0.5  # the embeddings stay exact: only the mask-logit checks can catch this
    monkeypatch.setattr(modules.ExportableHead, "forward", shifted)
    result = export_head(path, tiny, SIZE, tmp_path / "head.onnx", log=lambda m: None)
    failed = [c.name for c in result.report.checks if not c.passed]
    assert failed and all(name.startswith("mask_logits") for name in failed)
    assert not (tmp_path / "head.onnx").exists() and (tmp_path / "head.rejected.onnx").is_file()


def test_engine_files_are_promoted_or_rejected_with_their_sidecar(tmp_path):
    """The TensorRT build uses the same staging: an engine travels with its JSON sidecar (no GPU needed here)."""
    from export.staging import Staging, finalise
    from export.verify import Check, VerificationReport

    def store(path, record):
        path.with_name(path.name + ".json").write_text(json.dumps({"verification": record.as_dict()}))

    out = tmp_path / "m.engine"
    for passed in (True, False):
        with Staging(out) as staged:
            staged.write_bytes(b"serialised engine")
            report = VerificationReport(str(staged), "onnxruntime", "tensorrt", "fp32",
                                        [Check("engine I/O", 1.0 if passed else 0.5, 1.0, passed)])
            path, saved = finalise(staged, out, report, store, log=lambda m: None)
        names = sorted(p.name for p in tmp_path.iterdir())
        if passed:
            assert names == ["m.engine", "m.engine.json", "m.engine.verify.json"] and path == out
            assert json.loads((tmp_path / "m.engine.json").read_text())["verification"]["passed"] is True
        else:  # the earlier good engine is gone with its sidecar and report; the rejected one keeps its sidecar
            assert names == ["m.rejected.engine", "m.rejected.engine.json", "m.rejected.engine.verify.json"]
            sidecar = json.loads((tmp_path / "m.rejected.engine.json").read_text())
            assert sidecar["verification"]["passed"] is False
            assert sidecar["verification"]["report"] == saved.name == "m.rejected.engine.verify.json"
