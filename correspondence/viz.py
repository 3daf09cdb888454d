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


CONFIDENCE_COLOURS = {"all": (30, 180, 60), "some": (245, 165, 0), "none": (220, 40, 40)}
REJECTED_ALPHA, ACCEPTED_ALPHA = 70, 235


def _score_colour(value: float) -> tuple[int, int, int]:
    """Red (0) -> amber (0.5) -> green (1)."""
    t = float(np.clip(value, 0.0, 1.0))
    low, mid, high = np.array(CONFIDENCE_COLOURS["none"]), np.array(CONFIDENCE_COLOURS["some"]), \
        np.array(CONFIDENCE_COLOURS["all"])
    c = low + (mid - low) * (t / 0.5) if t < 0.5 else mid + (high - mid) * ((t - 0.5) / 0.5)
    return tuple(int(round(v)) for v in c)


def match_overlay(demo_image, live_image, demo_xy: np.ndarray, live_xy: np.ndarray, labels: Sequence[str],
                  accepted: Sequence[bool] | None = None, height: int = 480, title: str = "",
                  live_mask: np.ndarray | None = None,
                  colors: Sequence[tuple[int, int, int]] | None = None, *,
                  checks: Sequence[Sequence[bool | None]] | None = None,
                  confidence: Sequence[float] | None = None, max_labels: int = 24,
                  legend: bool | None = None) -> Image.Image:
    """Demo (left) and live (right) side by side, a line per match, readable with hundreds of them.

    Colour says how much to trust a match: with ``checks`` (per match, the outcome of each check that ran, e.g.
    mutual NN, cycle, geometric model; None = not run) green = all passed, amber = some, red = none; with
    ``confidence`` (0..1) a red -> green ramp; ``colors`` sets them directly (e.g. green = correct); otherwise a
    palette by index. Rejected matches (``accepted`` False) are drawn faint and thin. At most ``max_labels`` names
    are written (accepted and most trusted first); the rest are dots. A legend strip below explains the colours
    (default: whenever ``checks`` or ``confidence`` is given)."""
    left, s_left = _fit_height(demo_image, height)
    right, s_right = _fit_height(live_image, height)
    if live_mask is not None:
        tint = Image.fromarray((np.asarray(live_mask) > 0).astype(np.uint8) * 70).resize(right.size)
        right = Image.composite(Image.new("RGB", right.size, (0, 255, 0)), right, tint)
    n = len(labels)
    accepted = [bool(a) for a in accepted] if accepted is not None else [True] * n
    legend = (checks is not None or confidence is not None) if legend is None else legend
    gap, top = 8, 24 if title else 0
    strip = 20 if legend else 0
    canvas = Image.new("RGB", (left.width + gap + right.width, height + top + strip), (255, 255, 255))
    canvas.paste(left, (0, top))
    canvas.paste(right, (left.width + gap, top))
    font = ImageFont.load_default()
    trust = np.zeros(n)
    if checks is not None:
        levels = []
        for row in checks:
            ran = [bool(c) for c in row if c is not None]
            level = "all" if ran and all(ran) else ("some" if any(ran) else "none")
            levels.append(level)
        colour_of = [CONFIDENCE_COLOURS[level] for level in levels]
        trust = np.array([{"all": 2, "some": 1, "none": 0}[level] for level in levels], dtype=float)
    elif confidence is not None:
        colour_of = [_score_colour(c) for c in confidence]
        trust = np.asarray(confidence, dtype=float)
    elif colors is not None:
        colour_of = list(colors)
    else:
        colour_of = [PALETTE[i % len(PALETTE)] for i in range(n)]
    if colors is not None:
        colour_of = list(colors)
    order = sorted(range(n), key=lambda i: (not accepted[i], -trust[i], i))
    labelled = {i for i in order[:max(0, max_labels)] if labels[i]}
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    thin = n > 60
    dot = 2 if thin else 4
    for i in reversed(order):  # the most trusted on top
        p, q = np.asarray(demo_xy)[i], np.asarray(live_xy)[i]
        alpha = ACCEPTED_ALPHA if accepted[i] else REJECTED_ALPHA
        colour = (*(colour_of[i] if accepted[i] or checks is not None or confidence is not None
                    else (150, 150, 150)), alpha)
        a = (p[0] * s_left, p[1] * s_left + top)
        b = (q[0] * s_right + left.width + gap, q[1] * s_right + top)
        draw.line([a, b], fill=colour, width=1 if thin or not accepted[i] else 2)
        for c in (a, b):
            draw.ellipse([c[0] - dot, c[1] - dot, c[0] + dot, c[1] + dot], fill=colour,
                         outline=(0, 0, 0, alpha) if accepted[i] else None)
    for i in labelled:
        p = np.asarray(demo_xy)[i]
        a = (p[0] * s_left, p[1] * s_left + top)
        draw.text((a[0] + 5, a[1] - 5), labels[i], fill=(*colour_of[i], 255 if accepted[i] else 140), font=font,
                  stroke_width=1, stroke_fill=(0, 0, 0, 255 if accepted[i] else 140))
    canvas = Image.alpha_composite(canvas.convert("RGBA"), layer).convert("RGB")
    text = ImageDraw.Draw(canvas)
    if title:
        text.text((4, 4), title, fill=(0, 0, 0), font=font)
    if legend:
        _legend(text, font, 4, height + top + 4, accepted, len(labelled), n, trust if checks is not None else None)
    return canvas


