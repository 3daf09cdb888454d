"""``soco bench alignment``: end-to-end accuracy of the demo-to-live pipeline on the procedural world.

Two kinds of trial, each a demo view and a live view:

* **same instance, keypoint demo** — the live view is a table-top scene (:mod:`correspondence.world.scene`): the
  object turned about the vertical by up to ``max_rotation_deg`` (up to 180), shifted on the table by up to
  ``max_translation_m`` (anywhere in view: a draw that leaves less than 90 % of it in the frame is drawn again,
  a demo around which no live scene can be drawn is drawn again (:func:`make_scene_trial`), and a trial whose
  object never comes into view is counted as "object not in view", never a crash), the camera
  at ``distance_range`` times the demo's distance, ``distractors`` other objects (other instances of the
  category and other categories of its family) and ``occluders`` objects in front of it. The truth is the drawn
  motion; the translation error is measured at the object's centre;
* **different instances, functional demo** (a function and its part in the demo view; the live view shows
  another instance of the category) — the truth is the known functional alignment (the demo part fitted onto the
  live part in 3D, :func:`~correspondence.world.groundtruth.align_functional_parts`, a similarity because the
  instances differ in size); the rotation error is against its rotation and the translation error is measured at
  the demo part's centre.

Each same-instance trial runs once per mask source of ``mask_sources``: a source's name (``depth``: the nearest
depth surface; any name :func:`~correspondence.segmentation.mask_source_from_name` knows) or ``oracle`` (the true
mask of the object, so pose and segmentation are judged apart).

Success: rotation error < 5 deg and translation < 2 cm, taking the best of the object's symmetries (a refused
alignment counts as a failure); BOP's MSSD and ADD-S within 10 % of the diameter, the live mask's IoU with the
true mask and the keypoints' pixel error against their true projections (a symmetric object's against its
counterparts under the symmetry success was judged on; each error over 5 px with its cause; the pipeline's
visibility verdicts against the truth: docs/pose_keypoints.md) are reported beside it
(:mod:`correspondence.benchmarks.alignment_report`), overall and per condition.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..api import Matcher
from ..demo_spec import DemoSpec
from ..demo_views import DemoView
from ..errors import ConfigError, InputError
from ..io import KeypointSet, NamedPoint
from ..mask_completion import CompletionSettings
from ..pipeline import PipelineSettings, TransferPipeline
from ..segmentation import DepthForeground, mask_source_from_name
from ..world.depth_noise import depth_noise_from_name, stereo_depth
from ..support_plane import SupportPlaneSettings
from ..world.families import make_instance
from ..world.render import Renderer, RenderSettings, sample_pose
from ..world.scene import SceneNotVisible, SceneSpec, distractor_objects, sample_live_scene, table_motion
from ..world.table import view_on_table
from ..world.symmetry import object_symmetry
from .alignment_report import KIND_FUNCTIONAL, KIND_SAME, write_report
from .alignment_scoring import (_keypoint_errors, _mask_iou, _score, _score_symmetric, symmetric_target)
from .alignment_scoring import (BOP_FRACTION, nearest_symmetric_pose, object_translation_error,  # noqa: F401
                                rigid_part, symmetric_errors)  # re-exported: the bench's public scoring API

DEFAULT_CATEGORIES = ("car", "bus", "truck", "chair", "stool", "mug", "kettle", "jug")
DEFAULT_FUNCTIONS = (("mug", "pour-with"), ("kettle", "pour-with"), ("jug", "pour-with"), ("pan", "scoop-with"),
                     ("hammer", "pound-with"), ("spatula", "lift-with"), ("cup", "pour-with"), ("mug", "hang-onto"))
ORACLE = "oracle"


@dataclass(frozen=True)
class AlignmentBenchConfig:
    trials: int = 100
    size: int = 448
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    max_rotation_deg: float = 30.0
    max_translation_m: float = 0.05
    ransac_threshold: float = 0.015
    seed: int = 0
    functional_trials: int = 0  # trials of the second kind (different instances, functional demo)
    functions: tuple[tuple[str, str], ...] = DEFAULT_FUNCTIONS  # (category, function) pairs they cycle through
    refine: str = "icp"  # the pipeline's refinement: icp | none
    distance_range: tuple[float, float] = (1.0, 1.0)  # live camera distance / demo camera distance
    distractors: int = 0  # other objects on the table (same-instance trials)
    occluders: int = 0  # objects placed in front of the target (same-instance trials)
    mask_sources: tuple[str, ...] = ("depth",)  # each same-instance trial once per source; "oracle": the true mask
    max_draws: int = 50  # scene draws per trial before it counts as "object not in view"
    gravity: bool = True  # give the pipeline the vertical in both cameras (a robot has it from TF)
    demo_views: int = 1  # the demo recorded from this many views, turned by 360/K about the vertical (1: one view)
    multiview_cloud: str = "view"  # with demo_views > 1: the pose search's cloud, the chosen view's | fused
    depth_noise: str = "none"  # the depth images as a stereo camera gives them: none | stereo | stereo-poor
    # (world/depth_noise.py), demo and live alike
    table: bool = False  # the table under the objects in the live and demo views' depth and colour (realistic)
    support_plane: bool = True  # the pipeline takes the table out of the live depth (correspondence.support_plane)
    mask_completion: bool = True  # the depth mask is completed with the object's other surfaces (mask_completion)
    one_view_handle: bool = True  # one-view demos: a round body's turn read again from its handle (one_view_handle)
    only_trials: tuple[int, ...] = ()  # run only these same-instance trials; every trial is still drawn, so each
    # one's scene is the one a full run gives it (to rerun a failure without the rest)

    def __post_init__(self) -> None:
        if not self.mask_sources:
            raise ConfigError("mask_sources needs at least one name (depth, oracle, ...)")
        if not 1 <= self.demo_views <= 36:
            raise ConfigError(f"demo_views must be 1 to 36 views, got {self.demo_views}")
        depth_noise_from_name(self.depth_noise)  # an unknown name is refused here
        outside = [t for t in self.only_trials if not 0 <= t < self.trials]
        if outside:
            raise ConfigError(f"only_trials {outside} are outside the {self.trials} trials (0 to {self.trials - 1})")

    @property
    def scene(self) -> SceneSpec:
        return SceneSpec(max_rotation_deg=self.max_rotation_deg, max_translation_m=self.max_translation_m,
                         distance_range=tuple(self.distance_range), distractors=self.distractors,
                         occluders=self.occluders, max_draws=self.max_draws, table=self.table)


def make_trial(rng: np.random.Generator, category: str, index: int, config: AlignmentBenchConfig,
               settings: RenderSettings):
    """Demo and live views of one instance alone after a random motion; returns (object, demo view, live view, the
    true demo-camera -> live-camera transform, the object's centre in the demo camera frame)."""
    obj = make_instance(category, index, config.seed)
    renderer = Renderer(obj)
    pose = sample_pose(rng, obj, intrinsics=settings.intrinsics)
    motion = table_motion(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg),
                          rng.uniform(-config.max_translation_m, config.max_translation_m, 2), obj.center)
    live_pose = pose @ motion  # the moved object's point p is seen at pose @ motion @ p
    demo_view = renderer.render(pose, settings, seed=int(rng.integers(1 << 30)))
    live_view = renderer.render(live_pose, settings, seed=int(rng.integers(1 << 30)))
    truth = live_pose @ np.linalg.inv(pose)
    centre = pose[:3, :3] @ obj.center + pose[:3, 3]  # the object's centre in the demo camera frame
    return obj, demo_view, live_view, truth, centre


