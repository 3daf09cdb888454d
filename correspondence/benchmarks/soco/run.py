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
from ...errors import InputError
from ...features import FeatureExtractor
from .evaluator import EvaluationRun, FeatureSource, evaluate
from .features_store import FeatureStore, StoreStats
from .loader import SocoPairs
from .probe import ProbeConfig
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
    probe: ProbeConfig = ProbeConfig()  # the reference's recipe (last epoch; "best-on-test" as the paper chose)
    four_choice: bool = False
    seed: int = 0
    subsets: str | None = None  # None: the pair folders (with the filters above); "released"; or a list file
    paper_tables: str | None = None  # folder of the published tables (default: found next to the project)
    paper_model: str | None = None  # the published row to show (default: matched by backbone name)


def dataset_counts(sets: dict[str, SocoPairs]) -> dict:
    return {kind: {"pairs": len(pairs), "groups": len({p.parent.name for p in pairs.paths})}
            for kind, pairs in sets.items()}


def _linear_probe(config: SocoBenchConfig, settings: ProtocolSettings, features: FeatureSource, root: Path) -> dict:
    """Train the probe on trainsplits/train and score it on trainsplits/test, as the reference does (see
    :mod:`.probe` and :mod:`.probe_eval`); the record says which recipe ran."""
    from . import probe_eval
    from .probe import recipe_record, train_probe

    recipe = config.probe
    train = list(SocoPairs(root, "train", config.categories, config.supercategories, config.max_pairs_per_category))
    test = list(SocoPairs(root, "test", config.categories, config.supercategories, config.max_pairs_per_category))
    if not test:
        raise InputError(f"{root}: trainsplits/test has no pair to evaluate the probe on")
    test_settings = probe_eval.evaluation_settings(settings, recipe.thresh)
    classes = probe_eval.by_class(test)

    def score_epoch(probe) -> tuple[float, float]:
        records = probe_eval.evaluate_classes(classes, probe.wrap(features), test_settings)
        return probe_eval.selection_recalls(records, test_settings, recipe.thresh)

    training = train_probe(train, features, settings, recipe, progress=config.progress,
                           score_epoch=score_epoch if recipe.epoch_selection == "best-on-test" else None)
    out = {"recipe": recipe_record(recipe), **training.record(), "test_pairs": len(test), "test_classes": len(classes),
           "evaluation": "argmax, SOC and CC, keypoints pooled per class of trainsplits/test, mean over classes",
           "protocol_differences": probe_eval.protocol_differences(settings)}
    for name, source in (("base", features), ("probe", training.probe.wrap(features))):
        out[name] = probe_eval.summary(probe_eval.evaluate_classes(classes, source, test_settings), test_settings,
                                       recipe.thresh)
    out = _finite_record(out)
    out["probe_path"] = str(training.probe.save(Path(config.out) / "linear_probe.safetensors", out))
    return out


