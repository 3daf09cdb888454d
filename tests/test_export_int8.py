"""int8 ONNX exports (dynamic and static with calibration images) of a tiny random ViT and a tiny functional head:
quantised graphs, int8 thresholds in the verification record, a broken int8 model refused like any other, and the
onnxruntime runtime serving a verified one."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from PIL import Image  # noqa: E402

from correspondence.api import Matcher  # noqa: E402
from correspondence.backbones import create_backbone  # noqa: E402
from correspondence.cli import main  # noqa: E402
from correspondence.errors import InputError  # noqa: E402
from correspondence.photo_pair import scene  # noqa: E402
from correspondence.runtimes import UnverifiedModelError  # noqa: E402
from correspondence.runtimes.onnx_runtime import read_metadata  # noqa: E402
from correspondence.runtimes.parity import THRESHOLDS  # noqa: E402
from export.onnx_export import export_backbone, export_head  # noqa: E402
from export.quantize import Quantization, calibration_images  # noqa: E402
from test_export import _tiny_head  # noqa: E402

SIZE = 84


@pytest.fixture(scope="module")
def tiny():
    """The tiny ViT with its layer scales at 1, as in trained weights: at DINOv2's init (1e-5) the blocks add
    nothing to the output, and no int8 error (or breakage) of their matmuls could show."""
    loaded = create_backbone("test_vit_tiny")
    with torch.no_grad():
        for name, param in loaded.module.named_parameters():
            if name.endswith(".gamma"):
                param.fill_(1.0)
    return loaded


def ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_dynamic_int8_export_is_quantised_verified_with_int8_thresholds_and_served(tiny, tmp_path):
    result = export_backbone(tiny, SIZE, tmp_path / "int8.onnx", precision="int8", log=lambda m: None)
    assert result.deployed, result.report.text()
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops(result.path)
    meta = read_metadata(result.path)
    assert meta.precision == "int8" and json.loads(meta.extra["quantization"])["mode"] == "dynamic"
    record = meta.verification
    assert record.passed and record.precision == "int8"
    thresholds = {c["name"].split(": ")[-1].split(" ")[0]: c["threshold"] for c in record.checks}
    assert THRESHOLDS["int8"]["min_cosine"] in thresholds.values()
    cosine = next(c for c in result.report.checks if "min cosine" in c.name).value
    assert THRESHOLDS["int8"]["min_cosine"] <= cosine < 1.0  # a real int8 error, within the stated bound
    matcher = Matcher.create("auto", runtime={"name": "onnxruntime", "model": str(result.path)})
    described = matcher.extractor.describe()
    assert described["runtime"]["precision"] == "int8" and described["precision"]["dtype"] == "float32"
    image = np.asarray(scene(3, 200))
    reference = Matcher.create(tiny, size=SIZE, dtype="float32").extractor(image).flat()
    served = matcher.extractor(image).flat()
    cos = torch.nn.functional.cosine_similarity(reference, served, dim=1)
    assert cos.min() > THRESHOLDS["int8"]["min_cosine"]


def test_static_int8_calibrates_on_generated_images_or_a_folder(tiny, tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    for seed in (5, 6):
        scene(seed, 160).save(folder / f"{seed}.png")
    (folder / "notes.txt").write_text("not an image")
    assert len(calibration_images([str(folder)], 8)) == 2
    assert len(calibration_images(["generated", str(folder)], 3)) == 3
    for sources in (("generated",), (str(folder),)):
        out = tmp_path / f"static_{len(sources[0])}.onnx"
        result = export_backbone(tiny, SIZE, out, precision="int8", log=lambda m: None,
                                 quantization=Quantization("static", sources, count=2))
        assert result.deployed, result.report.text()
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops(result.path)
        info = json.loads(read_metadata(result.path).extra["quantization"])
        assert info["mode"] == "static" and info["calibration"] == list(sources) and info["calibration_images"] == 2
    with pytest.raises(InputError, match="neither 'generated'"):
        calibration_images([str(tmp_path / "missing")], 2)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no images"):
        calibration_images([str(empty)], 2)


def _break_int8_scales(model_path) -> int:
    """Break an int8 model as a wrong quantiser would: every weight scale 20x too large. Returns how many."""
    model = onnx.load(str(model_path))
    broken = 0
    for tensor in model.graph.initializer:
        if tensor.name.endswith("_scale") and tensor.data_type == onnx.TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 20, tensor.name))
            broken += 1
    onnx.save(model, str(model_path))
    return broken


def test_a_broken_int8_model_is_refused_like_any_other(tiny, tmp_path, monkeypatch):
    import export.onnx_export as onnx_export
    real = onnx_export.quantize

    def broken(fp32_model, out, quantization, feeds=None):
        info = real(fp32_model, out, quantization, feeds)
        assert _break_int8_scales(out) > 0
        return info

    monkeypatch.setattr(onnx_export, "quantize", broken)
    result = export_backbone(tiny, SIZE, tmp_path / "bad.onnx", precision="int8", log=lambda m: None)
    assert not result.deployed and result.path.name == "bad.rejected.onnx"
    assert not (tmp_path / "bad.onnx").exists()
    record = read_metadata(result.path).verification
    assert not record.passed and record.precision == "int8"
    with pytest.raises(UnverifiedModelError, match="bad.rejected.onnx"):
        Matcher.create("auto", runtime={"name": "onnxruntime", "model": str(result.path)})


def test_int8_functional_head_export(tmp_path):
    # the backbone at its init: the head's (random) matches then rest on the image content, not on near-ties
    plain = create_backbone("test_vit_tiny")
    path = _tiny_head(tmp_path, plain)
    for quantization in (Quantization(), Quantization("static", ("generated",), count=2)):
        result = export_head(path, plain, SIZE, tmp_path / f"head_{quantization.mode}.onnx", precision="int8",
                             quantization=quantization, log=lambda m: None)
        assert result.deployed, result.report.text()
        props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
        assert props["soco.precision"] == "int8" and json.loads(props["soco.quantization"])["mode"] == quantization.mode
        assert any(n in ops(result.path) for n in ("MatMulInteger", "QuantizeLinear"))
        assert len([c for c in result.report.checks if c.name.startswith("mask_logits")]) == 2


def test_cli_export_int8(tmp_path, capsys):
    image = tmp_path / "demo.png"
    Image.fromarray(np.asarray(scene(9, 160))).save(image)
    out = tmp_path / "m.onnx"
    code = main(["export", "onnx", "--backbone", "test_vit_tiny", "--size", str(SIZE), "--precision", "int8",
                 "--quantization", "static", "--calibration", str(image), "--out", str(out)])
    assert code == 0, capsys.readouterr()
    assert "(int8)" in capsys.readouterr().out and read_metadata(out).precision == "int8"
