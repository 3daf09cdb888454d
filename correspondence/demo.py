"""``make demo``: keypoint transfer on real photos of same-category objects, with the best available backbone.

Pairs: cat -> cat (three different cats), dog -> dog (with the live object mask), hammer -> hammer. Every
photo has hand-annotated keypoints (``correspondence/data/examples/keypoints``, package data), so the demo also prints how far each transferred
keypoint lands from the live image's own annotation: a smoke test on a handful of images, not a benchmark.
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib import resources
from pathlib import Path

import numpy as np

from .api import Matcher, as_image, as_mask
from .errors import SocoError
from .io import load_keypoints, write_json
from .viz import match_overlay, save

REPO = Path(__file__).resolve().parents[1]
# Package data, so an installed package (not only a source checkout) has the annotations.
EXAMPLES = Path(str(resources.files("correspondence") / "data" / "examples" / "keypoints"))
PAIRS = (  # demo image, live image, live mask (optional)
    ("sddino_cat0.jpg", "sddino_cat1.jpg", None),
    ("sddino_cat0.jpg", "sddino_cat2.jpg", None),
    ("sddino_cat0.jpg", "sddino_cat3.jpg", None),
    ("sddino_dog_00.jpg", "sddino_dog_59.jpg", "sddino_dog_Anno_59.png"),
    ("affc_hammer_01_00000001_rgb.jpg", "affc_hammer_02_00000001_rgb.jpg", None),
)


def shared_images_dir() -> Path | None:
    root = Path(os.environ.get("SOCO_SHARED_DIR", REPO.parent / "shared"))
    images = root / "data" / "images"
    return images if images.is_dir() else None


def evaluate(result, demo_kps, live_kps, live_size: tuple[int, int]) -> dict:
    """Distance from each transferred keypoint to the live annotation of the same name (if annotated)."""
    truth = {p.name: np.array(p.xy) for p in live_kps.points}
    threshold = 0.1 * max(live_size)
    errors = {m.name: float(np.linalg.norm(np.array(m.live_xy) - truth[m.name])) for m in result.matches
              if m.name in truth}
    pck = float(np.mean([e < threshold for e in errors.values()])) if errors else float("nan")
    return {"errors_px": errors, "pck@0.1": pck, "threshold_px": threshold, "evaluated": len(errors)}


def self_check(matcher: Matcher, images: Path, out_dir: Path) -> dict:
    """A real photo against a cropped, rescaled copy of itself: the exact answer is known, for any backbone."""
    from PIL import Image

    from .io import KeypointSet, NamedPoint
    demo = as_image(images / "sddino_cat0.jpg")
    kps = load_keypoints(EXAMPLES / "sddino_cat0.json")
    left, top, scale = 40, 24, 0.8
    live = demo.crop((left, top, demo.width - 8, demo.height - 40))
    live = live.resize((round(live.width * scale), round(live.height * scale)), Image.BILINEAR)
    truth = KeypointSet(tuple(NamedPoint(p.name, ((p.xy[0] - left) * scale, (p.xy[1] - top) * scale))
                              for p in kps.points))
    result = matcher(demo, kps, live)
    scores = evaluate(result, kps, truth, live.size)
    save(match_overlay(demo, live, kps.xy, result.live_xy, [m.name for m in result.matches],
                       title=f"self-check: cat0 -> cropped x{scale} copy, PCK@0.1 {scores['pck@0.1']:.2f}"),
         out_dir / "self_check" / "overlay.png")
    mean_err = float(np.mean(list(scores["errors_px"].values())))
    print(f"  {'self-check: cat0 -> its cropped, x0.8 copy':67s} keypoints {len(result.matches):2d}  evaluated "
          f"{scores['evaluated']:2d}  mean error {mean_err:6.1f} px  PCK@0.1 {scores['pck@0.1']:.2f}")
    return {"demo": "sddino_cat0.jpg", "live": "sddino_cat0.jpg cropped and scaled x0.8", "mean_error_px": mean_err,
            **scores}


def rgbd_scene(matcher: Matcher, out_dir: Path) -> dict:
    """A procedural RGB-D scene with a known motion through segmentation, keypoint transfer and 3D alignment."""
    from .alignment import rotation_error_deg
    from .benchmarks.alignment import AlignmentBenchConfig, make_trial, object_translation_error
    from .frame_report import frame_overlay, frame_record, write_aligned_clouds
    from .demo_spec import DemoSpec
    from .io import KeypointSet, NamedPoint
    from .pipeline import PipelineSettings, TransferPipeline
    from .segmentation import DepthForeground
    from .world.render import RenderSettings

    config = AlignmentBenchConfig(max_rotation_deg=10.0, max_translation_m=0.03)
    obj, demo_view, live_view, truth, centre = make_trial(np.random.default_rng(7), "car", 1, config,
                                                      RenderSettings(width=448, height=448))
    visible = [(k.name, tuple(xy)) for k, xy, v in zip(obj.keypoints, demo_view.keypoints_xy,
                                                       demo_view.keypoints_visible) if v]
    demo = DemoSpec(None, demo_view.rgb, demo_view.depth, demo_view.intrinsics, demo_view.mask,
                    KeypointSet(tuple(NamedPoint(n, xy) for n, xy in visible)), None, None)
    pipeline = TransferPipeline(demo, matcher, PipelineSettings(), mask_source=DepthForeground((0.05, 5.0)))
    result = pipeline.process(live_view.rgb, live_view.depth, live_view.intrinsics)
    alignment = result.alignment
    folder = out_dir / "rgbd_scene"
    save(frame_overlay(demo, live_view.rgb, result, title=f"synthetic RGB-D car, known motion: {alignment.reason}"),
         folder / "overlay.png")
    record = {"keypoints": len(visible), **frame_record(result), **_keypoint_accuracy(result, obj, live_view)}
    used = (f"{len(result.dense)} dense matches" if result.alignment_source == "dense"
            else f"{len(visible)} keypoints")
    if alignment.success:
        record["rotation_error_deg"] = rotation_error_deg(alignment.transform, truth)
        record["translation_error_cm"] = 100 * object_translation_error(alignment.transform, truth, centre)
        write_aligned_clouds(demo, live_view.rgb, live_view.depth, live_view.intrinsics, result, folder)
        refined = (f"; ICP {'refined it' if result.refinement.accepted else 'kept it: ' + result.refinement.reason}"
                   if result.refinement is not None else "")
        print(f"  synthetic RGB-D scene (car, known motion): pose error {record['rotation_error_deg']:.2f} deg, "
              f"{record['translation_error_cm']:.2f} cm ({alignment.num_inliers} inliers of {used}{refined}); "
              f"{record['keypoints_within_5px']} of {record['keypoints_visible_live']} visible keypoints within 5 px "
              f"of their true projection")
    else:
        print(f"  synthetic RGB-D scene (car, known motion): no pose - {alignment.reason} "
              f"({alignment.num_inliers} inliers of {used}); the pipeline refuses rather than guess")
    write_json(folder / "result.json", record)
    return record


def _keypoint_accuracy(result, obj, live_view) -> dict:
    """Published keypoints vs their true projections in the live view (the visible ones)."""
    index = {k.name: i for i, k in enumerate(obj.keypoints)}
    errors = [float(np.hypot(*(np.asarray(m.live_xy) - live_view.keypoints_xy[index[m.name]])))
              for m in result.matches if live_view.keypoints_visible[index[m.name]]]
    return {"keypoints_visible_live": len(errors), "keypoints_within_5px": sum(e <= 5.0 for e in errors),
            "keypoint_errors_px": errors}


def run(out_dir: Path, backbone: str = "auto", size: int | None = None) -> int:
    images = shared_images_dir()
    if images is None:
        print("The real photos (../shared/data/images) are not here; falling back to the packaged example "
              "keypoints on a synthetic texture is not meaningful, so the demo stops. Set SOCO_SHARED_DIR.")
        return 2
    matcher = Matcher.create(backbone, size=size)
    described = matcher.extractor.describe()
    b = described["backbone"]
    print(f"backbone: {b['name']} ({b['weights']}), input {described['effective_image_size']} px, "
          f"grid {described['grid']}x{described['grid']}")
    scene = rgbd_scene(matcher, out_dir)
    summary = [self_check(matcher, images, out_dir)]
    for demo_name, live_name, mask_name in PAIRS:
        demo_kps = load_keypoints(EXAMPLES / demo_name.replace(".jpg", ".json"))
        live_kps = load_keypoints(EXAMPLES / live_name.replace(".jpg", ".json"))
        demo, live = as_image(images / demo_name), as_image(images / live_name)
        mask = as_mask(images / mask_name) if mask_name else None
        result = matcher(demo, demo_kps, live, live_mask=mask)
        scores = evaluate(result, demo_kps, live_kps, live.size)
        pair_dir = out_dir / f"{Path(demo_name).stem}__{Path(live_name).stem}"
        write_json(pair_dir / "matches.json", {"demo": demo_name, "live": live_name, **result.as_dict(),
                                               "evaluation": scores})
        save(match_overlay(demo, live, demo_kps.xy, result.live_xy, [m.name for m in result.matches],
                           title=f"{b['name']} ({b['weights']}): {demo_name} -> {live_name}, "
                                 f"PCK@0.1 {scores['pck@0.1']:.2f}", live_mask=mask), pair_dir / "overlay.png")
        mean_err = np.mean(list(scores["errors_px"].values())) if scores["errors_px"] else float("nan")
        print(f"  {demo_name:32s} -> {live_name:32s} keypoints {len(result.matches):2d}  evaluated "
              f"{scores['evaluated']:2d}  mean error {mean_err:6.1f} px  PCK@0.1 {scores['pck@0.1']:.2f}  "
              f"({1e3 * sum(result.timings_s.values()):.0f} ms)")
        summary.append({"demo": demo_name, "live": live_name, "mean_error_px": mean_err, **scores})
    write_json(out_dir / "summary.json", {"settings": described, "rgbd_scene": scene, "pairs": summary})
    print(f"wrote overlays and matches under {out_dir}/ (summary.json)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--size", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        return run(Path(args.out), args.backbone, args.size)
    except SocoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
