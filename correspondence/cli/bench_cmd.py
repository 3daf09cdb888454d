"""``soco bench ...``: benchmark commands that write JSON + Markdown reports."""
from __future__ import annotations

import argparse

from . import segment_bench_cmd, umd_cmd
from ..world.depth_noise import DEPTH_NOISE
from .common import add_model_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks (reports as JSON + Markdown)")
    bench = parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    latency = bench.add_parser("latency", help="backbone latency per runtime and image size, and the whole pipeline")
    latency.add_argument("--backbones", "--backbone", dest="backbones", default="dinov2_vits14,daisy",
                         help="comma-separated registry names (default: %(default)s)")
    latency.add_argument("--sizes", default="224,448", help="comma-separated image sizes in px")
    latency.add_argument("--runtimes", default="torch",
                         help="comma-separated: torch (eager), torch-compile, torch-cudagraphs, "
                              "torch-compile-cudagraphs, onnxruntime, tensorrt (default: %(default)s); exported "
                              "models are verified before they are timed, a runtime this machine lacks is skipped "
                              "with the reason")
    latency.add_argument("--fp16", action="store_true",
                         help="half precision (torch on CUDA, fp16 ONNX export, TensorRT fp16 kernels)")
    latency.add_argument("--precisions", default="",
                         help="comma-separated fp32,bf16,fp16,auto,int8: each runtime at each it supports, timed "
                              "alternately in one run (default: fp32, or fp16 with --fp16)")
    latency.add_argument("--frames", default="all", choices=("all", "default"),
                         help="keypoint-frame and pipeline rows for every variant or only torch fp32 and auto")
    latency.add_argument("--layer-scale", type=float, default=None,
                         help="random weights: set every LayerScale to this (1e-5 at init hides reduced-precision "
                              "errors inside the blocks from the parity columns; 1 lets them show)")
    latency.add_argument("--onnx-provider", default="cpu", choices=("cpu", "cuda", "tensorrt"))
    latency.add_argument("--runs", type=int, default=10, help="timed runs per setting (default: %(default)s)")
    latency.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs (default: %(default)s)")
    latency.add_argument("--weights", default=None, help="explicit checkpoint for the (single) backbone")
    latency.add_argument("--random-weights", action="store_true", help="seeded random weights (no download)")
    latency.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                         help="skip the whole-pipeline rows (synthetic RGB-D trial; needs open3d)")
    latency.add_argument("--device", default="cpu")
    latency.add_argument("--threads", type=int, default=None, help="CPU threads, torch and onnxruntime (default: torch's)")
    latency.add_argument("--out", default="bench_out/latency")
    latency.set_defaults(handler=run_latency)

    soco = bench.add_parser("soco", help="the SOCO benchmark (CC / SOC / Cross-SOC / SOC-geo) on a SOCO-layout folder",
                            description="Several GPUs (or CPU processes): `torchrun --nproc_per_node N -m "
                                        "correspondence.cli bench soco ...` encodes the images on all ranks and "
                                        "evaluates on rank 0 (the same results.json numbers as one process).")
    soco.add_argument("--root", required=True, help="extracted SOCO dataset (or one from `soco synth soco`)")
    add_model_options(soco, "dinov2_vitb14")
    soco.add_argument("--protocol", default="soco-798", choices=("soco-798", "soco-grid60"),
                      help="soco-798: 800 px -> nearest patch multiple; soco-grid60: fixed 60-patch grid (both "
                           "reproduce the released evaluation, see docs/soco.md)")
    soco.add_argument("--task", default="cc,soc,cross,geo", help="comma-separated: cc, soc, cross, geo")
    soco.add_argument("--alpha", default="0.1,0.05,0.02", help="comma-separated PCK thresholds")
    soco.add_argument("--reduction", default="pair-category-mean",
                      choices=("pair-category-mean", "keypoint-category-mean", "pooled"))
    soco.add_argument("--soft-argmax", action="store_true", help="soft-argmax (half-width 7, beta 0.02)")
    soco.add_argument("--soft-argmax-beta", type=float, default=0.02, help="soft-argmax temperature")
    soco.add_argument("--soft-argmax-window", type=int, default=7,
                      help="soft-argmax half-width in cells; 0 = the whole map, < 0 = a Gaussian of sigma -N "
                           "(OmniProbe's soft_eval_window)")
    soco.add_argument("--convention", default="soco", choices=("soco", "patch-center"),
                      help="patch-center implies --variant float64-geometry")
    soco.add_argument("--geo-min-candidates", type=int, default=2,
                      help="SOC-geo: only keypoints with at least this many candidates (default 2: the paper's "
                           "SOC-geo; 1 also counts single-candidate keypoints, free hits; any other value makes the "
                           "run a variant)")
    soco.add_argument("--variant", default="",
                      help="comma-separated named departures from the paper protocol: sample-then-normalise, "
                           "unit-query, float64-geometry, geo-single-candidate, geo-patch-candidates, "
                           "geo-run-reduction, fp16-storage, legacy (all of the earlier behaviour)")
    soco.add_argument("--storage", default=None, choices=("float32", "float16"),
                      help="feature maps in memory and on disk (default float32; float16 halves the memory and "
                           "moves a few predictions, never the sampling grid; a variant, as --variant fp16-storage)")
    soco.add_argument("--categories", default="", help="comma-separated categories (default: all)")
    soco.add_argument("--supercategories", default="", help="comma-separated super-categories")
    soco.add_argument("--max-pairs-per-category", type=int, default=0, help="0 = all pairs")
    soco.add_argument("--subsets", default=None,
                      help="'released': the released fixed pair sets (PairAnnotations/intra for CC, SOC, SOC-geo and "
                           "cross for Cross-SOC, 20k pairs each), checked; or a list file of pair files "
                           "(intra/<category>/<pair>.json, cross/<group>/<pair>.json per line)")
    soco.add_argument("--paper-tables", default=None,
                      help="folder of the published tables (default: $SOCO_PAPER_TABLES or ../shared/data/"
                           "paper_tables); their rows are shown beside ours")
    soco.add_argument("--paper-model", default=None,
                      help="published row to show beside ours (default: matched by backbone name, "
                           "dinov2_vitb14 -> DINOv2)")
    soco.add_argument("--feature-cache", default=None, help="folder for on-disk feature caching across runs")
    soco.add_argument("--linear-probe", action="store_true",
                      help="also train a Linear(C, C) probe on trainsplits/train and evaluate it on trainsplits/test")
    soco.add_argument("--probe-epoch-selection", default="last", choices=("last", "best-on-test"),
                      help="which probe epoch is evaluated: the last (default: the test split chooses nothing) or, as "
                           "the released script and the published numbers, the best on trainsplits/test")
    soco.add_argument("--four-choice", action="store_true",
                      help="also run the LVLM-style 4-choice protocol with CircularEval (and its random baselines)")
    soco.add_argument("--device", default="cpu",
                      help="cpu, cuda or cuda:N; under torchrun cpu (Gloo) or cuda (rank k on cuda:LOCAL_RANK, NCCL)")
    soco.add_argument("--no-progress", action="store_true", help="no progress bars (only rank 0 ever shows them)")
    soco.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                      help="backbone precision (default float32, as the reference; float16 needs CUDA)")
    soco.add_argument("--fp16", action="store_const", const="float16", dest="dtype", help="same as --dtype float16")
    soco.add_argument("--out", default="bench_out/soco")
    soco.set_defaults(handler=run_soco)

    for name, helptext in (("handal", "dense functional correspondence on HANDAL data: the reference's released "
                                      "layout (selected_annotations*.json) or BOP scenes + functional_pairs/"),
                           ("functional", "dense functional correspondence on a `soco synth functional` split")):
        fn = bench.add_parser(name, help=helptext,
                              description="The released reference's protocol (docs/functional.md): its crop, every-pixel "
                                          "embeddings, label transfer and predicted-mask part-first discovery, its "
                                          "thresholds and aggregation, Chance and DINO rows, the paper's published "
                                          "Table 1 rows beside ours.")
        fn.add_argument("--root", required=True, help="dataset folder")
        if name == "functional":
            fn.add_argument("--split", default="test", help="split to evaluate (held-out categories: test)")
        else:
            fn.add_argument("--annotation-list", default=None,
                            help="the reference's selected_annotations*.json (default: found under --root)")
            fn.add_argument("--annotation-dir", default=None, help="its <action>/<objA>|||<objB>|||0000/ folders "
                                                                   "(default: annotations/ beside the list)")
            fn.add_argument("--images-dir", default=None, help="its <obj>/rgb_images_processed folders (default: "
                                                               "fully_processed_data/ beside the list)")
        fn.add_argument("--protocol", default="reference", choices=("reference",),
                        help="evaluation protocol: the released code's (the only one; recorded in the results)")
        add_model_options(fn, "dinov2_vitb14")
        fn.add_argument("--head", default=None, help="trained functional head checkpoint (.safetensors)")
        fn.add_argument("--no-chance", action="store_true", help="leave out the Chance row")
        fn.add_argument("--no-dino", action="store_true", help="leave out the DINO row (the backbone's own features)")
        fn.add_argument("--chunk", type=int, default=0,
                        help="pixels per head MLP call (0: a whole 224 x 224 crop in one pass)")
        fn.add_argument("--paper-table", default=None,
                        help="functional_table1.tsv with the paper's published rows (default: $SOCO_PAPER_TABLES or "
                             "the project's shared/data/paper_tables)")
        fn.add_argument("--max-pairs", type=int, default=0)
        fn.add_argument("--device", default="cpu")
        fn.add_argument("--no-progress", action="store_true")
        fn.add_argument("--out", default=f"bench_out/{name}")
        fn.set_defaults(handler=run_functional, benchmark=name)

    umd_cmd.add_bench_parser(bench)
    segment_bench_cmd.add_bench_parsers(bench)

    align = bench.add_parser("alignment", help="end-to-end pose accuracy and per-stage latency on the procedural world")
    add_model_options(align, "auto")
    align.add_argument("--trials", type=int, default=100, help="same-instance trials with a keypoint demo")
    align.add_argument("--functional-trials", type=int, default=40,
                       help="trials with a functional demo and a different live instance (known functional alignment)")
    align.add_argument("--refine", default="icp", choices=("icp", "none"), help="ICP refinement of the pose")
    align.add_argument("--size", type=int, default=448, help="frame and network input size in px")
    align.add_argument("--method", default="argmax", choices=("argmax", "soft-argmax"))
    align.add_argument("--max-rotation", type=float, default=30.0, metavar="DEG",
                       help="the object's turn about the vertical, uniform in +-DEG (up to 180)")
    align.add_argument("--max-translation", type=float, default=0.05, metavar="M",
                       help="its shift on the table, uniform in +-M along x and y; a draw that leaves it out of view "
                            "is drawn again (a trial where it never comes into view counts as 'object not in view')")
    align.add_argument("--distance-range", type=_float_pair, default=(1.0, 1.0), metavar="LO,HI",
                       help="live camera distance relative to the demo's, uniform (e.g. 0.5,2)")
    align.add_argument("--distractors", type=int, default=0, metavar="N",
                       help="other objects on the table: other instances of the category and other categories of "
                            "its family")
    align.add_argument("--occluders", type=int, default=0, metavar="N",
                       help="objects placed between the camera and the object (partial occlusion)")
    align.add_argument("--mask-source", nargs="+", default=["depth"], metavar="NAME",
                       help="live mask source(s), each trial run with each: depth (nearest depth surface), grabcut, "
                            "sam, sam2, or oracle (the true mask, to judge the pose apart from segmentation)")
    align.add_argument("--demo-views", type=int, default=1, metavar="K",
                       help="record the demo from K views, the object turned by 360/K deg about the vertical between "
                            "them, each with its exact pose (a multi-view demo; 1: one view)")
    align.add_argument("--multiview-cloud", default="view", choices=("view", "fused"),
                       help="with --demo-views > 1: the pose search scores the chosen view's cloud (default) or the "
                            "fused cloud of every view")
    align.add_argument("--depth-noise", default="none", choices=tuple(DEPTH_NOISE),
                       help="depth as a stereo camera gives it, demo and live alike: disparity noise growing with "
                            "distance squared, 1 mm steps, no depth at occluding edges, holes "
                            "(correspondence/world/depth_noise.py; stereo: a D435-like camera, stereo-poor: worse)")
    align.add_argument("--no-gravity", action="store_true",
                       help="do not give the pipeline the vertical in the demo and live cameras (a robot has it "
                            "from TF; without it the pose search turns about the clouds' principal axes)")
    align.add_argument("--categories", default=None,
                       help="comma-separated categories of the same-instance trials (default: "
                            "car,bus,truck,chair,stool,mug,kettle,jug)")
    align.add_argument("--diagnose-pose", action="store_true",
                       help="instead: per same-instance trial, with the true mask, the pose search's hypotheses, its "
                            "choice and the true pose scored by the same scorer, and a verdict (ok, scorer, "
                            "generator, fit, ambiguous, choice): pose_diagnosis.json / .md")
    align.add_argument("--table", action="store_true",
                       help="the table the objects stand on in the live and demo views' depth and colour, as a real "
                            "RGB-D or stereo camera sees it (the realistic setting; off by default so earlier "
                            "numbers stay comparable)")
    align.add_argument("--no-support-plane", action="store_true",
                       help="do not take the support plane (the table) out of the live depth before segmenting and "
                            "localising (to measure what the removal does): PipelineSettings(support_plane=None), as "
                            "the node's support_plane: false")
    align.add_argument("--no-mask-completion", action="store_true",
                       help="do not complete the depth mask with the object's other touching surfaces (to measure "
                            "what the completion does): PipelineSettings(mask_completion=None), as the node's "
                            "mask_completion: false")
    align.add_argument("--no-handle-turn", action="store_true",
                       help="one-view demos: do not read a round body's turn again from its handle or spout (to "
                            "measure what it does): PipelineSettings(one_view_handle=False)")
    align.add_argument("--seed", type=int, default=0)
    align.add_argument("--only-trials", type=_int_list, default=(), metavar="I,J,...",
                       help="run only these same-instance trials (0-based); every trial is still drawn, so each "
                            "one's scene is the one a full run gives it (to rerun a failure alone)")
    align.add_argument("--out", default="bench_out/alignment")
    align.set_defaults(handler=run_alignment)

    add_homography_parser(bench)

    compare = bench.add_parser("compare", help="side-by-side table of several results.json files and published rows")
    compare.add_argument("results", nargs="+",
                         help="results.json files (or their folders); 'published' (every published model) or "
                              "'published:MODEL' (e.g. published:DINOv2) for the paper's numbers")
    compare.add_argument("--paper-tables", default=None,
                         help="folder of the published tables (default: $SOCO_PAPER_TABLES or "
                              "../shared/data/paper_tables)")
    compare.set_defaults(handler=run_compare)


