"""SAM 2.1 (``sam2`` package) for the editor's click segmentation, when its official checkpoint resolves like every
other pretrained weight (explicit path -> ``$SOCO_WEIGHTS_DIR`` -> torch hub cache -> download if allowed).

``SAM2ImagePredictor.predict`` takes the same prompts as SAM's ``SamPredictor.predict`` (``point_coords``,
``point_labels``, ``box``, ``multimask_output``), so :class:`Sam2Predictor` only adapts ``set_image`` and the mask
dtype and the result is a :class:`~correspondence.segmentation.SamMaskSource` named ``sam2``. Only prompted
segmentation is used (the node's automatic SAM rule stays SAM 1's)."""
from __future__ import annotations

import os

import numpy as np

from ..backbones.weights import PretrainedSource, resolve_weights, weights_hash
from ..errors import ConfigError, CorruptCheckpointError, MissingDependencyError, WeightsNotFoundError
from ..optional import require
from ..segmentation import SamMaskSource, auto_mask_source

SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/{}"
#: model -> (official checkpoint file, the sam2 package's config), as sam2's own checkpoints/download script names them
SAM2_MODELS = {"tiny": ("sam2.1_hiera_tiny.pt", "configs/sam2.1/sam2.1_hiera_t.yaml"),
               "small": ("sam2.1_hiera_small.pt", "configs/sam2.1/sam2.1_hiera_s.yaml"),
               "base_plus": ("sam2.1_hiera_base_plus.pt", "configs/sam2.1/sam2.1_hiera_b+.yaml"),
               "large": ("sam2.1_hiera_large.pt", "configs/sam2.1/sam2.1_hiera_l.yaml")}


class Sam2Predictor:
    """``SAM2ImagePredictor`` behind ``SamPredictor``'s interface (``set_image(rgb, image_format)``,
    ``is_image_set``, boolean masks)."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor

    @property
    def is_image_set(self) -> bool:
        return bool(self.predictor._is_image_set)

    def set_image(self, rgb: np.ndarray, image_format: str = "RGB") -> None:
        self.predictor.set_image(rgb if image_format == "RGB" else rgb[..., ::-1])

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output: bool = True):
        masks, ious, low_res = self.predictor.predict(point_coords=point_coords, point_labels=point_labels, box=box,
                                                      multimask_output=multimask_output)
        return np.asarray(masks) > 0.5, np.asarray(ious), low_res


def create_sam2(model: str = "tiny", weights: str | os.PathLike | None = None, allow_download: bool = False,
                device: str = "cpu") -> SamMaskSource:
    if model not in SAM2_MODELS:
        raise ConfigError(f"unknown SAM 2 model {model!r}; choose one of {', '.join(SAM2_MODELS)}")
    require("sam2", "the SAM 2 mask source")
    filename, config = SAM2_MODELS[model]
    path = resolve_weights(PretrainedSource(filename, SAM2_URL.format(filename), "sam2", "SAM 2.1 (Apache-2.0)"),
                           weights, allow_download=allow_download)
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    try:
        sam = build_sam2(config, str(path), device=device)
    except (RuntimeError, KeyError) as exc:  # sam2 raises a bare RuntimeError on missing / unexpected keys
        raise CorruptCheckpointError(f"checkpoint {str(path)!r} does not fit SAM 2.1 {model} ({config}): "
                                     f"{exc or 'missing or unexpected keys'}") from exc
    source = SamMaskSource(Sam2Predictor(SAM2ImagePredictor(sam)), f"sam2.1_{model}", str(path), weights_hash(path))
    source.name = "sam2"
    return source


def editor_mask_source(depth, sam2_model: str = "tiny", sam2_weights: str | None = None, device: str = "cpu"):
    """SAM 2.1 when its weights resolve, else the project's automatic choice (SAM -> depth -> GrabCut), with why."""
    try:
        source = create_sam2(sam2_model, sam2_weights, device=device)
        return source, f"sam2: SAM 2.1 {sam2_model} weights resolved at {source.weights}"
    except (WeightsNotFoundError, MissingDependencyError) as exc:
        source, reason = auto_mask_source(depth, device=device)
        return source, f"{reason} (SAM 2 unavailable: {type(exc).__name__})"
