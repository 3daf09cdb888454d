"""Linear probe on SOCO's trainsplits, trained as the released reference trains it.

Reference: GenIntel/OmniProbe ``omniprobe/scripts/eval_correspondence_linear_probe_soco.py`` (``run_task``,
``train_probe_epoch``, ``compute_batch_training_loss``) with ``configs/task/correspondence_soco_linear_probe.yaml``,
``omniprobe/models/correspondence_probe.py`` (``LinearCorrespondenceProbe``) and ``omniprobe/datasets/soco.py``.
Every convention is listed in ``docs/soco.md`` ("Linear probe") and pinned by ``tests/test_soco_probe_parity.py``.

One training step, as the reference takes it: the probe ``Linear(C, C)`` (identity weight, zero bias) maps the
frozen raw maps of every image of the batch (sources, then targets); each probed map is L2-normalised per cell;
for each pair with exact (SOC) matches, the source keypoints are sampled from the normalised source map at the
zero-shot protocol's truncated coordinates (bilinear, ``align_corners=True``, used as sampled), scored against
every target cell (``q . f / 0.07``) and labelled with the target cell ``round(p / S * (w - 1))`` (float32, half to
even, clamped); cross-entropy is averaged over the pair's keypoints, then over the batch's pairs that have any.
Batches come from the reference's ``DataLoader`` (32 pairs, shuffled by a generator seeded 8, the last short batch
dropped when the split has more pairs than a batch; pairs without SOC matches keep their slot and add nothing).
Adam (lr 1e-3, no weight decay), cosine annealing to 1 % of the lr stepped once per epoch, 4 epochs.

The reference evaluates on the test split after every epoch and keeps the best epoch; that is
``epoch_selection="best-on-test"`` here (what produced the published numbers). The default, ``"last"``, keeps the
last epoch, so the test split never chooses anything.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ...errors import ConfigError, InputError
from ...features import FeatureMap
from .evaluator import FeatureSource
from .loader import SocoPair
from .protocol import ProtocolSettings
from .reference import Frame

EPOCH_SELECTION = ("last", "best-on-test")


@dataclass(frozen=True)
class ProbeConfig:
    """The reference's recipe (``correspondence_soco_linear_probe.yaml``: ``train.*``, ``random_seed``, ``thresh``).

    ``epoch_selection``: ``"last"`` (default; the test split chooses nothing) or ``"best-on-test"`` (the reference:
    after every epoch the probe is evaluated on ``trainsplits/test`` and the epoch with the best mean of SOC and CC
    recall at ``thresh``, keypoints pooled over the split, is kept). ``seed`` seeds the batch shuffling."""

    epochs: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_pairs: int = 32
    temperature: float = 0.07
    cosine_schedule: bool = True  # use_scheduler: CosineAnnealingLR(T_max=epochs), stepped once per epoch
    eta_min_fraction: float = 0.01  # eta_min = lr * 0.01
    seed: int = 8  # random_seed of the task config
    epoch_selection: str = "last"
    thresh: float = 0.1  # the selection metric's alpha (the reference's cfg.thresh)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_pairs < 1:
            raise ConfigError(f"probe epochs and batch_pairs must be >= 1, got {self.epochs} and {self.batch_pairs}")
        if self.lr <= 0 or self.temperature <= 0 or self.weight_decay < 0:
            raise ConfigError(f"probe lr and temperature must be > 0 and weight_decay >= 0, got lr {self.lr}, "
                              f"temperature {self.temperature}, weight_decay {self.weight_decay}")
        if not 0 <= self.eta_min_fraction <= 1:
            raise ConfigError(f"eta_min_fraction must be in [0, 1], got {self.eta_min_fraction}")
        if self.epoch_selection not in EPOCH_SELECTION:
            raise ConfigError(f"epoch_selection must be one of {EPOCH_SELECTION}, got {self.epoch_selection!r}")
        if self.thresh <= 0:
            raise ConfigError(f"thresh must be > 0, got {self.thresh}")


class LinearProbe(torch.nn.Module):
    """The reference's ``LinearCorrespondenceProbe`` (``init_mode="identity"``, bias): ``Linear(C, C)`` over the
    channels of every cell, identity weight and zero bias to start, so the untrained probe is the frozen features.
    Its output is not normalised: the protocol normalises it (training: :func:`unit_maps`; evaluation: the
    evaluator, as for any feature map)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(dim, dim)
        with torch.no_grad():
            torch.nn.init.eye_(self.linear.weight)
            torch.nn.init.zeros_(self.linear.bias)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``(C, h, w)`` or ``(B, C, h, w)`` -> the same shape: channels last, linear, channels first again (the
        reference's permutes, so the result has its memory layout too)."""
        if maps.dim() not in (3, 4):
            raise InputError(f"a probe maps (C, h, w) or (B, C, h, w) features, got shape {tuple(maps.shape)}")
        first = maps.dim() - 3
        order = tuple(range(first)) + (first + 1, first + 2, first)
        back = tuple(range(first)) + (first + 2, first, first + 1)
        return self.linear(maps.float().permute(order)).permute(back)

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


# ---- training samples -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainingPair:
    """One pair of the train split. ``grid``/``labels`` are None for a pair without SOC matches: it still takes its
    slot in a batch (the reference's dataset holds every pair file) but adds no loss."""

    pair: SocoPair
    grid: torch.Tensor | None  # (K, 2) float32 grid_sample coordinates of the source keypoints
    labels: torch.Tensor | None  # (K,) int64 flat index of each target keypoint's cell


def label_cells(frame: Frame, fmap: FeatureMap, xy: np.ndarray) -> torch.Tensor:
    """The reference's labels: the cell ``round(f * (w - 1))``, ``round(g * (h - 1))`` of each target keypoint at
    fraction ``(f, g)`` of the processed side, in float32 with torch's half-to-even rounding, clamped to the grid.
    (Under ``arithmetic="reference"`` the fractions are the zero-shot protocol's truncated ``p / S``.)"""
    w, h = fmap.grid_wh
    if frame.reference:
        fractions = frame.points(xy)
    else:
        processed = fmap.geometry.to_processed(np.asarray(frame.points(xy), dtype=np.float64))
        fractions = torch.from_numpy(processed / np.asarray(fmap.processed_wh, dtype=np.float64)).float()
    col = (fractions[:, 0] * (w - 1)).round().long().clamp(0, w - 1)
    row = (fractions[:, 1] * (h - 1)).round().long().clamp(0, h - 1)
    return row * w + col


def training_pair(pair: SocoPair, features: FeatureSource, settings: ProtocolSettings) -> TrainingPair:
    """Where a pair's source keypoints are sampled and which target cells they should hit (SOC matches only)."""
    if not pair.semantic_matches:
        return TrainingPair(pair, None, None)
    source, target = features(pair.source), features(pair.target)
    src_xy = np.array([pair.source.keypoints[m.source_indices[0]].xy for m in pair.semantic_matches])
    trg_xy = np.array([pair.target.keypoints[m.target_indices[0]].xy for m in pair.semantic_matches])
    grid = Frame(source, pair.source, settings).query_grid(src_xy)
    return TrainingPair(pair, grid, label_cells(Frame(target, pair.target, settings), target, trg_xy))


# ---- one step ---------------------------------------------------------------------------------------------------

def unit_maps(probe: LinearProbe, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Probed maps, L2-normalised per cell. Maps of one shape go through the probe as one batch, as the reference
    sends ``cat([sources, targets])`` (the same gradient sums, so the same rounding); others one at a time."""
    if len({tuple(m.shape) for m in maps}) == 1:
        return list(F.normalize(probe(torch.stack(list(maps))), p=2, dim=1).unbind(0))
    return [F.normalize(probe(m), p=2, dim=0) for m in maps]


def pair_loss(source: torch.Tensor, target: torch.Tensor, item: TrainingPair, temperature: float) -> torch.Tensor:
    """Cross-entropy of each source keypoint's query (sampled from the normalised map, not re-normalised) against
    every target cell, averaged over the pair's keypoints."""
    grid = item.grid.to(source.device)[None, None]
    query = F.grid_sample(source[None], grid, mode="bilinear", align_corners=True)[0, :, 0].t()
    c, h, w = target.shape
    logits = torch.mm(query, target.reshape(c, h * w)) / temperature
    return F.cross_entropy(logits, item.labels.to(source.device))


def batch_loss(probe: LinearProbe, batch: Sequence[TrainingPair], features: FeatureSource,
               temperature: float) -> torch.Tensor | None:
    """The mean of the pair losses of the batch's pairs with SOC matches; None when none has any."""
    if all(item.grid is None for item in batch):
        return None
    maps = [features(item.pair.source).features for item in batch] + \
           [features(item.pair.target).features for item in batch]
    probed = unit_maps(probe, maps)
    n = len(batch)
    losses = [pair_loss(probed[i], probed[n + i], item, temperature)
              for i, item in enumerate(batch) if item.grid is not None]
    return sum(losses) / len(losses) if losses else None


def epoch_loader(n_pairs: int, batch_pairs: int, seed: int) -> DataLoader:
    """The reference's ``DataLoader`` over the split's pair indices: ``min(batch_pairs, n)`` per batch, shuffled by a
    generator seeded ``seed`` and kept across epochs (each epoch draws the workers' base seed, then a permutation),
    the last short batch dropped when the split has more pairs than a batch."""
    size = min(batch_pairs, n_pairs)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(range(n_pairs), batch_size=size, shuffle=True, drop_last=n_pairs > size, generator=generator,
                      collate_fn=list)


def epoch_batches(loader: DataLoader) -> list[list[int]]:
    """One epoch's batches from exactly one iterator of ``loader``, as the reference's loop takes them. (Each
    iterator draws from the shared generator; a progress bar that opens its own, as ``tqdm.auto``'s does, would
    shift every later permutation, so the bar goes around this list, never around the loader.)"""
    return list(loader)


# ---- training ---------------------------------------------------------------------------------------------------

EpochScore = Callable[[LinearProbe], tuple[float, float]]  # probe -> (SOC recall, CC recall) on the test split


def selection_score(soc: float, cc: float) -> float:
    """The reference's validation metric: the mean of SOC and CC recall, or SOC recall alone when either is NaN."""
    return (soc + cc) / 2 if not (math.isnan(soc) or math.isnan(cc)) else soc


@dataclass
class BestEpoch:
    """The reference's selection: the best score so far, from 0, replaced only by a strictly better one (so an
    epoch that never beats 0, e.g. a NaN score, is never chosen and the last epoch stays)."""

    score: float = 0.0
    epoch: int | None = None
    state: dict | None = None

    def offer(self, epoch: int, score: float, probe: LinearProbe) -> None:
        if score > self.score:
            self.score, self.epoch = score, epoch
            self.state = {k: v.detach().cpu().clone() for k, v in probe.state_dict().items()}

    def restore(self, probe: LinearProbe) -> int | None:
        """Load the best epoch's weights into ``probe``; its epoch, or None when no epoch was kept."""
        if self.state is not None:
            probe.load_state_dict(self.state)
        return self.epoch


@dataclass
class ProbeTraining:
    """A trained probe and what its training did (losses as the reference logs them)."""

    probe: LinearProbe
    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)  # AverageMeter: batch losses weighted by batch size
    epoch_scores: list[dict] = field(default_factory=list)  # best-on-test: SOC, CC and their mean per epoch
    selected_epoch: int = 0
    pairs: int = 0
    pairs_with_soc: int = 0
    pairs_per_epoch: int = 0  # after drop_last
    steps_per_epoch: int = 0

    def record(self) -> dict:
        return {"train_pairs": self.pairs, "train_pairs_with_soc": self.pairs_with_soc,
                "pairs_per_epoch": self.pairs_per_epoch, "batches_per_epoch": self.steps_per_epoch,
                "epoch_losses": self.epoch_losses, "epoch_test_scores": self.epoch_scores,
                "selected_epoch": self.selected_epoch}


def _run_epoch(probe: LinearProbe, items: list[TrainingPair], loader: DataLoader, features: FeatureSource,
               optimiser: torch.optim.Optimizer, temperature: float, progress: bool, epoch: int
               ) -> tuple[list[float], float]:
    """One pass over the loader: the step losses and the epoch loss as the reference's ``AverageMeter`` has it."""
    steps, weighted, count = [], 0.0, 0
    for indices in tqdm(epoch_batches(loader), desc=f"probe epoch {epoch}", disable=not progress):
        optimiser.zero_grad()
        loss = batch_loss(probe, [items[i] for i in indices], features, temperature)
        if loss is None:  # no pair of the batch has a SOC match: no step, as the reference
            continue
        loss.backward()
        optimiser.step()
        value = loss.item()
        steps.append(value)
        weighted, count = weighted + value * len(indices), count + len(indices)
    return steps, weighted / count if count else 0.0


def train_probe(pairs: Sequence[SocoPair], features: FeatureSource, settings: ProtocolSettings,
                config: ProbeConfig = ProbeConfig(), progress: bool = True,
                score_epoch: EpochScore | None = None) -> ProbeTraining:
    """Train on ``pairs`` (the train split, in the reference's dataset order). ``score_epoch`` is required with
    ``epoch_selection="best-on-test"``: it evaluates the probe on the test split after every epoch."""
    if config.epoch_selection == "best-on-test" and score_epoch is None:
        raise ConfigError("epoch_selection='best-on-test' needs score_epoch (the test-split evaluation)")
    items = [training_pair(p, features, settings) for p in tqdm(pairs, desc="probe pairs", disable=not progress)]
    if not any(item.grid is not None for item in items):
        raise InputError("no training pair has a semantic (SOC) match")
    first = features(items[0].pair.source).features
    probe = LinearProbe(int(first.shape[0])).to(first.device)  # train where the features are
    optimiser = torch.optim.Adam(probe.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs,
                                                           eta_min=config.lr * config.eta_min_fraction)
                if config.cosine_schedule else None)
    loader = epoch_loader(len(items), config.batch_pairs, config.seed)
    out = ProbeTraining(probe, pairs=len(items), pairs_with_soc=sum(i.grid is not None for i in items),
                        pairs_per_epoch=len(loader) * loader.batch_size, steps_per_epoch=len(loader))
    best = BestEpoch()
    for epoch in range(1, config.epochs + 1):
        steps, epoch_loss = _run_epoch(probe, items, loader, features, optimiser, config.temperature, progress, epoch)
        out.step_losses += steps
        out.epoch_losses.append(epoch_loss)
        if schedule is not None:
            schedule.step()
        if config.epoch_selection == "best-on-test":
            soc, cc = score_epoch(probe)
            out.epoch_scores.append({"epoch": epoch, "soc": soc, "cc": cc, "score": selection_score(soc, cc)})
            best.offer(epoch, selection_score(soc, cc), probe)
    out.selected_epoch = best.restore(probe) or config.epochs
    probe.eval()
    return out


def _optimiser_text(config: ProbeConfig) -> str:
    text = f"Adam(lr={config.lr:g}, weight_decay={config.weight_decay:g})"
    if config.cosine_schedule:
        text += (f", CosineAnnealingLR(T_max={config.epochs}, eta_min={config.lr * config.eta_min_fraction:g}) "
                 "stepped per epoch")
    return text


def recipe_record(config: ProbeConfig) -> dict:
    """What ran, for results.json: the recipe and, in words, each of its conventions."""
    return {**asdict(config),
            "source": "GenIntel/OmniProbe omniprobe/scripts/eval_correspondence_linear_probe_soco.py, "
                      "configs/task/correspondence_soco_linear_probe.yaml",
            "probe": "Linear(C, C), identity weight, zero bias; output L2-normalised per cell",
            "loss": f"cross-entropy over every target cell, temperature {config.temperature:g}, label "
                    "round(p / S * (w - 1)), SOC matches; mean over keypoints, then over pairs",
            "optimiser": _optimiser_text(config),
            "batches": f"DataLoader(batch_size=min({config.batch_pairs}, n), shuffle, generator seed {config.seed}, "
                       "drop_last when n > batch_size)",
            "reference_epoch_selection": "best-on-test"}