def run_latency(args: argparse.Namespace) -> int:
    from ..benchmarks.latency import RUNTIME_CHOICES, LatencyConfig, run_latency_benchmark
    from ..benchmarks.latency_variants import check_precisions
    from ..errors import ConfigError

    runtimes = tuple(filter(None, (r.strip() for r in args.runtimes.split(","))))
    unknown = [r for r in runtimes if r not in RUNTIME_CHOICES]
    if unknown or not runtimes:
        raise ConfigError(f"unknown runtime(s) {unknown or runtimes}; choose from {', '.join(RUNTIME_CHOICES)}")
    config = LatencyConfig(backbones=tuple(filter(None, args.backbones.split(","))),
                           sizes=tuple(int(s) for s in args.sizes.split(",") if s), runs=args.runs,
                           warmup=args.warmup, random_weights=args.random_weights, device=args.device,
                           threads=args.threads, runtimes=runtimes, fp16=args.fp16, weights=args.weights,
                           onnx_provider=args.onnx_provider, pipeline=args.pipeline, frames=args.frames,
                           layer_scale=args.layer_scale,
                           precisions=check_precisions(tuple(filter(None, args.precisions.split(",")))))
    report = run_latency_benchmark(config, args.out)
    print(report.markdown)
    print(f"wrote {report.json_path}, {report.markdown_path}" + (f" and {report.plot_path}" if report.plot_path else ""))
    return 0


