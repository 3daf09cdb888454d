"""SAM image encoders at a faster verified precision: bf16 autocast on a native-bf16 CPU, or ONNX Runtime.

The image encoder is nearly all of SAM's cost per frame (ViT-B: 9.2 s, SAM 2.1 tiny: 1.8 s on a 2-core CPU in
fp32); the prompt encoder and mask decoder are milliseconds. So only the encoder changes: :func:`swap_encoder`
replaces ``model.image_encoder`` of a segment-anything ``Sam`` or a ``sam2`` ``SAM2Base`` with a module that
returns exactly what the original returns (SAM: the ``(1, 256, 64, 64)`` embedding; SAM 2: the dict with
``vision_features``, ``vision_pos_enc`` and ``backbone_fpn``), and both packages' predictors work unchanged.

A swapped encoder is checked against the fp32 one (:func:`encoder_parity`): per-location cosine of the image
embedding, and the IoU of the masks the predictor returns for a grid of point prompts. ``encoder="auto"``
(:func:`encoder_for`) takes bf16 only on a native-bf16 CPU and only when that check passes on these weights
(recorded like the backbone's check, :func:`.precision.cached_check`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..device import to_numpy
from ..errors import ConfigError
from .parity import cosine_rows

LOG = logging.getLogger("soco.precision")
SAM2_OUTPUTS = ("fpn_0", "fpn_1", "fpn_2", "pos_0", "pos_1", "pos_2")
# The bar a faster encoder must clear: SAM's masks are thresholded logits, so a near-identical embedding gives the
# same masks except along the boundary.
ENCODER_THRESHOLDS = {"min_cosine": 0.98, "mean_mask_iou": 0.95, "min_mask_iou": 0.8}


def encoder_kind(model: Any) -> str:
    """``sam2`` for a sam2 ``SAM2Base`` (its encoder returns a dict), ``sam`` for a segment-anything ``Sam``."""
    return "sam2" if hasattr(model, "forward_image") else "sam"


def _to_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float()
    if isinstance(value, dict):
        return {k: _to_float(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float(v) for v in value)
    return value


class AutocastEncoder(nn.Module):
    """The original encoder under bf16 autocast (CPU) with float32 outputs, so the decoder is unchanged."""

    def __init__(self, encoder: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.encoder = encoder
        self.dtype = dtype
        self.img_size = getattr(encoder, "img_size", None)  # segment-anything's predictor reads it

    def forward(self, images: torch.Tensor) -> Any:
        with torch.autocast(images.device.type, dtype=self.dtype):
            return _to_float(self.encoder(images))


class OnnxEncoder(nn.Module):
    """A SAM / SAM 2 image encoder exported to ONNX (``export/sam_onnx.py``), run by ONNX Runtime on the CPU."""

    def __init__(self, path: str | Path, kind: str, threads: int | None = None, allow_unverified: bool = False
                 ) -> None:
        super().__init__()
        from .deps import import_onnx
        from .metadata import VERIFICATION_KEY, require_verified
        from .onnx_runtime import create_session
        self.path, self.kind = Path(path), kind
        if not self.path.is_file():
            raise ConfigError(f"SAM encoder model {str(path)!r} does not exist (make one with export_sam_encoder)")
        props = {p.key: p.value for p in import_onnx().load(str(self.path), load_external_data=False).metadata_props}
        if props.get("soco.model") != f"{kind}_image_encoder":
            raise ConfigError(f"{str(path)!r} is a {props.get('soco.model')!r} export, not a {kind} image encoder")
        self.verification = require_verified(props.get(VERIFICATION_KEY), self.path, "SAM encoder", allow_unverified,
                                             remedy="re-export it with export.sam_onnx.export_sam_encoder")
        self.session = create_session(self.path, "cpu", threads)
        self.img_size = int(props.get("soco.size", 0)) or None  # segment-anything's predictor reads it

    def forward(self, images: torch.Tensor) -> Any:
        array = np.ascontiguousarray(to_numpy(images, np.float32))
        outputs = [torch.from_numpy(o).to(images.device) for o in self.session.run(None, {"images": array})]
        if self.kind == "sam":
            return outputs[0]
        fpn, pos = outputs[:3], outputs[3:]
        return {"vision_features": fpn[-1], "vision_pos_enc": pos, "backbone_fpn": fpn}


def swap_encoder(model: Any, encoder: nn.Module) -> nn.Module:
    """Put ``encoder`` in place of ``model.image_encoder``; returns the one it replaced."""
    original = model.image_encoder
    model.image_encoder = encoder
    return original


def _predictor(model: Any):
    if encoder_kind(model) == "sam2":
        from sam2.sam2_image_predictor import SAM2ImagePredictor
        predictor = SAM2ImagePredictor(model)
        # the package fixes these for 1024 px; derive them from the model (a smaller test model, same at 1024)
        hires = model.image_size // 4
        predictor._bb_feat_sizes = [(hires >> k, hires >> k) for k in range(3)]
        return predictor
    from segment_anything import SamPredictor
    return SamPredictor(model)


def _embedding(predictor: Any, kind: str) -> torch.Tensor:
    return predictor._features["image_embed"] if kind == "sam2" else predictor.features


def _run(model: Any, images: Sequence[np.ndarray], prompts: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Image embeddings ``(h*w, C)`` and one mask per point prompt for each image."""
    kind = encoder_kind(model)
    predictor = _predictor(model)
    embeddings, masks = [], []
    with torch.no_grad():
        for image in images:
            predictor.set_image(image)
            embedding = to_numpy(_embedding(predictor, kind), np.float32)[0]
            embeddings.append(embedding.reshape(embedding.shape[0], -1).T)
            h, w = image.shape[:2]
            for point in prompts:
                m, _, _ = predictor.predict(point_coords=np.array([[point[0] * w, point[1] * h]]),
                                            point_labels=np.array([1]), multimask_output=False)
                masks.append(np.asarray(m[0], dtype=bool))
    return embeddings, masks


