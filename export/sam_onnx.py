"""SAM / SAM 2 image encoders -> ONNX, verified against the fp32 encoder (embedding cosine, mask IoU on prompts).

Only the encoder is exported (it is nearly all of SAM's per-frame cost); the prompt encoder and mask decoder stay
in PyTorch and take the ONNX encoder's outputs through :class:`correspondence.runtimes.sam_encoder.OnnxEncoder`.
Outputs: SAM ``embedding (1, 256, 64, 64)``; SAM 2 ``fpn_0..2`` (the neck's feature pyramid, high resolution
first) and ``pos_0..2`` (their positional encodings). Like every export, the model is verified in a staging folder
and only a passing one reaches ``out`` (:mod:`.staging`); the record is stored in its metadata.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from correspondence.runtimes.metadata import PREFIX
from correspondence.runtimes.sam_encoder import (ENCODER_THRESHOLDS, SAM2_OUTPUTS, OnnxEncoder, encoder_kind,
                                                 encoder_parity)

from correspondence.errors import ConfigError

from .metadata import write_props, write_verification
from .quantize import Quantization, quantize
from .staging import Staging, finalise
from .verify import Check, VerificationReport, check_onnx


class _Sam2Encoder(nn.Module):
    """SAM 2's encoder as a tuple of tensors (ONNX has no dict outputs)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.encoder(images)
        return (*out["backbone_fpn"], *out["vision_pos_enc"])


def export_sam_encoder(model: Any, out: str | Path, opset: int = 17, images: list[np.ndarray] | None = None,
                       log: Callable[[str], None] = print, precision: str = "fp32") -> tuple[Path, VerificationReport]:
    """Export ``model.image_encoder`` (a segment-anything ``Sam`` or a sam2 ``SAM2Base``, on the CPU) to ``out``
    and verify it; returns the model's final path (``<stem>.rejected.onnx`` when it failed) and the report.
    ``precision`` int8: the traced fp32 graph's MatMul/Gemm quantised dynamically (:mod:`.quantize`), verified
    against the same encoder thresholds."""
    if precision not in ("fp32", "int8"):
        raise ConfigError(f"SAM encoder exports are fp32 or int8, not {precision!r}")
    kind = encoder_kind(model)
    side = model.image_size if kind == "sam2" else model.image_encoder.img_size
    module = _Sam2Encoder(model.image_encoder) if kind == "sam2" else model.image_encoder
    names = list(SAM2_OUTPUTS) if kind == "sam2" else ["embedding"]
    out = Path(out)
    log(f"[soco] exporting the {kind} image encoder ({side} px, {precision}) -> {out}")
    report = VerificationReport(str(out), f"PyTorch {torch.__version__} fp32 {kind} encoder and predictor", "",
                                precision)
    props = {PREFIX + "format": "soco_ros.export/1", PREFIX + "model": f"{kind}_image_encoder",
             PREFIX + "size": str(side), PREFIX + "outputs": json.dumps(names), PREFIX + "precision": precision,
             PREFIX + "thresholds": json.dumps(ENCODER_THRESHOLDS)}
    with Staging(out) as staged:
        traced = staged.with_name(staged.stem + ".fp32.onnx") if precision == "int8" else staged
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), (torch.zeros(1, 3, side, side),), str(traced), dynamo=False,
                              opset_version=opset, input_names=["images"], output_names=names,
                              do_constant_folding=True)
        if precision == "int8":
            props[PREFIX + "quantization"] = json.dumps(quantize(traced, staged, Quantization()))
            traced.unlink()
        write_props(staged, props)
        check_onnx(staged)
        report.checks.append(Check("onnx.checker (full_check) accepts the model", 1.0, 1.0, True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it has no record yet: this is its verification
            candidate = OnnxEncoder(staged, kind, allow_unverified=True)
        report.candidate = "onnxruntime CPUExecutionProvider (encoder), PyTorch prompt encoder and mask decoder"
        figures = encoder_parity(model, candidate, images)
        for name in ("min_cosine", "mean_mask_iou", "min_mask_iou"):
            limit = ENCODER_THRESHOLDS[name]
            report.checks.append(Check(f"embedding: {name}" if "cosine" in name else f"masks on "
                                       f"{figures['prompts']} point prompts: {name}", figures[name], limit,
                                       bool(figures[name] >= limit)))
        report.details.update(figures, kind=kind, size=side)
        del candidate
        stored: dict[str, str] = {}
        path, _ = finalise(staged, out, report, lambda p, r: stored.update(write_verification(p, props, r)), log)
    return path, report

