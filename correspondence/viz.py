"""Figures people would rather look at than read: side-by-side match overlays."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .preprocessing import to_rgb_array

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180)]


def _fit_height(image: np.ndarray, height: int) -> tuple[Image.Image, float]:
    img = Image.fromarray(to_rgb_array(image))
    scale = height / img.height
    return img.resize((max(1, round(img.width * scale)), height), Image.BILINEAR), scale


def match_overlay(demo_image, live_image, demo_xy: np.ndarray, live_xy: np.ndarray, labels: Sequence[str],
                  accepted: Sequence[bool] | None = None, height: int = 480, title: str = "",
                  live_mask: np.ndarray | None = None,
                  colors: Sequence[tuple[int, int, int]] | None = None) -> Image.Image:
    """Demo (left) and live (right) side by side; a coloured line per keypoint (rejected ones thin grey).
    ``colors`` overrides the palette (e.g. green = correct, red = wrong)."""
    left, s_left = _fit_height(demo_image, height)
    right, s_right = _fit_height(live_image, height)
    if live_mask is not None:
        tint = Image.fromarray((np.asarray(live_mask) > 0).astype(np.uint8) * 70).resize(right.size)
        right = Image.composite(Image.new("RGB", right.size, (0, 255, 0)), right, tint)
    gap, top = 8, 24 if title else 0
    canvas = Image.new("RGB", (left.width + gap + right.width, height + top), (255, 255, 255))
    canvas.paste(left, (0, top))
    canvas.paste(right, (left.width + gap, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    if title:
        draw.text((4, 4), title, fill=(0, 0, 0), font=font)
    accepted = list(accepted) if accepted is not None else [True] * len(labels)
    for i, (p, q, label) in enumerate(zip(np.asarray(demo_xy), np.asarray(live_xy), labels)):
        color = (colors[i] if colors is not None else PALETTE[i % len(PALETTE)]) if accepted[i] else (150, 150, 150)
        a = (p[0] * s_left, p[1] * s_left + top)
        b = (q[0] * s_right + left.width + gap, q[1] * s_right + top)
        draw.line([a, b], fill=color, width=2 if accepted[i] else 1)
        for c in (a, b):
            draw.ellipse([c[0] - 4, c[1] - 4, c[0] + 4, c[1] + 4], fill=color, outline=(0, 0, 0))
        draw.text((a[0] + 5, a[1] - 5), label, fill=color, font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return canvas


def save(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str], columns: int = 6, tile: int = 160) -> Image.Image:
    """A grid of thumbnails with a caption under each (for looking at many renders at once)."""
    rows = (len(images) + columns - 1) // columns
    caption = 14
    sheet = Image.new("RGB", (columns * tile, rows * (tile + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (image, label) in enumerate(zip(images, labels)):
        thumb = Image.fromarray(to_rgb_array(image)).resize((tile, tile), Image.BILINEAR)
        x, y = (i % columns) * tile, (i // columns) * (tile + caption)
        sheet.paste(thumb, (x, y))
        draw.text((x + 3, y + tile + 1), label, fill=(0, 0, 0), font=font)
    return sheet


def save_line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, xlabel: str,
                   ylabel: str, title: str, ylim: tuple[float, float] | None = None, marker: str | None = "o") -> Path:
    """One small line chart (loss curves, PCK vs alpha, PR curves) written as a PNG, headless."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), marker=marker, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_point_clouds(clouds: dict[str, tuple[np.ndarray, np.ndarray]], ply_path: str | Path,
                      png_path: str | Path) -> tuple[Path, Path]:
    """Several coloured clouds into one ASCII PLY and a two-view scatter PNG (front and top), so an alignment
    can be checked by eye; each cloud is tinted (first red, second blue) in the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ply_path, png_path = Path(ply_path), Path(png_path)
    ply_path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(xyz, rgb) for xyz, rgb in clouds.values()]
    total = sum(len(xyz) for xyz, _ in rows)
    with open(ply_path, "w", encoding="ascii") as handle:
        handle.write(f"ply\nformat ascii 1.0\nelement vertex {total}\nproperty float x\nproperty float y\n"
                     "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
        for xyz, rgb in rows:
            for p, c in zip(xyz, np.asarray(rgb, dtype=np.uint8)):
                handle.write(f"{p[0]:.5f} {p[1]:.5f} {p[2]:.5f} {c[0]} {c[1]} {c[2]}\n")
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    tints = [(0.85, 0.2, 0.2), (0.2, 0.35, 0.85), (0.2, 0.7, 0.3)]
    for (name, (xyz, _)), tint in zip(clouds.items(), tints):
        axes[0].scatter(xyz[:, 0], -xyz[:, 1], s=0.3, color=tint, label=name)
        axes[1].scatter(xyz[:, 0], xyz[:, 2], s=0.3, color=tint, label=name)
    axes[0].set_title("front (x right, y up)")
    axes[1].set_title("top (x right, z forward)")
    for ax in axes:
        ax.set_aspect("equal")
        ax.legend(markerscale=10, fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return ply_path, png_path
