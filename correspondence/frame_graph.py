"""One live camera frame as one CUDA graph: upload, pad + resize + normalise, backbone, keypoint matching.

With ``cuda_graphs`` the backbone alone replays in about a millisecond, and what is left around it (a dozen
preprocessing kernels, twenty matching kernels, their launches and the copies) would cost half as much again. So
for a prepared demo and a camera resolution, :class:`FrameGraph` captures the whole chain once; per frame the host
copies the uint8 image into pinned memory (and, for a frame with an object mask, the live cells the mask allows:
:func:`~correspondence.keypoint_matching.live_cells`, a few hundred booleans), the GPU replays, and one ``(N, 5)``
record comes back. It computes exactly what :func:`~correspondence.keypoint_matching.match_prepared` computes on a
device-preprocessed frame: :func:`frame_function` is the chain itself, device-agnostic, so the CPU tests run it
eagerly against the step-by-step path and ``tests/test_gpu.py`` checks the captured graph.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .device import to_numpy
from .features import FeatureExtractor, FeatureMap
from .keypoint_matching import (DemoQuery, KeypointMatch, MatchSettings, live_cells, match_on_device,
                                matches_from_host)
from .preprocessing import ImageGeometry, normalise_batch, pad_resize_tensor, plan_geometry, to_rgb_array


def frame_function(extractor: FeatureExtractor, query: DemoQuery, settings: MatchSettings, geometry: ImageGeometry,
                   color, constants: tuple[torch.Tensor, torch.Tensor]
                   ) -> Callable[[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
    """``(rgb uint8 (H, W, 3), valid live cells (h * w,) bool) -> [record, live features]`` on the extractor's
    device: the whole frame, built only from fixed-shape tensor operations (what a CUDA graph can capture).
    ``constants``: the normalisation mean and std, made on the device beforehand (the caller keeps them alive)."""
    runtime = extractor.runtime
    contract = extractor.backbone.spec.contract
    preprocess = extractor.settings.preprocess
    kind, layers = extractor.settings.kind, extractor.settings.layers
    mean, std = constants

    def frame(rgb: torch.Tensor, valid: torch.Tensor) -> list[torch.Tensor]:
        image = normalise_batch(pad_resize_tensor(rgb, geometry, color, preprocess.resample)[None], mean, std)
        features = torch.cat(runtime.forward_eager(image, kind, layers), dim=1).float()[0]
        live = FeatureMap(features, geometry, contract.patch_size, extractor.settings.convention)
        return [match_on_device(query, live, valid, settings), features]

    return frame


def normalisation_constants(extractor: FeatureExtractor) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's mean and std on the extractor's device (a host -> device copy may not happen inside a
    capture)."""
    norm = extractor.backbone.spec.preprocessing
    return (torch.tensor(norm.mean, dtype=torch.float32, device=extractor.device),
            torch.tensor(norm.std, dtype=torch.float32, device=extractor.device))


def image_cells_of(extractor: FeatureExtractor, geometry: ImageGeometry) -> torch.Tensor:
    """The live cells a frame without a mask may match in (the image, not its padding), flattened, on the device:
    what :func:`~correspondence.keypoint_matching.match_on_device` uses when it is given no cells."""
    patch = extractor.backbone.spec.contract.patch_size
    grid = torch.zeros((1, geometry.processed_height // patch, geometry.processed_width // patch),
                       device=extractor.device)
    return FeatureMap(grid, geometry, patch, extractor.settings.convention).image_cells().flatten()


class FrameGraph:
    """The captured frame chain for one (demo query, frame height, frame width)."""

    def __init__(self, extractor: FeatureExtractor, query: DemoQuery, settings: MatchSettings,
                 frame_hw: tuple[int, int]) -> None:
        contract = extractor.backbone.spec.contract
        height, width = frame_hw
        self.geometry, color = plan_geometry(width, height, extractor.settings.preprocess, contract.patch_size)
        device = extractor.device
        self.pinned = torch.empty((height, width, 3), dtype=torch.uint8, pin_memory=True)
        self.query = query
        self.settings = settings
        # Kept for the graph's lifetime: it reads their addresses at every replay.
        self.constants = normalisation_constants(extractor)
        frame = frame_function(extractor, query, settings, self.geometry, color, self.constants)
        self.image_valid = image_cells_of(extractor, self.geometry)  # the cells of a frame without a mask, once
        self.graph = extractor.runtime.capture(frame, [torch.zeros((height, width, 3), dtype=torch.uint8,
                                                                   device=device), self.image_valid])
        record, features = self.graph.outputs
        # Only shapes and geometry are read from it on the host (cell -> pixel, mask -> cells); never its values.
        self.live_template = FeatureMap(features, self.geometry, contract.patch_size, extractor.settings.convention)

    def __call__(self, rgb: np.ndarray, live_mask: np.ndarray | None = None) -> list[KeypointMatch]:
        rgb = to_rgb_array(rgb)
        valid = self.image_valid if live_mask is None else live_cells(self.live_template, live_mask, self.settings)
        np.copyto(to_numpy(self.pinned), rgb)  # a view of the pinned buffer: the upload can then run async
        record, _ = self.graph(self.pinned, valid)
        return matches_from_host(self.query, self.live_template, to_numpy(record), self.settings)


def can_capture_frame(extractor: FeatureExtractor) -> bool:
    """Whether a live frame can run as one graph: a CUDA-graph runtime with device preprocessing (a frame with a
    mask too: its cells are an input of the graph)."""
    return bool(extractor.runtime.cuda_graphs and extractor.device_preprocess)
