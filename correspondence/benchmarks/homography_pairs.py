"""The pairs of ``soco bench homography``: real photographs under exact warps, procedural 3D views, unrelated pairs.

* **Warps** (planar, exact): a photo and a copy under a homography drawn per pair from a rotation x scale design
  (rotation 0-180 deg in six bins, either sense; scale 0.25-4 in four octave bins, log-uniform; every combination
  visited in turn) composed with a perspective corner shift and a translation, then photometric change (gain,
  bias, gamma, blur, noise, JPEG). The demo points are a grid over the part of the photo that stays in view.
* **Non-planar** (exact): two views of a procedural object (:mod:`correspondence.world`) from cameras 15-40 deg
  apart around it, on different backgrounds; the truth is the rendered surface point's projection. With the
  objects' own (faint, coarse) textures, and again with a fine full-contrast texture (same objects and cameras).
* **Folded** (non-planar, exact): a photo printed on two planes meeting at a vertical fold (an open book, 90 deg
  between the pages), seen by two cameras 20 deg and a baseline apart: one homography per page, one fundamental
  matrix for the pair, real texture.
* **Unrelated**: a photo against a different photo: every accepted point is wrong (no truth).

Photos are de-duplicated by their pixels (a photo in two sources counts once).
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from PIL import Image

from ..errors import InputError
from ..projective import project  # noqa: F401 (scripts and tests import it from here)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ROTATION_BINS = (0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0)  # |rotation| in degrees
SCALE_BINS = (0.25, 0.5, 1.0, 2.0, 4.0)
WORLD_CATEGORIES = ("mug", "kettle", "bottle", "hammer", "chair", "car")


@dataclass(frozen=True)
class WarpSettings:
    """The random homography and photometric change of one pair."""

    rotation_bins: tuple[float, ...] = ROTATION_BINS
    scale_bins: tuple[float, ...] = SCALE_BINS
    perspective: float = 0.1  # corner shift, fraction of the image side
    translation: float = 0.1  # fraction of the image side
    brightness: float = 25.0  # +- grey levels
    contrast: tuple[float, float] = (0.7, 1.3)
    gamma: tuple[float, float] = (0.7, 1.4)
    noise_sigma: tuple[float, float] = (0.0, 6.0)
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    jpeg_quality: tuple[int, int] = (60, 95)
    min_points: int = 20  # demo grid points that must land in the live image


@dataclass(frozen=True)
class SourceImage:
    name: str
    rgb: np.ndarray
    group: str = "photos"  # where it came from (a folder's name, umd-i): results are also given per group


@dataclass(frozen=True)
class Pair:
    name: str
    group: str
    demo: np.ndarray
    live: np.ndarray
    query_xy: np.ndarray  # (K, 2) demo pixels
    truth_xy: np.ndarray  # (K, 2) their live position (NaN: unrelated pair, nothing is right)
    kind: str = "warp"  # warp | world | unrelated
    homography: np.ndarray | None = None  # 3 x 3, continuous pixels, demo -> live (warps only)
    rotation_deg: float | None = None
    scale: float | None = None


# ------------------------------------------------------------------------------------------------ images


def _is_photo(image: Image.Image) -> bool:
    """RGB photographs only: palette / grey images in these folders are annotation masks."""
    return image.mode in ("RGB", "RGBA", "CMYK", "YCbCr")


def images_from_folder(folder: Path) -> list[SourceImage]:
    out = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        with Image.open(path) as image:
            if _is_photo(image):
                out.append(SourceImage(path.name, np.asarray(image.convert("RGB")), Path(folder).name))
    return out


def images_from_umd(zip_path: Path, limit: int) -> list[SourceImage]:
    """RGB frames of UMD-i (``*_rgb.jpg``), the first of each tool instance, at most ``limit`` (0: all)."""
    out, seen = [], set()
    with zipfile.ZipFile(zip_path) as archive:
        for name in sorted(archive.namelist()):
            if not name.endswith("_rgb.jpg"):
                continue
            instance = Path(name).parent.name
            if instance in seen:
                continue
            seen.add(instance)
            with Image.open(io.BytesIO(archive.read(name))) as image:
                out.append(SourceImage(f"umd/{Path(name).name}", np.asarray(image.convert("RGB")), "umd-i"))
    if limit > 0 and len(out) > limit:
        pick = np.linspace(0, len(out) - 1, limit).round().astype(int)
        out = [out[i] for i in pick]
    return out


def default_sources() -> tuple[Path | None, Path | None]:
    """The project's shared photos and UMD-i archive (``$SOCO_SHARED_DIR`` or ``../shared``), where present."""
    root = Path(os.environ.get("SOCO_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared"))
    images, umd = root / "data" / "images", root / "data" / "umd_i" / "UMD_i.zip"
    return (images if images.is_dir() else None), (umd if umd.is_file() else None)


