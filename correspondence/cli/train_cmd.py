"""``soco train functional``: train the function-conditioned head on `soco synth functional` pairs."""
from __future__ import annotations

import argparse
import json


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
    functional.add_argument("--backbone", default="dinov2_vitb14")
    functional.add_argument("--weights", default=None)
    functional.add_argument("--random-weights", action="store_true")
    functional.add_argument("--epochs", type=int, default=10)
    functional.add_argument("--batch-pairs", type=int, default=50,
                            help="pairs per optimiser step, over all ranks (each of N ranks takes ceil(B / N))")
    functional.add_argument("--points", type=int, default=128, help="pixels sampled per image and step")
    functional.add_argument("--lr", type=float, default=1e-4)
    functional.add_argument("--image-size", type=int, default=224)
    functional.add_argument("--text-encoder", default="all-MiniLM-L6-v2",
                            choices=("all-MiniLM-L6-v2", "clip-vit-b-32"))
    functional.add_argument("--no-mask-head", action="store_true")
    functional.add_argument("--hidden", type=int, default=1024, help="MLP width (the paper: 1024)")
    functional.add_argument("--seed", type=int, default=0)
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
    config = TrainConfig(data=args.data, out=args.out, epochs=args.epochs, batch_pairs=args.batch_pairs,
                         points=args.points, lr=args.lr, image_size=args.image_size, text_encoder=args.text_encoder,
                         mask_head=not args.no_mask_head, hidden=args.hidden, seed=args.seed, device=args.device,
                         progress=not args.no_progress)
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
