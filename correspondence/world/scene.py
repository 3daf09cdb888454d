"""Table-top scenes a robot meets: the target object moved anywhere on the table in view and turned by any yaw,
the camera nearer or farther than in the demo, other objects around it (other categories of its family and other
instances of its category), and an occluder in front of it. Exact ground truth per pixel (which object) and for
the target (its occlusion-aware mask and keypoint visibility).

Frames: the *table frame* is the target's object frame at demo time (origin on the table under the object, +z
up), so every placement is a rigid motion in that frame and the camera's demo pose ``table -> camera`` stays the
reference. Each object is ray cast by its own :class:`~correspondence.world.render.Renderer` and the views are
composited by depth (the nearest surface wins per pixel); the light and backdrop come from the one view seed, so
every object is lit by the same light.

A draw whose target is not in view (less than ``min_in_view`` of it inside the frame, or less than
``min_visible`` of its pixels left by the occluders) is drawn again, up to ``max_draws`` times; then
:class:`SceneNotVisible` says so, with the best draw's figures, and a benchmark counts the trial as such. A target
that fills most of the view may leave no draw of its distractors around it (uniform on the table near it) in view:
then the first such draw is completed with distractors on the free table in view (``distractors_placed`` says which),
from a generator of its own so that every other trial's scene stays the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError, InputError
from .families import get_category, make_instance
from .families import categories as all_categories
from .mesh import rot_z
from .render import Renderer, RenderSettings
from .table import fill_table, table_half_size, table_level
from .types import ObjectInstance, RenderedView


class SceneNotVisible(InputError):
    """No draw put enough of the target in view; ``in_view`` and ``visible`` are the best draw's fractions."""

    def __init__(self, message: str, in_view: float, visible: float) -> None:
        super().__init__(message)
        self.in_view = in_view
        self.visible = visible


@dataclass(frozen=True)
class SceneSpec:
    """What a live scene may look like, relative to the demo view."""

    max_rotation_deg: float = 30.0  # the target's turn about the vertical, uniform in +-this (up to 180)
    max_translation_m: float = 0.05  # its shift on the table, uniform in +-this along x and y of the table frame
    distance_range: tuple[float, float] = (1.0, 1.0)  # live camera distance / demo camera distance, uniform
    distractors: int = 0  # other objects on the table: even ones another instance of the category, odd ones
    # another category of its family
    occluders: int = 0  # objects placed between the camera and the target (partial occlusion)
    min_in_view: float = 0.9  # share of the target's surface samples that must project inside the frame
    min_visible: float = 0.3  # share of its in-frame pixels the occluders must leave
    max_draws: int = 50
    table: bool = False  # the table the objects stand on, in depth and colour (:mod:`~correspondence.world.table`):
    # the realistic setting (a real camera sees it); off keeps the benches' earlier numbers comparable

    def __post_init__(self) -> None:
        if not 0 <= self.max_rotation_deg <= 180:
            raise ConfigError(f"max_rotation_deg must be in [0, 180], got {self.max_rotation_deg}")
        if not (np.isfinite(self.max_translation_m) and self.max_translation_m >= 0):
            raise ConfigError(f"max_translation_m must be >= 0 metres, got {self.max_translation_m}")
        lo, hi = self.distance_range
        if not (0 < lo <= hi and np.isfinite(hi)):
            raise ConfigError(f"distance_range must be 0 < low <= high (relative to the demo), got {self.distance_range}")
        if self.distractors < 0 or self.occluders < 0:
            raise ConfigError(f"distractors and occluders must be >= 0, got {self.distractors}, {self.occluders}")
        if not (0 < self.min_in_view <= 1 and 0 <= self.min_visible <= 1) or self.max_draws < 1:
            raise ConfigError("min_in_view must be in (0, 1], min_visible in [0, 1] and max_draws >= 1")


