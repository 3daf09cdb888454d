"""The arithmetic of the released SOCO evaluation, and this project's float64 alternative, behind one interface.

Checked against GenIntel/SOCO ``scripts/evaluate_dinov2.py`` (``_dense_features``, ``_eval_points``,
``predict_pair``) and GenIntel/OmniProbe ``omniprobe/datasets/soco.py`` (``__getitem__``),
``omniprobe/scripts/eval_correspondence_soco.py`` (``compute_predictions``, ``evaluate_matches``,
``evaluate_dataset``), ``omniprobe/scripts/eval_correspondence_geometric_soco.py`` (``_kp_to_patch_index``,
``compute_predictions_geometric``, ``evaluate_geometric_matches``) and ``omniprobe/utils/correspondence.py``
(``argmax_2d``, ``soft_argmax_2d``). ``tests/test_soco_parity.py`` re-implements those functions independently and
asserts the same predictions and PCK.

The released arithmetic (``arithmetic="reference"``), per image of side ``S`` (processed) padded to a square of
side ``D = max(W, H)`` at the top-left:

* a keypoint ``x`` becomes the int32 ``p = int32(int32(int(x)) * S / D)`` (the division in float32, then truncated)
  and the float32 ``p / S`` in ``[0, 1)``; queries are sampled at ``2 p / S - 1`` with ``grid_sample(bilinear,
  align_corners=True)`` in float32;
* the feature maps are L2-normalised per cell, the query is sampled from the normalised map and used as it is,
  similarities are ``einsum("kc,chw->khw")`` in fp32;
* a predicted cell ``(u, v)`` (integer for argmax, fractional for soft-argmax) is the float32 ``(u, v) / w``;
* an error is the float32 norm of the difference in that unit, divided by ``scale = max(box side) / D``; a keypoint
  is correct when ``error / scale < alpha`` (float32, strict). SOC-geo converts the error to a Python float
  first (``.item()``), divides in float64 and compares the float32 of that, as its script does;
* SOC-geo's patch of a target keypoint is ``int(float(p / S) * w)`` (the float32 value widened, clamped).

``arithmetic="float64"``: the exact geometry of :class:`~correspondence.features.FeatureMap` (any convention and
pad policy), errors in original pixels against ``alpha * max(box side)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...coords import Convention, grid_to_normalised
from ...features import FeatureMap
from ...device import to_numpy
from .loader import SocoView
from .protocol import ProtocolSettings


def reference_targets(fmap: FeatureMap, xy: np.ndarray) -> np.ndarray:
    """Target positions in original pixels as the float64 arithmetic sees them: under the ``soco`` convention with
    the reference's two truncations (original, then processed pixels)."""
    xy = np.asarray(xy, dtype=np.float64)
    if fmap.convention is Convention.SOCO:
        processed = np.trunc(fmap.geometry.to_processed(np.trunc(xy)))
        return fmap.geometry.to_original(processed)
    return xy


def truncated_points(xy: np.ndarray, canvas: int, size: int) -> torch.Tensor:
    """The reference's keypoints in processed pixels: ``int32(int32(int(x)) * S / D)``, int32 on the CPU."""
    ints = torch.tensor([[int(x), int(y)] for x, y in np.asarray(xy, dtype=np.float64).reshape(-1, 2)],
                        dtype=torch.int32).reshape(-1, 2)
    return (ints * size / canvas).to(torch.int32)


