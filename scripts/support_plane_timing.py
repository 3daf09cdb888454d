"""Time the support plane (correspondence/support_plane.py) on the bench's table scenes, optionally against another
revision of the module, alternating call by call so that the shared machine's load falls on both alike.

    PYTHONPATH=. python scripts/support_plane_timing.py [--baseline REV] [--repeats 3]

16 frames: 8 categories, exact and stereo depth (world/depth_noise.py), the table and 2 distractors, 448 px. With
``--baseline REV`` (a git revision) the module at REV is loaded from ``git show`` and each frame is run by both; the
removed pixels' IoU, the normals' angle and the bands are printed per frame, then both timings (median, p95).
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from correspondence import support_plane as current
from correspondence.world.depth_noise import StereoNoise, stereo_depth
from correspondence.world.families import make_instance
from correspondence.world.render import RenderSettings, sample_pose
from correspondence.world.scene import SceneSpec, sample_live_scene

CATEGORIES = ("car", "bus", "truck", "chair", "stool", "mug", "kettle", "jug")


def _module_at(revision: str):
    """correspondence/support_plane.py as it was at ``revision``, imported under another name."""
    source = subprocess.run(["git", "show", f"{revision}:correspondence/support_plane.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "support_plane_baseline.py"
    path.write_text(source.replace("from .", "from correspondence."))
    spec = importlib.util.spec_from_file_location("support_plane_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _frames(settings: RenderSettings):
    for i, category in enumerate(CATEGORIES):
        obj, rng = make_instance(category, i), np.random.default_rng(i)
        pose = sample_pose(rng, obj, intrinsics=settings.intrinsics)
        scene = sample_live_scene(rng, obj, pose, SceneSpec(max_rotation_deg=180, max_translation_m=0.05,
                                                            distractors=2, table=True), settings, seed=i)
        up = scene.camera_pose[:3, 2]
        yield f"{category} exact", scene.view.depth, up
        yield f"{category} stereo", stereo_depth(scene.view.depth, settings.intrinsics, StereoNoise(),
                                                 np.random.default_rng(i)), up


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=None, help="git revision to compare with (e.g. 191add5)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    settings = RenderSettings(width=448, height=448)
    frames = list(_frames(settings))
    modules = {"this tree": current}
    if args.baseline:
        modules = {args.baseline: _module_at(args.baseline), **modules}
    times = {name: [] for name in modules}
    for repeat in range(args.repeats):
        for name, depth, up in frames:
            order = list(modules.items()) if repeat % 2 == 0 else list(modules.items())[::-1]
            planes = {}
            for label, module in order:
                start = time.perf_counter()
                planes[label] = module.find_support_plane(depth, settings.intrinsics, up)
                times[label].append(time.perf_counter() - start)
            if repeat == 0 and len(planes) == 2:
                a, b = planes.values()
                iou = (a.removed & b.removed).sum() / max((a.removed | b.removed).sum(), 1)
                angle = (np.degrees(np.arccos(min(1.0, abs(float(a.normal @ b.normal))))) if a.found and b.found
                         else float("nan"))
                print(f"{name:16s} found {a.found}/{b.found}  removed IoU {iou:.5f}  normals {angle:.3f} deg  "
                      f"band {1000 * a.band:.2f} / {1000 * b.band:.2f} mm")
    for label, values in times.items():
        print(f"{label}: median {1000 * np.median(values):.1f} ms, p95 {1000 * np.percentile(values, 95):.1f} ms "
              f"({len(values)} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
