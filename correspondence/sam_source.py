"""Segment Anything (SAM 1, the ``segment-anything`` package) as a mask source, and the automatic prompt rule
(:func:`choose_auto_mask`) that SAM 2 (:mod:`~correspondence.sam2_source`) shares."""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .backbones.weights import PretrainedSource, load_state_dict, resolve_weights, weights_hash
from .device import to_numpy
from .errors import ConfigError, CorruptCheckpointError, InputError
from .mask_types import MaskResult, NoMaskError, Prompt, _prepare
from .optional import require


SAM_SOURCES: dict[str, PretrainedSource] = {
    "vit_b": PretrainedSource("sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
                              "sam", "Segment Anything ViT-B (Apache-2.0)"),
    "vit_l": PretrainedSource("sam_vit_l_0b3195.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
                              "sam", "Segment Anything ViT-L (Apache-2.0)"),
    "vit_h": PretrainedSource("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
                              "sam", "Segment Anything ViT-H (Apache-2.0)"),
}

#: Automatic prompt: the grid offsets, as fractions of width/height, around the image centre.
AUTO_GRID_OFFSETS = (-1 / 6, 0.0, 1 / 6)
#: Automatic prompt: masks covering more than this fraction of the image are background and rejected.
AUTO_MAX_AREA_FRACTION = 0.9


def _import_sam():
    segment_anything = require("segment_anything", "the SAM mask source")
    return segment_anything, segment_anything.SamPredictor, segment_anything.sam_model_registry


