"""The frame chain a CUDA graph captures (:func:`correspondence.frame_graph.frame_function`), run eagerly on the
CPU: it must compute exactly what the step-by-step path computes (device preprocessing, the backbone, matching),
with and without a live mask. The GPU tier then checks the captured replay of the same function."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from correspondence.api import Matcher
from correspondence.frame_graph import frame_function, image_cells_of, normalisation_constants
from correspondence.keypoint_matching import live_cells, match_on_device, matches_from_host
from correspondence.preprocessing import plan_geometry


def _textured(seed: int, wh=(160, 120)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 255, (wh[1] // 8, wh[0] // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, wh, interpolation=cv2.INTER_CUBIC)


def test_frame_function_equals_the_step_by_step_frame():
    matcher = Matcher.create("test_vit_tiny", random_weights=True, size=112, refine=False)
    extractor = matcher.extractor
    extractor.device_preprocess = True  # the CUDA-graph path's preprocessing (torch pad + resize), here on the CPU
    demo = _textured(0)
    live = np.roll(demo, (5, 9), axis=(0, 1)).copy()
    xs, ys = np.meshgrid(np.linspace(20, 140, 4), np.linspace(20, 100, 3))
    keypoints = {"keypoints": [{"name": f"k{i}", "xy": [float(x), float(y)]} for i, (x, y) in
                               enumerate(zip(xs.ravel(), ys.ravel()))]}
    query = matcher.prepare(demo, keypoints)
    geometry, color = plan_geometry(live.shape[1], live.shape[0], extractor.settings.preprocess,
                                    extractor.backbone.spec.contract.patch_size)
    frame = frame_function(extractor, query, matcher.settings, geometry, color, normalisation_constants(extractor))
    fmap = extractor.extract_batch([live], cache=False)[0]  # the step-by-step path
    mask = np.zeros(live.shape[:2], bool)
    mask[10:90, 20:120] = True
    assert torch.equal(image_cells_of(extractor, geometry), fmap.image_cells().flatten())
    for live_mask in (None, mask):
        want = match_on_device(query, fmap, live_cells(fmap, live_mask, matcher.settings), matcher.settings)
        valid = image_cells_of(extractor, geometry) if live_mask is None else live_cells(fmap, live_mask,
                                                                                         matcher.settings)
        with torch.no_grad():
            record, features = frame(torch.from_numpy(live), valid)
        assert torch.equal(features, fmap.features)
        assert torch.equal(record, want)
        got = matches_from_host(query, fmap, record.numpy(), matcher.settings)
        assert [m.live_xy for m in got] == [m.live_xy for m in matches_from_host(query, fmap, want.numpy(),
                                                                                 matcher.settings)]
    # the mask matters: some match moves when the frame may only match inside it
    free = match_on_device(query, fmap, None, matcher.settings)
    assert not torch.equal(free, match_on_device(query, fmap, live_cells(fmap, mask, matcher.settings),
                                                 matcher.settings))
