"""Training the functional head: functional-part InfoNCE + multi-view spatial InfoNCE + mask BCE,
``(L_func + 1 L_mask + 10 L_spatial) / 12``, AdamW 1e-4, batches of pairs, resumable, DDP-ready (torchrun).

Several processes (``torchrun --nproc_per_node N -m correspondence.cli train functional ...``): rank k works on
``cuda:LOCAL_RANK`` (or the CPU with ``--device cpu``, Gloo), torch DDP averages the head's gradients. Each epoch
one seeded permutation of the pairs (the same on every rank) is padded to a multiple of N and dealt out, so every
rank runs the same number of steps; ``batch_pairs`` is the global batch (each rank takes ``ceil(B / N)`` pairs a
step). The logged losses are means over every rank's pairs; rank 0 alone writes the state file, checkpoint and plot.
"""
from __future__ import annotations

import copy
import json
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..backbones import LoadedBackbone
from ..backbones.contract import OutputKind
from ..errors import InputError
from ..features import ExtractionSettings, FeatureExtractor
from ..preprocessing import PreprocessSettings
from .checkpoint import HeadCheckpoint
from .data import PairFeatures, grid_of, list_pairs, load_pairs, sample_pixels
from .losses import functional_part_loss, mask_loss, spatial_loss, total_loss
from .model import FunctionalHead, HeadConfig
from .text import embed_functions, get_text_encoder

LAYERS = (-3, -2, -1)


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    epochs: int = 10
    batch_pairs: int = 50
    points: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.01
    temperature: float = 0.1
    image_size: int = 224
    augment_prob: float = 0.5
    text_encoder: str = "all-MiniLM-L6-v2"
    mask_head: bool = True
    hidden: int = 1024  # the paper's MLP width; smaller for quick CPU runs
    output: int = 256
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def block_extractor(backbone: LoadedBackbone, image_size: int, device: torch.device | str) -> FeatureExtractor:
    settings = ExtractionSettings(PreprocessSettings(pad="center-pad", size=image_size, pad_color=(0, 0, 0)),
                                  kind=OutputKind.BLOCKS, layers=LAYERS)
    return FeatureExtractor(backbone, settings, device=device, cache_size=0)


def pair_loss(module: FunctionalHead, encoded, text: torch.Tensor, config: TrainConfig, rng: np.random.Generator,
              device: torch.device | str) -> dict[str, torch.Tensor]:
    """Loss terms of one training pair (functional: part InfoNCE + mask; multiview: + spatial InfoNCE)."""
    pair = encoded.pair
    fa = module.fuse([b[None].to(device) for b in encoded.fmap_a.blocks()])
    fb = module.fuse([b[None].to(device) for b in encoded.fmap_b.blocks()])
    terms: dict[str, torch.Tensor] = {}
    xa = sample_pixels(pair.mask_a, config.points, rng, pair.function_a)
    xb = sample_pixels(pair.mask_b, config.points, rng, pair.function_b)
    if len(xa) and len(xb):
        ea, la = module.embed(fa, grid_of(encoded.fmap_a, xa, device)[None], text[None])
        eb, lb = module.embed(fb, grid_of(encoded.fmap_b, xb, device)[None], text[None])
        part_a = torch.from_numpy(pair.function_a[xa[:, 1].astype(int), xa[:, 0].astype(int)]).to(device)
        part_b = torch.from_numpy(pair.function_b[xb[:, 1].astype(int), xb[:, 0].astype(int)]).to(device)
        terms["functional"] = functional_part_loss(ea[0], part_a, eb[0], part_b, config.temperature)
        if la is not None:
            terms["mask"] = 0.5 * (mask_loss(la[0], part_a) + mask_loss(lb[0], part_b))
    if pair.kind == "multiview" and len(pair.xy_a) >= 2:
        pick = rng.choice(len(pair.xy_a), min(config.points, len(pair.xy_a)), replace=False)
        ea, _ = module.embed(fa, grid_of(encoded.fmap_a, pair.xy_a[pick], device)[None], text[None])
        eb, _ = module.embed(fb, grid_of(encoded.fmap_b, pair.xy_b[pick], device)[None], text[None])
        terms["spatial"] = spatial_loss(ea[0], eb[0], config.temperature)
    return terms


