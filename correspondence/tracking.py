"""Track the live mask between frames instead of segmenting every frame.

Why: a SAM image encoder costs 5-30x the rest of a frame on a CPU (SAM 2.1 Hiera tiny 1.8 s at 640 x 480, the
DINOv2 ViT-S/14 backbone 0.33 s). The backbone's features of every frame are computed anyway, so the previous mask
can be carried to the new frame by them:

1. the cells under the mask and the localisation box of the last *segmented* frame (the key frame) are matched to
   the new frame (mutual nearest neighbours by cosine);
2. one 2D affine map is fitted to those matches (OpenCV RANSAC) and the key frame's mask is warped by it (nearest
   neighbour, at full resolution). Warping from the key frame, not from the previous frame, keeps the error of each
   fit (about half a cell) from adding up along the stream.

The mask source runs again (a full segmentation, prompted by the localisation) when

* ``every`` frames have passed since the last one (0: never on schedule),
* the propagation fails (fewer than ``min_matches`` agreeing matches), or
* the correspondence box moved: this frame's localisation point (the vote nearest the votes' centre) lies outside
  the key frame's localisation box carried by the affine map, grown by ``box_slack`` of its size (the object moved
  in a way the map missed, or the tracker drifted). The test looks at the localisation, not at the mask, so it does
  not depend on the mask source's quality; and at a point, not a box's size, because the votes cover a different
  part of the object in every frame, so their box is noisy.

A frame where the object is not found gives no mask and leaves the key frame as it is: when the object is found
again, the box test above decides whether it is where the track expects it. The result's ``details`` say which path ran
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
    box_slack: float = 0.1  # the tracked box grows by this share of its size before the localisation point test
    inlier_cells: float = 1.0  # the affine fit's RANSAC tolerance, in cells

    def __post_init__(self) -> None:
        if int(self.every) < 0 or int(self.min_matches) < 3 or not self.box_slack >= 0:
            raise ConfigError("tracking: every >= 0, min_matches >= 3 and box_slack >= 0 are required")
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
        self._box: tuple[float, float, float, float] | None = None  # the key frame's localisation box
        self._key_cells = None  # the key frame's cells to carry and their features: fixed until the next key frame
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
            warped, inliers, model = self._propagate(live)
            if warped is None:
                why = f"propagation failed ({inliers} agreeing matches < {s.min_matches})"
            else:
                inside = _point_in_tracked_box(self._box, model, localisation, s.box_slack)
                if inside is False:
                    why = "correspondence box moved (the localisation point left the tracked box)"
                else:
                    self._since += 1
                    key = self._mask
                    details = {k: v for k, v in key.details.items() if k != "why"}
                    return MaskResult(warped, key.score, key.source, key.prompt,
                                      {**details, "tracked": True, "matches": inliers,
                                       "frames_since_segmentation": self._since})
        result = segment()
        self.segmentations += 1
        self._mask = MaskResult(result.mask, result.score, result.source, result.prompt,
                                {**result.details, "tracked": False, "why": why, "frames_since_segmentation": 0})
        self._fmap = live
        self._box = localisation.best.box if localisation is not None and localisation.found else None
        self._key_cells = None
        self._since = 0
        return self._mask

    def _propagate(self, live: FeatureMap) -> tuple[np.ndarray | None, int, np.ndarray | None]:
        """The key frame's mask warped by the affine map of its masked cells onto ``live``."""
        import cv2

        previous, mask = self._fmap, self._mask.mask
        if previous.grid_wh != live.grid_wh or mask.shape != (live.geometry.original_height,
                                                              live.geometry.original_width):
            return None, 0, None
        if self._key_cells is None:
            self._key_cells = self._carried_cells()
        index, features = self._key_cells
        result = mutual_nearest_neighbors(features, live.flat().to(index.device).float(), None,
                                          live.image_cells().flatten().to(index.device))
        mutual = to_numpy(result.mutual, bool)
        if mutual.sum() < self.settings.min_matches:
            return None, int(mutual.sum()), None
        src = previous.cell_to_original(previous.index_to_uv(to_numpy(index, np.int64)[mutual]))
        dst = live.cell_to_original(live.index_to_uv(to_numpy(result.forward.index, np.int64)[mutual]))
        cv2.setRNGSeed(0)
        tolerance = self.settings.inlier_cells * float(max(live.cell_size_px()))
        model, inliers = cv2.estimateAffine2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.RANSAC,
                                              ransacReprojThreshold=tolerance, maxIters=500, confidence=0.99)
        count = 0 if inliers is None else int(inliers.sum())
        if model is None or count < self.settings.min_matches:
            return None, count, None
        height, width = mask.shape
        warped = cv2.warpAffine(mask.astype(np.uint8), model, (width, height), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        return (warped if warped.any() else None), count, model


    def _carried_cells(self):
        """The key frame's cells under its mask and localisation box (the object's box too: a thin or partial mask
        still has cells to carry), and their features: computed once per key frame, not on every tracked frame."""
        previous, region = self._fmap, self._mask.mask.copy()
        if self._box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in self._box)
            region[y0:y1, x0:x1] = True
        cells = previous.cell_mask(region, min_fraction=0.5).flatten().to(previous.features.device)
        index = cells.nonzero().flatten()
        return index, previous.flat()[index].float()


def _point_in_tracked_box(box, model: np.ndarray, localisation: Localisation | None, slack: float) -> bool | None:
    """Whether this frame's localisation point lies in the key frame's box carried by the affine ``model`` (the
    corners' bounding box, grown by ``slack``); None when either is missing."""
    if box is None or localisation is None or not localisation.found:
        return None
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) @ model[:, :2].T + model[:, 2]
    low, high = corners.min(0), corners.max(0)
    grow = slack * (high - low)
    point = np.asarray(localisation.best.point)
    return bool(np.all(point >= low - grow) and np.all(point <= high + grow))


__all__ = ["MaskTracker", "TrackSettings"]
