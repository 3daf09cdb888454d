"""``soco transfer``: a demo and one live RGB(-D) frame -> matches, the demo-to-live transform, an overlay PNG and,
with depth, both point clouds aligned (PLY + PNG)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .common import add_device_options, torch_runtime_options
from .match_cmd import add_matching_options, matching_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("transfer", help="transfer a demo's keypoints or functional part to a live frame, align",
                            description="Segment the live object, find the demo keypoints (or functional part) in "
                                        "it, lift both sides with depth and estimate the demo-to-live rigid "
                                        "transform.")
    parser.add_argument("--demo", required=True, help="demo folder or YAML (see correspondence/demo_spec.py)")
    parser.add_argument("--live-rgb", required=True)
    parser.add_argument("--live-depth", default=None, help="uint16 PNG (x --depth-scale m) or .npy in metres")
    parser.add_argument("--depth-scale", type=float, default=0.001, help="metres per depth unit (default: mm)")
    parser.add_argument("--intrinsics", default=None, help="JSON {fx, fy, cx, cy, width, height} (OpenCV)")
    parser.add_argument("--live-mask", default=None, help="object mask of the live frame (skips segmentation)")
    parser.add_argument("--prompt", default=None, help="x,y (a point) or x0,y0,x1,y1 (a box) on the live object")
    parser.add_argument("--segmentation", default="auto", choices=("auto", "sam2", "sam", "depth", "grabcut", "none"),
                        help="live mask source, prompted where the demo object is found; auto: SAM 2.1 tiny, else "
                             "SAM, else depth (with --live-depth), else GrabCut")
    parser.add_argument("--sam2-model", default="tiny", choices=("tiny", "small", "base_plus", "large"),
                        help="SAM 2.1 size for --segmentation sam2 / auto")
    parser.add_argument("--sam2-image-size", type=int, default=1024,
                        help="SAM 2.1's encoder input side, a multiple of 32 (default: %(default)s, the trained size; "
                             "smaller is faster on small frames, mask quality untested with real weights)")
    parser.add_argument("--backbone", default="auto")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=None)
    add_device_options(parser)
    parser.add_argument("--runtime", default="torch", choices=("torch", "onnxruntime", "tensorrt"),
                        help="what runs the backbone (onnxruntime / tensorrt need --runtime-model)")
    parser.add_argument("--runtime-model", default=None, help="exported .onnx / .engine (soco export)")
    parser.add_argument("--provider", default="cpu", choices=("cpu", "cuda", "tensorrt"),
                        help="ONNX Runtime execution provider (used exactly, never a silent fall-back)")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="run an exported model whose verification record is missing or failed (refused by default)")
    parser.add_argument("--min-score", type=float, default=None, help="reject matches below this cosine score")
    parser.add_argument("--ransac-threshold", type=float, default=0.015, help="inlier distance in metres")
    parser.add_argument("--alignment-source", default="dense", choices=("dense", "keypoints"),
                        help="correspondences that drive the 3D alignment (keypoint mode)")
    parser.add_argument("--refine", default="icp", choices=("icp", "none"), help="guarded ICP refinement of the pose")
    parser.add_argument("--top-k", type=int, default=300, help="dense matches kept, best discovery score first")
    parser.add_argument("--functional-head", default=None,
                        help="trained functional head (.safetensors) for a functional demo; default: backbone features")
    parser.add_argument("--solver", default="ransac", choices=("ransac", "open3d"))
    add_matching_options(parser, refine_flag="--no-refine-keypoints")
    parser.add_argument("--out", default="transfer_out")
    parser.set_defaults(handler=run)


def _prompt(text: str | None):
    from ..errors import ConfigError
    from ..segmentation import Prompt
    if not text:
        return Prompt.auto()
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"--prompt must be x,y or x0,y0,x1,y1, got {text!r}") from None
    if len(values) == 2:
        return Prompt(point=tuple(values))
    if len(values) == 4:
        return Prompt(box=tuple(values))
    raise ConfigError(f"--prompt must be x,y or x0,y0,x1,y1, got {text!r}")


def run(args: argparse.Namespace) -> int:
    from ..api import Matcher, as_image, as_mask
    from ..demo_spec import load_demo, load_depth, load_intrinsics
    from ..dense_transfer import DenseSettings
    from ..errors import InputError
    from ..frame_report import frame_overlay, frame_record, write_aligned_clouds
    from ..io import write_json
    from ..pipeline import PipelineSettings, TransferPipeline
    from ..segmentation import auto_mask_source, mask_source_from_name
    from ..viz import save

    demo = load_demo(args.demo)
    live = np.asarray(as_image(args.live_rgb))
    depth = load_depth(Path(args.live_depth), args.depth_scale) if args.live_depth else None
    intrinsics = load_intrinsics(Path("."), args.intrinsics, Path(args.intrinsics)) if args.intrinsics else None
    if (depth is None) != (intrinsics is None):
        raise InputError("3D alignment needs both --live-depth and --intrinsics (give both, or neither for 2D)")
    if args.segmentation == "auto":
        mask_source, reason = auto_mask_source(depth, sam2_model_type=args.sam2_model,
                                               sam2_image_size=args.sam2_image_size)
        print(f"segmentation: {reason}")
    elif args.segmentation == "none":
        mask_source = None
    elif args.segmentation == "sam2":
        mask_source = mask_source_from_name("sam2", model_type=args.sam2_model, image_size=args.sam2_image_size)
    else:
        mask_source = mask_source_from_name(args.segmentation)
    runtime = torch_runtime_options(args) if args.runtime == "torch" else {
        "name": args.runtime, "model": args.runtime_model, "provider": args.provider,
        "allow_unverified": args.allow_unverified}
    matcher = Matcher.create(args.backbone, weights=args.weights, size=args.size, runtime=runtime,
                             device=args.device, dtype=args.dtype, **matching_options(args))
    functional = _functional_embedder(args, matcher) if demo.mode == "functional" else None
    settings = PipelineSettings(min_score=args.min_score, ransac_threshold=args.ransac_threshold, solver=args.solver,
                                alignment_source=args.alignment_source, refine=args.refine,
                                dense=DenseSettings(top_k=args.top_k))
    pipeline = TransferPipeline(demo, matcher, settings, mask_source, functional=functional)
    result = pipeline.process(live, depth, intrinsics, mask=as_mask(args.live_mask), prompt=_prompt(args.prompt))
    out = Path(args.out)
    record = {"demo": str(args.demo), "live": args.live_rgb, **frame_record(result)}
    write_json(out / "transfer.json", record)
    save(frame_overlay(demo, live, result), out / "overlay.png")
    if result.alignment is not None and result.alignment.success:
        write_aligned_clouds(demo, live, depth, intrinsics, result, out)
    alignment = result.alignment or result.alignment_2d
    found = (f"{len(result.matches)} keypoints, {int(result.accepted.sum())} accepted" if result.mode == "keypoints"
             else f"{len(result.dense)} functional matches of {demo.function!r}")
    refined = f", ICP: {result.refinement.reason}" if result.refinement is not None else ""
    print(f"{found}; {record['alignment_kind']} alignment: {alignment.reason} (inliers {alignment.num_inliers}, "
          f"rmse {alignment.rmse:.4f}{refined})")
    print(f"wrote {out}/transfer.json and overlay.png")
    return 0


def _functional_embedder(args: argparse.Namespace, matcher):
    """A trained functional head when --functional-head is given; else the backbone's own features (None)."""
    if not args.functional_head:
        return None
    from ..functional.checkpoint import HeadCheckpoint
    from ..functional.inference import FunctionalEmbedder
    return FunctionalEmbedder.create(HeadCheckpoint.load(args.functional_head), matcher.extractor.backbone,
                                     image_size=matcher.extractor.settings.preprocess.size)
