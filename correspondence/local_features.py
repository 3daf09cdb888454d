"""Local features for same-object geometry: OpenCV SIFT (ORB, AKAZE selectable) at the original resolution.

Dense cells of a learned or hand-made descriptor are matched upright and at one scale; a rotated or re-scaled view
of the same object leaves most of them wrong. Scale-space detectors with oriented descriptors are invariant to
both, and on a rigid object their ratio-tested, mutual matches are the evidence a robust model needs (OpenCV
USAC / MAGSAC++ in :mod:`correspondence.verify`, fused with the refined dense matches). Only same-object transfer
uses them: across instances (semantic transfer) no such model exists.

Small images (shorter side below 375 px) get the settings an expert would use (a lower contrast threshold, the
image doubled, as in Lowe's paper), so a 150-px crop still yields features; larger ones keep OpenCV's defaults
(a contrast threshold of 0.01 on a 500-px photo yields thousands of weak features and costs seconds to match).
But a large frame may show the object small (a rocket at 0.25x fills 160 x 107 px of a 640 x 427 frame: 35 SIFT
features at the default contrast, 6 matches, 3 right; at 0.01, 17 matches, 12 right): when the frame-size settings
give fewer than ``retry_below`` matches and either image was detected at the default contrast, both are detected
again at ``small_contrast`` (:func:`match_images`; the demo's once, kept in :class:`FineRetry`) and the retry's
matches are kept when there are more of them. Frames with enough matches never pay for it.

Coordinates are the project's continuous pixels (OpenCV's pixel centres + 0.5).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .errors import ConfigError

LOCAL_FEATURES = ("none", "sift", "orb", "akaze")


@dataclass(frozen=True)
class LocalFeatureSettings:
    kind: str = "sift"  # none | sift | orb | akaze
    ratio: float = 0.8  # Lowe's ratio test
    mutual: bool = True  # keep a match only when it is also the best the other way
    max_features: int = 4000  # ORB's budget; SIFT / AKAZE keep their strongest this many
    small_side_px: int = 375  # below this shorter side SIFT lowers its contrast threshold ...
    small_contrast: float = 0.01  # ... to this (OpenCV's default: 0.04) ...
    upsample_below_px: int = 375  # ... and the image is doubled
    retry_below: int = 15  # fewer matches than this (at the default contrast): both images again at small_contrast
    # (a small object in a large frame); 0: never

    def __post_init__(self) -> None:
        if self.kind not in LOCAL_FEATURES:
            raise ConfigError(f"local features must be one of {', '.join(LOCAL_FEATURES)}, got {self.kind!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"the ratio test needs a ratio in (0, 1], got {self.ratio}")


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints (continuous pixels of the original image) and their descriptors."""

    xy: np.ndarray  # (K, 2)
    descriptors: np.ndarray | None  # (K, D) float32 (SIFT) or uint8 (ORB, AKAZE); None without keypoints
    binary: bool  # Hamming distance (ORB, AKAZE) or L2 (SIFT)

    def __len__(self) -> int:
        return len(self.xy)


def _gray_u8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return image


def _detector(settings: LocalFeatureSettings, shorter_side: int):
    if settings.kind == "sift":
        contrast = settings.small_contrast if shorter_side < settings.small_side_px else 0.04
        return cv2.SIFT_create(nfeatures=settings.max_features, contrastThreshold=contrast)
    if settings.kind == "orb":
        return cv2.ORB_create(nfeatures=settings.max_features)
    if not available("akaze"):
        raise ConfigError(f"AKAZE is not in this OpenCV build ({cv2.__version__}: OpenCV 5 moved it to the contrib "
                          f"modules); use sift or orb, or install an OpenCV with AKAZE")
    return cv2.AKAZE_create(threshold=1e-4 if shorter_side < settings.small_side_px else 1e-3)


def available(kind: str) -> bool:
    """Whether the installed OpenCV has this detector (AKAZE left the main modules in OpenCV 5)."""
    return kind == "none" or hasattr(cv2, {"sift": "SIFT_create", "orb": "ORB_create", "akaze": "AKAZE_create"}[kind])


