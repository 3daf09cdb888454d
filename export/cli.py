"""``soco export onnx|head|tensorrt``: deployable models, each verified against PyTorch (or ONNX Runtime)
with the report printed and saved next to the model. Only a model that passes is written to ``--out``; a failed
one exits 1, leaves nothing at ``--out`` and is kept as ``<stem>.rejected<suffix>`` (with its report) for
inspection. A missing GPU/TensorRT exits 2."""
from __future__ import annotations

import argparse

from correspondence.backbones.contract import OutputKind


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="export a backbone or functional head to ONNX / TensorRT (verified)")
    export = parser.add_subparsers(dest="export", required=True, metavar="FORMAT")

    onnx = export.add_parser("onnx", help="backbone -> ONNX (static image size, named outputs, metadata)")
    onnx.add_argument("--backbone", required=True, help="registry name, e.g. dinov2_vits14")
    onnx.add_argument("--weights", default=None, help="explicit checkpoint (default: resolved like `soco match`)")
    onnx.add_argument("--random-weights", action="store_true", help="seeded random weights (no download)")
    onnx.add_argument("--size", type=int, required=True, help="square input side in px, a multiple of the patch")
    _precision_options(onnx)
    onnx.add_argument("--kind", default=OutputKind.LAST_RAW.value, choices=[k.value for k in OutputKind],
                      help="which tokens to output (blocks: several blocks, e.g. for the functional head)")
    onnx.add_argument("--layers", default="-1", help="comma-separated blocks for --kind blocks (e.g. -3,-2,-1)")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset, >= 17 (default: %(default)s)")
    onnx.add_argument("--static-batch", action="store_true", help="batch fixed to 1 (default: dynamic batch)")
    _verify_options(onnx)
    onnx.add_argument("--out", required=True, help="output .onnx path")
    onnx.set_defaults(handler=run_onnx)

    head = export.add_parser("head", help="functional head (fuse + MLP) -> ONNX")
    head.add_argument("--checkpoint", required=True, help="head checkpoint (.safetensors + .json)")
    head.add_argument("--function", default=None, help="bake this function's embedding in (default: 'text' input)")
    head.add_argument("--size", type=int, required=True, help="image size in px the backbone export uses")
    head.add_argument("--backbone-weights", default=None, help="backbone weights for the verification features")
    head.add_argument("--random-weights", action="store_true", help="random backbone for the verification features")
    _precision_options(head)
    head.add_argument("--opset", type=int, default=17)
    _verify_options(head)
    head.add_argument("--out", required=True, help="output .onnx path")
    head.set_defaults(handler=run_head)

    trt = export.add_parser("tensorrt", help="ONNX export -> TensorRT engine (needs a CUDA GPU and tensorrt)")
    trt.add_argument("--onnx", required=True, help="an ONNX file from `soco export onnx`")
    trt.add_argument("--fp16", action="store_true", help="fp16 kernels; normalisation layers kept in fp32")
    trt.add_argument("--max-batch", type=int, default=8, help="largest batch of the optimisation profile")
    trt.add_argument("--workspace-gb", type=float, default=4.0)
    trt.add_argument("--force", action="store_true", help="rebuild even if the engine is current")
    trt.add_argument("--verify-images", nargs=2, default=None, metavar=("A", "B"))
    trt.add_argument("--allow-unverified", action="store_true",
                     help="build from an ONNX file whose verification record is missing or failed (the engine is "
                          "still verified and only written to --out if it passes)")
    trt.add_argument("--out", required=True, help="output .engine path (a .json sidecar is written next to it)")
    trt.set_defaults(handler=run_tensorrt)


def _precision_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("precision")
    group.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                       help="fp16: half-precision body, LayerNorm in fp32; int8: quantised linear layers for CPUs "
                            "(onnxruntime.quantization); I/O stays float32 (default: %(default)s)")
    group.add_argument("--fp16", action="store_const", const="fp16", dest="precision", help="same as --precision fp16")
    group.add_argument("--quantization", default="dynamic", choices=("dynamic", "static"),
                       help="int8: activation ranges at run time (dynamic) or fixed from calibration images (static)")
    group.add_argument("--calibration", nargs="+", default=["generated"], metavar="SOURCE",
                       help="static int8: 'generated' (photo-like scenes), an image (e.g. your demo) or a folder "
                            "(default: generated)")
    group.add_argument("--calibration-count", type=int, default=8, help="at most this many calibration images")


def _quantization(args: argparse.Namespace):
    from .quantize import Quantization
    return Quantization(args.quantization, tuple(args.calibration), args.calibration_count) \
        if args.precision == "int8" else None


def _verify_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("verification")
    group.add_argument("--provider", default="cpu", choices=("cpu", "cuda", "tensorrt"),
                       help="ONNX Runtime provider the export is verified with (default: %(default)s)")
    group.add_argument("--verify-images", nargs=2, default=None, metavar=("A", "B"),
                       help="two photos of the same object/scene (default: a generated photo-like pair)")


def _finish(result, requested: str) -> int:
    from .verify import VerificationError

    print(result.report.text())
    if not result.report.passed:
        raise VerificationError(f"{requested} failed verification ({result.report.failures()}): not written; the "
                                f"rejected model is kept for inspection as {result.path} with its report "
                                f"{result.report_path} (runtimes refuse it unless --allow-unverified / "
                                "allow_unverified=True)")
    print(f"wrote {result.path} and {result.report_path}")
    return 0


def run_onnx(args: argparse.Namespace) -> int:
    from .inputs import load_pair
    from .onnx_export import export_backbone

    from correspondence.backbones import create_backbone

    loaded = create_backbone(args.backbone, weights=args.weights, random_init=args.random_weights)
    layers = tuple(int(x) for x in args.layers.split(",") if x.strip())
    pair = load_pair(args.verify_images) if args.verify_images else None
    result = export_backbone(loaded, args.size, args.out, precision=args.precision, kind=args.kind, layers=layers,
                             opset=args.opset, dynamic_batch=not args.static_batch, provider=args.provider,
                             verify_images=pair, quantization=_quantization(args))
    return _finish(result, args.out)


def run_head(args: argparse.Namespace) -> int:
    from .inputs import load_pair
    from .onnx_export import export_head

    from correspondence.backbones import create_backbone
    from correspondence.functional.checkpoint import HeadCheckpoint

    checkpoint = HeadCheckpoint.load(args.checkpoint)
    backbone = create_backbone(checkpoint.backbone, weights=args.backbone_weights, random_init=args.random_weights)
    pair = load_pair(args.verify_images) if args.verify_images else None
    result = export_head(args.checkpoint, backbone, args.size, args.out, function=args.function,
                         precision=args.precision, opset=args.opset, provider=args.provider, verify_images=pair,
                         quantization=_quantization(args))
    return _finish(result, args.out)


def run_tensorrt(args: argparse.Namespace) -> int:
    from .inputs import load_pair
    from .tensorrt_build import build_and_verify

    pair = load_pair(args.verify_images) if args.verify_images else None
    result = build_and_verify(args.onnx, args.out, fp16=args.fp16, max_batch=args.max_batch,
                              workspace_gb=args.workspace_gb, force=args.force, verify_images=pair,
                              allow_unverified=args.allow_unverified)
    env = result.record.environment
    print(f"TensorRT {env.tensorrt_version}, GPU {env.gpu_name} (compute capability {env.compute_capability})")
    return _finish(result, args.out)