def _finite_record(value):
    """NaN (a recall without keypoints) as null, so results.json stays JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite_record(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_record(v) for v in value]
    return value


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


def pair_sets(config: SocoBenchConfig, settings: ProtocolSettings, root: Path) -> tuple[dict[str, SocoPairs], dict]:
    """The pairs a run evaluates, per pair type, and what selected them (recorded in results.json).

    ``subsets="released"``: every released pair file, ``PairAnnotations/intra`` (CC, SOC, SOC-geo) and
    ``PairAnnotations/cross`` (Cross-SOC): the paper's fixed 20k-pair sets, as GenIntel/SOCO's
    ``evaluate_dinov2.py --max-pairs-per-category 0`` evaluates them. No other subset file is published with the
    dataset; a list file (one ``intra/<category>/<pair>.json`` or ``cross/<group>/<pair>.json`` per line, relative
    to ``PairAnnotations/``) selects any other fixed subset."""
    wanted = [t for t in config.pair_types if t != "cross" or "cross" in settings.tasks or "cc" in settings.tasks]
    if "cross" in wanted and "cross" not in settings.tasks and not (root / "PairAnnotations" / "cross").is_dir():
        wanted.remove("cross")  # cross-pair CC only comes along with CC; a set without cross pairs just lacks it
    if config.subsets is None:
        sets = {kind: SocoPairs(root, kind, config.categories if kind != "cross" else None, config.supercategories,
                                config.max_pairs_per_category) for kind in wanted}
        return sets, {"selection": "pair folders", "max_pairs_per_category": config.max_pairs_per_category}
    if config.categories or config.supercategories or config.max_pairs_per_category:
        raise InputError("--subsets fixes the pairs: leave out --categories, --supercategories and "
                         "--max-pairs-per-category")
    if config.subsets == "released":
        sets = {kind: SocoPairs(root, kind) for kind in wanted}
        record = {"selection": "released", "expected_pairs": RELEASED_PAIRS,
                  "pairs": {kind: len(pairs) for kind, pairs in sets.items()}}
        short = {k: len(v) for k, v in sets.items() if len(v) != RELEASED_PAIRS.get(k, len(v))}
        if short:
            record["warning"] = (f"the released sets have {RELEASED_PAIRS} pairs; this folder has {short}: not the "
                                 "complete released SOCO v1?")
        return sets, record
    listed = read_subset_list(config.subsets)
    unknown = sorted(set(listed) - set(PAIR_KINDS_LISTED))
    if unknown:
        raise InputError(f"{config.subsets}: pair types {unknown} (lines start with intra/ or cross/)")
    sets = {kind: SocoPairs(root, kind, files=listed[kind]) for kind in wanted if kind in listed}
    return sets, {"selection": f"list file {config.subsets}", "pairs": {k: len(v) for k, v in sets.items()}}


RELEASED_PAIRS = {"intra": 20000, "cross": 20000}
PAIR_KINDS_LISTED = ("intra", "cross")


def read_subset_list(path: str) -> dict[str, list[str]]:
    """``intra/<category>/<file>.json`` lines -> {"intra": ["<category>/<file>.json", ...], ...} (order kept)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read the subset list {path!r}: {exc}") from exc
    out: dict[str, list[str]] = {}
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip().replace("\\", "/")
        if not line:
            continue
        parts = line.removeprefix("PairAnnotations/").split("/", 1)
        if len(parts) != 2 or not parts[1].endswith(".json"):
            raise InputError(f"{path}:{number}: expected intra/<category>/<pair>.json or cross/<group>/<pair>.json, "
                             f"got {line!r}")
        out.setdefault(parts[0], []).append(parts[1])
    if not out:
        raise InputError(f"the subset list {path!r} names no pair file")
    return out


def encoding_throughput(stats: StoreStats, ranks: int = 1) -> dict:
    """Images per second over the wall time of the encoding (the next chunk decodes while the network runs, so
    only the loop's wall clock says what an image costs), and what the loop waited for: a large decoding or
    writing wait means the host, not the network, limits the rate. Under torchrun the seconds are summed over
    ranks, so their mean is the wall time."""
    wall = stats.encode_seconds / max(ranks, 1)
    return {"images_per_second": stats.encoded / wall if stats.encoded and wall > 0 else None,
            "decode_wait_seconds": stats.decode_wait_seconds, "write_wait_seconds": stats.write_wait_seconds}


def caching_timing(stats: StoreStats, pairs: int, wall: float, ranks: int = 1) -> dict:
    """What encoding each image once saved, measured only where this run encoded: the encode time per image
    and the estimated time of encoding both images of every pair instead (one process), against the wall time.
    A warm run (every map from the disk cache) measured no encode time: the per-image time and the speed-up are
    None, not a disk read divided by one image; the disk reads are reported as such."""
    out = {"images_encoded": stats.encoded, "cache_hits": stats.hits, "disk_hits": stats.disk_hits,
           "encode_seconds": stats.encode_seconds, "disk_read_seconds": stats.read_seconds,
           "seconds_per_disk_read": stats.read_seconds / stats.disk_hits if stats.disk_hits else None,
           "seconds_per_image": None, "estimated_seconds_encoding_per_pair": None, "caching_speedup": None,
           **encoding_throughput(stats, ranks)}
    if stats.encoded:
        per_image = stats.encode_seconds / stats.encoded
        matching_only = max(wall - stats.encode_seconds / ranks, 0.0)
        naive = 2 * pairs * per_image + matching_only  # encoding both images of every pair, one process
        out.update(seconds_per_image=per_image, estimated_seconds_encoding_per_pair=naive,
                   caching_speedup=naive / wall if wall > 0 else None)
    else:
        out["caching_note"] = ("no image was encoded (every map came from the disk cache): no encode time was "
                               "measured, so no speed-up against encoding per pair is estimated; the cold run that "
                               "filled the cache reports it")
    return out


