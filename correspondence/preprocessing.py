"""Image preprocessing policies and the exact geometry they apply.

Correspondence numbers depend on how an image was padded and resized, so every policy returns an
:class:`ImageGeometry` that maps original pixels to processed pixels and back exactly, and is recorded in
every result. Pixel coordinates are continuous: pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np
from PIL import Image

from .errors import ConfigError, InputError


class PadPolicy(str, Enum):
    """How a non-square image becomes square.

    ``pad-topleft-white``: paste at the top-left of a white square canvas (the SOCO reference);
    ``center-pad``: paste in the centre of a square canvas; ``stretch``: resize without keeping the aspect.
    """

    PAD_TOPLEFT_WHITE = "pad-topleft-white"
    CENTER_PAD = "center-pad"
    STRETCH = "stretch"


class SizePolicy(str, Enum):
    """``nearest-multiple``: the target size rounded to a multiple of the patch (800 -> 798 for /14);
    ``fixed-grid``: the target is a number of patches (60 -> 840 px for /14)."""

    NEAREST_MULTIPLE = "nearest-multiple"
    FIXED_GRID = "fixed-grid"


def effective_size(target: int, patch_size: int, policy: SizePolicy | str = SizePolicy.NEAREST_MULTIPLE) -> int:
    """Side length in pixels the network sees."""
    policy = SizePolicy(policy)
    if target <= 0:
        raise ConfigError(f"image size must be positive, got {target}")
    if policy is SizePolicy.FIXED_GRID:
        return target * patch_size
    return max(1, int(round(target / patch_size))) * patch_size


RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


@dataclass(frozen=True)
class ImageGeometry:
    """original pixel ``x`` -> processed pixel ``(x + offset_x) * scale_x`` (same for y)."""

    original_width: int
    original_height: int
    processed_width: int
    processed_height: int
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    pad_policy: str

    def to_processed(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] + self.offset_x) * self.scale_x, (xy[..., 1] + self.offset_y) * self.scale_y], -1)

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] / self.scale_x - self.offset_x, xy[..., 1] / self.scale_y - self.offset_y], -1)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PreprocessSettings:
    pad: PadPolicy = PadPolicy.PAD_TOPLEFT_WHITE
    size: int = 448
    size_policy: SizePolicy = SizePolicy.NEAREST_MULTIPLE
    pad_color: tuple[int, int, int] = (255, 255, 255)
    resample: str = "bicubic"  # bicubic (antialiased, as the SOCO reference and DINOv2 use) | bilinear

    def __post_init__(self) -> None:
        if self.resample not in RESAMPLE:
            raise ConfigError(f"resample must be one of {sorted(RESAMPLE)}, got {self.resample!r}")
        object.__setattr__(self, "pad", PadPolicy(self.pad))
        object.__setattr__(self, "size_policy", SizePolicy(self.size_policy))
        if self.size <= 0:
            raise ConfigError(f"image size must be positive, got {self.size}")

    def as_dict(self) -> dict:
        return {"pad": self.pad.value, "size": self.size, "size_policy": self.size_policy.value,
                "pad_color": list(self.pad_color), "resample": self.resample}


def to_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """Any PIL image or HxW / HxWx{1,3,4} array -> HxWx3 uint8 RGB (alpha composited on white)."""
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(canvas, rgba)
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InputError(f"image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(f"image is empty (shape {array.shape})")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and np.nanmax(array) <= 1.0:
            array = np.nan_to_num(array) * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.shape[-1] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        array = (array[..., :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(array)


def plan_geometry(width: int, height: int, settings: PreprocessSettings, patch_size: int
                  ) -> tuple[ImageGeometry, tuple[int, int, int]]:
    """The geometry a policy applies to a ``width x height`` image, and the canvas colour of its padding.

    One place for the arithmetic, shared by the host (PIL) and the device (torch) preprocessing."""
    side = effective_size(settings.size, patch_size, settings.size_policy)
    if settings.pad is PadPolicy.STRETCH:
        return ImageGeometry(width, height, side, side, side / width, side / height, 0.0, 0.0,
                             settings.pad.value), (255, 255, 255)
    canvas_side = max(width, height)
    if settings.pad is PadPolicy.PAD_TOPLEFT_WHITE:
        offset_x = offset_y = 0
        color = (255, 255, 255)
    else:
        offset_x, offset_y = (canvas_side - width) // 2, (canvas_side - height) // 2
        color = tuple(settings.pad_color)
    scale = side / canvas_side
    return ImageGeometry(width, height, side, side, scale, scale, float(offset_x), float(offset_y),
                         settings.pad.value), color


def preprocess(image: Image.Image | np.ndarray, settings: PreprocessSettings, patch_size: int
               ) -> tuple[np.ndarray, ImageGeometry]:
    """Return the processed HxWx3 float32 image in [0, 1] and its geometry (PIL on the host: the reference)."""
    rgb = to_rgb_array(image)
    height, width = rgb.shape[:2]
    geometry, color = plan_geometry(width, height, settings, patch_size)
    side = geometry.processed_width
    if settings.pad is PadPolicy.STRETCH:
        resized = Image.fromarray(rgb).resize((side, side), RESAMPLE[settings.resample])
        return np.asarray(resized, dtype=np.float32) / 255.0, geometry
    canvas_side = max(width, height)
    canvas = Image.new("RGB", (canvas_side, canvas_side), color)
    canvas.paste(Image.fromarray(rgb), (int(geometry.offset_x), int(geometry.offset_y)))
    resized = canvas.resize((side, side), RESAMPLE[settings.resample])
    return np.asarray(resized, dtype=np.float32) / 255.0, geometry


def preprocess_on_device(rgb: np.ndarray, settings: PreprocessSettings, patch_size: int, device: "torch.device"
                         ) -> tuple["torch.Tensor", ImageGeometry]:
    """:func:`preprocess` with the pad and the resize run by torch on ``device``: ``(3, S, S)`` in [0, 1].

    Only the uint8 frame crosses the bus. Antialiased bicubic/bilinear in torch implement PIL's filters (a = -0.5
    for bicubic) and the result is rounded to 8 bits as PIL's is, so features agree with the host path to within
    PIL's own rounding (a pixel may differ by one grey level)."""
    import torch
    import torch.nn.functional as F

    rgb = to_rgb_array(rgb)
    height, width = rgb.shape[:2]
    geometry, color = plan_geometry(width, height, settings, patch_size)
    host = torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy())
    return pad_resize_tensor(host.to(device, non_blocking=True), geometry, color, settings.resample), geometry