class SamMaskSource:
    """Segment Anything via ``segment_anything.SamPredictor``.

    The image embedding (the expensive part) is computed once per image: the source keeps a content hash of
    the last image and calls ``set_image`` only when it changes, so many prompts on one image cost one encoder
    pass. ``embeddings_computed`` counts encoder passes.

    Prompts:

    * point -> one foreground point (label 1), multimask output, the mask with the highest predicted IoU
      (the SAM authors' recommendation for a single click);
    * box -> box prompt, single-mask output (a point given with the box is added as a foreground point);
    * auto (no point, no box) -> **automatic rule**: prompt the image centre and the 3x3 grid of points at
      ``centre + (i*W/6, j*H/6)``, ``i, j in {-1, 0, 1}`` (the centre is the grid's middle point; the grid spans
      the middle third of the image), each as a single foreground point with multimask output (27 candidates).
      Reject empty masks and masks covering more than 90 % of the image (background). Among the rest choose the
      mask maximising ``clip(predicted_iou, 0, 1) * centrality`` with ``centrality = max(0, 1 - d / r)``, ``d`` the distance
      of the mask centroid from the image centre and ``r`` half the image diagonal. If every candidate is
      rejected, :class:`NoMaskError`. Implemented by :func:`choose_auto_mask`.

    ``score`` is SAM's predicted IoU of the chosen mask; ``details`` record the model type, weights file and
    hash, and (auto) the chosen grid point, centrality and candidate counts.
    """

    name = "sam"

    def __init__(self, predictor: Any, model_type: str = "custom", weights: str | None = None,
                 weights_sha256: str | None = None):
        self.predictor = predictor
        self.model_type = model_type
        self.weights = weights
        self.weights_sha256 = weights_sha256
        self.embeddings_computed = 0
        self._image_key: str | None = None
        self.encoder: dict = {"encoder": "fp32", "reason": "the model's own encoder"}

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, model_type: str = "vit_b", weights: str | os.PathLike | None = None, allow_download: bool = True,
               device: str = "cpu", encoder: str = "auto") -> "SamMaskSource":
        """Build SAM ``model_type`` with the official checkpoint.

        The checkpoint is resolved by :func:`~correspondence.backbones.weights.resolve_weights` (explicit path ->
        ``$SOCO_WEIGHTS_DIR`` -> torch hub cache -> official URL; ``SOCO_OFFLINE=1`` forbids the download), the
        architecture by the package's ``sam_model_registry[model_type](checkpoint=None)``, and the weights are
        loaded with ``torch.load(weights_only=True)`` (strict: every key must fit).
        """
        _, predictor_cls, _ = _import_sam()
        model, path = build_sam_model(model_type, weights, allow_download, device)
        return cls(predictor_cls(model), model_type, str(path), weights_hash(path)).use_encoder(encoder)

    def use_encoder(self, encoder: str) -> "SamMaskSource":
        """Run the image encoder as ``encoder`` (fp32 | bf16 | auto | an exported .onnx; see
        :mod:`correspondence.runtimes.sam_encoder`); the choice is recorded in ``self.encoder``."""
        from .runtimes.sam_encoder import encoder_for, swap_encoder
        module, self.encoder = encoder_for(self.predictor.model, encoder, self.weights_sha256)
        if module is not None:
            swap_encoder(self.predictor.model, module)
        return self

    @classmethod
    def from_model(cls, sam_model: Any, model_type: str = "custom") -> "SamMaskSource":
        """Wrap an already-built ``segment_anything.modeling.Sam`` (tests, fine-tuned variants)."""
        _, predictor_cls, _ = _import_sam()
        sam_model.eval()
        return cls(predictor_cls(sam_model), model_type)

    # -- segmentation -------------------------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray) -> bool:
        """Compute the embedding unless this exact image is already set. Returns True if it was computed."""
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16, person=b"soco-sam").hexdigest() + str(rgb.shape)
        if key == self._image_key and self._image_is_set():
            return False
        self._encode(rgb)
        self._image_key = key
        self.embeddings_computed += 1
        return True

    def forget_image(self) -> None:
        """Drop the cached embedding: the next image is encoded even if it is the last one (timing a fresh pass)."""
        self._image_key = None

    def _image_is_set(self) -> bool:
        return bool(self.predictor.is_image_set)

    def _encode(self, rgb: np.ndarray) -> None:
        """The image encoder's pass (the expensive part)."""
        self.predictor.set_image(rgb, image_format="RGB")

    def segment(self, image: Any, prompt: Prompt | None = None, depth: np.ndarray | None = None) -> MaskResult:
        rgb, prompt, _ = _prepare(image, prompt, depth)
        computed = self.set_image(rgb)
        details: dict[str, Any] = {**self._model_details(), "embedding_computed": computed}
        if prompt.box is not None:
            points = labels = None
            if prompt.point is not None:
                points, labels = np.array([prompt.point], np.float64), np.array([1])
            masks, ious, _ = self.predictor.predict(point_coords=points, point_labels=labels,
                                                    box=np.array(prompt.box, np.float64), multimask_output=False)
            mask, score = self._best(masks, ious, "the box prompt")
            details["mode"] = "box"
        elif prompt.point is not None:
            masks, ious, _ = self.predictor.predict(point_coords=np.array([prompt.point], np.float64),
                                                    point_labels=np.array([1]), multimask_output=True)
            mask, score = self._best(masks, ious, "the point prompt")
            details["mode"] = "point"
        else:
            mask, score, auto = self._auto(rgb.shape[0], rgb.shape[1])
            details.update(auto)
            details["mode"] = "auto"
        return MaskResult(mask, score, self.name, prompt, details)

    def _model_details(self) -> dict[str, Any]:
        """What every mask of this source records about the model that made it."""
        return {"model_type": self.model_type, "weights": self.weights, "weights_sha256": self.weights_sha256,
                "encoder": self.encoder["encoder"]}

    def _best(self, masks: np.ndarray, ious: np.ndarray, what: str) -> tuple[np.ndarray, float]:
        """Highest predicted IoU among the non-empty masks."""
        order = np.argsort(-ious)
        for k in order:
            if masks[k].any():
                return masks[k].astype(bool), float(ious[k])
        raise NoMaskError(f"sam: every mask predicted for {what} is empty")

    def _auto(self, height: int, width: int) -> tuple[np.ndarray, float, dict]:
        import torch

        cx, cy = width / 2.0, height / 2.0
        grid = np.array([(cx + i * width, cy + j * height) for j in AUTO_GRID_OFFSETS for i in AUTO_GRID_OFFSETS])
        grid[:, 0] = np.clip(grid[:, 0], 0, np.nextafter(width, 0))
        grid[:, 1] = np.clip(grid[:, 1], 0, np.nextafter(height, 0))
        predictor = self.predictor
        coords = predictor.transform.apply_coords(grid, predictor.original_size)
        coords_t = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)[:, None, :]
        labels_t = torch.ones((len(grid), 1), dtype=torch.int, device=predictor.device)
        masks_t, ious_t, _ = predictor.predict_torch(coords_t, labels_t, multimask_output=True)
        masks = to_numpy(masks_t)  # (9, 3, H, W)
        ious = to_numpy(ious_t.float())  # (9, 3)
        return choose_auto_mask(masks, ious, grid)


