"""The editor's mask source for click segmentation: SAM 2.1 of the chosen size when its official checkpoint
resolves (:class:`~correspondence.sam2_source.Sam2MaskSource`, the same source the pipeline and the node use; no
download from the editor), else the project's automatic choice (SAM -> depth -> GrabCut), with the reason."""
from __future__ import annotations

from ..errors import MissingDependencyError, WeightsNotFoundError
from ..sam2_source import Sam2MaskSource
from ..segmentation import auto_mask_source


def editor_mask_source(depth, sam2_model: str = "tiny", sam2_weights: str | None = None, device: str = "cpu"):
    """(mask source, why it was chosen)."""
    try:
        source = Sam2MaskSource.create(sam2_model, sam2_weights, allow_download=False, device=device)
        return source, f"sam2: SAM 2.1 {sam2_model} weights resolved at {source.weights}"
    except (WeightsNotFoundError, MissingDependencyError) as exc:
        source, reason = auto_mask_source(depth, device=device)
        return source, f"{reason} (SAM 2 unavailable: {type(exc).__name__})"