def pad_resize_tensor(rgb: "torch.Tensor", geometry: ImageGeometry, color: tuple[int, int, int], resample: str
                      ) -> "torch.Tensor":
    """The torch half of :func:`preprocess_on_device`: a ``(H, W, 3)`` uint8 tensor -> ``(3, S, S)`` in [0, 1].

    Pure tensor work with no host synchronisation, so it can be captured in a CUDA graph."""
    import torch
    import torch.nn.functional as F

    image = rgb.permute(2, 0, 1).float()
    height, width = geometry.original_height, geometry.original_width
    side = geometry.processed_width
    if geometry.pad_policy != PadPolicy.STRETCH.value:
        canvas_side = max(width, height)
        canvas = image.new_empty((3, canvas_side, canvas_side))
        for channel, value in enumerate(color):  # fill_ with a scalar: no host-to-device copy (capturable)
            canvas[channel].fill_(float(value))
        ox, oy = int(geometry.offset_x), int(geometry.offset_y)
        canvas[:, oy:oy + height, ox:ox + width] = image
        image = canvas
    if image.shape[-1] != side or image.shape[-2] != side:
        image = F.interpolate(image[None], size=(side, side), mode=resample, antialias=True, align_corners=False)[0]
    return image.round_().clamp_(0, 255).div_(255.0)


def mask_to_processed(mask: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
    """Warp an original-size boolean mask into the processed frame (padding is outside the mask)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != (geometry.original_height, geometry.original_width):
        raise InputError(f"mask shape {mask.shape} does not match the image size "
                         f"{(geometry.original_height, geometry.original_width)} (H, W)")
    mask_img = Image.fromarray((mask > 0).astype(np.uint8) * 255)
    if geometry.pad_policy == PadPolicy.STRETCH.value:
        out = mask_img.resize((geometry.processed_width, geometry.processed_height), Image.BILINEAR)
        return np.asarray(out) >= 128
    canvas_side = max(geometry.original_width, geometry.original_height)
    canvas = Image.new("L", (canvas_side, canvas_side), 0)
    canvas.paste(mask_img, (int(geometry.offset_x), int(geometry.offset_y)))
    out = canvas.resize((geometry.processed_width, geometry.processed_height), Image.BILINEAR)
    return np.asarray(out) >= 128


def network_batch(images, settings: PreprocessSettings, patch_size: int, mean, std, device="cpu",
                  map_fn=map) -> tuple["torch.Tensor", list[ImageGeometry]]:
    """Images -> the normalised ``(B, 3, S, S)`` float batch a runtime takes (PIL preprocessing on the host), and
    each image's geometry. The one definition used by feature extraction and by export verification, so an
    exported model is checked on exactly what it will be fed. ``map_fn``: e.g. a thread pool's ``map``."""
    import torch

    prepared = list(map_fn(lambda image: preprocess(image, settings, patch_size), images))
    batch = torch.from_numpy(np.stack([p[0] for p in prepared])).permute(0, 3, 1, 2).to(device)
    return normalise_batch(batch, mean, std), [p[1] for p in prepared]


def normalise_batch(batch: "torch.Tensor", mean, std) -> "torch.Tensor":
    """``(batch - mean) / std`` per channel of a ``(B, 3, H, W)`` batch in [0, 1], on the batch's device."""
    import torch

    mean = torch.as_tensor(mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std
