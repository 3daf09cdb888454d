"""Training the functional head as the released reference does (``cond_corr/train.py`` with
``configs/Dino_MLP1024_objaverse_semantic+spatial_NegNegLoss_partOnly_bgAug.yaml``), DDP-ready (torchrun).

Defaults are the reference's config: 100 epochs of 1000 steps; every step draws a full functional batch (50
pairs of images sharing a function, 128 part + 128 rest pixels each) *and* a full spatial batch (50 multi-view
pairs, 128 part-only correspondences each); loss ``(L_func + 1 L_mask + 10 L_spatial) / 12`` with tau 0.1
(:mod:`.losses`); AdamW, lr 1e-4 (torch's default weight decay 0.01); the background of every training image
replaced by a random solid colour / gradient / noise (:mod:`.data`); the last three raw blocks of the frozen
backbone; CLIP ViT-B/32 text embeddings (``auto``: MiniLM when CLIP cannot be had offline). The paper's
ablations are options: ``functional=False`` (spatial only), ``spatial=False`` (functional only),
``mask_head=False`` (no mask loss).

Several processes (``torchrun --nproc_per_node N -m correspondence.cli train functional ...``): rank k works on
``cuda:LOCAL_RANK`` (or the CPU with ``--device cpu``, Gloo), torch DDP averages the head's gradients. Every rank
draws the same global batches (the samplers are seeded alike) and takes its share (``ceil(P / N)`` pairs of each,
padded from the batch's start), so all ranks run the same steps; point sampling and backgrounds use per-rank
streams. The logged losses are means over every rank's steps; rank 0 alone writes the state file, checkpoint and
plot.
"""
from __future__ import annotations

import copy
import json
import os
import random
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
from .data import (TrainingSet, list_pairs, load_pairs, part_and_rest_points, replace_background,
                   spatial_points)
from .losses import W_MASK, W_SPATIAL, functional_loss, mask_loss, spatial_loss, total_loss
from .model import FunctionalHead, HeadConfig
from .text import AUTO, embed_functions, get_text_encoder

LAYERS = (-3, -2, -1)
SAMPLER_SEED = 10  # the reference's BatchSampler / SpatialBatchSampler seed


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    epochs: int = 100
    batches_per_epoch: int = 1000  # the reference's train_samples
    batch_pairs: int = 50  # pairs_per_batch (global, over all ranks), for each of the two batches
    points: int = 128  # num_points: part (and rest) pixels per image; correspondences per spatial pair
    lr: float = 1e-4
    weight_decay: float = 0.01  # torch.optim.AdamW's default, which the reference keeps
    temperature: float = 0.1
    w_mask: float = W_MASK
    w_spatial: float = W_SPATIAL
    functional: bool = True  # the functional-part batch ("semantic")
    spatial: bool = True  # the multi-view batch
    negneg: bool = True  # rest x rest negatives
    augment: bool = True  # the reference's aug_args (RandomMaskingAug: random backgrounds); False: white, as stored
    mask_head: bool = True
    image_size: int = 224
    text_encoder: str = AUTO
    hidden: int = 1024
    output: int = 256
    projection: int = 512
    seed: int = 1234
    device: str = "cpu"
    progress: bool = True


def block_extractor(backbone: LoadedBackbone, image_size: int, device: torch.device | str) -> FeatureExtractor:
    settings = ExtractionSettings(PreprocessSettings(pad="center-pad", size=image_size, pad_color=(0, 0, 0)),
                                  kind=OutputKind.BLOCKS, layers=LAYERS)
    return FeatureExtractor(backbone, settings, device=device, cache_size=0)


def _blocks(extractor: FeatureExtractor, images: list[np.ndarray], device) -> list[torch.Tensor]:
    """The frozen backbone's block maps of a batch, stacked per block: ``[(B, C, h, w)] * n_blocks``."""
    fmaps = extractor.extract_batch(images, cache=False)
    per_image = [fmap.blocks() for fmap in fmaps]
    return [torch.stack([blocks[k] for blocks in per_image]).to(device).float() for k in range(len(per_image[0]))]