def unique(images: list[SourceImage]) -> list[SourceImage]:
    """The first of each set of pixel-identical photos (``affc_cup_03_00000004`` is ``umd/cup_03_00000004``)."""
    seen, out = set(), []
    for image in images:
        key = hashlib.sha1(np.ascontiguousarray(image.rgb).tobytes() + str(image.rgb.shape).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            out.append(image)
    return out


def collect_images(folders: Iterable[Path], umd_zip: Path | None, max_umd: int) -> list[SourceImage]:
    images: list[SourceImage] = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise InputError(f"image folder {folder} does not exist")
        images += images_from_folder(Path(folder))
    if umd_zip is not None:
        if not Path(umd_zip).is_file():
            raise InputError(f"UMD-i archive {umd_zip} does not exist")
        images += images_from_umd(Path(umd_zip), max_umd)
    if not images:
        raise InputError("no photographs to warp: pass --images DIR (or make ../shared/data available)")
    return unique(images)


# ------------------------------------------------------------------------------------------------ warps

_SHIFT = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])  # continuous -> OpenCV pixel centres


def to_continuous(h_cv: np.ndarray) -> np.ndarray:
    """A homography between OpenCV pixel coordinates as one between continuous pixel coordinates."""
    return np.linalg.inv(_SHIFT) @ h_cv @ _SHIFT


def query_grid(width: float, height: float, points: int, origin=(0.0, 0.0)) -> np.ndarray:
    """About ``points`` points on a regular grid (cell centres of an nx x ny split of the box)."""
    nx = max(2, round(math.sqrt(points * width / max(height, 1e-9))))
    ny = max(2, round(points / nx))
    xs = origin[0] + (np.arange(nx) + 0.5) * width / nx
    ys = origin[1] + (np.arange(ny) + 0.5) * height / ny
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)


def design(index: int, settings: WarpSettings) -> tuple[int, int]:
    """The (rotation bin, scale bin) of pair ``index``: every combination in turn, rotations varying fastest."""
    n_rot, n_scale = len(settings.rotation_bins) - 1, len(settings.scale_bins) - 1
    combo = index % (n_rot * n_scale)
    return combo % n_rot, (combo // n_rot + combo % n_rot) % n_scale


def random_homography(rng: np.random.Generator, width: int, height: int, settings: WarpSettings, degrees: float,
                      scale: float) -> np.ndarray:
    """OpenCV-pixel homography: a perspective corner shift, then rotation and scale about the centre, then a
    translation."""
    side = float(max(width, height))
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    moved = corners + rng.uniform(-settings.perspective, settings.perspective, (4, 2)).astype(np.float32) * side
    perspective = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
    angle = math.radians(degrees)
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    shift = rng.uniform(-settings.translation, settings.translation, 2) * side
    similarity = np.array([[c, -s, cx - c * cx + s * cy + shift[0]], [s, c, cy - s * cx - c * cy + shift[1]],
                           [0.0, 0.0, 1.0]])
    return similarity @ perspective


def photometric(rng: np.random.Generator, image: np.ndarray, settings: WarpSettings) -> np.ndarray:
    out = image.astype(np.float32)
    blur = rng.uniform(*settings.blur_sigma)
    if blur > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** rng.uniform(*settings.gamma)
    out = (out - 128.0) * rng.uniform(*settings.contrast) + 128.0 + rng.uniform(-settings.brightness,
                                                                                 settings.brightness)
    out = out + rng.normal(0.0, rng.uniform(*settings.noise_sigma), out.shape)
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    quality = int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1))
    ok, data = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy() if ok else out


