"""Headless, CPU-only, deterministic renderer of procedural objects, built on Open3D's ray casting (Embree).

Why ray casting rather than a rasteriser: it needs no display, no OpenGL and no GPU, it gives exact ground truth
for free (every pixel knows its triangle, part and object-frame point) and a 256 x 256 view takes milliseconds.

Conventions, so that ground truth and pixels agree exactly:

* ``pose`` is the object -> camera transform; the camera frame is OpenCV's (+x right, +y down, +z forward).
* One ray per pixel, through the pixel centre: at pixel (row i, col j) ``depth`` and ``points_object`` are the
  point ``intrinsics.unproject((j + 0.5, i + 0.5), depth)`` mapped back through the inverse pose.
* ``Appearance.part_colors`` are display (sRGB-like) colours; shading happens in linear light and is encoded with
  gamma 2.2, so a surface facing a white light shows its part colour.
* Texture parameters come from ``obj.seed`` (the texture belongs to the instance and looks the same in every
  view); background and light come from the view ``seed``. Same inputs -> byte-identical outputs.

Open3D is an optional dependency (the ``vision`` extra); it is imported on first use.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..camera import CameraIntrinsics
from ..errors import ConfigError, InputError
from ..optional import require
from .types import ObjectInstance, RenderedView

BACKGROUNDS = ("gradient", "checker", "noise", "plain")
LIGHTS = ("random", "headlight", "top")
TEXTURES = ("plain", "stripes", "checker", "noise")
GAMMA = 2.2
SHININESS = 40.0
CREASE_ANGLE_DEG = 35.0  # faces meeting at a sharper angle keep a hard edge; smoother ones are shaded smooth
_REFERENCE_FOV_Y_DEG = 45.0  # distance_factor in sample_pose is calibrated for this field of view
_OBJECT_GEOMETRY, _GROUND_GEOMETRY = 0, 1
# Independent random streams, so adding a background kind never changes the lights drawn for a seed.
_STREAM_BACKGROUND, _STREAM_LIGHT, _STREAM_GROUND, _STREAM_TEXTURE = 1, 2, 3, 4
_RENDERER_CACHE_SIZE = 8


def _open3d() -> Any:
    """Import Open3D lazily: the core library must import without the optional ``vision`` extra."""
    return require("open3d", "rendering")


def _seed_words(seed: int, stream: int) -> list[int]:
    """Any Python int -> non-negative words for ``np.random.default_rng`` (SeedSequence rejects negatives)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    return [int(seed) % 2**64, stream]


# ----------------------------------------------------------------------------------------------------- poses


def _check_pose(pose: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """A pose must be a rigid 4x4 transform; anything else would silently distort the ground truth."""
    from ..demo_views import check_pose  # the one rigid-transform check
    return check_pose(pose, "pose (object -> camera)", tol)


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n < 1e-12:
        raise InputError(f"{what} has zero or non-finite length: {np.asarray(v).tolist()}")
    return v / n


def look_at_pose(eye: np.ndarray, target: np.ndarray, up: np.ndarray | tuple = (0, 0, 1)) -> np.ndarray:
    """Object->camera transform of a camera at ``eye`` looking at ``target`` (both in the object frame).

    The image's up direction is ``up`` as far as possible; looking along ``up`` falls back to +x (then +y) so a
    top-down view is still well defined.
    """
    eye = np.asarray(eye, dtype=np.float64).reshape(3)
    target = np.asarray(target, dtype=np.float64).reshape(3)
    forward = _unit(target - eye, "target - eye")
    up = _unit(np.asarray(up, dtype=np.float64).reshape(3), "up")
    for candidate in (up, np.array([1.0, 0, 0]), np.array([0, 1.0, 0])):
        right = np.cross(forward, candidate)
        if np.linalg.norm(right) > 1e-6:
            break
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])  # rows: camera axes expressed in the object frame
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ eye
    return T


def _roll(T: np.ndarray, angle_rad: float) -> np.ndarray:
    """Rotate the camera about its optical axis."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    Rz = np.eye(4)
    Rz[:2, :2] = [[c, -s], [s, c]]
    return Rz @ T


def _distance_scale(intrinsics: CameraIntrinsics | None) -> float:
    """Distance multiplier keeping the object's share of the frame as it is at the reference 45 deg FOV."""
    if intrinsics is None:
        return 1.0
    reference = 0.5 / np.tan(np.radians(_REFERENCE_FOV_Y_DEG) / 2)
    return max(intrinsics.fx / intrinsics.width, intrinsics.fy / intrinsics.height) / reference