DEMO_REDRAWS = 3  # a trial whose live scene cannot be drawn around its demo view gets a new demo view this often


def make_scene_trial(rng: np.random.Generator, category: str, index: int, config: AlignmentBenchConfig,
                     settings: RenderSettings):
    """A demo view of one instance alone and a live table-top scene of it (:class:`~correspondence.world.scene.
    LiveScene`); returns (object, demo view, live scene).

    When no live scene can be drawn around the demo view (e.g. the object fills a close demo camera's view, so that
    no distractor fits beside it), the demo's camera is drawn again, up to :data:`DEMO_REDRAWS` times, each time from
    a generator of its own (the trial's seed and index), so that the shared stream, and every other trial's scene,
    stays that of a run without the redraw; ``conditions["demo_redraws"]`` says how many it took. Raises
    SceneNotVisible when none worked."""
    obj = make_instance(category, index, config.seed)
    spec = config.scene
    others = distractor_objects(obj, spec.distractors + spec.occluders, index, config.seed)
    first = None
    for redraw in range(DEMO_REDRAWS + 1):
        draw = rng if redraw == 0 else np.random.default_rng([config.seed, index, redraw])
        pose = sample_pose(draw, obj, intrinsics=settings.intrinsics)
        demo_view = Renderer(obj).render(pose, settings, seed=int(draw.integers(1 << 30)))
        if config.table:  # the demo was recorded on a table too (its mask is given; the table is in its depth)
            demo_view = view_on_table(demo_view, obj, settings)
        try:
            scene = sample_live_scene(draw, obj, pose, spec, settings, seed=index, others=others)
        except SceneNotVisible as exc:
            first = first or exc
            continue
        scene.conditions["demo_redraws"] = redraw
        return obj, demo_view, scene
    raise first