def prompt_grid(n: int = 3) -> np.ndarray:
    """``n x n`` point prompts over the middle of the image, as fractions of width and height."""
    steps = (np.arange(n) + 1) / (n + 1)
    return np.array([(x, y) for y in steps for x in steps])


def encoder_parity(model: Any, candidate: nn.Module, images: Sequence[np.ndarray] | None = None,
                   prompts: np.ndarray | None = None) -> dict:
    """``candidate`` against the model's current (fp32) encoder: embedding cosine (min, mean over locations) and
    mask IoU (min, mean over point prompts), with :data:`ENCODER_THRESHOLDS`. The model is left as it was."""
    from ..photo_pair import image_pair
    images = list(images) if images is not None else list(image_pair(side=512))
    prompts = prompt_grid() if prompts is None else prompts
    reference = _run(model, images, prompts)
    original = swap_encoder(model, candidate)
    try:
        tested = _run(model, images, prompts)
    finally:
        swap_encoder(model, original)
    cos = np.concatenate([cosine_rows(a, b) for a, b in zip(reference[0], tested[0])])
    ious = np.array([_iou(a, b) for a, b in zip(reference[1], tested[1])])
    figures = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "min_mask_iou": float(ious.min()),
               "mean_mask_iou": float(ious.mean()), "prompts": int(ious.size)}
    failed = [f"{k} {figures[k]:.4f} < {v}" for k, v in ENCODER_THRESHOLDS.items() if figures[k] < v]
    return {**figures, "thresholds": ENCODER_THRESHOLDS, "passed": not failed, "failures": "; ".join(failed)}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def encoder_for(model: Any, encoder: str = "fp32", weights_hash: str | None = None) -> tuple[nn.Module | None, dict]:
    """The encoder module to swap in for ``encoder`` (fp32 | bf16 | auto | a path to an exported ``.onnx``) and
    the record of the choice; ``None`` keeps the model's own fp32 encoder."""
    from ..hashing import state_dict_sha256
    from .precision import cached_check, cpu_bf16_support

    kind = encoder_kind(model)
    if encoder == "fp32":
        return None, {"encoder": "fp32", "reason": "explicit"}
    if encoder == "bf16":
        return AutocastEncoder(model.image_encoder), {"encoder": "bf16", "reason": "explicit"}
    if encoder.endswith(".onnx"):
        return OnnxEncoder(encoder, kind), {"encoder": f"onnxruntime {encoder}", "reason": "explicit"}
    if encoder != "auto":
        raise ConfigError(f"unknown SAM encoder {encoder!r}: use fp32, bf16, auto or a path to an exported .onnx")
    device = next(model.parameters()).device
    cpu = cpu_bf16_support()
    if device.type != "cpu" or not cpu.native:
        why = f"{device.type}: auto keeps fp32" if device.type != "cpu" else f"this CPU has {cpu.describe()}"
        return None, {"encoder": "fp32", "reason": why}
    candidate = AutocastEncoder(model.image_encoder)
    record = cached_check(weights_hash or state_dict_sha256(model), f"{kind} encoder",
                          f'{{"sam_encoder": "{kind}", "dtype": "bf16", "torch": "{torch.__version__}"}}',
                          lambda: encoder_parity(model, candidate))
    if record["passed"]:
        return candidate, {"encoder": "bf16", "reason": "native bf16 CPU, verified", "verification": record}
    LOG.warning("SAM encoder auto: keeping fp32, bf16 failed verification (%s)", record["failures"])
    return None, {"encoder": "fp32", "reason": f"bf16 failed verification ({record['failures']})",
                  "verification": record}
