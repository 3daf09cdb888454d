"""``soco train functional``: train the function-conditioned head on `soco synth functional` pairs."""
from __future__ import annotations

import argparse
import json

from .common import add_model_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train models (the functional head)")
    kinds = parser.add_subparsers(dest="model", required=True, metavar="MODEL")
    functional = kinds.add_parser("functional", help="the function-conditioned dense head (Stojanov et al. 2025)",
                                  description="Several GPUs (or CPU processes): launch with `torchrun "
                                              "--nproc_per_node N -m correspondence.cli train functional ...` "
                                              "(torch DDP; rank k uses "
                                              "cuda:LOCAL_RANK with --device cuda, NCCL; Gloo with --device cpu). "
                                              "--batch-pairs is the global batch; rank 0 writes the outputs.")
    functional.add_argument("--data", required=True, help="a `soco synth functional` folder")
    add_model_options(functional, "dinov2_vitb14")
    functional.add_argument("--epochs", type=int, default=100, help="(the reference: 100)")
    functional.add_argument("--batches-per-epoch", type=int, default=1000, help="steps per epoch (the reference: 1000)")
    functional.add_argument("--batch-pairs", type=int, default=50,
                            help="pairs per step in each of the functional and the spatial batch, over all ranks "
                                 "(each of N ranks takes ceil(B / N)); the reference: 50")
    functional.add_argument("--points", type=int, default=128,
                            help="part and rest pixels per image, correspondences per spatial pair "
                                 "(the reference: 128)")
    functional.add_argument("--lr", type=float, default=1e-4)
    functional.add_argument("--image-size", type=int, default=224, help="side of the reference crop (224)")
    functional.add_argument("--text-encoder", default="auto", choices=("auto", "clip-vit-b-32", "all-MiniLM-L6-v2"),
                            help="auto: CLIP ViT-B/32 (the reference's) when open_clip and its weights resolve, "
                                 "else all-MiniLM-L6-v2 (offline); clip-vit-b-32 exits 2 naming what is missing")
    functional.add_argument("--no-mask-head", action="store_true", help="no mask head / mask loss (a paper ablation)")
    functional.add_argument("--no-spatial", action="store_true", help="functional batch only (a paper ablation)")
    functional.add_argument("--no-functional", action="store_true", help="spatial batch only (a paper ablation)")
    functional.add_argument("--no-augment", action="store_true",
                            help="keep the crops' white background (the reference replaces every training background)")
    functional.add_argument("--spatial-weight", type=float, default=10.0)
    functional.add_argument("--mask-weight", type=float, default=1.0)
    functional.add_argument("--hidden", type=int, default=1024, help="MLP width (the reference: 1024)")
    functional.add_argument("--seed", type=int, default=1234)
    functional.add_argument("--device", default="cpu",
                            help="cpu, cuda or cuda:N (under torchrun: cpu or cuda, rank k takes cuda:LOCAL_RANK)")
    functional.add_argument("--no-progress", action="store_true", help="no progress bars (only rank 0 shows them)")
    functional.add_argument("--out", required=True, help="checkpoint path (.safetensors + .json are written)")
    functional.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..backbones import create_backbone
    from ..distributed import device_for_rank
    from ..functional.train import TrainConfig, train_head

    device_for_rank(args.device)  # a device this machine (and this rank) lacks fails here, before any work
    backbone = create_backbone(args.backbone, weights=args.weights, random_init=args.random_weights)
    config = TrainConfig(data=args.data, out=args.out, epochs=args.epochs, batches_per_epoch=args.batches_per_epoch,
                         batch_pairs=args.batch_pairs, points=args.points, lr=args.lr, image_size=args.image_size,
                         text_encoder=args.text_encoder, mask_head=not args.no_mask_head,
                         functional=not args.no_functional, spatial=not args.no_spatial, augment=not args.no_augment,
                         w_spatial=args.spatial_weight, w_mask=args.mask_weight, hidden=args.hidden, seed=args.seed,
                         device=args.device, progress=not args.no_progress)
    result = train_head(config, backbone)
    if "checkpoint" not in result:  # a non-zero torchrun rank: rank 0 reports
        return 0
    for row in result["history"]:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    if result["world_size"] > 1:
        print(f"{result['world_size']} ranks ({result['device']} on rank 0); head SHA-1 per rank: "
              + ", ".join(h[:12] for h in result["head_sha1_per_rank"]))
    print(f"wrote {result['checkpoint']} (+ .json) and the loss curve {result['loss_curve']}")
    return 0