def _check_range(values: tuple[float, float], what: str, positive: bool = False) -> tuple[float, float]:
    lo, hi = (float(v) for v in values)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi) or (positive and lo <= 0):
        raise InputError(f"{what} must be a finite (low, high) range{' of positive values' if positive else ''}, "
                         f"got {values}")
    return lo, hi


def sample_pose(rng: np.random.Generator, obj: ObjectInstance, distance_factor: tuple[float, float] = (1.6, 2.6),
                elevation_deg: tuple[float, float] = (10, 60), azimuth_deg: tuple[float, float] = (0, 360),
                intrinsics: CameraIntrinsics | None = None) -> np.ndarray:
    """A random object->camera pose on a sphere around ``obj.center``, looking at (a jittered) centre.

    distance = factor * max(extent); the factor range is calibrated for a 45 deg vertical FOV, where 1.6-2.6
    makes the object fill roughly 75-45 % of the frame. Given ``intrinsics`` the distance is rescaled so the
    object fills the same share of that camera's frame. Azimuth 0 looks at the object's front (+x) face.
    """
    f_lo, f_hi = _check_range(distance_factor, "distance_factor", positive=True)
    e_lo, e_hi = _check_range(elevation_deg, "elevation_deg")
    a_lo, a_hi = _check_range(azimuth_deg, "azimuth_deg")
    extent = np.asarray(obj.extent, dtype=np.float64)
    size = float(extent.max())
    if not size > 0:
        raise InputError(f"object {obj.instance_id!r} has zero extent; cannot place a camera around it")
    distance = rng.uniform(f_lo, f_hi) * size * _distance_scale(intrinsics)
    elevation, azimuth = np.radians(rng.uniform(e_lo, e_hi)), np.radians(rng.uniform(a_lo, a_hi))
    roll = np.radians(rng.uniform(-10.0, 10.0))
    target = np.asarray(obj.center, dtype=np.float64) + rng.uniform(-0.05, 0.05, 3) * extent
    direction = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                          np.sin(elevation)])
    return _roll(look_at_pose(target + distance * direction, target), roll)


# -------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class RenderSettings:
    """What a view looks like apart from the pose. ``background``/``light`` "random" draw from the view seed."""

    width: int = 256
    height: int = 256
    fov_y_deg: float = 45.0
    background: str = "random"  # random | gradient | checker | noise | plain
    light: str = "random"  # random | headlight | top
    ambient: float = 0.35
    add_ground_plane: bool = False  # a large quad under the object: occludes, never part of the mask

    def __post_init__(self) -> None:
        if self.background not in ("random",) + BACKGROUNDS:
            raise ConfigError(f"unknown background {self.background!r}; expected one of {('random',) + BACKGROUNDS}")
        if self.light not in LIGHTS:
            raise ConfigError(f"unknown light {self.light!r}; expected one of {LIGHTS}")
        if not 0.0 <= self.ambient <= 1.0:
            raise ConfigError(f"ambient must be in [0, 1], got {self.ambient}")
        if not 0.0 < self.fov_y_deg < 180.0:
            raise ConfigError(f"fov_y_deg must be in (0, 180), got {self.fov_y_deg}")
        if self.width <= 0 or self.height <= 0:
            raise ConfigError(f"image size must be positive, got {self.width} x {self.height}")

    @property
    def intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics.from_fov(self.width, self.height, self.fov_y_deg)


