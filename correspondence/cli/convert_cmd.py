"""``soco convert``: dataset layout conversions.

``soco convert handal-functional --root DIR [--to reference|bop] [--out DIR]``: between HANDAL/BOP scenes with
``functional_pairs/`` (what ``soco synth handal`` writes, full frames) and the released reference's layout
(``selected_annotations.json``, ``annotations/<action>/<objA>|||<objB>|||0000/trial_N/<obj>|||<img>.npy`` in 224
crops, ``fully_processed_data/<obj>/{rgb_images,object_masks}_processed/``). ``--to reference`` crops as the
reference does; ``--to bop`` keeps the 224 crops as frames (the reference layout has no full frames).

``soco convert reference-head --checkpoint epoch_XXXX.pt --clip-features DIR --out CKPT``: a released head
checkpoint (``{"model": ConditionedDino.state_dict()}``) and its CLIP text features (``<function>.pth``, from
``gen_clip_features.py``) as a head checkpoint for ``soco bench handal --head`` and the pipeline.
"""
from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("convert", help="convert dataset layouts (HANDAL functional pairs <-> the reference's)")
    kinds = parser.add_subparsers(dest="conversion", required=True, metavar="CONVERSION")
    handal = kinds.add_parser("handal-functional", help="HANDAL/BOP functional_pairs <-> the reference's layout",
                              description=__doc__.split("\n\n", 1)[1])
    handal.add_argument("--root", required=True, help="the dataset to convert")
    handal.add_argument("--to", choices=("reference", "bop"), default="reference",
                        help="reference: BOP + functional_pairs/ -> the reference's layout (default); bop: the "
                             "reference's layout -> BOP scenes + functional_pairs/")
    handal.add_argument("--annotation-list", default=None,
                        help="--to bop: the reference's selected_annotations*.json (default: found under --root)")
    handal.add_argument("--out", default=None, help="output folder (default for --to reference: ROOT/reference)")
    handal.set_defaults(handler=run)
    head = kinds.add_parser("reference-head", help="a released reference head checkpoint -> a soco head checkpoint")
    head.add_argument("--checkpoint", required=True, help="the reference's epoch_XXXX.pt")
    head.add_argument("--clip-features", required=True, help="folder of <function>.pth CLIP text features")
    head.add_argument("--backbone", default="dinov2_vitb14", help="the frozen backbone it was trained on")
    head.add_argument("--out", required=True, help="checkpoint path (.safetensors + .json are written)")
    head.set_defaults(handler=run_head)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..world.writers.handal import convert_bop_to_reference, convert_reference_to_bop, find_reference_layout

    if args.to == "reference":
        counts = convert_bop_to_reference(args.root, args.out)
    else:
        if not args.out:
            raise InputError("--to bop needs --out (a new BOP root)")
        layout = find_reference_layout(args.root, args.annotation_list)
        if layout is None:
            raise InputError(f"{args.root!r} has no selected_annotations*.json (pass --annotation-list)")
        counts = convert_reference_to_bop(layout, args.out)
    print(json.dumps(counts))
    if counts.get("skipped_fewer_than_10_points"):
        print(f"left out {len(counts['skipped_fewer_than_10_points'])} trial(s) with fewer than 10 points: the "
              "released scripts sample 10 points per trial and stop at such a trial")
    print(f"wrote the {args.to} layout to {counts['out']}")
    return 0


def run_head(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..backbones import get_spec
    from ..errors import InputError
    from ..functional.checkpoint import HeadCheckpoint
    features = sorted(Path(args.clip_features).glob("*.pth"))
    if not features:
        raise InputError(f"{args.clip_features!r} has no <function>.pth CLIP features")
    table = {}
    for path in features:
        vector = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(vector, torch.Tensor):
            raise InputError(f"{str(path)!r} is not a tensor")
        table[path.stem] = vector.float().flatten()
    spec = get_spec(args.backbone)
    checkpoint = HeadCheckpoint.from_reference(args.checkpoint, spec.name, spec.contract.feature_dim, table)
    path = checkpoint.save(args.out)
    print(json.dumps({"functions": len(table), "head": checkpoint.head.config.as_dict()}))
    print(f"wrote {path} (+ .json)")
    return 0
