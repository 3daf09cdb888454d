"""Training data for the functional head as the reference prepares and samples it (``cond_corr/data``), read from
the layout `soco synth functional` writes.

* Every image is cropped as the reference's ``resize_images.py`` (:func:`~correspondence.object_crop.reference_crop`: white
  background, 60 px pad, 1.2 x side, LANCZOS) to ``image_size`` (224); its object mask and functional-part mask
  (NEAREST, the part within the object) and its correspondences (rounded, clipped, kept inside the mask) follow.
* **Functional batches** (``BatchSampler`` + ``CogVLM_3D_loader``): ``pairs_per_batch`` functions drawn with
  replacement among those with at least 3 images, two different images of each; per image ``n`` part pixels
  (all of them, repeated in fresh permutations when fewer) and ``n`` rest-of-object pixels (the whole non-part
  image when the rest has fewer than ``n``), integer ``(col, row)``.
* **Spatial batches** (``SpatialBatchSampler`` + ``Spatial_loader``, ``spatial_partonly``): ``pairs_per_batch``
  multi-view pairs drawn with replacement; the true correspondences with both ends on the functional part (the
  reference: on one common part), one per distinct source pixel, ``n`` of them sampled (with replacement when
  fewer); the text is the pair's function.
* **Background** (``RandomMaskingAug(1.0, 0.0, "domain_randomized")``): every training image gets its background
  replaced, each time it is drawn, by a random solid colour or a two-colour gradient (50/50, vertical or
  horizontal), with uniform noise added half of the time (uint8 wrap-around, as the reference).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..object_crop import reference_crop
from ..world.writers.training import TrainingPair, read_training_pair

MIN_IMAGES_PER_FUNCTION = 3  # the reference's build_label_dict drops labels with fewer images


def list_pairs(root: str | Path, split: str) -> list[Path]:
    root = Path(root)
    index = root / "index.json"
    if not index.is_file():
        raise InputError(f"{str(root)!r} has no index.json: is it a `soco synth functional` dataset?")
    splits = json.loads(index.read_text(encoding="utf-8")).get("splits", {})
    if split not in splits:
        raise InputError(f"{index}: no split {split!r}; it has {sorted(splits)}")
    return [root / split / pair_id for pair_id in splits[split]]


def load_pairs(paths: list[Path]) -> list[TrainingPair]:
    return [read_training_pair(p) for p in paths]


@dataclass(frozen=True, eq=False)
class CroppedImage:
    """One training image in the reference's processed frame."""

    key: str
    function: str
    rgb: np.ndarray  # (S, S, 3) uint8, white background
    mask: np.ndarray  # (S, S) bool object
    part: np.ndarray  # (S, S) bool functional part (within the object)


@dataclass(frozen=True, eq=False)
class SpatialPair:
    """A multi-view pair's crops and its part-only correspondences as integer ``(col, row)``."""

    key: str
    function: str
    a: CroppedImage
    b: CroppedImage
    co_a: np.ndarray  # (M, 2) int64 (col, row), one per distinct source pixel
    co_b: np.ndarray


def _crop_side(pair: TrainingPair, side: str, size: int) -> tuple[CroppedImage, object]:
    rgb, mask, part = ((pair.rgb_a, pair.mask_a, pair.function_a) if side == "a"
                       else (pair.rgb_b, pair.mask_b, pair.function_b))
    crop_rgb, crop_mask, crop = reference_crop(rgb, mask, size=size)
    from PIL import Image
    padded = np.pad(np.asarray(part, dtype=bool), crop.pad)
    crop_part = np.asarray(Image.fromarray(padded.astype(np.uint8) * 255).crop(crop.box).resize(
        (size, size), Image.NEAREST)) // 255 == 1
    return CroppedImage(f"{pair.pair_dir}:{side}", pair.function, crop_rgb, crop_mask, crop_part & crop_mask), crop


def _part_correspondences(pair: TrainingPair, a: CroppedImage, crop_a, b: CroppedImage, crop_b
                          ) -> tuple[np.ndarray, np.ndarray]:
    rc_a = crop_a.points(np.floor(pair.xy_a[:, ::-1]))
    rc_b = crop_b.points(np.floor(pair.xy_b[:, ::-1]))
    keep = a.part[rc_a[:, 0], rc_a[:, 1]] & b.part[rc_b[:, 0], rc_b[:, 1]]
    rc_a, rc_b = rc_a[keep], rc_b[keep]
    _, first = np.unique(rc_a, axis=0, return_index=True)  # "correspondence should be a well-defined function"
    return rc_a[first][:, ::-1].astype(np.int64), rc_b[first][:, ::-1].astype(np.int64)