def run_soco(args: argparse.Namespace) -> int:
    from ..backbones import create_backbone
    from dataclasses import replace

    from ..benchmarks.soco.protocol import departures, preset, variant
    from ..benchmarks.soco.run import SocoBenchConfig, run_soco_benchmark
    from ..benchmarks.soco.probe import ProbeConfig
    from ..distributed import device_for_rank

    split = lambda text: tuple(filter(None, text.split(",")))  # noqa: E731
    variants = list(split(args.variant))
    if args.convention == "patch-center" and "float64-geometry" not in variants and "legacy" not in variants:
        variants.append("float64-geometry")  # the reference arithmetic is the soco convention's
    overrides = {"geo_min_candidates": args.geo_min_candidates} if args.geo_min_candidates != 2 else {}
    settings = variant(preset(args.protocol, tasks=split(args.task), alphas=tuple(float(a) for a in split(args.alpha)),
                              reduction=args.reduction, method="soft-argmax" if args.soft_argmax else "argmax",
                              beta=args.soft_argmax_beta, window=args.soft_argmax_window), variants)
    settings = replace(settings, convention=args.convention, **overrides,
                       **({"storage": args.storage} if args.storage else {}))
    device_for_rank(args.device)  # a device this machine (or this torchrun rank) lacks fails before any work
    backbone = create_backbone(args.backbone, weights=args.weights, random_init=args.random_weights)
    config = SocoBenchConfig(args.root, args.out, categories=split(args.categories) or None,
                             supercategories=split(args.supercategories) or None,
                             max_pairs_per_category=args.max_pairs_per_category or None,
                             feature_cache=args.feature_cache, linear_probe=args.linear_probe,
                             four_choice=args.four_choice, progress=not args.no_progress, subsets=args.subsets,
                             paper_tables=args.paper_tables, paper_model=args.paper_model,
                             probe=ProbeConfig(epoch_selection=args.probe_epoch_selection))
    result = run_soco_benchmark(config, settings, backbone, device=args.device, dtype=args.dtype)
    if "summary" not in result:  # a torchrun rank other than 0: its images went to rank 0, which reports
        return 0
    print((result["paths"]["table"] and open(result["paths"]["table"], encoding="utf-8").read()))
    departed = departures(settings)
    if departed:
        print(f"variant run, not the paper protocol ({', '.join(departed)}): results.md leaves the published rows "
              "out of its tables")
    timing = result["timing"]
    selection = result.get("selection", {})
    if selection.get("warning"):
        print(f"warning: {selection['warning']}")
    memory = result.get("memory")
    if memory:
        print(f"feature maps: {memory['images']} images, {memory['estimated_bytes'] / 2**30:.2f} GiB as "
              f"{memory['storage']} ({memory['device_bytes'] / 2**30:.2f} GiB on the device, "
              f"{memory['host_bytes'] / 2**30:.2f} GiB in host memory)")
    geo = result["summary"].get("geo")
    if geo:
        key = f"{settings.alphas[0]:g}"
        value = result["summary"]["overall"].get("geo", {}).get(key)
        print(f"SOC-geo (>= {geo['min_candidates']} candidates, {geo['reduction']}): "
              f"{'n/a' if value is None else f'{value:.2f}'} % at alpha {key}, chance level "
              f"{'n/a' if geo['chance'] is None else format(geo['chance'], '.2f')} %")
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timing.get("stages", {}).items())
    print(f"time per stage: {stages}")
    print(f"{result['run'].pairs} pairs in {timing['wall_seconds']:.1f} s ({timing['pairs_per_second']:.2f} pairs/s)"
          + _caching_line(timing))
    summary = result["summary"]
    if "linear_probe" in summary:
        lp = summary["linear_probe"]
        key = f"{settings.alphas[0]:g}"
        print(f"linear probe (test split, PCK@{key}): base CC {lp['base']['cc'][key]:.1f} SOC "
              f"{lp['base']['soc'][key]:.1f} -> probe CC {lp['probe']['cc'][key]:.1f} SOC {lp['probe']['soc'][key]:.1f}")
    if "four_choice" in summary:
        for name, row in summary["four_choice"].items():
            print(f"4-choice {name:9s}: circular {row['circular_accuracy']:.1f}%  average "
                  f"{row['average_accuracy']:.1f}%  ({row['questions']} questions)")
    print(f"wrote {result['paths']['results']}")
    return 0