def _visible_grid(h: np.ndarray, width: int, height: int, points: int) -> np.ndarray:
    """A grid over the part of the demo that the warp keeps in the live image (its bounding box)."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    back = project(np.linalg.inv(h), corners)
    x0, y0 = np.clip(back.min(0), 0, [width, height])
    x1, y1 = np.clip(back.max(0), 0, [width, height])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((0, 2))
    return query_grid(x1 - x0, y1 - y0, points, (x0, y0))


def make_pair(rng: np.random.Generator, source: SourceImage, index: int, points: int, settings: WarpSettings,
              degrees: float | None = None, scale: float | None = None) -> Pair:
    """A warped, photometrically changed copy of ``source`` and the exact live position of its grid points;
    rotation and scale drawn from the design cell of ``index`` unless given."""
    height, width = source.rgb.shape[:2]
    rot_bin, scale_bin = design(index, settings)
    for _ in range(100):
        angle = degrees if degrees is not None else float(
            rng.choice([-1.0, 1.0]) * rng.uniform(*settings.rotation_bins[rot_bin:rot_bin + 2]))
        zoom = scale if scale is not None else float(math.exp(rng.uniform(
            *np.log(settings.scale_bins[scale_bin:scale_bin + 2]))))
        h_cv = random_homography(rng, width, height, settings, angle, zoom)
        h = to_continuous(h_cv)
        query = _visible_grid(h, width, height, points)
        if len(query) == 0:
            continue
        truth = project(h, query)
        inside = (truth[:, 0] >= 0) & (truth[:, 0] < width) & (truth[:, 1] >= 0) & (truth[:, 1] < height)
        if inside.sum() >= settings.min_points:
            break
    centre = np.array([width / 2, height / 2, 1.0])
    jac = h_cv[:2, :2] - np.outer(project(h_cv, centre[None, :2])[0], h_cv[2, :2])
    shrink = math.sqrt(abs(np.linalg.det(jac))) / max(abs(h_cv[2] @ centre), 1e-9)
    demo = source.rgb
    blurred = cv2.GaussianBlur(demo, (0, 0), 0.5 * math.sqrt(1 / shrink ** 2 - 1)) if shrink < 0.9 else demo
    warped = cv2.warpPerspective(blurred, h_cv, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    live = photometric(rng, warped, settings)
    return Pair(f"{source.name}#{index}", source.group, demo, live, query[inside], truth[inside], "warp", h,
                angle, zoom)


# ------------------------------------------------------------------------------------------------ other pairs


WORLD_TEXTURES = ("own", "fine")
FINE_TEXTURE = {"texture": "noise", "texture_strength": 1.0, "texture_scale": 0.008}  # 8-mm noise, full contrast


def world_pairs(count: int, points: int, seed: int = 0, size: tuple[int, int] = (320, 240), texture: str = "own"
                ) -> list[Pair]:
    """Two views of a procedural object, cameras 15-40 deg apart around it, different backgrounds: a non-planar
    scene with exact correspondences (the rendered surface point's projection, visible in both).

    ``texture``: ``own``, the instance's texture (smooth shading; stripes / checker / noise at 1-5 cm periods and a
    quarter contrast: too little for any matcher to find a few dozen exact matches at 320 x 240), or ``fine``,
    the same objects and cameras with a full-contrast 8-mm noise texture (:data:`FINE_TEXTURE`): the non-planar
    case where the epipolar geometry can be verified."""
    if texture not in WORLD_TEXTURES:
        raise ValueError(f"world texture must be one of {WORLD_TEXTURES}, got {texture!r}")
    from ..world.families import make_instance
    from ..world.groundtruth import same_object_correspondences
    from ..world.render import Renderer, RenderSettings, sample_pose
    settings = RenderSettings(width=size[0], height=size[1])
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        category = WORLD_CATEGORIES[k % len(WORLD_CATEGORIES)]
        obj = make_instance(category, k // len(WORLD_CATEGORIES), seed)
        if texture == "fine":
            obj = replace(obj, appearance=replace(obj.appearance, **FINE_TEXTURE))
        renderer = Renderer(obj)
        azimuth = float(rng.uniform(0, 360))
        elevation = float(rng.uniform(15, 45))
        turn = float(rng.choice([-1, 1]) * rng.uniform(15, 40))
        poses = [sample_pose(rng, obj, (1.4, 1.8), (elevation, elevation + 5), (a, a), settings.intrinsics)
                 for a in (azimuth, azimuth + turn)]
        a, b = (renderer.render(pose, settings, seed=seed * 1000 + 2 * k + i) for i, pose in enumerate(poses))
        corr = same_object_correspondences(a, b, max_points=points, rng=rng)
        name, group = ("world", "world (non-planar)") if texture == "own" else ("world-fine", "world, fine texture")
        out.append(Pair(f"{name}/{obj.instance_id}#{k}", group, a.rgb, b.rgb, corr.xy_a, corr.xy_b, "world",
                        rotation_deg=turn))
    return out


def unrelated_pairs(images: list[SourceImage], count: int, points: int) -> list[Pair]:
    """Each of ``count`` photos against the next different one: no point has a right answer."""
    out = []
    for k in range(min(count, len(images) - 1)):
        demo, live = images[k], images[(k + 1) % len(images)]
        query = query_grid(demo.rgb.shape[1], demo.rgb.shape[0], points)
        out.append(Pair(f"{demo.name} vs {live.name}", "unrelated", demo.rgb, live.rgb, query,
                        np.full(query.shape, np.nan), "unrelated"))
    return out


def stereo_pair(source: SourceImage, points: int) -> Pair:
    """The folded photo seen by a rectified stereo rig (the second camera moved sideways only): StereoSGBM's
    home ground, for comparison."""
    pair = fold_pair(source, points, turn_deg=0.0, baseline=(0.5, 0.0, 0.0))
    return replace(pair, name=f"stereo/{source.name}", group="rectified stereo (non-planar)", kind="stereo")


def fold_pair(source: SourceImage, points: int, turn_deg: float = 20.0, baseline=(0.8, 0.05, 0.1),
              max_side: int = 640) -> Pair:
    """``source`` on the two pages of an open book (the fold at its centre column, 4 units away, pages at +-45 deg
    to the view), seen again by a camera turned ``turn_deg`` and moved by ``baseline``: each page moves by its own
    plane-induced homography K (R + t n^T / d) K^-1, so the pair is non-planar with an exact truth."""
    photo = source.rgb
    if max(photo.shape[:2]) > max_side:
        factor = max_side / max(photo.shape[:2])
        photo = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    height, width = photo.shape[:2]
    focal = 0.9 * width
    k = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])
    a = math.radians(turn_deg)
    rotation = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    pages = []
    for normal in (np.array([1.0, 0, -1.0]), np.array([-1.0, 0, -1.0])):
        normal = normal / np.linalg.norm(normal)
        pages.append(k @ (rotation + np.outer(baseline, normal) / (normal @ [0, 0, 4.0])) @ np.linalg.inv(k))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    live_px = np.column_stack([cols.ravel() + 0.5, rows.ravel() + 0.5])
    back = [project(np.linalg.inv(h), live_px) for h in pages]  # the demo pixel each page puts there
    on_left, on_right = back[0][:, 0] < width / 2, back[1][:, 0] >= width / 2
    source_px = np.where(on_left[:, None], back[0], back[1])
    source_px[~(on_left | on_right)] = -10.0
    map_x = (source_px[:, 0] - 0.5).reshape(height, width).astype(np.float32)
    map_y = (source_px[:, 1] - 0.5).reshape(height, width).astype(np.float32)
    live = cv2.remap(photo, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    query = query_grid(width, height, points)
    query = query[np.abs(query[:, 0] - width / 2) > 2.0]  # not on the fold itself
    truth = np.where((query[:, 0] < width / 2)[:, None], project(pages[0], query), project(pages[1], query))
    inside = (truth >= 0).all(1) & (truth[:, 0] < width) & (truth[:, 1] < height)
    return Pair(f"fold/{source.name}", "folded photo (non-planar)", photo, live, query[inside], truth[inside],
                "fold", rotation_deg=turn_deg)
