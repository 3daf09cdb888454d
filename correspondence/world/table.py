"""The table the objects stand on, in a view's depth and colour: what a real RGB-D or stereo camera sees.

Why: without it every pixel off the objects has no depth, and each object is a depth surface of its own; on a real
table it is not (an object touches the table with no depth step). :mod:`~correspondence.support_plane` takes the
table out again; scenes with the table are the realistic setting to measure that on.

The table is the plane ``z = level`` of the *table frame* (the target's object frame at demo time, +z up; see
:mod:`~correspondence.world.scene`), a rectangle ``half`` metres either side of its origin. ``level`` lies just under
every object's lowest point, so the table never hides any object's pixel: it fills only pixels no object covers,
and the objects' masks, part maps and keypoint visibility stay exactly as without it. Its colour is a wood or
laminate tone with a grain fixed to the table (it moves with the table between views), lit by the view's light.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..camera import CameraIntrinsics
from .render import RenderSettings, _camera_rays, _draw_light, _encode, _lit, _seed_words, _to_linear
from .types import ObjectInstance, RenderedView

_STREAM_TABLE = 5  # the table's colour stream (render.py's streams are 1-4)
#: sRGB tones of table tops: light oak, walnut, grey laminate, white laminate, beech
TABLE_TONES = np.array([[0.70, 0.55, 0.38], [0.42, 0.28, 0.18], [0.58, 0.58, 0.56], [0.86, 0.85, 0.81],
                        [0.80, 0.66, 0.48]])


def table_level(objects: tuple[ObjectInstance, ...] | list[ObjectInstance]) -> float:
    """The table's height in the table frame: just under the lowest object point (a turn about the vertical and a
    shift on the table keep an object's heights), so the table never hides an object's pixel."""
    lowest = min(float(np.asarray(o.vertices)[:, 2].min()) for o in objects)
    size = max(float(np.asarray(o.extent).max()) for o in objects)
    return lowest - max(1e-3 * size, 1e-5)


def table_half_size(target: ObjectInstance) -> float:
    """Half the table's side: six of the target's largest extents, room for the scene's placements."""
    return 6.0 * float(np.asarray(target.extent).max())


def table_layer(table_pose: np.ndarray, intrinsics: CameraIntrinsics, settings: RenderSettings, seed: int,
                level: float, half: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel's ray meets the table (``table_pose``: table frame -> camera): ``(hit (H, W) bool,
    depth (H, W) float32 metres, 0 off the table, rgb (H, W, 3) uint8, valid where hit)``."""
    H, W = intrinsics.height, intrinsics.width
    R, t = table_pose[:3, :3], table_pose[:3, 3]
    eye = -R.T @ t  # the camera centre in the table frame
    directions = _camera_rays(intrinsics) @ R  # unit z in the camera frame: the ray parameter is the depth
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (level - eye[2]) / directions[:, 2]
    points = eye + depth[:, None] * directions
    hit = (np.isfinite(depth) & (depth > 1e-3) & (np.abs(points[:, 0]) <= half) & (np.abs(points[:, 1]) <= half))
    rgb = np.zeros((H * W, 3), np.uint8)
    if hit.any():
        rgb[hit] = _encode(_shade_table(points[hit], directions[hit], _draw_light(settings.light, seed, R),
                                        settings.ambient, seed))
    return (hit.reshape(H, W), np.where(hit, depth, 0.0).astype(np.float32).reshape(H, W),
            rgb.reshape(H, W, 3))


def _shade_table(points: np.ndarray, directions: np.ndarray, light, ambient: float, seed: int) -> np.ndarray:
    """Linear RGB of table hits: a tone drawn from the view seed with a wood-like grain along the table's x."""
    rng = np.random.default_rng(_seed_words(seed, _STREAM_TABLE))
    tone = TABLE_TONES[int(rng.integers(len(TABLE_TONES)))] * rng.uniform(0.92, 1.08, 3)
    period, wobble, phase = rng.uniform(0.006, 0.02), rng.uniform(0.05, 0.2), rng.uniform(0, 2 * np.pi, 2)
    x, y = points[:, 0], points[:, 1]
    grain = np.sin(2 * np.pi * (y / period + wobble * np.sin(2 * np.pi * x / 0.15 + phase[0])) + phase[1])
    albedo = _to_linear(np.clip(tone, 0.0, 1.0))[None] * (0.9 + 0.1 * grain)[:, None]
    normals = np.broadcast_to(np.array([0.0, 0.0, 1.0]), points.shape)
    return _lit(albedo, normals, directions, light, ambient, 0.08)


def fill_table(rgb: np.ndarray, depth: np.ndarray, covered: np.ndarray, table_pose: np.ndarray,
               intrinsics: CameraIntrinsics, settings: RenderSettings, seed: int, level: float, half: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """``rgb`` and ``depth`` with the table in the pixels no object ``covered``."""
    hit, table_depth, table_rgb = table_layer(table_pose, intrinsics, settings, seed, level, half)
    show = hit & ~covered
    return (np.where(show[..., None], table_rgb, rgb).astype(np.uint8),
            np.where(show, table_depth, depth).astype(np.float32))


def view_on_table(view: RenderedView, obj: ObjectInstance, settings: RenderSettings) -> RenderedView:
    """A one-object view (the demo) standing on the table: its object frame is the table frame, so ``view.pose`` is
    the table's pose. Mask, part map and keypoints unchanged; ``depth`` then holds the table too."""
    rgb, depth = fill_table(view.rgb, view.depth, view.mask, view.pose, view.intrinsics, settings, view.seed,
                            table_level([obj]), table_half_size(obj))
    return replace(view, rgb=rgb, depth=depth)


__all__ = ["TABLE_TONES", "fill_table", "table_half_size", "table_layer", "table_level", "view_on_table"]
