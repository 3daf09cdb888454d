"""Time one frame of ``soco bench alignment``'s +-180 deg scenes, to compare two versions of the code alternately
(docs/multiview_demo.md, "Cost"): ``PYTHONPATH=CODE python scripts/time_frame.py VIEWS TRIAL`` builds trial TRIAL
(seed 0, 448 px, daisy, depth mask, 2 distractors) with a VIEWS-view demo, prepares the pipeline, runs the frame
twice and prints ``views trial category alignment_s frame_s success`` for the second call. Run it with PYTHONPATH
at each version's tree in turn (a checkout of the old commit made with ``git archive``) so both see the same load.
"""
from __future__ import annotations

import sys

import numpy as np

from correspondence.api import Matcher
from correspondence.benchmarks.alignment import AlignmentBenchConfig, demo_views_around, make_scene_trial
from correspondence.demo_spec import DemoSpec
from correspondence.io import KeypointSet, NamedPoint
from correspondence.pipeline import PipelineSettings, TransferPipeline
from correspondence.segmentation import DepthForeground
from correspondence.world.render import RenderSettings
views_k, trial_index = int(sys.argv[1]), int(sys.argv[2])
config = AlignmentBenchConfig(trials=trial_index + 1, max_rotation_deg=180, distractors=2, demo_views=views_k)
settings = RenderSettings(width=config.size, height=config.size)
rng = np.random.default_rng(config.seed)
for trial in range(trial_index + 1):
    category = config.categories[trial % len(config.categories)]
    obj, demo_view, scene = make_scene_trial(rng, category, trial, config, settings)
visible = [(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, demo_view.keypoints_xy, demo_view.keypoints_visible) if v]
views = demo_views_around(obj, demo_view, views_k, settings, seed=demo_view.seed) if views_k > 1 else ()
demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, demo_view.mask,
                KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None, views)
pipeline = TransferPipeline(demo, Matcher.create("daisy", size=config.size),
                            PipelineSettings(ransac_threshold=config.ransac_threshold), DepthForeground((0.05, 5.0)))
live = scene.view
up = (demo_view.pose[:3, 2], scene.camera_pose[:3, 2])
pipeline.prepare()
for call in range(2):
    r = pipeline.process(live.rgb, live.depth, live.target.intrinsics, up=up)
print(f"{views_k} {trial_index} {category} {r.timings_s['alignment']:.3f} {sum(r.timings_s.values()):.3f} {r.alignment.success}")
