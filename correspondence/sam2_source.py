"""SAM 2.1 as a mask source, through Meta's ``sam2`` package (``SAM2ImagePredictor``).

Same prompt interface and rules as :class:`~correspondence.segmentation.SamMaskSource` (point: multimask, highest
predicted IoU; box (+ point): single mask; no prompt: the image-centre grid rule of
:func:`~correspondence.segmentation.choose_auto_mask`), the same once-per-image embedding cache, and the official
SAM 2.1 checkpoints resolved like every other weight (explicit path -> ``$SOCO_WEIGHTS_DIR`` -> torch hub cache ->
official URL; ``weights_only=True``). Hiera tiny encodes a 640 x 480 frame about 5x faster than SAM ViT-B on a CPU,
which is why ``auto`` prefers it.

``image_size``: the side of the square input the image encoder runs at. SAM 2 was trained at 1024 (the default, the
package's config); every frame is resized to it, so a 448 px frame is upsampled more than 2x and the encoder pays for
pixels that add no information (207 GFLOP at 1024 for Hiera tiny, 55 at 512, 39 at 448). A smaller size is an
explicit choice (``soco bench tracking --sam2-image-size``, node ``sam2_image_size``): the Hiera position embedding
is interpolated to the new grid and the mask decoder's output (a quarter of the input side) is coarser; its mask
quality with real weights is **untested** here (no real weights can be obtained on this machine).

``pip install sam2`` compiles an optional CUDA extension (hole filling); ``SAM2_BUILD_CUDA=0`` skips it (the
Makefile sets it), and the package then works without it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .backbones.weights import PretrainedSource, load_state_dict, resolve_weights, weights_hash
from .errors import ConfigError
from .optional import require
from .segmentation import AUTO_GRID_OFFSETS, SamMaskSource, _torch_device, choose_auto_mask, load_strict

_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
#: SAM 2.1 checkpoints (Apache-2.0), by model size: (official file, the package's config).
SAM2_SOURCES: dict[str, PretrainedSource] = {
    size: PretrainedSource(f"sam2.1_hiera_{size}.pt", f"{_URL}sam2.1_hiera_{size}.pt", "sam2",
                           f"SAM 2.1 Hiera {size} (Apache-2.0)")
    for size in ("tiny", "small", "base_plus", "large")}
SAM2_CONFIGS = {"tiny": "configs/sam2.1/sam2.1_hiera_t.yaml", "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
                "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml", "large": "configs/sam2.1/sam2.1_hiera_l.yaml"}
SAM2_MODELS = tuple(SAM2_SOURCES)
#: The input side SAM 2.1 was trained at (the package's configs).
SAM2_TRAINED_IMAGE_SIZE = 1024
#: Hiera's strides: the input side must split into whole 8-token windows at stride 4 and whole cells at stride 32.
SAM2_IMAGE_SIZE_MULTIPLE = 32


def check_image_size(image_size: int) -> int:
    """``image_size`` as an int, or a ConfigError saying which sizes SAM 2's encoder accepts."""
    size = int(image_size)
    if size != image_size or size < 2 * SAM2_IMAGE_SIZE_MULTIPLE or size % SAM2_IMAGE_SIZE_MULTIPLE:
        raise ConfigError(f"SAM 2 image_size must be a multiple of {SAM2_IMAGE_SIZE_MULTIPLE} and at least "
                          f"{2 * SAM2_IMAGE_SIZE_MULTIPLE}, got {image_size!r} (trained: {SAM2_TRAINED_IMAGE_SIZE})")
    return size