def _run(config: SocoBenchConfig, settings: ProtocolSettings, backbone: LoadedBackbone | None,
         features: FeatureSource | None, label: str | None, ctx: distributed.DistContext,
         dtype: str = "float32") -> dict:
    root = Path(config.root)
    progress = config.progress and ctx.is_main
    sets, selection = pair_sets(config, settings, root)
    store = None
    stages: dict[str, float] = {}
    if features is None:
        if backbone is None:
            raise ValueError("give a backbone or a feature source")
        extractor = FeatureExtractor(backbone, replace(settings.extraction(), dtype=dtype), device=ctx.device,
                                     cache_size=0, batch_size=16 if ctx.device.type == "cuda" else 8)
        store = FeatureStore(extractor, config.feature_cache, storage=settings.storage)
        features = store
        record_backbone = extractor.describe()
        if ctx.device.type == "cuda":  # a GPU's first batch does one-off work; a CPU's costs what the others do
            stages["warm_up"] = extractor.warm_up()
    else:
        record_backbone = {"backbone": {"name": label or "custom feature source"}}
    start = time.perf_counter()
    memory = None
    if store is not None:  # batched prefetch; under torchrun shared out, and rank 0 ends up holding every map
        views = _views_needed(config, sets, root)
        images = len({str(v.image_path) for v in views})
        dim = backbone.spec.contract.feature_dim_for(settings.extraction().kind)
        memory = {"images": images, "storage": settings.storage,
                  "estimated_bytes": store.memory_estimate(images, dim),
                  "device_budget_bytes": store.device_budget}
        store.encode_distributed(views, progress=progress)
        stages["encode"] = time.perf_counter() - start
    if not ctx.is_main:
        return {"rank": ctx.rank, "world_size": ctx.world_size}
    total = sum(len(s) for s in sets.values())
    mark = time.perf_counter()
    run: EvaluationRun = evaluate(chain.from_iterable(sets.values()), features, settings, total=total,
                                  progress=progress)
    stages["evaluate"] = time.perf_counter() - mark
    wall = time.perf_counter() - start
    summary = summarise(run, root)
    if config.linear_probe:
        mark = time.perf_counter()
        summary["linear_probe"] = _linear_probe(replace(config, progress=progress), settings, features, root)
        stages["linear_probe"] = time.perf_counter() - mark
    if config.four_choice:
        from .four_choice import evaluate_backbone, evaluate_random
        mark = time.perf_counter()
        pairs = list(sets.get("intra") or SocoPairs(root, "intra", config.categories, None,
                                                     config.max_pairs_per_category))
        summary["four_choice"] = {"backbone": evaluate_backbone(pairs, features, config.seed, settings),
                                  "random++": evaluate_random(pairs, config.seed, consistent=True),
                                  "random": evaluate_random(pairs, config.seed, consistent=False)}
        stages["four_choice"] = time.perf_counter() - mark
    timing = {"wall_seconds": wall, "pairs_per_second": run.pairs / wall if wall > 0 else None,
              "ranks": ctx.world_size, "stages": stages}
    if store is not None:
        timing.update(caching_timing(store.stats, run.pairs, wall, ctx.world_size))
        memory.update(device_bytes=store.stats.device_bytes, host_bytes=store.stats.host_bytes)
    name = label or record_backbone["backbone"]["name"]
    record = {"dataset": {"root": str(root.resolve()), "counts": dataset_counts(sets), "subsets": selection},
              "protocol": settings.as_dict(), "features": record_backbone, "timing": timing,
              "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
              "label": name}
    if memory is not None:
        record["feature_memory"] = memory
    mark = time.perf_counter()
    paths = write_reports(run, summary, record, Path(config.out), name, paper_tables=config.paper_tables,
                          paper_model_name=config.paper_model)
    if config.linear_probe:
        from .probe_report import append_to_results
        append_to_results(paths["table"], summary["linear_probe"], name, str(record_backbone["backbone"]["name"]),
                          config.paper_tables, config.paper_model)
    stages["reports"] = time.perf_counter() - mark
    return {"summary": summary, "timing": timing, "paths": {k: str(v) for k, v in paths.items()}, "run": run,
            "selection": selection, "memory": memory}