def _caching_line(timing: dict) -> str:
    """The encoding and caching figures of a SOCO run; a warm run encodes nothing, so it claims no encode time and
    no speed-up (only what it read from the disk cache)."""
    if "images_encoded" not in timing:  # a custom feature source: no store
        return ""
    text = ""
    if timing["images_encoded"]:
        text += (f"; {timing['images_encoded']} images encoded once each ({timing['seconds_per_image'] * 1000:.1f} ms "
                 f"per image), caching speed-up x{timing['caching_speedup'] or float('nan'):.2f} against encoding "
                 "per pair")
    else:
        text += "; 0 images encoded"
    if timing.get("disk_hits"):
        text += (f"; {timing['disk_hits']} maps read from the disk cache "
                 f"({timing['seconds_per_disk_read'] * 1000:.1f} ms per map)")
    if not timing["images_encoded"]:
        text += "; no encode time measured, so no caching speed-up estimated (the cold run reports it)"
    return text


def run_compare(args: argparse.Namespace) -> int:
    from ..benchmarks.soco.compare import compare_table

    print(compare_table(args.results, args.paper_tables))
    return 0


def run_functional(args: argparse.Namespace) -> int:
    from ..backbones import create_backbone
    from ..benchmarks.functional import (handal_pairs, methods_for, needs_backbone, run_functional_benchmark,
                                         synthetic_pairs, table1)

    if args.benchmark == "handal":
        pairs = handal_pairs(args.root, args.annotation_list, args.annotation_dir, args.images_dir)
    else:
        pairs = synthetic_pairs(args.root, args.split)
    if args.max_pairs:
        pairs = pairs[:args.max_pairs]
    backbone = None  # the Chance row alone needs no network: no weights are looked up
    if needs_backbone(args.head, not args.no_dino):
        backbone = create_backbone(args.backbone, weights=args.weights, random_init=args.random_weights)
    methods = methods_for(backbone, args.head, device=args.device, chance=not args.no_chance,
                          dino=not args.no_dino, chunk=args.chunk or None)
    described = backbone.describe() if backbone is not None else "not loaded (only the Chance row runs)"
    settings = {"benchmark": args.benchmark, "root": args.root, "backbone": described, "head": args.head,
                "crop": "reference: white background, 60 px pad, 1.2 x side, LANCZOS, 224 px"}
    results = run_functional_benchmark(pairs, methods, args.out, settings, progress=not args.no_progress,
                                       paper_split="real" if args.benchmark == "handal" else "synthetic",
                                       paper_table=args.paper_table)
    print(table1(results))
    print(f"wrote {args.out}/functional_results.json, functional_results.md and pr_curves.png")
    return 0


