"""SAM image encoders at a faster precision: bf16 autocast and ONNX Runtime, verified against fp32 (embedding
cosine, mask IoU on point prompts); a broken encoder is refused; ``auto`` picks bf16 only on a native-bf16 CPU
and only when it passes. SAM 1 at toy size (tests/test_segmentation.py's tiny model); SAM 2.1 tiny from the sam2
package's config with random weights at 256 px (slow tier)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("segment_anything")
pytest.importorskip("onnxruntime")

from correspondence.photo_pair import image_pair  # noqa: E402
from correspondence.runtimes import UnverifiedModelError, precision  # noqa: E402
from correspondence.runtimes.precision import CpuBf16  # noqa: E402
from correspondence.runtimes.sam_encoder import (AutocastEncoder, OnnxEncoder, encoder_for,  # noqa: E402
                                                 encoder_parity, swap_encoder)
from correspondence.segmentation import Prompt, SamMaskSource  # noqa: E402
from export.sam_onnx import export_sam_encoder  # noqa: E402
from test_segmentation import build_tiny_sam  # noqa: E402

PAIR = [a[::4, ::4].copy() for a in image_pair(side=256)]


@pytest.fixture
def sam():
    torch.manual_seed(0)
    model = build_tiny_sam()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the init (zero positional embeddings), as trained weights are
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model


class Broken(torch.nn.Module):
    """An encoder whose embedding is mirrored: what a wrong export or precision would produce."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.img_size = getattr(encoder, "img_size", None)

    def forward(self, images):
        return self.encoder(images).flip(-1)


def test_bf16_encoder_passes_parity_with_measured_figures(sam):
    figures = encoder_parity(sam, AutocastEncoder(sam.image_encoder), PAIR)
    assert figures["passed"], figures
    assert 0.98 <= figures["min_cosine"] < 1.0 and figures["prompts"] == 18  # bf16 differs, within the bound


def test_a_broken_encoder_fails_parity_and_the_model_is_left_as_it_was(sam):
    original = sam.image_encoder
    figures = encoder_parity(sam, Broken(sam.image_encoder), PAIR)
    assert not figures["passed"] and "min_cosine" in figures["failures"]
    assert sam.image_encoder is original


def test_onnx_encoder_export_is_verified_and_serves_the_mask_source(sam, tmp_path):
    path, report = export_sam_encoder(sam, tmp_path / "enc.onnx", images=PAIR, log=lambda m: None)
    assert report.passed and path == tmp_path / "enc.onnx", report.text()
    assert report.details["min_cosine"] > 0.9999 and report.details["mean_mask_iou"] > 0.99
    reference = SamMaskSource.from_model(sam).segment(PAIR[0], Prompt(point=(30, 30)))
    source = SamMaskSource.from_model(sam).use_encoder(str(path))
    assert isinstance(source.predictor.model.image_encoder, OnnxEncoder)
    served = source.segment(PAIR[0], Prompt(point=(30, 30)))
    assert served.details["encoder"].startswith("onnxruntime")
    assert (served.mask == reference.mask).mean() > 0.99


def test_a_broken_onnx_encoder_is_rejected_and_refused(sam, tmp_path, monkeypatch):
    real_export = torch.onnx.export
    # an exporter bug: the file computes a mirrored embedding while the torch model is right
    monkeypatch.setattr(torch.onnx, "export", lambda module, *args, **kwargs: real_export(Broken(module), *args,
                                                                                           **kwargs))
    path, report = export_sam_encoder(sam, tmp_path / "bad.onnx", images=PAIR, log=lambda m: None)
    assert not report.passed and path.name == "bad.rejected.onnx" and not (tmp_path / "bad.onnx").exists()
    assert report.details["min_cosine"] < 0.98
    with pytest.raises(UnverifiedModelError, match="bad.rejected.onnx"):
        OnnxEncoder(path, "sam")


def test_auto_encoder_is_fp32_without_native_bf16_and_verified_bf16_with_it(sam, tmp_path, monkeypatch):
    monkeypatch.setenv(precision.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: CpuBf16(False, "AVX2", ()))
    module, record = encoder_for(sam, "auto")
    assert module is None and record["encoder"] == "fp32" and "no native bf16" in record["reason"]
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: CpuBf16(True, "AVX512", ("amx_tile",)))
    monkeypatch.setattr("correspondence.runtimes.sam_encoder.encoder_parity",
                        lambda model, candidate: encoder_parity(model, candidate, PAIR))
    module, record = encoder_for(sam, "auto")
    assert isinstance(module, AutocastEncoder) and record["verification"]["passed"]
    assert not record["verification"]["cached"]
    _, again = encoder_for(sam, "auto")
    assert again["verification"]["cached"]
    swap_encoder(sam, Broken(sam.image_encoder))  # other weights (a different hash), whose bf16 path is broken
    monkeypatch.setattr("correspondence.runtimes.sam_encoder.AutocastEncoder", lambda enc: Broken(enc))
    with torch.no_grad():
        sam.mask_decoder.iou_token.weight.add_(1.0)
    module, record = encoder_for(sam, "auto")
    assert module is None and "failed verification" in record["reason"]


@pytest.mark.slow
def test_sam2_tiny_encoder_bf16_and_onnx(tmp_path):
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2
    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu",
                       hydra_overrides_extra=["++model.image_size=256"])
    images = [np.ascontiguousarray(a[::2, ::2]) for a in image_pair(side=256)][:1]
    path, report = export_sam_encoder(model, tmp_path / "sam2.onnx", images=images, log=lambda m: None)
    assert report.passed, report.text()
    assert report.details["kind"] == "sam2" and report.details["mean_mask_iou"] > 0.95
    figures = encoder_parity(model, AutocastEncoder(model.image_encoder), images)
    assert figures["passed"], figures


def test_int8_encoder_export_is_quantised_and_verified(sam, tmp_path):
    import onnx
    pytest.importorskip("onnxruntime.quantization")
    path, report = export_sam_encoder(sam, tmp_path / "enc8.onnx", images=PAIR, log=lambda m: None, precision="int8")
    assert report.passed and report.precision == "int8", report.text()
    assert "MatMulInteger" in {n.op_type for n in onnx.load(str(path)).graph.node}
    assert report.details["min_cosine"] < 1.0  # the quantisation error is real, within the encoder bound
    assert OnnxEncoder(path, "sam").verification.passed
