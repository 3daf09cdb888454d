"""Training the functional head: functional-part InfoNCE + multi-view spatial InfoNCE + mask BCE,
``(L_func + 1 L_mask + 10 L_spatial) / 12``, AdamW 1e-4, batches of pairs, resumable, DDP-ready (torchrun)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

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


def block_extractor(backbone: LoadedBackbone, image_size: int, device: str) -> FeatureExtractor:
    settings = ExtractionSettings(PreprocessSettings(pad="center-pad", size=image_size, pad_color=(0, 0, 0)),
                                  kind=OutputKind.BLOCKS, layers=LAYERS)
    return FeatureExtractor(backbone, settings, device=device, cache_size=0)


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def pair_loss(module: FunctionalHead, encoded, text: torch.Tensor, config: TrainConfig, rng: np.random.Generator,
              device: str) -> dict[str, torch.Tensor]:
    """Loss terms of one training pair (functional: part InfoNCE + mask; multiview: + spatial InfoNCE)."""
    pair = encoded.pair
    fa = module.fuse([b[None].to(device) for b in encoded.fmap_a.blocks()])
    fb = module.fuse([b[None].to(device) for b in encoded.fmap_b.blocks()])
    terms: dict[str, torch.Tensor] = {}
    xa = sample_pixels(pair.mask_a, config.points, rng, pair.function_a)
    xb = sample_pixels(pair.mask_b, config.points, rng, pair.function_b)
    if len(xa) and len(xb):
        ea, la = module.embed(fa, grid_of(encoded.fmap_a, xa)[None].to(device), text[None])
        eb, lb = module.embed(fb, grid_of(encoded.fmap_b, xb)[None].to(device), text[None])
        part_a = torch.from_numpy(pair.function_a[xa[:, 1].astype(int), xa[:, 0].astype(int)]).to(device)
        part_b = torch.from_numpy(pair.function_b[xb[:, 1].astype(int), xb[:, 0].astype(int)]).to(device)
        terms["functional"] = functional_part_loss(ea[0], part_a, eb[0], part_b, config.temperature)
        if la is not None:
            terms["mask"] = 0.5 * (mask_loss(la[0], part_a) + mask_loss(lb[0], part_b))
    if pair.kind == "multiview" and len(pair.xy_a) >= 2:
        pick = rng.choice(len(pair.xy_a), min(config.points, len(pair.xy_a)), replace=False)
        ea, _ = module.embed(fa, grid_of(encoded.fmap_a, pair.xy_a[pick])[None].to(device), text[None])
        eb, _ = module.embed(fb, grid_of(encoded.fmap_b, pair.xy_b[pick])[None].to(device), text[None])
        terms["spatial"] = spatial_loss(ea[0], eb[0], config.temperature)
    return terms


class BatchLoss(torch.nn.Module):
    """The whole batch's loss in one forward call, so torch DDP sees exactly one forward per backward and
    all-reduces the gradients of the head across ranks."""

    def __init__(self, head: FunctionalHead, config: TrainConfig) -> None:
        super().__init__()
        self.head = head
        self.config = config

    def forward(self, batch: list, rng: np.random.Generator) -> tuple[torch.Tensor, list]:
        device = self.config.device
        zero = torch.zeros((), device=device)
        losses = []
        for encoded, text in batch:
            terms = pair_loss(self.head, encoded, text, self.config, rng, device)
            losses.append(total_loss(terms.get("functional", zero), terms.get("mask", zero),
                                     terms.get("spatial", zero)))
        return torch.stack([l.total for l in losses]).mean(), losses


def train_head(config: TrainConfig, backbone: LoadedBackbone) -> dict:
    rank, world = _distributed()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + rank)
    pairs = load_pairs(list_pairs(config.data, "train"))
    if not pairs:
        raise InputError(f"{config.data}: the train split is empty")
    functions = sorted({p.function for p in pairs if p.function})
    encoder = get_text_encoder(config.text_encoder)
    table = embed_functions(functions, encoder)
    extractor = block_extractor(backbone, config.image_size, config.device)
    features = PairFeatures(extractor, config.augment_prob, config.seed + rank)
    head = FunctionalHead(HeadConfig(backbone.spec.contract.feature_dim, encoder.dim, len(LAYERS),
                                     hidden=config.hidden, output=config.output,
                                     mask_head=config.mask_head)).to(config.device)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    out = Path(config.out)
    state_path = out.with_suffix(".train_state.pt")
    start_epoch, history = 0, []
    if state_path.is_file():  # resume
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        start_epoch, history = int(state["epoch"]), json.loads(state["history"])
    trainer = BatchLoss(head, config)
    model = (torch.nn.parallel.DistributedDataParallel(trainer, find_unused_parameters=True) if world > 1
             else trainer)
    mine = pairs[rank::world]
    for epoch in range(start_epoch, config.epochs):
        order = rng.permutation(len(mine))
        sums: dict[str, float] = {}
        count = 0
        started = time.perf_counter()
        bar = tqdm(range(0, len(order), config.batch_pairs), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not config.progress or rank != 0)
        for start in bar:
            items = [(features(mine[i]), table[mine[i].function].to(config.device))
                     for i in order[start:start + config.batch_pairs]]
            batch, losses = model(items, rng)
            optimiser.zero_grad()
            batch.backward()
            optimiser.step()
            for l in losses:
                for name in ("total", "functional", "mask", "spatial"):
                    sums[name] = sums.get(name, 0.0) + float(getattr(l, name).detach())
            count += len(losses)
            bar.set_postfix({k: f"{v / count:.3f}" for k, v in sums.items()})
        history.append({"epoch": epoch + 1, **{k: v / max(count, 1) for k, v in sums.items()},
                        "seconds": time.perf_counter() - started})
        if rank == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"head": head.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch + 1,
                        "history": json.dumps(history)}, state_path)
    result = {"history": history, "config": asdict(config), "functions": functions}
    if rank == 0:
        checkpoint = HeadCheckpoint(head.eval(), backbone.spec.name, LAYERS, config.text_encoder, table,
                                    {"training": {"config": asdict(config), "history": history,
                                                  "backbone_weights": backbone.describe()}})
        result["checkpoint"] = str(checkpoint.save(out))
        result["loss_curve"] = str(plot_losses(history, out.with_suffix(".loss.png")))
    return result


def plot_losses(history: list[dict], path: Path) -> Path:
    from ..viz import save_line_plot
    epochs = [h["epoch"] for h in history]
    series = {name: (epochs, [h.get(name, 0.0) for h in history]) for name in ("total", "functional", "mask", "spatial")}
    return save_line_plot(series, path, "epoch", "loss", "functional head training")