def _float_pair(text: str) -> tuple[float, float]:
    """'LO,HI' -> (LO, HI) for argparse."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two numbers), got {text!r}") from exc
    return lo, hi


def _int_list(text: str) -> tuple[int, ...]:
    """'3,7,21' -> (3, 7, 21) for argparse."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated trial numbers, got {text!r}") from exc


def run_alignment(args: argparse.Namespace) -> int:
    from ..api import Matcher
    from ..benchmarks.alignment import AlignmentBenchConfig, run_alignment_benchmark

    extra = {"categories": tuple(c.strip() for c in args.categories.split(",") if c.strip())} if args.categories else {}
    config = AlignmentBenchConfig(trials=args.trials, size=args.size, seed=args.seed,
                                  functional_trials=args.functional_trials, refine=args.refine,
                                  max_rotation_deg=args.max_rotation, max_translation_m=args.max_translation,
                                  distance_range=args.distance_range, distractors=args.distractors,
                                  occluders=args.occluders, mask_sources=tuple(args.mask_source),
                                  gravity=not args.no_gravity, demo_views=args.demo_views,
                                  multiview_cloud=args.multiview_cloud, only_trials=args.only_trials,
                                  depth_noise=args.depth_noise, table=args.table,
                                  support_plane=not args.no_support_plane,
                                  mask_completion=not args.no_mask_completion,
                                  one_view_handle=not args.no_handle_turn, **extra)
    config.scene  # a bad range or count is refused here, before any model is loaded
    if args.diagnose_pose:
        from ..benchmarks.pose_diagnosis import check_diagnosable
        check_diagnosable(config)
    matcher = Matcher.create(args.backbone, weights=args.weights, random_weights=args.random_weights, size=args.size,
                             method=args.method)
    if args.diagnose_pose:
        from ..benchmarks.pose_diagnosis import run_pose_diagnosis
        print(run_pose_diagnosis(matcher, config, args.out)["markdown"])
        print(f"wrote {args.out}/pose_diagnosis.json and pose_diagnosis.md")
        return 0
    result = run_alignment_benchmark(matcher, config, args.out)
    print(result["markdown"])
    print(f"wrote {args.out}/alignment.json, alignment.md, alignment_errors.png and alignment_by_condition.png")
    return 0