def _legend(draw: ImageDraw.ImageDraw, font, x: int, y: int, accepted: list[bool], labelled: int, n: int,
            trust: np.ndarray | None) -> None:
    """Colour swatches with counts (per check level, or the confidence ramp), rejected, labels shown."""
    entries: list[tuple[tuple[int, int, int], str]] = []
    if trust is not None:
        for level, name, value in (("all", "all checks passed", 2), ("some", "some checks", 1),
                                   ("none", "no check passed", 0)):
            count = int(sum(1 for t, a in zip(trust, accepted) if a and t == value))
            entries.append((CONFIDENCE_COLOURS[level], f"{name} ({count})"))
    else:
        entries += [(_score_colour(1.0), "high"), (_score_colour(0.5), "medium"), (_score_colour(0.0), "low")]
    rejected = n - sum(accepted)
    entries.append(((200, 200, 200), f"rejected, faint ({rejected})"))
    for colour, label in entries:
        draw.rectangle([x, y + 2, x + 10, y + 10], fill=colour, outline=(0, 0, 0))
        draw.text((x + 14, y), label, fill=(0, 0, 0), font=font)
        x += 22 + int(draw.textlength(label, font=font))
    draw.text((x, y), f"labels: {labelled} of {n}", fill=(90, 90, 90), font=font)


def overlay_for_matches(demo_image, live_image, matches: Sequence, title: str = "", height: int = 480,
                        live_mask: np.ndarray | None = None, cycle_threshold_px: float | None = None,
                        max_labels: int = 24) -> Image.Image:
    """:func:`match_overlay` of :class:`~correspondence.keypoint_matching.KeypointMatch` es coloured by their checks:
    mutual NN, cycle distance within ``cycle_threshold_px`` (when given) and the geometric model (when fitted)."""
    checks = [(m.mutual, None if cycle_threshold_px is None else m.cycle_distance_px <= cycle_threshold_px,
               m.geometry_inlier) for m in matches]
    return match_overlay(demo_image, live_image, np.array([m.demo_xy for m in matches]).reshape(-1, 2),
                         np.array([m.live_xy for m in matches]).reshape(-1, 2), [m.name for m in matches],
                         [m.accepted for m in matches], height=height, title=title, live_mask=live_mask,
                         checks=checks, max_labels=max_labels)


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

    crowded = len(series) > 4 or max((len(name) for name in series), default=0) > 32  # legend below, not over
    fig, ax = plt.subplots(figsize=(6.5, 4.5) if crowded else (5, 3.5))
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), marker=marker, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if series and crowded:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncol=1, frameon=False)
    elif series:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight" if crowded else None)
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
