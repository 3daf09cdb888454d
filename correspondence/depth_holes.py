"""Where a depth camera gave no reading although a surface was there: the pose scores' "unknown" pixels.

Why: the pose scores (:func:`~correspondence.pose_search.evidence`, :class:`~correspondence.yaw_sweep.Placement`)
count a moved demo point that lands off the live object's silhouette where the camera measured nothing as seen
*through* (free space, a contradiction weighed 4 agreeing points). On exact synthetic depth a pixel without depth is
empty. A stereo camera drops pixels at every depth edge (the two cameras see different sides of it) and in blobs
where matching fails (:mod:`correspondence.world.depth_noise`; a RealSense, a ZED): the true pose's own silhouette
rim, and most of a thin part (a mug's handle, a kettle's spout) lands on such holes, and a wrong turn that hides the
part behind the body pays less. ``soco bench alignment --demo-views 4 --table --depth-noise stereo``, seed 0: the true
pose of trial 5 (mug) had 14 % of its points counted as free space, 97 % of them on pixels next to valid depth, and
a pose 77 deg off was published (docs/pose_search.md, "Depth holes").

Rule: a pixel without depth is **unknown** (neither empty nor a surface) when the frame comes from a camera that
leaves holes and the pixel lies in one:

1. the components of missing depth (8-connected) whose largest inscribed disc has a radius of at most
   ``max_radius_px`` (a hole blob, the strip dropped along a depth edge; the background beside an object, or a
   table taken out by :mod:`~correspondence.support_plane`, is wide), and every missing pixel within ``edge_px`` of
   a valid one (the strip dropped along an object's outline against an empty background merges with it);
2. only when the frame shows at least ``min_holes`` round blobs among them (inscribed radius >= 1.5 px, area at most
   twice the disc of that radius + 1 px: what a failed stereo match leaves inside a surface). Measured on the bench's
   scenes at 448 px (8 categories x 3 seeds, 2 distractors, with and without the table): exact depth shows 0-2 (a
   gap seen through a mug's handle or between a chair's legs, which can be narrow, is seldom round; a chair scene
   without the table has 30 narrow gaps, 0 round), the stereo preset 33-64 with the table and 2-17 without. A
   frame without them is left exactly as before, and a gap seen through a handle stays free space.

The pixels a support plane removed are not unknown: the camera saw the table there (compute the holes on the depth
*before* the removal, as :meth:`~correspondence.pipeline.TransferPipeline.process` does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


BLOB_MIN_RADIUS_PX = 1.5  # a blob is wider than an edge strip (1-2 px) ...
BLOB_AREA = 2.0  # ... and about round: at most this many times the disc of its inscribed radius (+1 px)


@dataclass(frozen=True)
class DepthHoleSettings:
    max_radius_px: float = 7.0  # a missing component this narrow is a hole (stereo blobs: radius 2-6 px)
    edge_px: float = 2.0  # missing pixels this near a valid one are the camera's edge drop-out (1-2 px a side)
    min_holes: int = 4  # round hole blobs a frame needs before its missing pixels are read as holes

    def __post_init__(self) -> None:
        if self.max_radius_px < 0 or self.edge_px < 0 or self.min_holes < 1:
            raise ConfigError(f"depth holes need max_radius_px, edge_px >= 0 and min_holes >= 1, got "
                              f"{self.max_radius_px}, {self.edge_px}, {self.min_holes}")


def depth_holes(depth: np.ndarray, settings: DepthHoleSettings | None = None) -> np.ndarray:
    """(H, W) bool: the pixels of ``depth`` (metres, 0 / NaN = no reading) the camera left as holes (module doc);
    all False for a frame without them."""
    import cv2

    s = settings or DepthHoleSettings()
    depth = np.asarray(depth)
    with np.errstate(invalid="ignore"):
        missing = ~(np.isfinite(depth) & (depth > 0))
    none = np.zeros(depth.shape, dtype=bool)
    if not missing.any() or missing.all():
        return none
    count, labels = cv2.connectedComponents(missing.astype(np.uint8), connectivity=8)
    distance = cv2.distanceTransform(missing.astype(np.uint8), cv2.DIST_L2, 5)  # to the nearest valid pixel
    radius = np.zeros(count, dtype=np.float32)
    np.maximum.at(radius, labels[missing], distance[missing])
    narrow = radius <= s.max_radius_px
    narrow[0] = False  # label 0: the valid pixels
    area = np.bincount(labels[missing], minlength=count)
    blobs = narrow & (radius >= BLOB_MIN_RADIUS_PX) & (area <= BLOB_AREA * np.pi * (radius + 1.0) ** 2)
    if int(blobs.sum()) < s.min_holes:
        return none
    return missing & (narrow[labels] | (distance <= s.edge_px))


__all__ = ["DepthHoleSettings", "depth_holes"]