@dataclass
class TrainingSet:
    """The cropped images and pairs of a split, and the reference's samplers over them."""

    images: list[CroppedImage]
    by_function: dict[str, list[int]]
    spatial: list[SpatialPair]
    image_size: int

    @classmethod
    def build(cls, pairs: list[TrainingPair], image_size: int = 224) -> "TrainingSet":
        images: list[CroppedImage] = []
        spatial: list[SpatialPair] = []
        for pair in pairs:
            if not pair.mask_a.any() or not pair.mask_b.any():
                continue
            (a, crop_a), (b, crop_b) = _crop_side(pair, "a", image_size), _crop_side(pair, "b", image_size)
            if pair.function:
                images += [img for img in (a, b) if img.part.any()]
            if pair.kind == "multiview" and pair.function and len(pair.xy_a):
                co_a, co_b = _part_correspondences(pair, a, crop_a, b, crop_b)
                if len(co_a):
                    spatial.append(SpatialPair(str(pair.pair_dir), pair.function, a, b, co_a, co_b))
        by_function: dict[str, list[int]] = {}
        for i, img in enumerate(images):
            by_function.setdefault(img.function, []).append(i)
        by_function = {f: idx for f, idx in sorted(by_function.items()) if len(idx) >= MIN_IMAGES_PER_FUNCTION}
        return cls(images, by_function, spatial, image_size)

    @property
    def functions(self) -> list[str]:
        return sorted({img.function for img in self.images} | {p.function for p in self.spatial})

    def functional_batch(self, rng: random.Random, pairs: int) -> list[tuple[CroppedImage, CroppedImage]]:
        """``BatchSampler.__iter__``: functions with replacement, two distinct images of each."""
        if not self.by_function:
            return []
        labels = list(self.by_function)
        chosen = rng.choices(labels, k=pairs)
        out = []
        for label in chosen:
            i, j = rng.sample(self.by_function[label], k=2)
            out.append((self.images[i], self.images[j]))
        return out

    def spatial_batch(self, rng: random.Random, pairs: int) -> list[SpatialPair]:
        """``SpatialBatchSampler.__iter__``: pairs with replacement."""
        if not self.spatial:
            return []
        return [self.spatial[i] for i in rng.choices(range(len(self.spatial)), k=pairs)]


def part_and_rest_points(image: CroppedImage, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``CogVLM_3D_loader.generate_coordinates_mask``: ``n`` part and ``n`` rest pixels, integer ``(col, row)``."""
    label, mask = image.part, image.mask
    pos = np.stack(np.nonzero(label), 1)
    neg = np.stack(np.nonzero(mask & ~label), 1)
    if len(pos) == 0:  # the reference's edge case: both from the background
        pos = neg = np.stack(np.nonzero(~mask), 1)
    if len(neg) < n:
        neg = np.stack(np.nonzero(~label), 1)
    if len(pos) < n:
        k = n // len(pos) + 1
        perm = np.concatenate([rng.permutation(len(pos)) for _ in range(k)])[:n]
    else:
        perm = rng.permutation(len(pos))[:n]
    pos_co = pos[perm][:, ::-1]
    neg_co = neg[rng.permutation(len(neg))[:n]][:, ::-1]
    return pos_co.astype(np.int64), neg_co.astype(np.int64)


def spatial_points(pair: SpatialPair, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``Spatial_loader.generate_coordinates``: ``n`` correspondences (with replacement when fewer)."""
    pick = rng.choice(len(pair.co_a), n, replace=n > len(pair.co_a))
    return pair.co_a[pick], pair.co_b[pick]


# ---- background augmentation (aug_utils_dope.domain_randomize_background) ----------------------------------------

def _solid(shape, rng: np.random.Generator) -> np.ndarray:
    return np.ones(shape, dtype=np.uint8) * np.array(rng.uniform(size=3) * 255, dtype=np.uint8)


def random_background(shape, rng: np.random.Generator) -> np.ndarray:
    """``get_random_image``: a solid colour or a gradient of two (50/50), plus noise half of the time."""
    if rng.random() < 0.5:
        image = _solid(shape, rng)
    else:
        rgb1, rgb2 = _solid(shape, rng), _solid(shape, rng)
        vertical = bool(rng.uniform() > 0.5)
        h, w = shape[0], shape[1]
        p = np.tile(np.linspace(0, 1, h)[:, None], (1, w)) if vertical else np.tile(np.linspace(0, 1, w), (h, 1))
        image = np.zeros_like(rgb1)
        for i in range(3):
            image[:, :, i] = rgb2[:, :, i] * p + rgb1[:, :, i] * (1.0 - p)
    if rng.random() < 0.5:
        return image
    noise = lambda: np.array(rng.uniform(size=shape) * 50, dtype=np.uint8)  # noqa: E731
    return image + noise() - noise()  # uint8 wrap-around, as the reference


def replace_background(image: CroppedImage, rng: np.random.Generator) -> np.ndarray:
    """``RandomMaskingAug`` with probability 1 and no geometric change: object kept, background randomised."""
    mask3 = np.repeat(image.mask[:, :, None], 3, axis=2).astype(np.uint8)
    return image.rgb * mask3 + (1 - mask3) * random_background(image.rgb.shape, rng)