class Frame:
    """One image of a pair as the protocol measures it: where its queries are sampled, where its targets lie, what a
    predicted cell means and how an error compares with alpha. Positions are CPU tensors in the frame's unit
    (``reference``: float32 fractions of the processed side; ``float64``: original pixels)."""

    def __init__(self, fmap: FeatureMap, view: SocoView, settings: ProtocolSettings) -> None:
        self.fmap = fmap
        self.view = view
        self.reference = settings.arithmetic == "reference"
        self.size = int(fmap.processed_wh[0])
        self.canvas = int(max(fmap.geometry.original_width, fmap.geometry.original_height))
        self.grid_w, self.grid_h = fmap.grid_wh
        if view.bbox is None:
            self.scale = 1.0
        else:
            left, top, right, bottom = view.bbox
            self.scale = float(max(right - left, bottom - top)) / max(view.size)
        self.side_px = view.bbox_max_side

    # ---- positions
    def points(self, xy: np.ndarray) -> torch.Tensor:
        """Annotated keypoints (original pixels) as the protocol sees them."""
        if self.reference:
            return truncated_points(xy, self.canvas, self.size).float() / self.size
        return torch.from_numpy(reference_targets(self.fmap, np.asarray(xy, dtype=np.float64).reshape(-1, 2)))

    def query_grid(self, xy: np.ndarray) -> torch.Tensor:
        """``(K, 2)`` float32 ``grid_sample`` coordinates in ``[-1, 1]`` of source keypoints."""
        if self.reference:
            return self.points(xy) * 2 - 1
        uv = self.fmap.original_to_grid(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
        return torch.from_numpy(grid_to_normalised(uv, self.fmap.grid_wh)).float()

    def cells(self, uv: torch.Tensor) -> torch.Tensor:
        """Predicted cells ``(K, 2)`` (column, row; float32 on the CPU) -> positions."""
        if self.reference:
            return uv.float() / self.grid_w
        return torch.from_numpy(self.fmap.cell_to_original(to_numpy(uv, np.float64)))

    def cell_position(self, index: int) -> torch.Tensor:
        """A flat cell index (SOC-geo's best patch, its top-left corner) -> position."""
        col, row = index % self.grid_w, index // self.grid_w
        if self.reference:
            return torch.tensor([float(col) / float(self.grid_w), float(row) / float(self.grid_h)],
                                dtype=torch.float32)
        return torch.from_numpy(self.fmap.cell_to_original(np.array([[col, row]], dtype=np.float64))[0])

    def patches(self, points: torch.Tensor) -> list[int]:
        """Flat index of the patch holding each position (SOC-geo's candidates)."""
        if self.reference:
            out = []
            for x, y in points.tolist():  # float32 values widened to Python floats, as ``.item()`` gives them
                px = min(max(int(x * self.grid_w), 0), self.grid_w - 1)
                py = min(max(int(y * self.grid_h), 0), self.grid_h - 1)
                out.append(py * self.grid_w + px)
            return out
        processed = self.fmap.geometry.to_processed(to_numpy(points, np.float64))
        pw, ph = self.fmap.processed_wh[0] / self.grid_w, self.fmap.processed_wh[1] / self.grid_h
        col = np.clip(np.floor(processed[:, 0] / pw), 0, self.grid_w - 1).astype(int)
        row = np.clip(np.floor(processed[:, 1] / ph), 0, self.grid_h - 1).astype(int)
        return (row * self.grid_w + col).tolist()

    # ---- errors
    def errors(self, predicted: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Row-wise distances between positions (the reference: float32 norm, then ``/ scale``)."""
        distance = (predicted - targets).norm(p=2, dim=-1)
        return distance / self.scale if self.reference else distance

    def correct(self, errors: torch.Tensor, alphas: tuple[float, ...]) -> np.ndarray:
        """``(N, len(alphas))`` booleans: strict ``<``."""
        if self.reference:
            return to_numpy(torch.stack([errors < a for a in alphas], -1).reshape(-1, len(alphas)))
        return to_numpy(torch.stack([errors < a * self.side_px for a in alphas], -1).reshape(-1, len(alphas)))

    def geo_correct(self, predicted: torch.Tensor, target: torch.Tensor, alphas: tuple[float, ...]) -> tuple:
        """SOC-geo's comparison: the error as a Python float divided by the scale, compared in float32."""
        distance = (predicted - target).norm(p=2).item()
        if self.reference:
            value = torch.tensor([distance / self.scale], dtype=torch.float32)
            return tuple(bool(value[0] < float(a)) for a in alphas), distance * self.canvas
        return tuple(bool(distance < a * self.side_px) for a in alphas), distance

    def to_pixels(self, distance: torch.Tensor) -> np.ndarray:
        """Errors in original pixels (what records report)."""
        values = to_numpy(distance, np.float64)
        return values * self.scale * self.canvas if self.reference else values

    def positions_to_pixels(self, positions: torch.Tensor) -> np.ndarray:
        values = to_numpy(positions, np.float64)
        return values * self.canvas if self.reference else values


# ---- similarities and localisation ------------------------------------------------------------------------------

def similarities(source: FeatureMap, target: FeatureMap, grid: torch.Tensor, settings: ProtocolSettings
                 ) -> torch.Tensor:
    """``(K, h, w)`` fp32 similarity maps of the queries at ``grid`` (``(K, 2)`` in ``[-1, 1]``) on the target's
    device. ``before-sampling``: both maps are L2-normalised per cell, the query is sampled from the normalised map
    (kept as sampled, or re-normalised with ``query="unit"``); ``after-sampling``: sampled from the raw map, then
    the query is normalised (cosine similarity)."""
    device = target.features.device
    # contiguous (C, h, w), as OmniProbe's backbones return them (``tokens_to_output``): the per-cell norms are then
    # summed in the reference's order, to the last bit (an extractor's channels-last view would round differently)
    src = source.features.to(device).float().contiguous()
    trg = F.normalize(target.features.float().contiguous(), p=2, dim=0)
    padding = "zeros" if settings.arithmetic == "reference" else "border"
    where = grid.to(device=device, dtype=torch.float32)[None, None]
    if settings.normalise == "before-sampling":
        query = F.grid_sample(F.normalize(src, p=2, dim=0)[None], where, mode="bilinear", align_corners=True,
                              padding_mode=padding)[0, :, 0].t()
        if settings.query == "unit":
            query = F.normalize(query, p=2, dim=1)
    else:
        query = F.grid_sample(src[None], where, mode="bilinear", align_corners=True,
                              padding_mode=padding)[0, :, 0].t()
        query = F.normalize(query, p=2, dim=1)
    return torch.einsum("kc,chw->khw", query, trg)


def hard_argmax(maps: torch.Tensor) -> torch.Tensor:
    """``(K, h, w)`` -> ``(K, 2)`` int64 (column, row) of each map's first maximum."""
    w = maps.shape[-1]
    index = maps.flatten(1).argmax(dim=1)
    return torch.stack((index % w, index // w), dim=1)


def soft_argmax(maps: torch.Tensor, beta: float = 0.02, window: int = 7) -> torch.Tensor:
    """``(K, h, w)`` -> ``(K, 2)`` float (column, row): the expectation of the cell coordinates under
    ``softmax((s - max s) / beta)``. ``window > 0``: over the ``(2 window + 1)^2`` cells around the argmax (cells
    outside the map take no weight); ``window == 0``: over the whole map; ``window < 0``: the whole map with the
    similarities multiplied by a Gaussian of sigma ``-window`` centred on the argmax. (OmniProbe's semantics.)"""
    k, h, w = maps.shape
    device = maps.device
    centre = hard_argmax(maps)
    if window > 0:
        steps = torch.arange(-window, window + 1, device=device)
        dy, dx = torch.meshgrid(steps, steps, indexing="ij")
        rows = centre[:, 1:2] + dy.reshape(1, -1)
        cols = centre[:, 0:1] + dx.reshape(1, -1)
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
        values = maps[torch.arange(k, device=device)[:, None], rows, cols].masked_fill(~inside, -1e9)
        weights = torch.softmax((values - values.max(dim=-1, keepdim=True).values) / beta, dim=-1)
        return torch.stack(((weights * cols.to(weights.dtype)).sum(-1), (weights * rows.to(weights.dtype)).sum(-1)),
                           dim=-1)
    if window < 0:
        sigma = float(-window)
        ys = torch.arange(h, device=device).view(1, h)
        xs = torch.arange(w, device=device).view(1, w)
        gy = torch.exp(-((ys - centre[:, 1:2]) ** 2) / (2 * sigma ** 2))
        gx = torch.exp(-((xs - centre[:, 0:1]) ** 2) / (2 * sigma ** 2))
        maps = maps * gy[:, :, None] * gx[:, None, :]
    flat = maps.reshape(k, h * w)
    weights = torch.softmax((flat - flat.max(dim=-1, keepdim=True).values) / beta, dim=-1).view(k, h, w)
    xs = torch.linspace(0, w - 1, w, device=device)
    ys = torch.linspace(0, h - 1, h, device=device)
    return torch.stack(((weights.sum(dim=1) * xs.view(1, w)).sum(dim=1),
                        (weights.sum(dim=2) * ys.view(1, h)).sum(dim=1)), dim=-1)


def locate(maps: torch.Tensor, settings: ProtocolSettings) -> torch.Tensor:
    """Predicted cells ``(K, 2)`` (column, row) as float32 on the CPU (where the reference takes them)."""
    if settings.method == "soft-argmax":
        return soft_argmax(maps, settings.beta, settings.window).float().cpu()
    return hard_argmax(maps).float().cpu()