def build_sam2_model(model_type: str = "tiny", weights: str | os.PathLike | None = None, allow_download: bool = True,
                     device: str = "cpu", random_init: bool = False,
                     image_size: int = SAM2_TRAINED_IMAGE_SIZE) -> tuple[Any, Path | None]:
    """The one place a SAM 2.1 model is built: the package's config (its post-processing overrides, as
    ``build_sam2`` applies them), the official checkpoint resolved and loaded strictly with ``weights_only=True``
    (``random_init=True``: no checkpoint, for tests and timing), on ``device`` in eval mode; ``image_size``: the
    encoder's input side (see the module). Returns (model, path)."""
    if model_type not in SAM2_SOURCES:
        raise ConfigError(f"unknown SAM 2 model {model_type!r}; choose one of {', '.join(SAM2_MODELS)}")
    image_size = check_image_size(image_size)
    torch_device = _torch_device(device)
    require("sam2", "the SAM 2 mask source")
    from sam2.build_sam import build_sam2

    path = None if random_init else resolve_weights(SAM2_SOURCES[model_type], weights, allow_download=allow_download)
    state = None if path is None else load_state_dict(path)
    overrides = [] if image_size == SAM2_TRAINED_IMAGE_SIZE else [f"++model.image_size={image_size}"]
    model = build_sam2(SAM2_CONFIGS[model_type], ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
    if state is not None:
        load_strict(model, state, path, f"SAM 2.1 {model_type}")
    model.to(torch_device).eval()
    return model, None if path is None else Path(path)


class Sam2MaskSource(SamMaskSource):
    """SAM 2.1 via ``sam2.sam2_image_predictor.SAM2ImagePredictor``; prompts and details as
    :class:`~correspondence.segmentation.SamMaskSource` (``model_type``: tiny, small, base_plus, large)."""

    name = "sam2"

    @classmethod
    def create(cls, model_type: str = "tiny", weights: str | os.PathLike | None = None, allow_download: bool = True,
               device: str = "cpu", random_init: bool = False,
               image_size: int = SAM2_TRAINED_IMAGE_SIZE) -> "Sam2MaskSource":
        """SAM 2.1 ``model_type`` with its official checkpoint (see :func:`build_sam2_model`)."""
        model, path = build_sam2_model(model_type, weights, allow_download, device, random_init, image_size)
        return cls(_predictor(model), model_type, None if path is None else str(path),
                   None if path is None else weights_hash(path))

    @classmethod
    def from_model(cls, sam_model: Any, model_type: str = "custom") -> "Sam2MaskSource":
        """Wrap an already-built ``sam2.modeling.sam2_base.SAM2Base``."""
        sam_model.eval()
        return cls(_predictor(sam_model), model_type)

    @property
    def image_size(self) -> int:
        """The encoder's input side (1024 unless chosen otherwise)."""
        return int(self.predictor.model.image_size)

    def _model_details(self) -> dict[str, Any]:
        return {**super()._model_details(), "image_size": self.image_size}  # a smaller input is a recorded choice

    def _image_is_set(self) -> bool:
        return bool(self.predictor._is_image_set)

    def _encode(self, rgb: np.ndarray) -> None:
        self.predictor.set_image(rgb)

    def _auto(self, height: int, width: int) -> tuple[np.ndarray, float, dict]:
        cx, cy = width / 2.0, height / 2.0
        grid = np.array([(cx + i * width, cy + j * height) for j in AUTO_GRID_OFFSETS for i in AUTO_GRID_OFFSETS])
        grid[:, 0] = np.clip(grid[:, 0], 0, np.nextafter(width, 0))
        grid[:, 1] = np.clip(grid[:, 1], 0, np.nextafter(height, 0))
        masks, ious, _ = self.predictor.predict(point_coords=grid[:, None, :], point_labels=np.ones((len(grid), 1)),
                                                multimask_output=True)  # (9, 3, H, W), (9, 3)
        return choose_auto_mask(np.asarray(masks) > 0, np.asarray(ious), grid)


def _predictor(model: Any) -> Any:
    """``SAM2ImagePredictor`` for ``model``; its backbone feature sizes follow the model's ``image_size`` (the
    package fixes them for 1024: strides 4, 8 and 16)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(model)
    size = int(model.image_size)
    predictor._bb_feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]
    return predictor


__all__ = ["SAM2_MODELS", "SAM2_TRAINED_IMAGE_SIZE", "check_image_size", "SAM2_SOURCES", "Sam2MaskSource", "build_sam2_model"]
