"""A drawn tabletop frame for the demo-editor tests: a textured object (body + handle) on a textured background,
with depth (object 0.6 m, table 1.0 m) and its true mask; ``offset`` moves the object (the "live" frame)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

WIDTH, HEIGHT = 320, 240
BODY = (110, 70, 190, 180)  # x0, y0, x1, y1 of the object's body at offset 0


def draw(offset: tuple[int, int] = (0, 0), seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8, depth float32 metres, object mask bool)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(90, 150, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
    rgb = cv2.resize(background, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    dx, dy = offset
    x0, y0, x1, y1 = BODY
    cv2.rectangle(mask, (x0 + dx, y0 + dy), (x1 + dx, y1 + dy), 1, -1)
    cv2.ellipse(mask, (x1 + dx + 4, (y0 + y1) // 2 + dy), (26, 34), 0, -90, 90, 1, 12)
    pattern = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pattern[...] = (200, 40, 40)
    for i in range(0, 60, 12):  # stripes and a logo give the object features to match
        cv2.line(pattern, (x0 + dx, y0 + dy + 10 + 2 * i), (x1 + dx, y0 + dy + 2 * i), (240, 220, 60), 4)
    cv2.circle(pattern, ((x0 + x1) // 2 + dx, y1 + dy - 30), 14, (30, 60, 200), -1)
    cv2.rectangle(pattern, (x0 + dx + 10, y1 + dy - 18), (x0 + dx + 30, y1 + dy - 8), (20, 160, 60), -1)
    on = mask.astype(bool)
    rgb[on] = pattern[on]
    depth = np.where(on, 0.6, 1.0).astype(np.float32)
    return np.ascontiguousarray(rgb), depth, on


def intrinsics() -> dict:
    return {"fx": 300.0, "fy": 300.0, "cx": (WIDTH - 1) / 2, "cy": (HEIGHT - 1) / 2, "width": WIDTH, "height": HEIGHT}


def write_files(folder: Path, offset=(0, 0)) -> dict[str, Path]:
    """rgb.png, depth.png (uint16 mm) and intrinsics.json in ``folder`` (capture's --rgb/--depth-file inputs)."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb, depth, _ = draw(offset)
    paths = {"rgb": folder / "frame.png", "depth": folder / "frame_depth.png", "intrinsics": folder / "camera.json"}
    Image.fromarray(rgb).save(paths["rgb"])
    Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(paths["depth"])
    paths["intrinsics"].write_text(json.dumps(intrinsics()), encoding="utf-8")
    return paths
