"""Profile one frame of ``soco bench alignment``'s scenes (docs/multiview_demo.md, "Cost"): where the time goes.

``PYTHONPATH=. python scripts/profile_frame.py --views 4 --trial 1`` builds trial ``--trial`` of ``--max-rotation
180 --distractors 2`` (seed 0, 448 px, daisy, depth mask) with a ``--views``-view demo, runs the frame twice (the
first call pays the demo's set-up) and prints the stage timings, then a third call under cProfile (cumulative and
own time). ``--no-schedule``: every view localises on every call (``PipelineSettings(view_schedule=None)``).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np

from correspondence.api import Matcher
from correspondence.benchmarks.alignment import AlignmentBenchConfig, demo_views_around, make_scene_trial
from correspondence.demo_spec import DemoSpec
from correspondence.io import KeypointSet, NamedPoint
from correspondence.pipeline import PipelineSettings, TransferPipeline
from correspondence.segmentation import DepthForeground
from correspondence.world.render import RenderSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--trial", type=int, default=1)
    parser.add_argument("--no-schedule", action="store_true")
    parser.add_argument("--rows", type=int, default=40, help="profile rows printed per ordering")
    args = parser.parse_args()
    config = AlignmentBenchConfig(trials=args.trial + 1, max_rotation_deg=180, distractors=2, demo_views=args.views)
    settings = RenderSettings(width=config.size, height=config.size)
    rng = np.random.default_rng(config.seed)
    for trial in range(args.trial + 1):  # the bench's draws, in order, so the trial's scene is the bench's
        category = config.categories[trial % len(config.categories)]
        obj, demo_view, scene = make_scene_trial(rng, category, trial, config, settings)
    visible = [(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, demo_view.keypoints_xy,
                                                       demo_view.keypoints_visible) if v]
    views = demo_views_around(obj, demo_view, args.views, settings, seed=demo_view.seed) if args.views > 1 else ()
    demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, demo_view.mask,
                    KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None, views)
    extra = {"view_schedule": None} if args.no_schedule else {}
    pipeline = TransferPipeline(demo, Matcher.create("daisy", size=config.size),
                                PipelineSettings(ransac_threshold=config.ransac_threshold, **extra),
                                DepthForeground((0.05, 5.0)))
    live = scene.view
    up = (demo_view.pose[:3, 2], scene.camera_pose[:3, 2])

    def run():
        return pipeline.process(live.rgb, live.depth, live.target.intrinsics, up=up)

    for name in ("first call", "second call"):
        start = time.perf_counter()
        result = run()
        print(name, f"{time.perf_counter() - start:.2f} s", {k: round(v, 3) for k, v in result.timings_s.items()})
    print(f"{category}, {scene.conditions['yaw_deg']:.0f} deg; view {result.demo_view}, pose scores "
          f"{result.demo_view_scores}, success {result.alignment.success}")
    profile = cProfile.Profile()
    profile.enable()
    result = run()
    profile.disable()
    print("profiled call", {k: round(v, 3) for k, v in result.timings_s.items()})
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(order).print_stats(args.rows)
        print(text.getvalue())


if __name__ == "__main__":
    main()