class BatchLoss(torch.nn.Module):
    """The whole batch's loss in one forward call, so torch DDP sees exactly one forward per backward and
    all-reduces the gradients of the head across ranks."""

    def __init__(self, head: FunctionalHead, config: TrainConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.head = head
        self.config = config
        self.device = torch.device(device if device is not None else config.device)

    def forward(self, batch: list, rng: np.random.Generator) -> tuple[torch.Tensor, list]:
        zero = torch.zeros((), device=self.device)
        losses = []
        for encoded, text in batch:
            terms = pair_loss(self.head, encoded, text, self.config, rng, self.device)
            losses.append(total_loss(terms.get("functional", zero), terms.get("mask", zero),
                                     terms.get("spatial", zero)))
        loss = torch.stack([l.total for l in losses]).mean() if losses else zero
        if not loss.requires_grad:  # nothing to learn from in this batch: a graph-connected 0, so backward (and
            # DDP's gradient all-reduce, which every rank must join) still runs
            loss = loss + sum(p.sum() for p in self.head.parameters()) * 0.0
        return loss, losses


def rank_batches(order: Sequence[int], batch_pairs: int, rank: int, world: int) -> list[list[int]]:
    """This rank's batches of pair indices for one epoch, from the epoch's permutation ``order`` (the same on
    every rank). The permutation is padded to a multiple of ``world`` (repeating its start) and dealt out, and
    every rank takes ``ceil(batch_pairs / world)`` pairs a step, so all ranks run exactly the same number of
    steps (DDP needs every rank in every gradient all-reduce)."""
    mine = distributed.padded_shard([int(i) for i in order], rank, world)
    per_step = max(1, -(-batch_pairs // world))
    return [mine[i:i + per_step] for i in range(0, len(mine), per_step)]


def _save_state(path: Path, head: FunctionalHead, optimiser: torch.optim.Optimizer, epoch: int,
                history: list) -> None:
    """Resumable state, written atomically (a killed run leaves the previous state, never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"head": head.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch,
                "history": json.dumps(history)}, tmp)
    os.replace(tmp, path)


@contextmanager
def _library_bars(show: bool):
    """transformers' own bars (the text encoder's "Loading weights") only where ours are shown: rank 0."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    if not show:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not show:
            hf_logging.enable_progress_bar()


def train_head(config: TrainConfig, backbone: LoadedBackbone) -> dict:
    """Train the head; under torchrun every rank calls this (see the module docstring). Returns the history
    (all ranks) and, on rank 0, the checkpoint and loss-curve paths."""
    if config.batch_pairs < 1 or config.epochs < 0:
        raise InputError(f"batch_pairs must be >= 1 and epochs >= 0, got {config.batch_pairs} and {config.epochs}")
    with distributed.session(config.device) as ctx:
        return _train(config, backbone, ctx)


def _train(config: TrainConfig, backbone: LoadedBackbone, ctx: distributed.DistContext) -> dict:
    rank, world, device = ctx.rank, ctx.world_size, ctx.device
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + rank)  # point sampling: different pixels on every rank
    # the epoch permutations must be the same on every rank: their own stream when there are several ranks (one
    # process keeps drawing them from ``rng``, as it always has)
    order_rng = rng if world == 1 else np.random.default_rng(config.seed)
    pairs = load_pairs(list_pairs(config.data, "train"))
    if not pairs:
        raise InputError(f"{config.data}: the train split is empty")
    functions = sorted({p.function for p in pairs if p.function})
    with _library_bars(config.progress and rank == 0):
        encoder = get_text_encoder(config.text_encoder)
    table = distributed.broadcast_object(embed_functions(functions, encoder))  # rank 0's, bit for bit
    extractor = block_extractor(backbone, config.image_size, device)
    features = PairFeatures(extractor, config.augment_prob, config.seed + rank)
    head = FunctionalHead(HeadConfig(backbone.spec.contract.feature_dim, encoder.dim, len(LAYERS),
                                     hidden=config.hidden, output=config.output,
                                     mask_head=config.mask_head)).to(device)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    out = Path(config.out)
    state_path = out.with_suffix(".train_state.pt")
    start_epoch, history = 0, []
    if state_path.is_file():  # resume (every rank reads the file rank 0 wrote; DDP then broadcasts rank 0's head)
        state = torch.load(state_path, map_location=device, weights_only=True)
        head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        start_epoch, history = int(state["epoch"]), json.loads(state["history"])
    texts = {name: vector.to(device) for name, vector in table.items()}
    texts[""] = torch.zeros(encoder.dim, device=device)  # a multiview pair may have no function
    trainer = BatchLoss(head, config, device)
    if ctx.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(trainer, device_ids=ids,
                                                          output_device=ids[0] if ids else None,
                                                          find_unused_parameters=True)
    else:
        model = trainer
    names = ("total", "functional", "mask", "spatial")
    for epoch in range(start_epoch, config.epochs):
        batches = rank_batches(order_rng.permutation(len(pairs)), config.batch_pairs, rank, world)
        sums = dict.fromkeys(names, 0.0)
        count = 0
        started = time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not config.progress or rank != 0)
        for indices in bar:
            items = [(features(pairs[i]), texts[pairs[i].function or ""]) for i in indices]
            batch, losses = model(items, rng)
            optimiser.zero_grad()
            batch.backward()
            optimiser.step()
            for l in losses:
                for name in names:
                    sums[name] += float(getattr(l, name).detach())
            count += len(losses)
            bar.set_postfix({k: f"{v / count:.3f}" for k, v in sums.items()})
        totals = distributed.all_reduce_sum([*(sums[n] for n in names), count])  # every rank's pairs
        count_all = max(totals[-1], 1.0)
        history.append({"epoch": epoch + 1, **{n: totals[i] / count_all for i, n in enumerate(names)},
                        "steps": len(batches), "pairs": int(totals[-1]), "seconds": time.perf_counter() - started})
        if rank == 0:
            _save_state(state_path, head, optimiser, epoch + 1, history)
    digests = distributed.replica_digests(head)  # DDP keeps the replicas equal; this proves it for the record
    result = {"history": history, "config": asdict(config), "functions": functions, "rank": rank,
              "world_size": world, "device": str(device), "head_sha1_per_rank": digests}
    if rank == 0:
        if len(set(digests)) > 1:
            warnings.warn(f"the head differs between ranks after training: {digests}", RuntimeWarning)
        saved = copy.deepcopy(head).cpu().eval()
        checkpoint = HeadCheckpoint(saved, backbone.spec.name, LAYERS, config.text_encoder, table,
                                    {"training": {"config": asdict(config), "history": history,
                                                  "distributed": {**ctx.describe(),
                                                                  "head_sha1_per_rank": digests},
                                                  "backbone_weights": backbone.describe()}})
        result["checkpoint"] = str(checkpoint.save(out))
        result["loss_curve"] = str(plot_losses(history, out.with_suffix(".loss.png")))
    result["head"] = head
    return result


def plot_losses(history: list[dict], path: Path) -> Path:
    from ..viz import save_line_plot
    epochs = [h["epoch"] for h in history]
    series = {name: (epochs, [h.get(name, 0.0) for h in history]) for name in ("total", "functional", "mask", "spatial")}
    return save_line_plot(series, path, "epoch", "loss", "functional head training")