@dataclass(frozen=True, eq=False)
class SceneView:
    """One composited RGB-D frame of several objects."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 where no object (and no table, see SceneSpec.table)
    instance_map: np.ndarray  # (H, W) int16: index into ``objects``, -1 for the backdrop
    objects: tuple[ObjectInstance, ...]  # the target first
    poses: tuple[np.ndarray, ...]  # object -> camera, per object
    target: RenderedView  # the target's view: mask, part map, points and keypoint visibility after occlusion
    unoccluded_pixels: int  # the target's in-frame pixels without the other objects

    @property
    def target_mask(self) -> np.ndarray:
        return self.instance_map == 0

    @property
    def visible_fraction(self) -> float:
        return float(self.target.mask.sum()) / max(self.unoccluded_pixels, 1)


@dataclass(frozen=True, eq=False)
class LiveScene:
    """A drawn live scene and what was drawn: ``truth`` maps demo-camera points of the target to the live camera."""

    view: SceneView
    motion: np.ndarray  # the target's motion in the table frame
    camera_pose: np.ndarray  # live table -> camera
    truth: np.ndarray  # demo camera -> live camera for the target's points
    yaw_deg: float
    shift_m: float  # the motion's shift of the target's centre on the table
    distance_factor: float
    in_view: float  # share of the target's surface samples inside the frame
    draws: int
    conditions: dict = field(default_factory=dict)


def _apply(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ T[:3, :3].T + T[:3, 3]


def in_view_fraction(points_object: np.ndarray, pose: np.ndarray, settings: RenderSettings) -> float:
    """Share of object-frame points that project inside the frame, in front of the camera."""
    cam = _apply(pose, points_object)
    xy = settings.intrinsics.project(cam)
    with np.errstate(invalid="ignore"):
        inside = ((cam[:, 2] > 1e-3) & (xy[:, 0] >= 0) & (xy[:, 0] < settings.width) & (xy[:, 1] >= 0)
                  & (xy[:, 1] < settings.height))
    return float(inside.mean()) if len(inside) else 0.0


def table_motion(yaw_deg: float, shift_xy: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """A turn about the vertical axis through ``centre`` (table frame) followed by a shift on the table."""
    motion = np.eye(4)
    motion[:3, :3] = rot_z(np.radians(yaw_deg))
    motion[:3, 3] = centre - motion[:3, :3] @ centre
    motion[:2, 3] += shift_xy
    return motion


def camera_moved_along_axis(pose: np.ndarray, centre_table: np.ndarray, factor: float) -> np.ndarray:
    """The camera moved along its optical axis so that ``centre_table``'s depth becomes ``factor`` times it."""
    depth = float(_apply(pose, centre_table[None])[0, 2])
    shift = np.eye(4)
    shift[2, 3] = (factor - 1.0) * depth
    return shift @ pose


def composite(renderers: list[Renderer], poses: list[np.ndarray], settings: RenderSettings, seed: int,
              table_pose: np.ndarray | None = None) -> SceneView:
    """Render each object from its pose and keep the nearest surface per pixel (the first object is the target).
    ``table_pose`` (table frame -> camera): the table under them fills the pixels no object covers
    (:mod:`~correspondence.world.table`; the instance map stays -1 there, the target's truth is unchanged)."""
    views = [r.render(p, settings, seed=seed) for r, p in zip(renderers, poses)]
    depth_stack = np.stack([np.where(v.mask, v.depth, np.inf) for v in views])
    nearest = np.argmin(depth_stack, axis=0)
    hit = np.isfinite(np.min(depth_stack, axis=0))
    instance_map = np.where(hit, nearest, -1).astype(np.int16)
    rgb = views[0].rgb.copy()  # the backdrop (same seed: same for every view) and the target's pixels
    for k, view in enumerate(views[1:], start=1):
        rgb[instance_map == k] = view.rgb[instance_map == k]
    depth = np.where(hit, np.min(depth_stack, axis=0), 0.0).astype(np.float32)
    target = views[0]
    own = instance_map == 0
    kp_visible = target.keypoints_visible.copy()
    for i, ((x, y), z) in enumerate(zip(target.keypoints_xy, target.keypoints_depth)):
        if kp_visible[i]:  # in frame and not self-occluded: is another object's surface in front of it?
            row, col = int(np.floor(y)), int(np.floor(x))
            kp_visible[i] = bool(depth[row, col] >= z - max(5e-4, 1e-3 * z) or instance_map[row, col] == 0)
    if table_pose is not None:  # after the keypoints' check, which reads the objects' depth alone
        objects = [r.obj for r in renderers]
        rgb, depth = fill_table(rgb, depth, hit, table_pose, target.intrinsics, settings, seed, table_level(objects),
                                table_half_size(objects[0]))
    occluded_target = replace(target, rgb=rgb, depth=np.where(own, target.depth, 0.0).astype(np.float32), mask=own,
                              part_map=np.where(own, target.part_map, -1).astype(np.int16),
                              face_map=np.where(own, target.face_map, -1).astype(np.int32),
                              points_object=np.where(own[..., None], target.points_object, np.nan).astype(np.float32),
                              keypoints_visible=kp_visible)
    return SceneView(rgb, depth, instance_map, tuple(r.obj for r in renderers), tuple(np.asarray(p) for p in poses),
                     occluded_target, int(target.mask.sum()))