def demo_views_around(obj, demo_view, count: int, settings: RenderSettings, seed: int, table: bool = False
                      ) -> tuple[DemoView, ...]:
    """The ``count - 1`` extra views of a multi-view demo: the object turned on the table by ``360 k / count`` deg
    about its vertical axis (a turntable; the same camera, light and backdrop as the primary view), each with its
    exact ``T_primary_from_view`` and its true mask. The rng of the trials is not touched, so the live scenes are
    those of the one-view run. ``table``: each view on the table (turning with the object, as on a turntable)."""
    renderer, views = Renderer(obj), []
    for k in range(1, count):
        pose = demo_view.pose @ table_motion(360.0 * k / count, np.zeros(2), obj.center)
        view = renderer.render(pose, settings, seed=seed)
        view = view_on_table(view, obj, settings) if table else view
        views.append(DemoView(view.rgb, view.depth, view.intrinsics, view.mask,
                              demo_view.pose @ np.linalg.inv(pose), f"turn {360.0 * k / count:g} deg"))
    return tuple(views)


def make_functional_trial(rng: np.random.Generator, category: str, function: str, index: int,
                          config: AlignmentBenchConfig, settings: RenderSettings):
    """A demo view of instance A and a live view of instance B (same category, moved); returns (A, B, demo view,
    live view, the true demo-camera -> live-camera similarity, the demo part's centre in the demo camera, the
    demo functional-part mask)."""
    from ..world.groundtruth import align_functional_parts, sample_surface
    a = make_instance(category, 2 * index, config.seed)
    b = make_instance(category, 2 * index + 1, config.seed)
    alignment = align_functional_parts(a, b, function, seed=index)
    pose = sample_pose(rng, a, intrinsics=settings.intrinsics)
    motion = table_motion(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg),
                          rng.uniform(-config.max_translation_m, config.max_translation_m, 2), b.center)
    live_pose = pose @ motion
    demo_view = Renderer(a).render(pose, settings, seed=int(rng.integers(1 << 30)))
    live_view = Renderer(b).render(live_pose, settings, seed=int(rng.integers(1 << 30)))
    truth = live_pose @ alignment.transform @ np.linalg.inv(pose)
    part = sample_surface(a, a.function_face_mask(function), 500, np.random.default_rng(index)).mean(0)
    centre = pose[:3, :3] @ part + pose[:3, 3]
    part_mask = np.isin(demo_view.part_map, [a.part_id(p) for p in a.functional_parts[function]]) & demo_view.mask
    return a, b, demo_view, live_view, truth, centre, part_mask