def build_sam_model(model_type: str, weights: str | os.PathLike | None = None, allow_download: bool = True,
                    device: str = "cpu") -> tuple[Any, Path]:
    """The one place a Segment Anything model (image encoder, prompt encoder, mask decoder) is built: the
    architecture from ``sam_model_registry[model_type]``, the official checkpoint resolved and loaded strictly with
    ``weights_only=True``, moved to ``device`` in eval mode. Returns (model, checkpoint path). A different runtime
    or precision for the image encoder (``model.image_encoder``) hooks in here."""
    if model_type not in SAM_SOURCES:
        raise ConfigError(f"unknown SAM model type {model_type!r}; choose one of {sorted(SAM_SOURCES)}")
    torch_device = _torch_device(device)
    _, _, registry = _import_sam()
    path = resolve_weights(SAM_SOURCES[model_type], weights, allow_download=allow_download)
    state = load_state_dict(path)
    model = registry[model_type](checkpoint=None)
    load_strict(model, state, path, f"SAM {model_type}")
    model.to(torch_device).eval()
    return model, Path(path)


def load_strict(model: Any, state: dict, path: str | os.PathLike, what: str) -> None:
    """Every key of the checkpoint must fit the architecture, else :class:`CorruptCheckpointError` naming it."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CorruptCheckpointError(f"checkpoint {str(path)!r} does not fit {what}: "
                                     f"{str(exc).splitlines()[0]}") from exc


def choose_auto_mask(masks: np.ndarray, ious: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float, dict]:
    """The automatic rule's choice among SAM candidates (see :class:`SamMaskSource`).

    ``masks``: (P, K, H, W) bool, K masks for each of the P prompt ``points`` (P, 2); ``ious``: (P, K) predicted
    IoU. Rejects empty masks and masks covering more than :data:`AUTO_MAX_AREA_FRACTION` of the image, then
    returns the mask maximising ``clip(predicted_iou, 0, 1) * centrality``, with
    ``centrality = max(0, 1 - |centroid - image centre| / (half the image diagonal))``; its predicted IoU; and
    details. Ties go to the earlier point, then the earlier mask.
    """
    masks = np.asarray(masks, dtype=bool)
    ious = np.asarray(ious, dtype=np.float64)
    if masks.ndim != 4 or ious.shape != masks.shape[:2]:
        raise InputError(f"candidate masks must be (P, K, H, W) with (P, K) scores, got {masks.shape} and {ious.shape}")
    height, width = masks.shape[-2:]
    cx, cy = width / 2.0, height / 2.0
    total = float(height * width)
    radius = 0.5 * math.hypot(width, height)
    xs = np.arange(width) + 0.5  # pixel centres, continuous coordinates
    ys = np.arange(height) + 0.5
    best = None
    rejected_background = rejected_empty = 0
    for p in range(masks.shape[0]):
        for k in range(masks.shape[1]):
            mask = masks[p, k]
            area = int(mask.sum())
            if area == 0:
                rejected_empty += 1
                continue
            if area > AUTO_MAX_AREA_FRACTION * total:
                rejected_background += 1
                continue
            mx = float((mask.sum(axis=0) * xs).sum() / area)
            my = float((mask.sum(axis=1) * ys).sum() / area)
            centrality = max(0.0, 1.0 - math.hypot(mx - cx, my - cy) / radius)
            combined = min(max(float(ious[p, k]), 0.0), 1.0) * centrality
            if best is None or combined > best[0]:
                best = (combined, p, k, centrality, (mx, my))
    candidates = masks.shape[0] * masks.shape[1]
    if best is None:
        raise NoMaskError(f"sam: automatic prompt found no object: of {candidates} candidate masks "
                          f"{rejected_empty} were empty and {rejected_background} covered more than "
                          f"{AUTO_MAX_AREA_FRACTION:.0%} of the image (background)")
    combined, p, k, centrality, centroid = best
    details = {"auto_rule": "argmax clip(predicted_iou, 0, 1) * centrality over the centre + 3x3 grid point prompts "
                            f"(multimask); masks covering > {AUTO_MAX_AREA_FRACTION:.0%} of the image rejected",
               "auto_point": [float(points[p][0]), float(points[p][1])], "auto_mask_index": int(k),
               "centrality": centrality, "auto_score": combined, "centroid": list(centroid),
               "candidates": candidates, "rejected_background": rejected_background, "rejected_empty": rejected_empty}
    return masks[p, k].copy(), float(ious[p, k]), details


def _torch_device(device: str) -> Any:
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid torch device {device!r}: {exc}") from exc
