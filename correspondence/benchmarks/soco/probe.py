"""Linear probe on SOCO's trainsplits: a shared ``Linear(C, C)`` on frozen dense features, initialised to the
identity, trained with cross-entropy over all target cells (temperature 0.07) on the exact (SOC) matches.

Recipe as in the reference (OmniProbe): Adam 1e-3, cosine schedule to 1% over 4 epochs stepped per epoch,
batches of 32 pairs, label = the target cell nearest the target keypoint (``round(x * (W - 1))``). Unlike the
reference, no epoch is selected on the test split: the last epoch is evaluated.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...coords import grid_to_normalised
from ...errors import InputError
from ...features import FeatureMap
from .evaluator import FeatureSource, reference_targets
from .loader import SocoPair


@dataclass(frozen=True)
class ProbeConfig:
    epochs: int = 4
    lr: float = 1e-3
    batch_pairs: int = 32
    temperature: float = 0.07
    seed: int = 0


class LinearProbe(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.zero_()

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """``(C, h, w)`` -> probed, L2-normalised ``(C, h, w)``."""
        c, h, w = grid.shape
        out = self.linear(grid.float().reshape(c, -1).T).T.reshape(c, h, w)
        return F.normalize(out, dim=0)

    def wrap(self, features: FeatureSource) -> FeatureSource:
        """A feature source that applies the probe (for the evaluator), on the probe's device."""
        device = self.linear.weight.device

        def probed(view) -> FeatureMap:
            fmap = features(view)
            with torch.no_grad():
                return replace(fmap, features=self(fmap.features.to(device)))
        return probed

    def save(self, path: str | Path, record: dict) -> Path:
        from safetensors.torch import save_file
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(path))
        path.with_suffix(".json").write_text(json.dumps({"dim": self.linear.in_features, **record}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LinearProbe":
        from safetensors.torch import load_file
        path = Path(path)
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise InputError(f"probe {str(path)!r} (and its .json) not found")
        probe = cls(int(json.loads(meta_path.read_text())["dim"]))
        probe.load_state_dict(load_file(str(path)))
        return probe


def _training_items(pair: SocoPair, features: FeatureSource) -> tuple | None:
    if not pair.semantic_matches:
        return None
    source, target = features(pair.source), features(pair.target)
    s = [m.source_indices[0] for m in pair.semantic_matches]
    t = [m.target_indices[0] for m in pair.semantic_matches]
    src_xy = np.array([pair.source.keypoints[i].xy for i in s])
    trg_xy = reference_targets(target, np.array([pair.target.keypoints[i].xy for i in t]))
    grid = torch.from_numpy(grid_to_normalised(source.original_to_grid(src_xy), source.grid_wh)).float()
    w, h = target.grid_wh
    processed = target.geometry.to_processed(trg_xy) / np.array(target.processed_wh)
    labels = (np.round(processed[:, 1] * (h - 1)) * w + np.round(processed[:, 0] * (w - 1))).astype(np.int64)
    return source.features, target.features, grid, torch.from_numpy(np.clip(labels, 0, w * h - 1))


def train_probe(pairs: list[SocoPair], features: FeatureSource, config: ProbeConfig = ProbeConfig(),
                progress: bool = True) -> tuple[LinearProbe, list[float]]:
    """Returns the trained probe and the mean loss per epoch."""
    items = [item for item in (_training_items(p, features) for p in tqdm(pairs, desc="probe features",
                                                                            disable=not progress)) if item]
    if not items:
        raise InputError("no training pair has a semantic (SOC) match")
    device = items[0][0].device  # train where the features are (a GPU feature store: on that GPU)
    items = [tuple(t.to(device) for t in item) for item in items]
    torch.manual_seed(config.seed)
    probe = LinearProbe(int(items[0][0].shape[0])).to(device)
    optimiser = torch.optim.Adam(probe.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs, eta_min=0.01 * config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(items), generator=generator).tolist()
        total, batches = 0.0, 0
        for start in tqdm(range(0, len(order), config.batch_pairs), desc=f"probe epoch {epoch + 1}",
                          disable=not progress):
            batch_loss = []
            for index in order[start:start + config.batch_pairs]:
                src, trg, grid, labels = items[index]
                ps, pt = probe(src), probe(trg)
                query = F.grid_sample(ps[None], grid[None, None], mode="bilinear", align_corners=True)[0, :, 0].T
                logits = F.normalize(query, dim=1) @ pt.reshape(pt.shape[0], -1) / config.temperature
                batch_loss.append(F.cross_entropy(logits, labels))
            loss = torch.stack(batch_loss).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, batches = total + float(loss.detach()), batches + 1
        schedule.step()
        losses.append(total / max(batches, 1))
    return probe.eval(), losses


def probe_record(config: ProbeConfig, losses: list[float], n_pairs: int) -> dict:
    return {"config": asdict(config), "epoch_losses": losses, "train_pairs": n_pairs}
