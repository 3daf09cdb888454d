"""Local features' low-contrast retry (``correspondence/local_features.py``, ``match_images``): a small object in a
large frame gets too few SIFT matches at the frame-size settings; both images are detected again at the
small-image contrast."""
from __future__ import annotations

import cv2
import numpy as np
import skimage.data

from correspondence.local_features import FineRetry, LocalFeatureSettings, detect, match, match_images


def shrunk_copy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """skimage's rocket (640 x 427) and a copy turned 30 deg at 0.25x in a frame as large, at 0.6 of its contrast,
    with noise and JPEG: a 160 x 107-px object in a frame too large for the small-image settings."""
    demo = skimage.data.rocket()
    height, width = demo.shape[:2]
    warp = cv2.getRotationMatrix2D((width / 2, height / 2), 30, 0.25)
    live = cv2.warpAffine(cv2.GaussianBlur(demo, (0, 0), 1.9), warp, (width, height)).astype(np.float32)
    live = np.clip(0.6 * live + np.random.default_rng(0).normal(0, 3, live.shape), 0, 255).astype(np.uint8)
    live = cv2.imdecode(cv2.imencode(".jpg", live, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_UNCHANGED)
    return demo, live, warp


def test_too_few_matches_in_a_large_frame_are_retried_at_the_small_image_contrast():
    demo, live, warp = shrunk_copy()
    settings = LocalFeatureSettings()
    features = detect(demo, settings)
    first = match(features, detect(live, settings), settings)
    assert len(first[0]) < settings.retry_below  # the frame-size settings (contrast 0.04) see too little
    retry = FineRetry(demo)
    demo_xy, live_xy = match_images(features, retry, live, settings)
    truth = (demo_xy - 0.5) @ warp[:, :2].T + warp[:, 2] + 0.5  # continuous pixels
    right = np.linalg.norm(truth - live_xy, axis=1) < 3.0
    assert len(demo_xy) > len(first[0]) and right.sum() >= 10
    assert retry.features is not None  # the demo's low-contrast features, kept for the next frame


def test_enough_matches_or_retry_off_keep_the_first_pass():
    demo, live, _ = shrunk_copy()
    settings = LocalFeatureSettings()
    features = detect(demo, settings)
    retry = FineRetry(demo)
    same = match_images(features, retry, demo, settings)  # the demo against itself: plenty of matches
    assert retry.features is None and len(same[0]) >= settings.retry_below
    off = LocalFeatureSettings(retry_below=0)
    first = match(features, detect(live, off), off)
    again = match_images(features, FineRetry(demo), live, off)
    assert len(again[0]) == len(first[0])