def add_homography_parser(bench) -> None:
    """``soco bench homography``: real photos under random homographies, ours against OpenCV SIFT + RANSAC."""
    from ..benchmarks.homography import default_sources
    shared_images, umd_zip = default_sources()
    homography = bench.add_parser("homography", help="precise same-object transfer: real photos at any rotation and "
                                                     "0.25-4x scale, non-planar procedural views and unrelated pairs, "
                                                     "against OpenCV SIFT / ORB / AKAZE + MAGSAC++")
    homography.add_argument("--images", action="append", default=None,
                            help=f"folder of photographs (repeatable; default: {shared_images})")
    homography.add_argument("--umd", default=str(umd_zip) if umd_zip else None,
                            help="UMD-i archive whose RGB frames are added (default: %(default)s; 'none' to skip)")
    homography.add_argument("--max-umd", type=int, default=16,
                            help="UMD-i frames used, spread over the classes (0 = all 94; default: %(default)s)")
    homography.add_argument("--backbones", "--backbone", dest="backbones", default="daisy",
                            help="comma-separated registry names (default: %(default)s)")
    homography.add_argument("--weights", default=None, help="explicit checkpoint for the (single) backbone")
    homography.add_argument("--random-weights", action="store_true")
    homography.add_argument("--size", type=int, default=448, help="backbone input size in px (default: %(default)s)")
    homography.add_argument("--points", type=int, default=200, help="query grid points per pair (default: %(default)s)")
    homography.add_argument("--pairs-per-image", type=int, default=2,
                            help="warped pairs per photo (default: %(default)s)")
    homography.add_argument("--fold-pairs", type=int, default=6,
                            help="non-planar pairs of photos folded like an open book (default: %(default)s)")
    homography.add_argument("--stereo-pairs", type=int, default=4,
                            help="the folded photos seen by a rectified stereo rig, against StereoSGBM "
                                 "(default: %(default)s)")
    homography.add_argument("--world-pairs", type=int, default=6,
                            help="non-planar pairs of procedural objects (default: %(default)s)")
    homography.add_argument("--fine-world-pairs", type=int, default=6,
                            help="the same procedural objects and cameras with a fine full-contrast texture "
                                 "(default: %(default)s)")
    homography.add_argument("--unrelated-pairs", type=int, default=6,
                            help="pairs of different photos, where nothing should be accepted (default: %(default)s)")
    homography.add_argument("--seed", type=int, default=0)
    homography.add_argument("--device", default="cpu")
    homography.add_argument("--out", default="bench_out/homography")
    homography.set_defaults(handler=run_homography)


