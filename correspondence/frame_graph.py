"""One live camera frame as one CUDA graph: upload, pad + resize + normalise, backbone, keypoint matching.

With ``cuda_graphs`` the backbone alone replays in about a millisecond, and what is left around it (a dozen
preprocessing kernels, twenty matching kernels, their launches and the copies) would cost half as much again. So
for a prepared demo and a camera resolution, :class:`FrameGraph` captures the whole chain once; per frame the host
copies the uint8 image into pinned memory, the GPU replays, and one ``(N, 5)`` record comes back. It computes
exactly what :func:`~correspondence.keypoint_matching.match_prepared` computes on a device-preprocessed frame
(``tests/test_gpu.py`` checks equality); frames with a live mask take that path instead (the mask changes every
frame).
"""
from __future__ import annotations

import numpy as np
import torch

from .device import to_numpy
from .features import FeatureExtractor, FeatureMap
from .keypoint_matching import DemoQuery, KeypointMatch, MatchSettings, match_on_device, matches_from_host
from .preprocessing import normalise_batch, pad_resize_tensor, plan_geometry, to_rgb_array


class FrameGraph:
    """The captured frame chain for one (demo query, frame height, frame width)."""

    def __init__(self, extractor: FeatureExtractor, query: DemoQuery, settings: MatchSettings,
                 frame_hw: tuple[int, int]) -> None:
        runtime = extractor.runtime
        contract = extractor.backbone.spec.contract
        preprocess = extractor.settings.preprocess
        height, width = frame_hw
        self.geometry, color = plan_geometry(width, height, preprocess, contract.patch_size)
        device = extractor.device
        self.pinned = torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=True)
        self.query = query
        self.settings = settings
        kind, layers = extractor.settings.kind, extractor.settings.layers
        norm = extractor.backbone.spec.preprocessing
        # On the device before capture (a host -> device copy may not happen inside a CUDA-graph capture), and kept
        # for the graph's lifetime: the graph reads their addresses at every replay.
        mean = torch.tensor(norm.mean, dtype=torch.float32, device=device)
        std = torch.tensor(norm.std, dtype=torch.float32, device=device)
        self.constants = (mean, std)

        def frame(rgb: torch.Tensor) -> list[torch.Tensor]:
            image = normalise_batch(pad_resize_tensor(rgb, self.geometry, color, preprocess.resample)[None],
                                    mean, std)
            features = torch.cat(runtime.forward_eager(image, kind, layers), dim=1).float()[0]
            live = FeatureMap(features, self.geometry, contract.patch_size, extractor.settings.convention)
            return [match_on_device(query, live, None, settings), features]

        self.graph = runtime.capture(frame, [torch.zeros((height, width, 3), dtype=torch.uint8, device=device)])
        record, features = self.graph.outputs
        # Only shapes and geometry are read from it on the host (cell -> pixel); never its values.
        self.live_template = FeatureMap(features, self.geometry, contract.patch_size, extractor.settings.convention)

    def __call__(self, rgb: np.ndarray) -> list[KeypointMatch]:
        rgb = to_rgb_array(rgb)
        np.copyto(to_numpy(self.pinned), rgb)  # a view of the pinned buffer: the upload can then run async
        record, _ = self.graph(self.pinned)
        return matches_from_host(self.query, self.live_template, to_numpy(record), self.settings)


def can_capture_frame(extractor: FeatureExtractor, live_mask) -> bool:
    """Whether a live frame can run as one graph: a CUDA-graph runtime, device preprocessing, no per-frame mask."""
    return bool(extractor.runtime.cuda_graphs and extractor.device_preprocess and live_mask is None)