LIVE_IMAGE, DEMO_IMAGE = 0, 1  # the depth sensor's image keys; a multi-view demo's extra view k is 2 + k


def _depth_sensor(config: AlignmentBenchConfig, trial: int):
    """``(depth, intrinsics, image) -> depth`` as the trial's camera gives it (``config.depth_noise``). Each image
    (``LIVE_IMAGE``, ``DEMO_IMAGE``, ``2 + k`` for extra view k) has a generator of its own, so the noise leaves the
    scenes' shared stream as it is, and a one-view and a four-view run see the same live and demo depth."""
    noise = depth_noise_from_name(config.depth_noise)
    if noise is None:
        return lambda depth, intrinsics, image: depth
    return lambda depth, intrinsics, image: stereo_depth(
        depth, intrinsics, noise, np.random.default_rng([config.seed, trial, 0x5E45, image]))


def trial_demo(config: AlignmentBenchConfig, trial: int, obj, demo_view, visible: list, settings: RenderSettings):
    """The demo of one same-instance trial as the bench gives it to the pipeline (its extra views with
    ``config.demo_views``, depth as ``config.depth_noise`` senses it), and the trial's depth sensor for the live
    frame. One place, so the bench and ``--diagnose-pose`` see the same demo."""
    views = (demo_views_around(obj, demo_view, config.demo_views, settings, seed=demo_view.seed, table=config.table)
             if config.demo_views > 1 else ())
    sensed = _depth_sensor(config, trial)
    views = tuple(replace(v, depth=sensed(v.depth, v.intrinsics, 2 + k)) for k, v in enumerate(views))
    demo = DemoSpec(None, demo_view.rgb, sensed(demo_view.depth, demo_view.intrinsics, DEMO_IMAGE),
                    demo_view.intrinsics, demo_view.mask, KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None, views)
    return demo, sensed


def pipeline_settings_for(config: AlignmentBenchConfig) -> PipelineSettings:
    """The pipeline's settings of a bench run (shared by the bench and ``--diagnose-pose``)."""
    return PipelineSettings(ransac_threshold=config.ransac_threshold, refine=config.refine,
                            multiview_cloud=config.multiview_cloud,
                            support_plane=SupportPlaneSettings() if config.support_plane else None,
                            mask_completion=CompletionSettings() if config.mask_completion else None,
                            one_view_handle=config.one_view_handle)


def _mask_sources(config: AlignmentBenchConfig) -> dict:
    sources = {}
    for name in config.mask_sources:
        if name == ORACLE:
            sources[name] = None
        elif name == "depth":
            sources[name] = DepthForeground((0.05, 5.0))
        else:
            sources[name] = mask_source_from_name(name)
    return sources