def detect(image: np.ndarray, settings: LocalFeatureSettings, mask: np.ndarray | None = None) -> LocalFeatures:
    """Detect and describe ``image`` (RGB or grey) at full resolution (doubled when small); ``mask``: only
    keypoints inside it (non-zero = object)."""
    gray = _gray_u8(image)
    binary = settings.kind in ("orb", "akaze")
    if settings.kind == "none":
        return LocalFeatures(np.zeros((0, 2)), None, binary)
    factor = 2.0 if min(gray.shape) < settings.upsample_below_px else 1.0
    work = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR) if factor != 1 else gray
    work_mask = None
    if mask is not None:
        work_mask = (np.asarray(mask).reshape(gray.shape) > 0).astype(np.uint8) * 255
        if factor != 1:
            work_mask = cv2.resize(work_mask, (work.shape[1], work.shape[0]), interpolation=cv2.INTER_NEAREST)
    keypoints, descriptors = _detector(settings, min(gray.shape)).detectAndCompute(work, work_mask)
    if descriptors is None or not keypoints:
        return LocalFeatures(np.zeros((0, 2)), None, binary)
    # OpenCV pixel centres of the worked image -> continuous pixels of the original (a doubling maps x to 2x + 0.5).
    xy = (np.array([k.pt for k in keypoints], dtype=np.float64) + 0.5) / factor
    return LocalFeatures(xy, descriptors, binary)


def match(demo: LocalFeatures, live: LocalFeatures, settings: LocalFeatureSettings) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-tested (and, with ``mutual``, mutual) nearest-neighbour matches: ``(demo_xy, live_xy)``."""
    empty = (np.zeros((0, 2)), np.zeros((0, 2)))
    if demo.descriptors is None or live.descriptors is None or len(demo) < 2 or len(live) < 2:
        return empty
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING if demo.binary else cv2.NORM_L2)
    forward = matcher.knnMatch(demo.descriptors, live.descriptors, k=2)
    pairs = [(m.queryIdx, m.trainIdx) for m, n in (k for k in forward if len(k) == 2)
             if m.distance < settings.ratio * n.distance]
    if settings.mutual and pairs:
        backward = matcher.match(live.descriptors, demo.descriptors)
        best_back = {m.queryIdx: m.trainIdx for m in backward}
        pairs = [(q, t) for q, t in pairs if best_back.get(t) == q]
    if not pairs:
        return empty
    index = np.array(pairs)
    return demo.xy[index[:, 0]], live.xy[index[:, 1]]


@dataclass(eq=False)
class FineRetry:
    """The demo's pixels (and mask) for the low-contrast retry of :func:`match_images`; its features are detected
    on first need and kept (one demo, many live frames)."""

    image: np.ndarray
    mask: np.ndarray | None = None
    features: LocalFeatures | None = None


def _default_contrast(image: np.ndarray, settings: LocalFeatureSettings) -> bool:
    return settings.kind == "sift" and min(np.asarray(image).shape[:2]) >= settings.small_side_px


def match_images(demo: LocalFeatures, retry: FineRetry | None, live_image: np.ndarray,
                 settings: LocalFeatureSettings, live_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The live image's local-feature matches to the demo's (:func:`match`), retried at the small-image contrast
    when too few (see the module); ``retry`` None: no retry."""
    found = match(demo, detect(live_image, settings, live_mask), settings)
    if retry is None or len(found[0]) >= settings.retry_below or not (
            _default_contrast(retry.image, settings) or _default_contrast(live_image, settings)):
        return found
    fine = replace(settings, small_side_px=sys.maxsize)  # the low contrast at any size; upsampling unchanged
    if retry.features is None:
        retry.features = detect(retry.image, fine, retry.mask)
    again = match(retry.features, detect(live_image, fine, live_mask), fine)
    return again if len(again[0]) > len(found[0]) else found