# --------------------------------------------------------------------------------------------------- texture


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@dataclass(frozen=True, eq=False)
class _Texture:
    """A procedural 3D texture: a modulation in [0, 1] at object-frame points, fixed per instance."""

    kind: str
    scale: float
    rotation: np.ndarray  # (3, 3): orients stripes / checker cells
    offset: np.ndarray  # (3,): keeps checker cell boundaries off the object's (often axis-aligned) faces
    directions: np.ndarray  # (K, 3) noise sinusoid directions
    frequencies: np.ndarray  # (K,)
    phases: np.ndarray  # (K,)

    @staticmethod
    def for_object(obj: ObjectInstance) -> "_Texture":
        appearance = obj.appearance
        if appearance.texture not in TEXTURES:
            raise InputError(f"object {obj.instance_id!r}: unknown texture {appearance.texture!r}; "
                             f"expected one of {TEXTURES}")
        if appearance.texture != "plain" and not appearance.texture_scale > 0:
            raise InputError(f"object {obj.instance_id!r}: texture_scale must be > 0, got {appearance.texture_scale}")
        rng = np.random.default_rng(_seed_words(obj.seed, _STREAM_TEXTURE))
        k = 6
        directions = rng.normal(size=(k, 3))
        return _Texture(appearance.texture, float(appearance.texture_scale), _random_rotation(rng),
                        rng.uniform(0, 1, 3), directions / np.linalg.norm(directions, axis=1, keepdims=True),
                        rng.uniform(0.5, 2.0, k), rng.uniform(0, 2 * np.pi, k))

    def modulation(self, points: np.ndarray) -> np.ndarray:
        if self.kind == "stripes":
            return 0.5 + 0.5 * np.sin(2 * np.pi * (points @ self.rotation[0]) / self.scale + 2 * np.pi * self.offset[0])
        if self.kind == "checker":
            cells = np.floor((points @ self.rotation.T) / (0.5 * self.scale) + self.offset).astype(np.int64)
            return (cells.sum(-1) % 2).astype(np.float64)
        if self.kind == "noise":
            waves = np.sin(2 * np.pi * (points @ self.directions.T) * self.frequencies / self.scale + self.phases)
            return np.clip(0.5 + 0.5 * waves.sum(-1) / np.sqrt(len(self.phases)), 0.0, 1.0)
        return np.zeros(len(points))


def _to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.clip(srgb, 0.0, 1.0) ** GAMMA


