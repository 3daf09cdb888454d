"""Object masks behind one interface, from several mask sources, always labelled with who made them.

Every mask source implements :class:`MaskSource`: ``segment(image, prompt, depth=None) -> MaskResult``. The
result carries the mask (HxW bool, the size of the image), a score, the source's name, the prompt used and
source-specific details, so a pipeline always knows whether a mask came from the user, from depth, from
GrabCut or from Segment Anything.

Mask sources
------------
``given``   :class:`GivenMask`: the caller's own mask (checked against the image size).
``depth``   :class:`DepthForeground`: the nearest depth-connected surface inside a depth range.
``grabcut`` :class:`GrabCutBox`: OpenCV GrabCut initialised with a box.
``sam``     :class:`SamMaskSource`: Segment Anything (``segment-anything`` package, official checkpoints resolved
            like every other pretrained weight: explicit path -> ``$SOCO_WEIGHTS_DIR`` -> torch hub cache ->
            download; ``weights_only=True`` loading).
``sam2``    :class:`~correspondence.sam2_source.Sam2MaskSource`: SAM 2.1 Hiera tiny / small / base_plus / large
            (Meta's ``sam2`` package), same prompts and weight resolution.

:func:`mask_source_from_name` builds one by name; :func:`auto_mask_source` picks the best available one (SAM 2.1 tiny
when its weights resolve, else SAM, else depth when a depth map is given, else GrabCut) and says why. Where the
pipeline has the demo's features, it prompts the source where the demo object is (:mod:`~correspondence.localise`);
the automatic rules below are the fallback when nothing matches.

Coordinates are continuous pixels: pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``. A point prompt must lie in
``[0, W) x [0, H)``, a box ``(x0, y0, x1, y1)`` in ``[0, W] x [0, H]`` with ``x0 < x1`` and ``y0 < y1``.
No mask source returns an empty mask: when nothing is found it raises :class:`NoMaskError` (an :class:`InputError`).
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .backbones.weights import PretrainedSource, load_state_dict, resolve_weights, weights_hash
from .depth import to_metres
from .deprecation import module_getattr, warn_renamed
from .device import to_numpy
from .errors import (ConfigError, CorruptCheckpointError, InputError, MissingDependencyError,
                     WeightsNotFoundError)
from .optional import require
from .preprocessing import to_rgb_array


class NoMaskError(InputError):
    """The mask source ran but found no usable object mask for this image and prompt."""


# ----------------------------------------------------------------------------------------------------------------
# Prompt and result
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prompt:
    """What to segment: an optional point ``(x, y)`` and/or an optional box ``(x0, y0, x1, y1)``, continuous pixels.

    Neither given (:meth:`auto`) means "the main object": each mask source documents its automatic rule.
    """

    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.point is not None:
            point = _float_tuple(self.point, 2, "prompt point")
            object.__setattr__(self, "point", point)
        if self.box is not None:
            box = _float_tuple(self.box, 4, "prompt box")
            if not (box[0] < box[2] and box[1] < box[3]):
                raise InputError(f"prompt box {box} must satisfy x0 < x1 and y0 < y1")
            object.__setattr__(self, "box", box)

    @classmethod
    def auto(cls) -> "Prompt":
        return cls()

    @property
    def is_auto(self) -> bool:
        return self.point is None and self.box is None

    def check_inside(self, width: int, height: int) -> None:
        """Raise :class:`InputError` if the prompt does not lie inside a ``width x height`` image."""
        if self.point is not None:
            x, y = self.point
            if not (0 <= x < width and 0 <= y < height):
                raise InputError(f"prompt point ({x:g}, {y:g}) is outside the image ({width}x{height} px; "
                                 f"x must be in [0, {width}), y in [0, {height}))")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height):
                raise InputError(f"prompt box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the image "
                                 f"({width}x{height} px; boxes must lie in [0, {width}] x [0, {height}])")

    def as_dict(self) -> dict:
        return {"point": None if self.point is None else list(self.point),
                "box": None if self.box is None else list(self.box)}


def _float_tuple(values: Any, n: int, what: str) -> tuple:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be {n} numbers, got {values!r}") from exc
    if len(out) != n:
        raise InputError(f"{what} must be {n} numbers, got {len(out)}: {values!r}")
    if not all(math.isfinite(v) for v in out):
        raise InputError(f"{what} must be finite, got {out}")
    return out


@dataclass(frozen=True)
class MaskResult:
    """An object mask and where it came from.

    ``mask``: HxW bool, same size as the image. ``score``: the source's confidence (SAM: predicted IoU;
    rule-based sources: 1.0). ``source``: the mask source's name. ``details``: source-specific facts.
    """

    mask: np.ndarray
    score: float
    source: str
    prompt: Prompt
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2:
            raise InputError(f"a mask must be HxW, got shape {mask.shape}")
        object.__setattr__(self, "mask", mask.astype(bool, copy=False))
        object.__setattr__(self, "score", float(self.score))

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def provider(self) -> str:
        """Deprecated: :attr:`source` ("provider" now means only an ONNX Runtime execution provider)."""
        warn_renamed("MaskResult.provider", "MaskResult.source", "attribute")
        return self.source

    def bbox(self) -> tuple[int, int, int, int] | None:
        """Tight box ``(x0, y0, x1, y1)`` (exclusive end) of the mask, None if empty."""
        ys, xs = np.nonzero(self.mask)
        if xs.size == 0:
            return None
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@runtime_checkable
class MaskSource(Protocol):
    """Anything that turns an image (plus optional prompt and depth) into a labelled object mask."""

    name: str

    def segment(self, image: Any, prompt: Prompt = ..., depth: np.ndarray | None = None) -> MaskResult:
        ...


# ----------------------------------------------------------------------------------------------------------------
# Input checks shared by all mask sources
# ----------------------------------------------------------------------------------------------------------------

def _prepare(image: Any, prompt: Prompt | None, depth: np.ndarray | None = None
             ) -> tuple[np.ndarray, Prompt, np.ndarray | None]:
    """Image -> HxWx3 uint8 RGB (grayscale/RGBA via :func:`to_rgb_array`), prompt checked, depth checked."""
    if image is None:
        raise InputError("no image given")
    rgb = to_rgb_array(image)
    height, width = rgb.shape[:2]
    if height < 1 or width < 1:
        raise InputError(f"image is empty (shape {rgb.shape})")
    if prompt is None:
        prompt = Prompt.auto()
    if not isinstance(prompt, Prompt):
        raise InputError(f"prompt must be a Prompt, got {type(prompt).__name__}")
    prompt.check_inside(width, height)
    if depth is not None:
        depth = np.asarray(depth)
        if depth.ndim == 3 and depth.shape[-1] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise InputError(f"depth map must be HxW, got shape {depth.shape}")
        if depth.shape != (height, width):
            raise InputError(f"depth map shape {depth.shape[0]}x{depth.shape[1]} (HxW) does not match the image "
                             f"{height}x{width}")
        if not (np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)):
            raise InputError(f"depth map must be numeric, got dtype {depth.dtype}")
    return rgb, prompt, depth


def _nonempty(mask: np.ndarray, source: str, what: str) -> np.ndarray:
    if not mask.any():
        raise NoMaskError(f"{source}: {what}")
    return mask


# ----------------------------------------------------------------------------------------------------------------
# Given mask
# ----------------------------------------------------------------------------------------------------------------

class GivenMask:
    """The caller's own mask, passed through unchanged (any nonzero value is foreground).

    The prompt is ignored; the mask must have the image's height and width and at least one pixel.
    """

    name = "given"

    def __init__(self, mask: Any):
        array = np.asarray(mask)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise InputError(f"given mask must be HxW, got shape {array.shape}")
        if array.size == 0:
            raise InputError(f"given mask is empty (shape {array.shape})")
        array = array.astype(bool) if array.dtype != bool else array
        if not array.any():
            raise InputError("given mask has no foreground pixel")
        self.mask = array

    def segment(self, image: Any, prompt: Prompt | None = None, depth: np.ndarray | None = None) -> MaskResult:
        rgb, prompt, _ = _prepare(image, prompt, depth)
        if self.mask.shape != rgb.shape[:2]:
            raise InputError(f"given mask is {self.mask.shape[0]}x{self.mask.shape[1]} (HxW) but the image is "
                             f"{rgb.shape[0]}x{rgb.shape[1]}")
        return MaskResult(self.mask.copy(), 1.0, self.name, prompt, {"from": "caller"})


# ----------------------------------------------------------------------------------------------------------------
# Depth foreground
# ----------------------------------------------------------------------------------------------------------------

class DepthForeground:
    """The nearest depth-connected surface within ``depth_range`` (metres after ``depth * depth_scale``).

    Rule:

    1. A pixel is *valid* when its depth is finite, > 0 and within ``[near, far]`` (zeros and NaN are holes).
    2. Valid 4-neighbours are *connected* when their depths differ by at most
       ``max(step_abs, step_rel * min(d1, d2))`` (default 1 cm or 3 %), so an object standing in front of a
       background that is also in range is a separate component (a plain threshold would merge them).
    3. Choice: with a prompt point, the component containing that pixel (the point must hit valid depth);
       otherwise, among components of at least ``min_area`` pixels, the one with the smallest median depth.
       With a prompt box (and no point), only pixels inside the box are considered, so the mask is clipped to
       the box.

    ``score`` is 1.0 (rule-based); ``details`` hold the median depth, area and number of components.
    ``depth_scale=0.001`` reads ROS ``16UC1`` millimetre depth.
    """

    name = "depth"

    def __init__(self, depth_range: tuple[float, float] = (0.1, 2.0), min_area: int = 100, step_abs: float = 0.01,
                 step_rel: float = 0.03, depth_scale: float = 1.0):
        near, far = _float_tuple(depth_range, 2, "depth_range")
        if not 0 <= near < far:
            raise ConfigError(f"depth_range must satisfy 0 <= near < far, got {depth_range}")
        if int(min_area) < 1:
            raise ConfigError(f"min_area must be >= 1 pixel, got {min_area}")
        if step_abs < 0 or step_rel < 0 or depth_scale <= 0:
            raise ConfigError("step_abs and step_rel must be >= 0 and depth_scale > 0")
        self.depth_range = (near, far)
        self.min_area = int(min_area)
        self.step_abs = float(step_abs)
        self.step_rel = float(step_rel)
        self.depth_scale = float(depth_scale)

    def segment(self, image: Any, prompt: Prompt | None = None, depth: np.ndarray | None = None) -> MaskResult:
        if depth is None:
            raise InputError("the depth mask source needs a depth map (depth=None was given)")
        _, prompt, depth = _prepare(image, prompt, depth)
        z, valid = self._valid(depth)
        near, far = self.depth_range
        if prompt.point is None and prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            inside = np.zeros_like(valid)
            inside[int(math.floor(y0)):int(math.ceil(y1)), int(math.floor(x0)):int(math.ceil(x1))] = True
            valid &= inside
        if not valid.any():
            where = " inside the prompt box" if prompt.box is not None and prompt.point is None else ""
            raise InputError(f"no valid depth in range [{near:g}, {far:g}] m{where} "
                             f"(depth map {z.shape[0]}x{z.shape[1]}, {int(np.count_nonzero(np.isfinite(z) & (z > 0)))}"
                             f" pixels with depth > 0; check depth_range and depth_scale)")
        labels, count = self._components(z, valid)
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        if prompt.point is not None:
            px, py = int(math.floor(prompt.point[0])), int(math.floor(prompt.point[1]))
            chosen = labels[py, px]
            if chosen == 0:
                raise NoMaskError(f"depth: the prompt point ({prompt.point[0]:g}, {prompt.point[1]:g}) has no valid "
                                  f"depth in range [{near:g}, {far:g}] m (depth there: {z[py, px]:g})")
            rule = "component containing the prompt point"
        else:
            big = [k for k in range(1, count + 1) if areas[k] >= self.min_area]
            if not big:
                raise NoMaskError(f"depth: no depth-connected surface of at least {self.min_area} px in range "
                                  f"[{near:g}, {far:g}] m (largest has {int(areas[1:].max())} px)")
            from scipy import ndimage

            medians = ndimage.median(z, labels, big)
            chosen = big[int(np.argmin(medians))]
            rule = f"nearest (smallest median depth) component of >= {self.min_area} px"
        mask = labels == chosen
        details = {"rule": rule, "median_depth": float(np.median(z[mask])), "area": int(areas[chosen]),
                   "components": int(count), "depth_range": [near, far]}
        return MaskResult(mask, 1.0, self.name, prompt, details)

    def checked_depth(self, image: Any, depth: np.ndarray) -> np.ndarray:
        """``depth`` checked against ``image`` (size, dtype) as :meth:`segment` checks it."""
        return _prepare(image, None, depth)[2]

    def _valid(self, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth in metres and the pixels within ``depth_range``."""
        z = to_metres(depth, self.depth_scale, dtype=np.float64)  # the one raw -> metres conversion
        near, far = self.depth_range
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(z) & (z > 0) & (z >= near) & (z <= far)
        return z, valid

    def _components(self, z: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
        """Label depth-connected components (4-neighbours, depth jumps cut edges); background label 0."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        height, width = z.shape
        index = np.arange(height * width).reshape(height, width)
        zz = np.where(valid, z, 0.0)
        rows, cols = [], []
        for a, b, za, zb, va, vb in (
                (index[:, :-1], index[:, 1:], zz[:, :-1], zz[:, 1:], valid[:, :-1], valid[:, 1:]),
                (index[:-1, :], index[1:, :], zz[:-1, :], zz[1:, :], valid[:-1, :], valid[1:, :])):
            tolerance = np.maximum(self.step_abs, self.step_rel * np.minimum(za, zb))
            keep = va & vb & (np.abs(za - zb) <= tolerance)
            rows.append(a[keep])
            cols.append(b[keep])
        rows_all, cols_all = np.concatenate(rows), np.concatenate(cols)
        graph = coo_matrix((np.ones(rows_all.size, dtype=np.int8), (rows_all, cols_all)),
                           shape=(height * width, height * width))
        _, raw = connected_components(graph, directed=False)
        raw = raw.reshape(height, width)
        # Renumber valid components 1..n; invalid pixels -> 0.
        unique, inverse = np.unique(raw[valid], return_inverse=True)
        labels = np.zeros((height, width), dtype=np.int64)
        labels[valid] = inverse + 1
        return labels, int(unique.size)


# ----------------------------------------------------------------------------------------------------------------
# GrabCut
# ----------------------------------------------------------------------------------------------------------------

class GrabCutBox:
    """OpenCV GrabCut (colour GMMs + graph cut) initialised with a box.

    The box is the prompt box; without one, a centred box covering the middle 60 % of the width and height
    (20 % margin on every side). A prompt point, if given, is additionally marked as certain foreground
    (a disk of radius ``point_radius``). Outside the box is certain background, so the box must leave some image
    outside it. Images smaller than ``MIN_SIDE`` px on a side are refused. Deterministic (OpenCV RNG seeded).
    ``score`` is 1.0 (rule-based).
    """

    name = "grabcut"
    MIN_SIDE = 8
    DEFAULT_MARGIN = 0.2

    def __init__(self, iterations: int = 5, point_radius: int = 3):
        if int(iterations) < 1:
            raise ConfigError(f"GrabCut iterations must be >= 1, got {iterations}")
        self.iterations = int(iterations)
        self.point_radius = int(point_radius)

    def segment(self, image: Any, prompt: Prompt | None = None, depth: np.ndarray | None = None) -> MaskResult:
        import cv2

        rgb, prompt, _ = _prepare(image, prompt, depth)
        height, width = rgb.shape[:2]
        if height < self.MIN_SIDE or width < self.MIN_SIDE:
            raise InputError(f"image {width}x{height} px is too small for GrabCut (needs at least "
                             f"{self.MIN_SIDE}x{self.MIN_SIDE} px)")
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            box_source = "prompt"
        else:
            m = self.DEFAULT_MARGIN
            x0, y0, x1, y1 = m * width, m * height, (1 - m) * width, (1 - m) * height
            box_source = "centred 60% default"
        ix0, iy0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        ix1, iy1 = min(width, int(math.ceil(x1))), min(height, int(math.ceil(y1)))
        if ix1 - ix0 < 2 or iy1 - iy0 < 2:
            raise InputError(f"GrabCut box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is smaller than 2x2 px")
        if ix0 == 0 and iy0 == 0 and ix1 == width and iy1 == height:
            raise InputError("GrabCut box covers the whole image; it needs some background outside the box")
        gc_mask = np.full((height, width), cv2.GC_BGD, np.uint8)
        gc_mask[iy0:iy1, ix0:ix1] = cv2.GC_PR_FGD
        if prompt.point is not None:
            cv2.circle(gc_mask, (int(prompt.point[0]), int(prompt.point[1])), self.point_radius, int(cv2.GC_FGD), -1)
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        cv2.setRNGSeed(0)
        try:
            cv2.grabCut(bgr, gc_mask, None, bgd_model, fgd_model, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error as exc:
            raise InputError(f"GrabCut failed on this image and box ({ix0}, {iy0}, {ix1}, {iy1}): {exc}") from exc
        mask = (gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)
        _nonempty(mask, self.name, f"GrabCut found no foreground in the box ({ix0}, {iy0}, {ix1}, {iy1})")
        details = {"box": [ix0, iy0, ix1, iy1], "box_source": box_source, "iterations": self.iterations}
        return MaskResult(mask, 1.0, self.name, prompt, details)


# ----------------------------------------------------------------------------------------------------------------
# Segment Anything
# ----------------------------------------------------------------------------------------------------------------

SAM_SOURCES: dict[str, PretrainedSource] = {
    "vit_b": PretrainedSource("sam_vit_b_01ec64.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
                              "sam", "Segment Anything ViT-B (Apache-2.0)"),
    "vit_l": PretrainedSource("sam_vit_l_0b3195.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
                              "sam", "Segment Anything ViT-L (Apache-2.0)"),
    "vit_h": PretrainedSource("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
                              "sam", "Segment Anything ViT-H (Apache-2.0)"),
}

#: Automatic prompt: the grid offsets, as fractions of width/height, around the image centre.
AUTO_GRID_OFFSETS = (-1 / 6, 0.0, 1 / 6)
#: Automatic prompt: masks covering more than this fraction of the image are background and rejected.
AUTO_MAX_AREA_FRACTION = 0.9


def _import_sam():
    segment_anything = require("segment_anything", "the SAM mask source")
    return segment_anything, segment_anything.SamPredictor, segment_anything.sam_model_registry


class SamMaskSource:
    """Segment Anything via ``segment_anything.SamPredictor``.

    The image embedding (the expensive part) is computed once per image: the source keeps a content hash of
    the last image and calls ``set_image`` only when it changes, so many prompts on one image cost one encoder
    pass. ``embeddings_computed`` counts encoder passes.

    Prompts:

    * point -> one foreground point (label 1), multimask output, the mask with the highest predicted IoU
      (the SAM authors' recommendation for a single click);
    * box -> box prompt, single-mask output (a point given with the box is added as a foreground point);
    * auto (no point, no box) -> **automatic rule**: prompt the image centre and the 3x3 grid of points at
      ``centre + (i*W/6, j*H/6)``, ``i, j in {-1, 0, 1}`` (the centre is the grid's middle point; the grid spans
      the middle third of the image), each as a single foreground point with multimask output (27 candidates).
      Reject empty masks and masks covering more than 90 % of the image (background). Among the rest choose the
      mask maximising ``clip(predicted_iou, 0, 1) * centrality`` with ``centrality = max(0, 1 - d / r)``, ``d`` the distance
      of the mask centroid from the image centre and ``r`` half the image diagonal. If every candidate is
      rejected, :class:`NoMaskError`. Implemented by :func:`choose_auto_mask`.

    ``score`` is SAM's predicted IoU of the chosen mask; ``details`` record the model type, weights file and
    hash, and (auto) the chosen grid point, centrality and candidate counts.
    """

    name = "sam"

    def __init__(self, predictor: Any, model_type: str = "custom", weights: str | None = None,
                 weights_sha256: str | None = None):
        self.predictor = predictor
        self.model_type = model_type
        self.weights = weights
        self.weights_sha256 = weights_sha256
        self.embeddings_computed = 0
        self._image_key: str | None = None
        self.encoder: dict = {"encoder": "fp32", "reason": "the model's own encoder"}

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, model_type: str = "vit_b", weights: str | os.PathLike | None = None, allow_download: bool = True,
               device: str = "cpu", encoder: str = "auto") -> "SamMaskSource":
        """Build SAM ``model_type`` with the official checkpoint.

        The checkpoint is resolved by :func:`~correspondence.backbones.weights.resolve_weights` (explicit path ->
        ``$SOCO_WEIGHTS_DIR`` -> torch hub cache -> official URL; ``SOCO_OFFLINE=1`` forbids the download), the
        architecture by the package's ``sam_model_registry[model_type](checkpoint=None)``, and the weights are
        loaded with ``torch.load(weights_only=True)`` (strict: every key must fit).
        """
        _, predictor_cls, _ = _import_sam()
        model, path = build_sam_model(model_type, weights, allow_download, device)
        return cls(predictor_cls(model), model_type, str(path), weights_hash(path)).use_encoder(encoder)

    def use_encoder(self, encoder: str) -> "SamMaskSource":
        """Run the image encoder as ``encoder`` (fp32 | bf16 | auto | an exported .onnx; see
        :mod:`correspondence.runtimes.sam_encoder`); the choice is recorded in ``self.encoder``."""
        from .runtimes.sam_encoder import encoder_for, swap_encoder
        module, self.encoder = encoder_for(self.predictor.model, encoder, self.weights_sha256)
        if module is not None:
            swap_encoder(self.predictor.model, module)
        return self

    @classmethod
    def from_model(cls, sam_model: Any, model_type: str = "custom") -> "SamMaskSource":
        """Wrap an already-built ``segment_anything.modeling.Sam`` (tests, fine-tuned variants)."""
        _, predictor_cls, _ = _import_sam()
        sam_model.eval()
        return cls(predictor_cls(sam_model), model_type)

    # -- segmentation -------------------------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray) -> bool:
        """Compute the embedding unless this exact image is already set. Returns True if it was computed."""
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16, person=b"soco-sam").hexdigest() + str(rgb.shape)
        if key == self._image_key and self._image_is_set():
            return False
        self._encode(rgb)
        self._image_key = key
        self.embeddings_computed += 1
        return True

    def _image_is_set(self) -> bool:
        return bool(self.predictor.is_image_set)

    def _encode(self, rgb: np.ndarray) -> None:
        """The image encoder's pass (the expensive part)."""
        self.predictor.set_image(rgb, image_format="RGB")

    def segment(self, image: Any, prompt: Prompt | None = None, depth: np.ndarray | None = None) -> MaskResult:
        rgb, prompt, _ = _prepare(image, prompt, depth)
        computed = self.set_image(rgb)
        details: dict[str, Any] = {"model_type": self.model_type, "weights": self.weights,
                                   "weights_sha256": self.weights_sha256, "embedding_computed": computed,
                                   "encoder": self.encoder["encoder"]}
        if prompt.box is not None:
            points = labels = None
            if prompt.point is not None:
                points, labels = np.array([prompt.point], np.float64), np.array([1])
            masks, ious, _ = self.predictor.predict(point_coords=points, point_labels=labels,
                                                    box=np.array(prompt.box, np.float64), multimask_output=False)
            mask, score = self._best(masks, ious, "the box prompt")
            details["mode"] = "box"
        elif prompt.point is not None:
            masks, ious, _ = self.predictor.predict(point_coords=np.array([prompt.point], np.float64),
                                                    point_labels=np.array([1]), multimask_output=True)
            mask, score = self._best(masks, ious, "the point prompt")
            details["mode"] = "point"
        else:
            mask, score, auto = self._auto(rgb.shape[0], rgb.shape[1])
            details.update(auto)
            details["mode"] = "auto"
        return MaskResult(mask, score, self.name, prompt, details)

    def _best(self, masks: np.ndarray, ious: np.ndarray, what: str) -> tuple[np.ndarray, float]:
        """Highest predicted IoU among the non-empty masks."""
        order = np.argsort(-ious)
        for k in order:
            if masks[k].any():
                return masks[k].astype(bool), float(ious[k])
        raise NoMaskError(f"sam: every mask predicted for {what} is empty")

    def _auto(self, height: int, width: int) -> tuple[np.ndarray, float, dict]:
        import torch

        cx, cy = width / 2.0, height / 2.0
        grid = np.array([(cx + i * width, cy + j * height) for j in AUTO_GRID_OFFSETS for i in AUTO_GRID_OFFSETS])
        grid[:, 0] = np.clip(grid[:, 0], 0, np.nextafter(width, 0))
        grid[:, 1] = np.clip(grid[:, 1], 0, np.nextafter(height, 0))
        predictor = self.predictor
        coords = predictor.transform.apply_coords(grid, predictor.original_size)
        coords_t = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)[:, None, :]
        labels_t = torch.ones((len(grid), 1), dtype=torch.int, device=predictor.device)
        masks_t, ious_t, _ = predictor.predict_torch(coords_t, labels_t, multimask_output=True)
        masks = to_numpy(masks_t)  # (9, 3, H, W)
        ious = to_numpy(ious_t.float())  # (9, 3)
        return choose_auto_mask(masks, ious, grid)


def build_sam_model(model_type: str, weights: str | os.PathLike | None = None, allow_download: bool = True,
                    device: str = "cpu") -> tuple[Any, Path]:
    """The one place a Segment Anything model (image encoder, prompt encoder, mask decoder) is built: the
    architecture from ``sam_model_registry[model_type]``, the official checkpoint resolved and loaded strictly with
    ``weights_only=True``, moved to ``device`` in eval mode. Returns (model, checkpoint path). A different runtime
    or precision for the image encoder (``model.image_encoder``) hooks in here."""
    if model_type not in SAM_SOURCES:
        raise ConfigError(f"unknown SAM model type {model_type!r}; choose one of {sorted(SAM_SOURCES)}")
    torch_device = _torch_device(device)
    _, _, registry = _import_sam()
    path = resolve_weights(SAM_SOURCES[model_type], weights, allow_download=allow_download)
    state = load_state_dict(path)
    model = registry[model_type](checkpoint=None)
    load_strict(model, state, path, f"SAM {model_type}")
    model.to(torch_device).eval()
    return model, Path(path)


def load_strict(model: Any, state: dict, path: str | os.PathLike, what: str) -> None:
    """Every key of the checkpoint must fit the architecture, else :class:`CorruptCheckpointError` naming it."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CorruptCheckpointError(f"checkpoint {str(path)!r} does not fit {what}: "
                                     f"{str(exc).splitlines()[0]}") from exc


def choose_auto_mask(masks: np.ndarray, ious: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float, dict]:
    """The automatic rule's choice among SAM candidates (see :class:`SamMaskSource`).

    ``masks``: (P, K, H, W) bool, K masks for each of the P prompt ``points`` (P, 2); ``ious``: (P, K) predicted
    IoU. Rejects empty masks and masks covering more than :data:`AUTO_MAX_AREA_FRACTION` of the image, then
    returns the mask maximising ``clip(predicted_iou, 0, 1) * centrality``, with
    ``centrality = max(0, 1 - |centroid - image centre| / (half the image diagonal))``; its predicted IoU; and
    details. Ties go to the earlier point, then the earlier mask.
    """
    masks = np.asarray(masks, dtype=bool)
    ious = np.asarray(ious, dtype=np.float64)
    if masks.ndim != 4 or ious.shape != masks.shape[:2]:
        raise InputError(f"candidate masks must be (P, K, H, W) with (P, K) scores, got {masks.shape} and {ious.shape}")
    height, width = masks.shape[-2:]
    cx, cy = width / 2.0, height / 2.0
    total = float(height * width)
    radius = 0.5 * math.hypot(width, height)
    xs = np.arange(width) + 0.5  # pixel centres, continuous coordinates
    ys = np.arange(height) + 0.5
    best = None
    rejected_background = rejected_empty = 0
    for p in range(masks.shape[0]):
        for k in range(masks.shape[1]):
            mask = masks[p, k]
            area = int(mask.sum())
            if area == 0:
                rejected_empty += 1
                continue
            if area > AUTO_MAX_AREA_FRACTION * total:
                rejected_background += 1
                continue
            mx = float((mask.sum(axis=0) * xs).sum() / area)
            my = float((mask.sum(axis=1) * ys).sum() / area)
            centrality = max(0.0, 1.0 - math.hypot(mx - cx, my - cy) / radius)
            combined = min(max(float(ious[p, k]), 0.0), 1.0) * centrality
            if best is None or combined > best[0]:
                best = (combined, p, k, centrality, (mx, my))
    candidates = masks.shape[0] * masks.shape[1]
    if best is None:
        raise NoMaskError(f"sam: automatic prompt found no object: of {candidates} candidate masks "
                          f"{rejected_empty} were empty and {rejected_background} covered more than "
                          f"{AUTO_MAX_AREA_FRACTION:.0%} of the image (background)")
    combined, p, k, centrality, centroid = best
    details = {"auto_rule": "argmax clip(predicted_iou, 0, 1) * centrality over the centre + 3x3 grid point prompts "
                            f"(multimask); masks covering > {AUTO_MAX_AREA_FRACTION:.0%} of the image rejected",
               "auto_point": [float(points[p][0]), float(points[p][1])], "auto_mask_index": int(k),
               "centrality": centrality, "auto_score": combined, "centroid": list(centroid),
               "candidates": candidates, "rejected_background": rejected_background, "rejected_empty": rejected_empty}
    return masks[p, k].copy(), float(ious[p, k]), details


def _torch_device(device: str) -> Any:
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid torch device {device!r}: {exc}") from exc


# ----------------------------------------------------------------------------------------------------------------
# Factory and fallback
# ----------------------------------------------------------------------------------------------------------------

MASK_SOURCES = ("given", "depth", "grabcut", "sam", "sam2")


def mask_source_from_name(name: str, **kwargs: Any) -> MaskSource:
    """Build a mask source by name: ``given`` (needs ``mask=``), ``depth``, ``grabcut``, ``sam`` (keyword
    arguments of :meth:`SamMaskSource.create`) or ``sam2`` (of :meth:`~correspondence.sam2_source.Sam2MaskSource.
    create`). Unknown names raise :class:`ConfigError`."""
    key = str(name).strip().lower()
    try:
        if key == "given":
            if "mask" not in kwargs:
                raise ConfigError("the 'given' mask source needs mask=...")
            return GivenMask(**kwargs)
        if key == "depth":
            return DepthForeground(**kwargs)
        if key == "grabcut":
            return GrabCutBox(**kwargs)
        if key == "sam":
            return SamMaskSource.create(**kwargs)
        if key == "sam2":
            from .sam2_source import Sam2MaskSource
            return Sam2MaskSource.create(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for mask source {key!r}: {exc}") from exc
    raise ConfigError(f"unknown mask source {name!r}; choose one of {', '.join(MASK_SOURCES)}")


def auto_mask_source(depth: np.ndarray | bool | None = None, *, sam_model_type: str = "vit_b",
                     sam_weights: str | os.PathLike | None = None, allow_download: bool = False, device: str = "cpu",
                     depth_range: tuple[float, float] = (0.1, 2.0), sam2_model_type: str = "tiny",
                     sam2_weights: str | os.PathLike | None = None) -> tuple[MaskSource, str]:
    """Best available mask source and a human-readable reason.

    SAM 2.1 (``sam2_model_type``, Hiera tiny by default: the fastest) when its checkpoint resolves (explicit
    ``sam2_weights``, ``$SOCO_WEIGHTS_DIR`` or the torch hub cache; a download only with ``allow_download=True``);
    else SAM (``sam_model_type``) the same way; else :class:`DepthForeground` when a depth map is given (``depth`` an
    array, or True); else :class:`GrabCutBox`. A corrupt checkpoint is an error, not a fallback.
    """
    from .sam2_source import Sam2MaskSource

    reasons = []
    try:
        sam2 = Sam2MaskSource.create(sam2_model_type, weights=sam2_weights, allow_download=allow_download,
                                     device=device)
        return sam2, f"sam2: SAM 2.1 {sam2_model_type} weights resolved at {sam2.weights}"
    except (WeightsNotFoundError, MissingDependencyError) as exc:
        reasons.append(f"SAM 2 unavailable ({type(exc).__name__}: {exc})")
    try:
        sam = SamMaskSource.create(sam_model_type, weights=sam_weights, allow_download=allow_download, device=device)
        return sam, f"sam: {reasons[0]}; SAM {sam_model_type} weights resolved at {sam.weights}"
    except (WeightsNotFoundError, MissingDependencyError) as exc:
        reasons.append(f"SAM unavailable ({type(exc).__name__}: {exc})")
    why = "; ".join(reasons)
    has_depth = depth is not None and depth is not False
    if has_depth:
        return DepthForeground(depth_range=depth_range), f"depth: {why}; a depth map was given, using the nearest depth surface"
    return GrabCutBox(), f"grabcut: {why}; no depth map was given, using GrabCut"


__all__ = ["AUTO_MAX_AREA_FRACTION", "DepthForeground", "GivenMask", "GrabCutBox", "MASK_SOURCES", "MaskResult",
           "MaskSource", "NoMaskError", "Prompt", "SAM_SOURCES", "SamMaskSource", "auto_mask_source",
           "choose_auto_mask", "mask_source_from_name"]

# The names before "provider" came to mean only ONNX Runtime execution providers (removed in 0.2).
__getattr__ = module_getattr(__name__, globals(), {
    "MaskProvider": "MaskSource", "SamProvider": "SamMaskSource", "PROVIDERS": "MASK_SOURCES",
    "provider_from_name": "mask_source_from_name", "auto_provider": "auto_mask_source"})