def run_alignment_benchmark(matcher: Matcher, config: AlignmentBenchConfig, out: str | Path,
                            progress: bool = True) -> dict:
    rng = np.random.default_rng(config.seed)
    settings = RenderSettings(width=config.size, height=config.size)
    pipeline_settings = pipeline_settings_for(config)
    sources = _mask_sources(config)
    rows = []
    total = config.trials + config.functional_trials
    with tqdm(total=total, desc="alignment", unit="trial", disable=not progress) as bar:
        for trial in range(config.trials):
            category = config.categories[trial % len(config.categories)]
            base = {"trial": trial, "kind": KIND_SAME, "category": category}
            bar.update()
            try:
                obj, demo_view, scene = make_scene_trial(rng, category, trial, config, settings)
                if config.only_trials and trial not in config.only_trials:
                    continue
            except SceneNotVisible as exc:
                if config.only_trials and trial not in config.only_trials:
                    continue
                rows += [{**base, "mask_source": name, "success": False, "reason": "object not in view",
                          "detail": str(exc)} for name in sources]
                continue
            visible = [(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, demo_view.keypoints_xy,
                                                               demo_view.keypoints_visible) if v]
            base.update(keypoints=len(visible), **scene.conditions)
            if not visible:
                rows += [{**base, "mask_source": name, "success": False, "reason": "no visible demo keypoint"}
                         for name in sources]
                continue
            demo, sensed = trial_demo(config, trial, obj, demo_view, visible, settings)
            pipeline = TransferPipeline(demo, matcher, pipeline_settings, None)
            start = time.perf_counter()  # the demo's (and its views') features and clouds: a stream's set-up, once
            pipeline.prepare()
            setup_s = time.perf_counter() - start
            centre = demo_view.pose[:3, :3] @ obj.center + demo_view.pose[:3, 3]
            live = scene.view
            live_depth = sensed(live.depth, live.target.intrinsics, LIVE_IMAGE)
            up = (demo_view.pose[:3, 2], scene.camera_pose[:3, 2]) if config.gravity else None  # the table's +z
            for name, source in sources.items():
                row = {**base, "mask_source": name}
                pipeline.mask_source = source
                start = time.perf_counter()
                try:
                    result = pipeline.process(live.rgb, live_depth, live.target.intrinsics,
                                              mask=live.target_mask if source is None else None, up=up)
                except InputError as exc:  # e.g. a mask source that finds nothing: a failed trial, not a crash
                    rows.append({**row, "success": False, "reason": f"{type(exc).__name__}: {exc}"})
                    continue
                row["timings_s"] = {**result.timings_s, "total": time.perf_counter() - start, "demo_setup": setup_s}
                row = _score(row, result, scene.truth, centre)
                row = _score_symmetric(row, result, obj, demo_view.pose, scene.truth, centre)
                search = result.pose_search
                row.update(demo_view=result.demo_view, demo_view_scores=result.demo_view_scores,
                           pose_source=search.chosen.source if search is not None and search.chosen else None,
                           ambiguous=bool(search is not None and search.ambiguous),
                           unconfirmed=bool(search is not None and search.unconfirmed),
                           appearance_agreement=None if search is None else search.appearance_agreement,
                           view_change_deg=None if search is None else search.view_change_deg,
                           pose_score=None if search is None or search.chosen is None else
                           {**search.chosen.score.as_dict(), "support": search.chosen.score.support})
                turn = row.get("symmetric_turn", 0)  # keypoints judged against the pose success was judged on
                target = (live.target if not turn else
                          symmetric_target(live.target, obj, object_symmetry(obj).transforms[turn]))
                row.update(mask_iou=_mask_iou(result, live.target_mask),
                           **_keypoint_errors(result, obj, target, demo_view.pose))
                rows.append(row)
        for trial in range(config.functional_trials):
            category, function = config.functions[trial % len(config.functions)]
            _, _, demo_view, live_view, truth, centre, part = make_functional_trial(rng, category, function, trial,
                                                                                    config, settings)
            row = {"trial": trial, "kind": KIND_FUNCTIONAL, "category": category, "function": function,
                   "part_pixels": int(part.sum()), "mask_source": "depth"}
            bar.update()
            if part.sum() < 20:
                rows.append({**row, "success": False, "reason": "functional part hardly visible in the demo view"})
                continue
            sensed = _depth_sensor(config, config.trials + trial)
            demo = DemoSpec(None, demo_view.rgb, sensed(demo_view.depth, demo_view.intrinsics, DEMO_IMAGE),
                            demo_view.intrinsics, demo_view.mask, None, function, part)
            pipeline = TransferPipeline(demo, matcher, pipeline_settings, DepthForeground((0.05, 5.0)))
            start = time.perf_counter()
            result = pipeline.process(live_view.rgb, sensed(live_view.depth, live_view.intrinsics, LIVE_IMAGE),
                                      live_view.intrinsics)
            row["timings_s"] = {**result.timings_s, "total": time.perf_counter() - start}
            rows.append(_score(row, result, truth, centre))
    return write_report(rows, matcher, config, Path(out))