def _to_uint8(display: np.ndarray) -> np.ndarray:
    """Display-space [0, 1] -> uint8, rounding half up (deterministic)."""
    return np.floor(np.clip(display, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _encode(linear: np.ndarray) -> np.ndarray:
    """Linear light -> gamma-2.2 uint8."""
    return _to_uint8(np.clip(linear, 0.0, 1.0) ** (1.0 / GAMMA))


def _part_palette(obj: ObjectInstance) -> tuple[np.ndarray, np.ndarray]:
    """Per-part linear albedo and the 'ink' colour its texture mixes towards (darker on light parts, lighter on
    dark ones, so a texture shows on any colour). Parts without a colour are mid grey."""
    base = np.array([obj.appearance.part_colors.get(name, (0.6, 0.6, 0.6)) for name in obj.part_names],
                    dtype=np.float64).reshape(-1, 3)
    if not np.isfinite(base).all():
        raise InputError(f"object {obj.instance_id!r}: part colours must be finite RGB triples in [0, 1]")
    base = np.clip(base, 0.0, 1.0)
    luma = base @ np.array([0.299, 0.587, 0.114])
    ink = np.where(luma[:, None] > 0.45, 0.3 * base, base + 0.6 * (1.0 - base))
    return _to_linear(base), _to_linear(ink)


# ------------------------------------------------------------------------------------------ lights, backdrops


@dataclass(frozen=True, eq=False)
class _Light:
    direction: np.ndarray  # (3,) unit, object frame, from the surface towards the light
    color: np.ndarray  # (3,) linear RGB, intensity folded in


def _draw_light(kind: str, seed: int, R: np.ndarray) -> _Light:
    """A directional light. 'random' comes from within 70 deg of the camera's back, so the visible side is lit."""
    if kind == "headlight":
        return _Light(R.T @ np.array([0.0, 0.0, -1.0]), np.ones(3))
    if kind == "top":
        return _Light(np.array([0.0, 0.0, 1.0]), np.ones(3))
    rng = np.random.default_rng(_seed_words(seed, _STREAM_LIGHT))
    theta = np.arccos(rng.uniform(np.cos(np.radians(70.0)), 1.0))
    phi = rng.uniform(0, 2 * np.pi)
    direction_cam = np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), -np.cos(theta)])
    color = rng.uniform(0.85, 1.15) * (1.0 + rng.uniform(-0.08, 0.08, 3))
    return _Light(R.T @ direction_cam, color)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Value noise: a random (cells+1)^2 x 3 lattice, smoothstep-interpolated to the image, values in [0, 1]."""
    lattice = rng.uniform(0, 1, (cells + 1, cells + 1, 3))
    ys, xs = np.linspace(0, cells, height, endpoint=False), np.linspace(0, cells, width, endpoint=False)
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = ys - y0, xs - x0
    fy, fx = (fy * fy * (3 - 2 * fy))[:, None, None], (fx * fx * (3 - 2 * fx))[None, :, None]
    top = lattice[y0][:, x0] * (1 - fx) + lattice[y0][:, x0 + 1] * fx
    bottom = lattice[y0 + 1][:, x0] * (1 - fx) + lattice[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _draw_background(kind: str, seed: int, height: int, width: int) -> tuple[str, np.ndarray]:
    """A display-space (H, W, 3) float backdrop in [0, 1]; 'random' picks one kind from the seed."""
    rng = np.random.default_rng(_seed_words(seed, _STREAM_BACKGROUND))
    if kind == "random":
        kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    c0, c1 = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    if kind == "plain":
        return kind, np.broadcast_to(c0, (height, width, 3)).copy()
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    u = x * np.cos(angle) + y * np.sin(angle)
    if kind == "gradient":
        t = (u - u.min()) / max(float(np.ptp(u)), 1e-9)
        return kind, c0 + t[..., None] * (c1 - c0)
    if kind == "checker":
        v = -x * np.sin(angle) + y * np.cos(angle)
        cell = rng.uniform(8, 40) * min(height, width) / 256.0
        parity = (np.floor(u / cell) + np.floor(v / cell)) % 2
        return kind, np.where(parity[..., None] > 0, c1, c0)
    coarse = _smooth_noise(rng, height, width, int(rng.integers(3, 9)))
    fine = _smooth_noise(rng, height, width, int(rng.integers(12, 24)))
    return kind, np.clip(0.7 * coarse + 0.3 * fine, 0.0, 1.0)


@lru_cache(maxsize=16)
def _camera_rays(intrinsics: CameraIntrinsics) -> np.ndarray:
    """Pixel-centre ray directions (unit z) in the camera frame, cached per camera (read-only)."""
    rays = intrinsics.pixel_rays().reshape(-1, 3)
    rays.setflags(write=False)
    return rays


# -------------------------------------------------------------------------------------------------- renderer


def _check_object(obj: ObjectInstance) -> None:
    """Fail early with the instance named, rather than deep inside Embree or with an IndexError later."""
    name = getattr(obj, "instance_id", "?")
    if not isinstance(obj, ObjectInstance):
        raise InputError(f"Renderer needs an ObjectInstance, got {type(obj).__name__}")
    V, F, P = np.asarray(obj.vertices), np.asarray(obj.faces), np.asarray(obj.face_parts)
    if V.ndim != 2 or V.shape[1] != 3 or len(V) == 0 or not np.isfinite(V).all():
        raise InputError(f"object {name!r}: vertices must be a non-empty finite (V, 3) array, got shape {V.shape}")
    if F.ndim != 2 or F.shape[1] != 3 or len(F) == 0 or not np.issubdtype(F.dtype, np.integer):
        raise InputError(f"object {name!r}: faces must be a non-empty integer (F, 3) array, got {F.dtype} {F.shape}")
    if F.min() < 0 or F.max() >= len(V):
        raise InputError(f"object {name!r}: face indices must lie in [0, {len(V)}), got [{F.min()}, {F.max()}]")
    if P.shape != (len(F),) or (len(P) and (P.min() < 0 or P.max() >= len(obj.part_names))):
        raise InputError(f"object {name!r}: face_parts must be ({len(F)},) indices into {len(obj.part_names)} "
                         f"part_names, got shape {P.shape}")
    K = obj.keypoint_positions
    if not np.isfinite(K).all():
        raise InputError(f"object {name!r}: keypoint positions must be finite")


class Renderer:
    """Renders one object from any pose. Builds the ray-casting scene once; ``render`` is then cheap."""

    def __init__(self, obj: ObjectInstance) -> None:
        _check_object(obj)
        self.obj = obj
        self._o3d = _open3d()
        self._vertices = np.asarray(obj.vertices, dtype=np.float64)
        self._faces = np.asarray(obj.faces, dtype=np.int64)
        self._face_parts = np.asarray(obj.face_parts, dtype=np.int16)
        self._face_normals, self._corner_normals = _shading_normals(self._vertices, self._faces)
        base, ink = _part_palette(obj)
        self._face_base, self._face_ink = base[self._face_parts], ink[self._face_parts]
        self._texture = _Texture.for_object(obj)
        self._keypoints = obj.keypoint_positions
        self._scenes: dict[bool, Any] = {False: self._build_scene(ground=False)}

    def _ground_quad(self) -> tuple[np.ndarray, np.ndarray]:
        """A square far larger than the object, just below its lowest point (so the bottom face never z-fights)."""
        size = float(np.asarray(self.obj.extent).max())
        z = self._vertices[:, 2].min() - max(1e-3 * size, 1e-5)
        cx, cy = np.asarray(self.obj.center)[:2]
        half = 50.0 * size
        quad = np.array([[cx - half, cy - half, z], [cx + half, cy - half, z], [cx + half, cy + half, z],
                         [cx - half, cy + half, z]])
        return quad, np.array([[0, 1, 2], [0, 2, 3]])

    def _build_scene(self, ground: bool) -> Any:
        o3d = self._o3d
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(self._vertices.astype(np.float32)),
                            o3d.core.Tensor(self._faces.astype(np.uint32)))
        if ground:
            quad, tris = self._ground_quad()
            scene.add_triangles(o3d.core.Tensor(quad.astype(np.float32)), o3d.core.Tensor(tris.astype(np.uint32)))
        return scene

    def _scene(self, ground: bool) -> Any:
        if ground not in self._scenes:
            self._scenes[ground] = self._build_scene(ground=True)
        return self._scenes[ground]

    def _cast(self, scene: Any, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, ...]:
        """First hits of rays (object frame): distance (in direction lengths), geometry id, triangle id."""
        rays = np.concatenate([np.broadcast_to(origins, directions.shape), directions], axis=1).astype(np.float32)
        hits = scene.cast_rays(self._o3d.core.Tensor(rays))
        return hits["t_hit"].numpy(), hits["geometry_ids"].numpy(), hits["primitive_ids"].numpy()

    def render(self, pose: np.ndarray, settings: RenderSettings | None = None,
               intrinsics: CameraIntrinsics | None = None, seed: int = 0) -> RenderedView:
        """One RGB-D view with ground truth. ``intrinsics``, if given, override the settings' size and FOV."""
        settings = RenderSettings() if settings is None else settings
        if not isinstance(settings, RenderSettings):
            raise InputError(f"settings must be RenderSettings, got {type(settings).__name__}")
        intrinsics = settings.intrinsics if intrinsics is None else intrinsics
        if not isinstance(intrinsics, CameraIntrinsics):
            raise InputError(f"intrinsics must be CameraIntrinsics, got {type(intrinsics).__name__}")
        _seed_words(seed, 0)  # reject a non-integer seed before any work
        T = _check_pose(pose)
        R, t = T[:3, :3], T[:3, 3]
        eye = -R.T @ t  # camera centre in the object frame
        H, W = intrinsics.height, intrinsics.width
        scene = self._scene(settings.add_ground_plane)

        directions = _camera_rays(intrinsics) @ R  # == (R.T @ d_cam) per ray; unit z in the camera frame
        t_hit, geometry, face = self._cast(scene, eye, directions)
        hit_any = np.isfinite(t_hit)
        mask = hit_any & (geometry == _OBJECT_GEOMETRY)
        # Rays have unit z in the camera frame, so the hit parameter *is* the depth (z) of the hit.
        depth = np.where(mask, t_hit, 0.0).astype(np.float32)
        points = eye + t_hit[mask, None].astype(np.float64) * directions[mask]
        face_ids = face[mask].astype(np.int64)

        light = _draw_light(settings.light, seed, R)
        background_name, background = _draw_background(settings.background, seed, H, W)
        rgb = _to_uint8(background.reshape(-1, 3))
        rgb[mask] = _encode(self._shade(points, face_ids, directions[mask], light, settings.ambient))
        ground = hit_any & (geometry == _GROUND_GEOMETRY)
        if ground.any():
            rgb[ground] = _encode(self._shade_ground(eye + t_hit[ground, None] * directions[ground],
                                                     directions[ground], light, settings.ambient, seed))

        face_map = np.full(H * W, -1, np.int32)
        face_map[mask] = face_ids
        part_map = np.full(H * W, -1, np.int16)
        part_map[mask] = self._face_parts[face_ids]
        points_object = np.full((H * W, 3), np.nan, np.float32)
        points_object[mask] = points
        kp_xy, kp_depth, kp_visible = self._keypoints_in_view(scene, T, eye, intrinsics)
        return RenderedView(rgb=rgb.reshape(H, W, 3), depth=depth.reshape(H, W), mask=mask.reshape(H, W),
                            part_map=part_map.reshape(H, W), face_map=face_map.reshape(H, W),
                            points_object=points_object.reshape(H, W, 3), intrinsics=intrinsics, pose=T.copy(),
                            keypoints_xy=kp_xy, keypoints_depth=kp_depth, keypoints_visible=kp_visible,
                            seed=int(seed), background=background_name)

    def _shade(self, points: np.ndarray, face_ids: np.ndarray, directions: np.ndarray, light: _Light,
               ambient: float) -> np.ndarray:
        """Linear RGB of object hits: textured albedo, Lambert + Blinn-Phong, normals flipped towards the camera."""
        modulation = self._texture.modulation(points) * self.obj.appearance.texture_strength
        base = self._face_base[face_ids]
        albedo = base + modulation[:, None] * (self._face_ink[face_ids] - base)
        return _lit(albedo, self._interpolated_normals(points, face_ids, directions), directions, light, ambient,
                    float(self.obj.appearance.specular))

    def _interpolated_normals(self, points: np.ndarray, face_ids: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Smooth shading normals, turned to the camera's side of the (geometric) face."""
        bary = _barycentric(self._vertices[self._faces[face_ids]], points)
        normals = np.einsum("ik,ikj->ij", bary, self._corner_normals[face_ids])
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.where(length > 1e-9, normals / np.maximum(length, 1e-12), self._face_normals[face_ids])
        facing = np.einsum("ij,ij->i", self._face_normals[face_ids], directions) > 0  # back face seen
        return np.where(facing[:, None], -normals, normals)

    def _shade_ground(self, points: np.ndarray, directions: np.ndarray, light: _Light, ambient: float,
                      seed: int) -> np.ndarray:
        """A plain random-coloured floor, lit like the object (no shadows)."""
        rng = np.random.default_rng(_seed_words(seed, _STREAM_GROUND))
        albedo = np.broadcast_to(_to_linear(rng.uniform(0.1, 0.9, 3)), points.shape)
        normals = np.broadcast_to(np.array([0.0, 0.0, 1.0]), points.shape)
        return _lit(albedo, normals, directions, light, ambient, 0.05)

    def _keypoints_in_view(self, scene: Any, T: np.ndarray, eye: np.ndarray,
                           intrinsics: CameraIntrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project keypoints; visible = in frame, in front and the first surface hit is the keypoint itself."""
        K = self._keypoints
        if len(K) == 0:
            return np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool)
        cam = K @ T[:3, :3].T + T[:3, 3]
        xy = intrinsics.project(cam)
        z = cam[:, 2]
        with np.errstate(invalid="ignore"):
            in_frame = ((z > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < intrinsics.width) & (xy[:, 1] >= 0)
                        & (xy[:, 1] < intrinsics.height))
        offsets = K - eye
        distance = np.linalg.norm(offsets, axis=1)
        t_hit, _, _ = self._cast(scene, eye, offsets)  # direction length = distance, so t_hit is in units of it
        # keypoints are snapped onto the surface, so an unoccluded ray hits them almost exactly; a tolerance wider
        # than a thin part (a 2 mm blade) would call the far side of that part visible
        tolerance = np.maximum(5e-4, 1e-3 * distance)
        unoccluded = t_hit.astype(np.float64) * distance >= distance - tolerance  # inf (no hit) counts as visible
        return xy, z, in_frame & unoccluded


def _shading_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals (F, 3) and per-corner smooth normals (F, 3, 3) with a crease angle.

    A corner's normal averages (area-weighted) the normals of the faces around its vertex that are within
    CREASE_ANGLE_DEG of its own face, so spheres and cylinders look round while box edges stay sharp.
    Degenerate faces get a zero normal and do not contribute.
    """
    tri = vertices[faces]
    weighted = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(weighted, axis=1, keepdims=True)
    unit = np.divide(weighted, length, out=np.zeros_like(weighted), where=length > 0)
    # incidences (vertex, face) grouped by vertex; every pair within a group is a candidate neighbour
    vertex_of, face_of = faces.ravel(), np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(vertex_of, kind="stable")
    sorted_vertex = vertex_of[order]
    pairs_per = np.bincount(vertex_of, minlength=len(vertices))[sorted_vertex]  # its vertex's incidences
    group_start = np.r_[True, np.diff(sorted_vertex) != 0]
    starts = np.maximum.accumulate(np.where(group_start, np.arange(len(order)), 0))
    a = np.repeat(np.arange(len(order)), pairs_per)
    offset = np.arange(len(a)) - np.repeat(np.cumsum(pairs_per) - pairs_per, pairs_per)
    b = np.repeat(starts, pairs_per) + offset
    fa, fb = face_of[order[a]], face_of[order[b]]
    keep = np.einsum("ij,ij->i", unit[fa], unit[fb]) >= np.cos(np.radians(CREASE_ANGLE_DEG))
    sums = np.stack([np.bincount(a[keep], weights=weighted[fb[keep], k], minlength=len(order)) for k in range(3)], 1)
    corner = np.empty_like(sums)
    corner[order] = sums
    norm = np.linalg.norm(corner, axis=1, keepdims=True)
    corner = np.where(norm > 0, corner / np.maximum(norm, 1e-300), np.repeat(unit, 3, axis=0))
    return unit, corner.reshape(-1, 3, 3)


def _barycentric(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Barycentric weights (N, 3) of points in (N, 3, 3) triangles (clipped: hits lie on the triangle)."""
    e1, e2, d = triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0], points - triangles[:, 0]
    d11, d12, d22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    d1, d2 = (d * e1).sum(1), (d * e2).sum(1)
    det = d11 * d22 - d12 * d12
    safe = np.where(np.abs(det) > 1e-30, det, 1.0)
    u = np.where(np.abs(det) > 1e-30, (d22 * d1 - d12 * d2) / safe, 1 / 3)
    v = np.where(np.abs(det) > 1e-30, (d11 * d2 - d12 * d1) / safe, 1 / 3)
    weights = np.clip(np.stack([1 - u - v, u, v], 1), 0.0, 1.0)
    return weights / weights.sum(1, keepdims=True)


def _lit(albedo: np.ndarray, normals: np.ndarray, directions: np.ndarray, light: _Light, ambient: float,
         specular: float) -> np.ndarray:
    """Ambient + Lambert + Blinn-Phong under one directional light, in linear RGB."""
    view = -directions / np.linalg.norm(directions, axis=1, keepdims=True)
    facing = np.einsum("ij,ij->i", normals, view)
    normals = np.where(facing[:, None] < 0, -normals, normals)
    n_dot_l = np.clip(normals @ light.direction, 0.0, None)
    half = view + light.direction
    half /= np.maximum(np.linalg.norm(half, axis=1, keepdims=True), 1e-12)
    highlight = np.where(n_dot_l > 0, np.clip(np.einsum("ij,ij->i", normals, half), 0.0, None) ** SHININESS, 0.0)
    diffuse = albedo * (ambient + (1.0 - ambient) * n_dot_l[:, None])
    return (diffuse + specular * highlight[:, None]) * light.color


_RENDERERS: OrderedDict[int, tuple[ObjectInstance, Renderer]] = OrderedDict()


def _renderer_for(obj: ObjectInstance) -> Renderer:
    """A small LRU of renderers keyed by object identity, so repeated ``render_view`` calls reuse the scene."""
    cached = _RENDERERS.get(id(obj))
    if cached is not None and cached[0] is obj:
        _RENDERERS.move_to_end(id(obj))
        return cached[1]
    renderer = Renderer(obj)
    _RENDERERS[id(obj)] = (obj, renderer)
    while len(_RENDERERS) > _RENDERER_CACHE_SIZE:
        _RENDERERS.popitem(last=False)
    return renderer


def render_view(obj: ObjectInstance, pose: np.ndarray, settings: RenderSettings | None = None,
                intrinsics: CameraIntrinsics | None = None, seed: int = 0) -> RenderedView:
    """Render one view of ``obj``; the scene is cached for the last few objects rendered this way."""
    return _renderer_for(obj).render(pose, settings=settings, intrinsics=intrinsics, seed=seed)
