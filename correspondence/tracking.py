"""Track the live mask between frames instead of segmenting every frame.

Why: a SAM image encoder costs 5-30x the rest of a frame on a CPU (SAM 2.1 Hiera tiny 1.8 s at 640 x 480, the
DINOv2 ViT-S/14 backbone 0.33 s). The backbone's features of every frame are computed anyway, so the previous mask
can be carried to the new frame by them:

1. the cells under the mask of the last *segmented* frame (the key frame) are matched to the new frame (mutual
   nearest neighbours by cosine);
2. one 2D affine map is fitted to those matches (OpenCV RANSAC) and the key frame's mask is warped by it (nearest
   neighbour, at full resolution). Warping from the key frame, not from the previous frame, keeps the error of each
   fit (about half a cell) from adding up along the stream.

The mask source runs again (a full segmentation, prompted by the localisation) when

* ``every`` frames have passed since the last one (0: never on schedule),
* the propagation fails (fewer than ``min_matches`` agreeing matches), or
* the correspondence localisation disagrees with the tracked mask: fewer than ``min_votes_inside`` of the chosen
  candidate's votes lie inside it (the object moved in a way the affine map missed, or the tracker drifted).

A frame where the object is not found resets the tracker. The result's ``details`` say which path ran
(``tracked``: True / False, ``why``), so per-frame cost can be attributed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .device import to_numpy
from .errors import ConfigError
from .features import FeatureMap
from .localise import Localisation
from .matching import mutual_nearest_neighbors
from .segmentation import MaskResult


@dataclass(frozen=True)
class TrackSettings:
    every: int = 30  # full segmentation at least every N frames (0: only when propagation fails or disagrees)
    min_matches: int = 6  # frame-to-frame matches agreeing with the affine map needed to propagate
    min_votes_inside: float = 0.5  # share of the localisation's votes the tracked mask must contain
    inlier_cells: float = 1.0  # the affine fit's RANSAC tolerance, in cells

    def __post_init__(self) -> None:
        if int(self.every) < 0 or int(self.min_matches) < 3 or not 0.0 <= self.min_votes_inside <= 1.0:
            raise ConfigError("tracking: every >= 0, min_matches >= 3 and min_votes_inside in [0, 1] are required")
        if not self.inlier_cells > 0:
            raise ConfigError(f"tracking inlier_cells must be > 0, got {self.inlier_cells}")


class MaskTracker:
    """The key frame (the last segmented one: its mask and features); :meth:`step` gives the next frame's mask (see
    the module)."""

    def __init__(self, settings: TrackSettings | None = None) -> None:
        self.settings = settings or TrackSettings()
        self.segmentations = 0  # full segmentations run (the expensive calls)
        self.frames = 0
        self.reset()

    def reset(self) -> None:
        self._mask: MaskResult | None = None
        self._fmap: FeatureMap | None = None
        self._since = 0

    def step(self, live: FeatureMap, localisation: Localisation | None,
             segment: Callable[[], MaskResult]) -> MaskResult:
        """The mask of the frame whose features are ``live``: tracked, or ``segment()`` when the rules ask."""
        self.frames += 1
        s = self.settings
        why = None
        if self._mask is None:
            why = "first frame"
        elif s.every and self._since + 1 >= s.every:
            why = f"schedule (every {s.every} frames)"
        if why is None:
            warped, inliers = self._propagate(live)
            if warped is None:
                why = f"propagation failed ({inliers} agreeing matches < {s.min_matches})"
            else:
                inside = _votes_inside(warped, localisation)
                if inside is not None and inside < s.min_votes_inside:
                    why = f"localisation disagrees ({inside:.0%} of its votes inside the tracked mask)"
                else:
                    self._since += 1
                    key = self._mask
                    details = {k: v for k, v in key.details.items() if k != "why"}
                    return MaskResult(warped, key.score, key.source, key.prompt,
                                      {**details, "tracked": True, "matches": inliers,
                                       "frames_since_segmentation": self._since, "votes_inside": inside})
        result = segment()
        self.segmentations += 1
        self._mask = MaskResult(result.mask, result.score, result.source, result.prompt,
                                {**result.details, "tracked": False, "why": why, "frames_since_segmentation": 0})
        self._fmap = live
        self._since = 0
        return self._mask

    def _propagate(self, live: FeatureMap) -> tuple[np.ndarray | None, int]:
        """The key frame's mask warped by the affine map of its masked cells onto ``live``."""
        import cv2

        previous, mask = self._fmap, self._mask.mask
        if previous.grid_wh != live.grid_wh or mask.shape != (live.geometry.original_height,
                                                              live.geometry.original_width):
            return None, 0
        cells = previous.cell_mask(mask, min_fraction=0.5).flatten().to(previous.features.device)
        index = cells.nonzero().flatten()
        result = mutual_nearest_neighbors(previous.flat()[index].float(), live.flat().to(index.device).float(), None,
                                          live.image_cells().flatten().to(index.device))
        mutual = to_numpy(result.mutual, bool)
        if mutual.sum() < self.settings.min_matches:
            return None, int(mutual.sum())
        src = previous.cell_to_original(previous.index_to_uv(to_numpy(index, np.int64)[mutual]))
        dst = live.cell_to_original(live.index_to_uv(to_numpy(result.forward.index, np.int64)[mutual]))
        cv2.setRNGSeed(0)
        tolerance = self.settings.inlier_cells * float(max(live.cell_size_px()))
        model, inliers = cv2.estimateAffine2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC,
                                              ransacReprojThreshold=tolerance, maxIters=500, confidence=0.99)
        count = 0 if inliers is None else int(inliers.sum())
        if model is None or count < self.settings.min_matches:
            return None, count
        height, width = mask.shape
        warped = cv2.warpAffine(mask.astype(np.uint8), model, (width, height), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        return (warped if warped.any() else None), count


def _votes_inside(mask: np.ndarray, localisation: Localisation | None) -> float | None:
    """Share of the chosen candidate's votes inside ``mask`` (None without a chosen candidate)."""
    if localisation is None or not localisation.found:
        return None
    xy = localisation.best.votes_xy
    height, width = mask.shape
    cols = np.clip(xy[:, 0].astype(int), 0, width - 1)
    rows = np.clip(xy[:, 1].astype(int), 0, height - 1)
    return float(mask[rows, cols].mean())


__all__ = ["MaskTracker", "TrackSettings"]
