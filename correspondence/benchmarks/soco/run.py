"""``soco bench soco``: the whole benchmark run, from a dataset folder and a backbone to reports.

Under ``torchrun --nproc_per_node N -m correspondence.cli bench soco ...`` the image encoding is shared out: every
rank encodes its share of the images into rank 0's feature store, then rank 0 alone evaluates and writes the
reports (the same numbers as one process); the other ranks return as soon as their images are handed over.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path

import torch

from ... import distributed
from ...backbones import LoadedBackbone
from ...features import FeatureExtractor
from .evaluator import EvaluationRun, FeatureSource, evaluate
from .features_store import FeatureStore
from .loader import SocoPairs
from .protocol import ProtocolSettings
from .report import summarise, write_reports


@dataclass(frozen=True)
class SocoBenchConfig:
    root: str
    out: str
    pair_types: tuple[str, ...] = ("intra", "cross")
    categories: tuple[str, ...] | None = None
    supercategories: tuple[str, ...] | None = None
    max_pairs_per_category: int | None = None
    feature_cache: str | None = None
    progress: bool = True
    linear_probe: bool = False
    four_choice: bool = False
    seed: int = 0


def dataset_counts(sets: dict[str, SocoPairs]) -> dict:
    return {kind: {"pairs": len(pairs), "groups": len({p.parent.name for p in pairs.paths})}
            for kind, pairs in sets.items()}


def _linear_probe(config: SocoBenchConfig, settings: ProtocolSettings, features: FeatureSource, root: Path) -> dict:
    """Train the probe on trainsplits/train, evaluate base and probed features on trainsplits/test."""
    from dataclasses import replace as dc_replace

    from .probe import ProbeConfig, probe_record, train_probe
    from .reductions import overall

    train = list(SocoPairs(root, "train", config.categories, config.supercategories, config.max_pairs_per_category))
    test = list(SocoPairs(root, "test", config.categories, config.supercategories, config.max_pairs_per_category))
    probe_config = ProbeConfig(seed=config.seed)
    probe, losses = train_probe(train, features, probe_config, progress=config.progress)
    path = probe.save(Path(config.out) / "linear_probe.safetensors", probe_record(probe_config, losses, len(train)))
    test_settings = dc_replace(settings, tasks=("cc", "soc"))
    out = {"probe_path": str(path), **probe_record(probe_config, losses, len(train)), "test_pairs": len(test)}
    for name, source in (("base", features), ("probe", probe.wrap(features))):
        run = evaluate(test, source, test_settings, progress=False)
        out[name] = {task: {f"{a:g}": overall(run.records, task, i, settings.reduction)
                            for i, a in enumerate(settings.alphas)} for task in ("cc", "soc")}
    return out


def _views_needed(config: SocoBenchConfig, sets: dict[str, SocoPairs], root: Path) -> list:
    """Every image the run will ask the feature store for (evaluation, probe splits, 4-choice)."""
    lists = list(sets.values())
    if config.linear_probe:
        lists += [SocoPairs(root, split, config.categories, config.supercategories, config.max_pairs_per_category)
                  for split in ("train", "test")]
    if config.four_choice and "intra" not in sets:
        lists.append(SocoPairs(root, "intra", config.categories, None, config.max_pairs_per_category))
    return [view for pairs in lists for pair in pairs for view in (pair.source, pair.target)]


def run_soco_benchmark(config: SocoBenchConfig, settings: ProtocolSettings, backbone: LoadedBackbone | None = None,
                       features: FeatureSource | None = None, label: str | None = None, device: str = "cpu",
                       dtype: str = "float32") -> dict:
    """Evaluate ``backbone`` (or any ``features`` source, e.g. an oracle) and write the reports.

    ``dtype``: the backbone's precision (float16 / bfloat16 autocast on CUDA: several times the throughput, not
    the reference's fp32, so the numbers may move slightly; recorded in results.json).

    Under torchrun every rank calls this; ranks other than 0 return ``{"rank": r, ...}`` without a summary."""
    with distributed.session(device) as ctx:
        return _run(config, settings, backbone, features, label, ctx, dtype)


def _run(config: SocoBenchConfig, settings: ProtocolSettings, backbone: LoadedBackbone | None,
         features: FeatureSource | None, label: str | None, ctx: distributed.DistContext,
         dtype: str = "float32") -> dict:
    root = Path(config.root)
    progress = config.progress and ctx.is_main
    wanted = [t for t in config.pair_types if t != "cross" or "cross" in settings.tasks or "cc" in settings.tasks]
    sets = {kind: SocoPairs(root, kind, config.categories if kind != "cross" else None, config.supercategories,
                            config.max_pairs_per_category) for kind in wanted}
    store = None
    if features is None:
        if backbone is None:
            raise ValueError("give a backbone or a feature source")
        extractor = FeatureExtractor(backbone, replace(settings.extraction(), dtype=dtype), device=ctx.device,
                                     cache_size=0, batch_size=16 if ctx.device.type == "cuda" else 8)
        store = FeatureStore(extractor, config.feature_cache)
        features = store
        record_backbone = extractor.describe()
    else:
        record_backbone = {"backbone": {"name": label or "custom feature source"}}
    start = time.perf_counter()
    if store is not None:  # batched prefetch; under torchrun shared out, and rank 0 ends up holding every map
        store.encode_distributed(_views_needed(config, sets, root), progress=progress)
    if not ctx.is_main:
        return {"rank": ctx.rank, "world_size": ctx.world_size}
    total = sum(len(s) for s in sets.values())
    run: EvaluationRun = evaluate(chain.from_iterable(sets.values()), features, settings, total=total,
                                  progress=progress)
    wall = time.perf_counter() - start
    summary = summarise(run, root)
    if config.linear_probe:
        summary["linear_probe"] = _linear_probe(replace(config, progress=progress), settings, features, root)
    if config.four_choice:
        from .four_choice import evaluate_backbone, evaluate_random
        pairs = list(sets.get("intra") or SocoPairs(root, "intra", config.categories, None,
                                                     config.max_pairs_per_category))
        summary["four_choice"] = {"backbone": evaluate_backbone(pairs, features, config.seed),
                                  "random++": evaluate_random(pairs, config.seed, consistent=True),
                                  "random": evaluate_random(pairs, config.seed, consistent=False)}
    timing = {"wall_seconds": wall, "pairs_per_second": run.pairs / wall if wall > 0 else None,
              "ranks": ctx.world_size}
    if store is not None:
        stats = store.stats
        per_image = stats.encode_seconds / max(stats.encoded, 1)
        matching_only = max(wall - stats.encode_seconds / ctx.world_size, 0.0)
        naive = 2 * run.pairs * per_image + matching_only  # encoding both images of every pair, one process
        timing.update(images_encoded=stats.encoded, cache_hits=stats.hits, disk_hits=stats.disk_hits,
                      encode_seconds=stats.encode_seconds, seconds_per_image=per_image,
                      estimated_seconds_encoding_per_pair=naive, caching_speedup=naive / wall if wall > 0 else None)
    name = label or record_backbone["backbone"]["name"]
    record = {"dataset": {"root": str(root.resolve()), "counts": dataset_counts(sets)},
              "protocol": settings.as_dict(), "features": record_backbone, "timing": timing,
              "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
              "label": name}
    paths = write_reports(run, summary, record, Path(config.out), name)
    return {"summary": summary, "timing": timing, "paths": {k: str(v) for k, v in paths.items()}, "run": run}