def _footprint_radius(obj: ObjectInstance) -> float:
    return 0.5 * float(np.hypot(*np.asarray(obj.extent)[:2]))


def _footprint_centre(obj: ObjectInstance, placement: np.ndarray) -> np.ndarray:
    return _apply(placement, np.asarray(obj.center, dtype=np.float64)[None])[0, :2]


def distractor_objects(target: ObjectInstance, count: int, index: int, seed: int) -> list[ObjectInstance]:
    """``count`` other objects: even ones another instance of the target's category, odd ones an instance of
    another category of its family (similar in size, so they stand on the same table)."""
    family = [c.name for c in all_categories(get_category(target.category).family) if c.name != target.category]
    others: list[ObjectInstance] = []
    for k in range(count):
        if k % 2 == 0 or not family:
            others.append(make_instance(target.category, 100_000 + 64 * index + k, seed))
        else:
            others.append(make_instance(family[(index + k // 2) % len(family)], 100_000 + 64 * index + k, seed))
    return others


def _fits(obj: ObjectInstance, placement: np.ndarray, taken: list[tuple[np.ndarray, float]], camera_pose: np.ndarray,
          settings: RenderSettings) -> bool:
    """Whether ``obj`` placed so overlaps no taken footprint (1 cm apart) and is at least 30 % in view."""
    centre, radius = _footprint_centre(obj, placement), _footprint_radius(obj)
    if any(np.linalg.norm(centre - c) < radius + r + 0.01 for c, r in taken):
        return False
    return in_view_fraction(np.asarray(obj.vertices, dtype=np.float64), camera_pose @ placement, settings) >= 0.3


def _place_around(rng: np.random.Generator, obj: ObjectInstance, taken: list[tuple[np.ndarray, float]],
                  camera_pose: np.ndarray, settings: RenderSettings, reach: float, tries: int = 60
                  ) -> np.ndarray | None:
    """A placement (table frame) of ``obj`` on the table, at least partly in view, whose footprint overlaps no
    taken one; None when ``tries`` draws all failed."""
    for _ in range(tries):
        placement = table_motion(rng.uniform(-180, 180), np.zeros(2), np.asarray(obj.center, dtype=np.float64))
        placement[:2, 3] += rng.uniform(-reach, reach, 2)
        if _fits(obj, placement, taken, camera_pose, settings):
            return placement
    return None


def table_point_at_pixel(xy: np.ndarray, camera_pose: np.ndarray, settings: RenderSettings) -> np.ndarray | None:
    """The table-plane point (table frame, z = 0) seen at pixel ``xy``; None when that ray misses the table."""
    ray_cam = settings.intrinsics.unproject(np.asarray(xy, dtype=np.float64), np.float64(1.0))
    rotation, translation = camera_pose[:3, :3], camera_pose[:3, 3]
    eye, ray = -rotation.T @ translation, rotation.T @ ray_cam
    if ray[2] >= -1e-9:  # parallel to the table or looking up
        return None
    return eye + ray * (-eye[2] / ray[2])


def _place_in_view(rng: np.random.Generator, obj: ObjectInstance, taken: list[tuple[np.ndarray, float]],
                   camera_pose: np.ndarray, settings: RenderSettings, tries: int = 200) -> np.ndarray | None:
    """Like :func:`_place_around`, but each footprint centre is the table point under a pixel drawn uniformly in the
    frame: where the target fills most of the view, the draws of ``_place_around`` (uniform on the table around it)
    seldom land in view beside it, while the free table in view is still there (at the frame's edges, behind it)."""
    for _ in range(tries):
        where = table_point_at_pixel(rng.uniform([0, 0], [settings.width, settings.height]), camera_pose, settings)
        if where is None:
            continue
        placement = table_motion(rng.uniform(-180, 180), np.zeros(2), np.asarray(obj.center, dtype=np.float64))
        placement[:2, 3] += where[:2] - _footprint_centre(obj, placement)
        if _fits(obj, placement, taken, camera_pose, settings):
            return placement
    return None


def _place_in_front(rng: np.random.Generator, renderer: Renderer, target: Renderer, motion: np.ndarray,
                    camera_pose: np.ndarray, settings: RenderSettings, tries: int = 30) -> np.ndarray:
    """A placement on the table between the camera and the target, beside the line of sight by up to one target
    radius, that hides 10-50 % of the target's pixels (checked at a quarter of the resolution; else the draw
    closest to 30 %)."""
    obj = renderer.obj
    target_centre, target_radius = _footprint_centre(target.obj, motion), _footprint_radius(target.obj)
    eye = -camera_pose[:3, :3].T @ camera_pose[:3, 3]  # camera centre in the table frame
    towards = eye[:2] - target_centre
    towards /= max(np.linalg.norm(towards), 1e-9)
    side = np.array([-towards[1], towards[0]])
    radius = _footprint_radius(obj)
    coarse = replace(settings, width=max(settings.width // 4, 16), height=max(settings.height // 4, 16),
                     background="plain", light="headlight")
    seen = target.render(camera_pose @ motion, coarse)
    best, best_gap = None, np.inf
    for _ in range(tries):
        where = (target_centre + towards * (target_radius + radius + rng.uniform(0.0, target_radius))
                 + side * rng.uniform(-1.0, 1.0) * target_radius)
        placement = table_motion(rng.uniform(-180, 180), np.zeros(2), np.asarray(obj.center, dtype=np.float64))
        placement[:2, 3] += where - _footprint_centre(obj, placement)
        front = renderer.render(camera_pose @ placement, coarse)
        hidden = float((seen.mask & front.mask & (front.depth < seen.depth)).sum()) / max(int(seen.mask.sum()), 1)
        if abs(hidden - 0.3) < best_gap:
            best, best_gap = placement, abs(hidden - 0.3)
        if 0.1 <= hidden <= 0.5:
            return placement
    return best


CROWDED_PASSES = 10  # draws completed with distractors anywhere in view when none found a place around the target


@dataclass(frozen=True, eq=False)
class _Draw:
    """One draw of the target's motion and the live camera."""

    draw: int
    yaw: float
    shift: np.ndarray
    factor: float
    view_seed: int
    motion: np.ndarray
    camera_pose: np.ndarray
    in_view: float


def _compose(rng: np.random.Generator, drawn: _Draw, anywhere_in_view: bool, target: ObjectInstance,
             others: list[ObjectInstance], renderers: dict[int, Renderer], demo_pose: np.ndarray, spec: SceneSpec,
             settings: RenderSettings) -> LiveScene | float | None:
    """The scene of one draw: distractors placed around the target (:func:`_place_around`) or, with
    ``anywhere_in_view``, on the free table in view (:func:`_place_in_view`), occluders in front. None when a
    distractor found no place; the target's visible fraction when the occluders hid too much of it."""
    camera_pose, motion = drawn.camera_pose, drawn.motion
    taken = [(_footprint_centre(target, motion), _footprint_radius(target))]
    placements = []
    reach = spec.max_translation_m + 4 * _footprint_radius(target)
    for obj in others[:spec.distractors]:
        placement = (_place_in_view(rng, obj, taken, camera_pose, settings) if anywhere_in_view
                     else _place_around(rng, obj, taken, camera_pose, settings, reach))
        if placement is None:
            return None
        placements.append(placement)
        taken.append((_footprint_centre(obj, placement), _footprint_radius(obj)))
    placements += [_place_in_front(rng, renderers[id(obj)], renderers[id(target)], motion, camera_pose, settings)
                   for obj in others[spec.distractors:]]
    objects = [target, *others]
    poses = [camera_pose @ motion] + [camera_pose @ p for p in placements]
    view = composite([renderers[id(o)] for o in objects], poses, settings, drawn.view_seed,
                     camera_pose if spec.table else None)
    if view.visible_fraction < spec.min_visible or not view.target.mask.any():
        return view.visible_fraction
    truth = camera_pose @ motion @ np.linalg.inv(demo_pose)
    shift = float(np.linalg.norm(drawn.shift))
    conditions = {"yaw_deg": drawn.yaw, "shift_m": shift, "distance_factor": drawn.factor,
                  "distractors": spec.distractors, "occluders": spec.occluders,
                  "visible_fraction": view.visible_fraction, "in_view": drawn.in_view, "draws": drawn.draw,
                  "distractors_placed": "in view" if anywhere_in_view else "around"}
    return LiveScene(view, motion, camera_pose, truth, drawn.yaw, shift, drawn.factor, drawn.in_view, drawn.draw,
                     conditions)


def sample_live_scene(rng: np.random.Generator, target: ObjectInstance, demo_pose: np.ndarray, spec: SceneSpec,
                      settings: RenderSettings, seed: int, others: list[ObjectInstance] | None = None,
                      renderers: dict[int, Renderer] | None = None) -> LiveScene:
    """Draw a live scene of ``target`` (see the module doc). ``others``: the distractors then the occluders
    (default :func:`distractor_objects`); ``renderers`` caches ray-casting scenes by ``id(obj)``."""
    n_other = spec.distractors + spec.occluders
    others = distractor_objects(target, n_other, 0, seed) if others is None else list(others)
    if len(others) != n_other:
        raise InputError(f"the spec asks for {n_other} other objects but {len(others)} were given")
    renderers = {} if renderers is None else renderers
    for obj in (target, *others):
        if id(obj) not in renderers:
            renderers[id(obj)] = Renderer(obj)
    centre = np.asarray(target.center, dtype=np.float64)
    probe = np.asarray(target.vertices, dtype=np.float64)
    best = (-1.0, 0.0)
    crowded: list[_Draw] = []  # draws whose target was in view but whose distractors found no place around it
    for draw in range(1, spec.max_draws + 1):
        yaw = float(rng.uniform(-spec.max_rotation_deg, spec.max_rotation_deg))
        shift = rng.uniform(-spec.max_translation_m, spec.max_translation_m, 2)
        factor = float(rng.uniform(*spec.distance_range))
        view_seed = int(rng.integers(1 << 30))
        motion = table_motion(yaw, shift, centre)
        camera_pose = camera_moved_along_axis(demo_pose, centre, factor)
        in_view = in_view_fraction(probe, camera_pose @ motion, settings)
        if in_view < spec.min_in_view:
            best = max(best, (in_view, 0.0))
            continue
        drawn = _Draw(draw, yaw, shift, factor, view_seed, motion, camera_pose, in_view)
        scene = _compose(rng, drawn, False, target, others, renderers, demo_pose, spec, settings)
        if scene is None:
            crowded.append(drawn)
        elif isinstance(scene, LiveScene):
            return scene
        else:
            best = max(best, (in_view, scene))
    # the target fills so much of the view that no draw found its distractors a free place around it: place them on
    # the free table in view instead, draw by draw. Each pass has its own generator (from the trial's seed and the
    # draw), so the shared stream, and with it every other trial's scene, stays that of a run without these passes
    for drawn in crowded[:CROWDED_PASSES]:
        scene = _compose(np.random.default_rng([seed, drawn.draw]), drawn, True, target, others, renderers, demo_pose,
                         spec, settings)
        if isinstance(scene, LiveScene):
            return scene
        best = max(best, (drawn.in_view, 0.0 if scene is None else scene))
    if crowded:
        raise SceneNotVisible(f"the target {target.instance_id} filled so much of the view that its "
                              f"{spec.distractors} distractors found no free place on the table in view that left it "
                              f"visible (in {spec.max_draws} draws and {min(len(crowded), CROWDED_PASSES)} passes "
                              f"placing them anywhere in view; best: {100 * best[1]:.0f} % of it unoccluded)",
                              best[0], best[1])
    raise SceneNotVisible(f"the target {target.instance_id} was not in view in {spec.max_draws} draws (best: "
                          f"{100 * best[0]:.0f} % in the frame, {100 * best[1]:.0f} % of it unoccluded; the spec "
                          f"asks for {100 * spec.min_in_view:.0f} % and {100 * spec.min_visible:.0f} %)",
                          best[0], best[1])