class StepLoss(torch.nn.Module):
    """One step's loss in one forward call (so torch DDP sees exactly one forward per backward)."""

    def __init__(self, head: FunctionalHead, config: TrainConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.head = head
        self.config = config
        self.device = torch.device(device if device is not None else config.device)

    def _embed(self, blocks, co: np.ndarray, text: torch.Tensor):
        fused = self.head.fuse(blocks)
        co_t = torch.from_numpy(np.ascontiguousarray(co)).to(self.device)
        return self.head.embed_pixels(fused, co_t, text, self.config.image_size)

    def forward(self, functional: dict | None, spatial: dict | None):
        c = self.config
        l_func = l_mask = l_spatial = None
        if functional is not None:
            co = np.concatenate([functional["pos"], functional["neg"]], axis=1)  # (2P, 2n, 2) (col, row)
            emb, logits = self._embed(functional["blocks"], co, functional["text"])
            n = functional["pos"].shape[1]
            f0, f1 = emb[0::2], emb[1::2]
            l_func = functional_loss(f0[:, :n], f0[:, n:], f1[:, :n], f1[:, n:], c.temperature, c.negneg)
            if logits is not None:
                l_mask = mask_loss(logits[0::2, :n], logits[1::2, :n], logits[0::2, n:], logits[1::2, n:])
        if spatial is not None:
            e1, _ = self._embed(spatial["blocks1"], spatial["co1"], spatial["text"])
            e2, _ = self._embed(spatial["blocks2"], spatial["co2"], spatial["text"])
            l_spatial = spatial_loss(e1, e2, c.temperature)
        terms = total_loss(l_func, l_mask, l_spatial, c.w_mask, c.w_spatial)
        loss = terms.total
        # every parameter takes part in every step (DDP's all-reduce): unused ones (the mask head without a
        # functional batch) through an exact zero
        loss = loss + sum(p.sum() for p in self.head.parameters()) * 0.0
        return loss, terms


def rank_share(items: Sequence, rank: int, world: int) -> list:
    """This rank's share of one global batch (padded from its start, so every rank gets ``ceil(P / N)``)."""
    return distributed.padded_shard(list(items), rank, world)


def _save_state(path: Path, head: FunctionalHead, optimiser: torch.optim.Optimizer, epoch: int,
                history: list, samplers: dict) -> None:
    """Resumable state, written atomically (a killed run leaves the previous state, never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"head": head.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch,
                "history": json.dumps(history), "samplers": json.dumps(samplers)}, tmp)
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
    if config.batch_pairs < 1 or config.epochs < 0 or config.batches_per_epoch < 1 or config.points < 1:
        raise InputError(f"batch_pairs, batches_per_epoch and points must be >= 1 and epochs >= 0, got "
                         f"{config.batch_pairs}, {config.batches_per_epoch}, {config.points}, {config.epochs}")
    if not (config.functional or config.spatial):
        raise InputError("nothing to train: both the functional and the spatial batch are disabled")
    with distributed.session(config.device) as ctx:
        return _train(config, backbone, ctx)


def _sampler_state(rng: random.Random) -> list:
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def _set_sampler_state(rng: random.Random, state: list) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def _train(config: TrainConfig, backbone: LoadedBackbone, ctx: distributed.DistContext) -> dict:
    rank, world, device = ctx.rank, ctx.world_size, ctx.device
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + rank)  # points and backgrounds: different on every rank
    samplers = {"functional": random.Random(SAMPLER_SEED), "spatial": random.Random(SAMPLER_SEED)}  # same everywhere
    data = TrainingSet.build(load_pairs(list_pairs(config.data, "train")), config.image_size)
    if config.functional and not data.by_function:
        raise InputError(f"{config.data}: no function has {3} or more training images with a functional part")
    if config.spatial and not data.spatial:
        raise InputError(f"{config.data}: no multi-view pair has correspondences on its functional part")
    functions = data.functions
    with _library_bars(config.progress and rank == 0):
        encoder = get_text_encoder(config.text_encoder)
    table = distributed.broadcast_object(embed_functions(functions, encoder))  # rank 0's, bit for bit
    extractor = block_extractor(backbone, config.image_size, device)
    head = FunctionalHead(HeadConfig(backbone.spec.contract.feature_dim, encoder.dim, len(LAYERS),
                                     projection=config.projection, hidden=config.hidden, output=config.output,
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
        for name, sampler_state in json.loads(state.get("samplers", "{}")).items():
            _set_sampler_state(samplers[name], sampler_state)
    texts = {name: vector.to(device) for name, vector in table.items()}
    trainer = StepLoss(head, config, device)
    if ctx.enabled:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(trainer, device_ids=ids,
                                                          output_device=ids[0] if ids else None)
    else:
        model = trainer
    names = ("total", "functional", "mask", "spatial")
    n = config.points
    for epoch in range(start_epoch, config.epochs):
        sums = dict.fromkeys(names, 0.0)
        pairs_seen = 0
        started = time.perf_counter()
        head.train()
        bar = tqdm(range(config.batches_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress or rank != 0)
        for _ in bar:
            functional = spatial = None
            if config.functional:
                batch = rank_share(data.functional_batch(samplers["functional"], config.batch_pairs), rank, world)
                images, pos, neg, text = [], [], [], []
                for pair in batch:
                    for img in pair:
                        images.append(replace_background(img, rng) if config.augment else img.rgb)
                        p, q = part_and_rest_points(img, n, rng)
                        pos.append(p)
                        neg.append(q)
                        text.append(texts[img.function])
                functional = {"blocks": _blocks(extractor, images, device), "pos": np.stack(pos),
                              "neg": np.stack(neg), "text": torch.stack(text)}
                pairs_seen += len(batch)
            if config.spatial:
                batch = rank_share(data.spatial_batch(samplers["spatial"], config.batch_pairs), rank, world)
                co1, co2 = zip(*(spatial_points(p, n, rng) for p in batch))
                view = (lambda image: replace_background(image, rng)) if config.augment else (lambda image: image.rgb)
                spatial = {"blocks1": _blocks(extractor, [view(p.a) for p in batch], device),
                           "blocks2": _blocks(extractor, [view(p.b) for p in batch], device),
                           "co1": np.stack(co1), "co2": np.stack(co2),
                           "text": torch.stack([texts[p.function] for p in batch])}
                if not config.functional:
                    pairs_seen += len(batch)
            loss, terms = model(functional, spatial)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            for name in names:
                sums[name] += float(getattr(terms, name).detach())
            bar.set_postfix({k: f"{v / (bar.n + 1):.3f}" for k, v in sums.items()})
        totals = distributed.all_reduce_sum([*(sums[k] for k in names), pairs_seen])  # every rank's steps
        steps = config.batches_per_epoch
        history.append({"epoch": epoch + 1, **{k: totals[i] / (steps * world) for i, k in enumerate(names)},
                        "steps": steps, "pairs": int(totals[-1]), "seconds": time.perf_counter() - started})
        if rank == 0:
            _save_state(state_path, head, optimiser, epoch + 1, history,
                        {k: _sampler_state(v) for k, v in samplers.items()})
    digests = distributed.replica_digests(head)  # DDP keeps the replicas equal; this proves it for the record
    result = {"history": history, "config": asdict(config), "functions": functions, "rank": rank,
              "world_size": world, "device": str(device), "head_sha1_per_rank": digests,
              "text_encoder": encoder.name}
    if rank == 0:
        if len(set(digests)) > 1:
            warnings.warn(f"the head differs between ranks after training: {digests}", RuntimeWarning)
        saved = copy.deepcopy(head).cpu().eval()
        checkpoint = HeadCheckpoint(saved, backbone.spec.name, LAYERS, encoder.name, table,
                                    {"training": {"config": asdict(config), "history": history,
                                                  "text_encoder": encoder.name,
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
    series = {name: (epochs, [h.get(name, 0.0) for h in history])
              for name in ("total", "functional", "mask", "spatial")}
    return save_line_plot(series, path, "epoch", "loss", "functional head training")