def run_homography(args: argparse.Namespace) -> int:
    from ..benchmarks.homography import HomographyBenchConfig, collect_images, default_sources, run_homography_benchmark
    from ..errors import InputError

    folders = args.images if args.images is not None else [p for p in (default_sources()[0],) if p is not None]
    umd = None if args.umd in (None, "", "none") else args.umd
    if not folders and umd is None:
        raise InputError("no photographs: pass --images DIR (the shared ../shared/data/images folder is absent)")
    images = collect_images(folders, umd, args.max_umd)
    config = HomographyBenchConfig(backbones=tuple(filter(None, args.backbones.split(","))), size=args.size,
                                   points=args.points, pairs_per_image=args.pairs_per_image, max_umd=args.max_umd,
                                   world_pairs=args.world_pairs, fine_world_pairs=args.fine_world_pairs,
                                   unrelated_pairs=args.unrelated_pairs,
                                   fold_pairs=args.fold_pairs, stereo_pairs=args.stereo_pairs,
                                   seed=args.seed, random_weights=args.random_weights, device=args.device,
                                   weights=args.weights)
    result = run_homography_benchmark(images, config, args.out)
    print(result["markdown"])
    print(f"wrote {result['paths']['results']}, {result['paths']['table']} and {result['paths']['plot']}")
    return 0
