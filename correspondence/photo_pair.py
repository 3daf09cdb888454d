"""Real-looking verification inputs: an image pair showing the same textured scene from two viewpoints.

Parity on random noise says little (a ViT's features of noise are nearly uniform, and matches between two noise
images are arbitrary); natural images have a 1/f spectrum, edges and objects. Without shipping photos, we draw
one: multi-scale smooth noise, a few shaded shapes, then a second view by a small rotation, zoom and shift, so
that patch features are diverse and argmax matches between the two views are meaningful. Real photos can be
passed instead (``soco export --verify-images``).

Used by the export verification (``export/``) and by the first-use check of a reduced precision
(:mod:`correspondence.runtimes.precision`), so both compare on the same pair.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _pink_noise(rng: np.random.Generator, side: int) -> np.ndarray:
    image = np.zeros((side, side, 3))
    for cells, weight in ((4, 1.0), (8, 0.6), (16, 0.35), (32, 0.2), (64, 0.1)):
        coarse = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
        image += weight * np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((side, side),
                                                                                            Image.BICUBIC)) / 255.0
    image -= image.min()
    return image / image.max()


def scene(seed: int = 0, side: int = 640) -> Image.Image:
    """A deterministic photo-like RGB scene."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray((255 * _pink_noise(rng, side)).astype(np.uint8))
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x, y = rng.uniform(0, side, 2)
        r = rng.uniform(side / 20, side / 6)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        box = (x - r, y - r * rng.uniform(0.5, 1.2), x + r, y + r * rng.uniform(0.5, 1.2))
        if rng.uniform() < 0.5:
            draw.ellipse(box, fill=colour, outline=(0, 0, 0), width=2)
        else:
            points = [(x + r * np.cos(a), y + r * np.sin(a)) for a in np.sort(rng.uniform(0, 2 * np.pi, 5))]
            draw.polygon(points, fill=colour, outline=(255, 255, 255))
    stripes = (np.sin(np.arange(side) / rng.uniform(3, 8))[None, :, None] > 0) * 40
    array = np.clip(np.asarray(base, dtype=np.int32) - stripes * (np.arange(side)[:, None, None] > side * 0.7), 0, 255)
    return Image.fromarray(array.astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))


def image_pair(seed: int = 0, side: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """The scene and a second view of it (rotated 8 deg, zoomed 1.15x, shifted), both ``side x side`` RGB."""
    first = scene(seed, side + side // 2)
    second = first.rotate(8.0, resample=Image.BICUBIC, center=(side * 0.7, side * 0.7))
    crop = int(side / 1.15)
    second = second.crop((side // 5, side // 6, side // 5 + crop, side // 6 + crop)).resize((side, side), Image.BICUBIC)
    first = first.crop((side // 8, side // 8, side // 8 + side, side // 8 + side))
    return np.asarray(first), np.asarray(second)
