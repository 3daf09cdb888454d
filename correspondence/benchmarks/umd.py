"""UMD-i: one-shot affordance transfer through dense correspondences (the AffCorrs benchmark, CoRL 2022).

The protocol is the one in ``UMD_i/README.md`` inside the released zip:

* every affordance region of a *reference* object is transferred to a *target* object through dense
  correspondences; here each target pixel inside the target mask takes the labels of its best-matching
  reference cell (cosine similarity, on the patch grid, among the reference cells inside the reference mask);
* per affordance, the IoU and the weighted F-measure ``F^w_beta`` (Margolin et al., CVPR 2014, ``WFb.m`` with
  beta = 1; the README's "IoU/Fw") of the transferred region against the target's own region;
* **intra-class**: every ordered pair of different objects of one class, for each class that the README lists
  under the affordance; **inter-class**: every ordered pair of objects of two *different* listed classes;
* mean over pairs per affordance (pairs pooled over classes), then mean over affordances.

Labels. ``*_label_rank.npy`` holds, per pixel and affordance, the UMD *rank* of that affordance: ``1`` is the
pixel's primary affordance, ``2``/``3`` secondary ones, ``9`` "does not apply" and ``0`` background (every
object pixel has exactly one rank-1 affordance). The default rule ``primary`` (rank == 1) gives the UMD part
regions (a partition of the object); ``ranked`` (1 <= rank < 9) also counts secondary ranks (then, e.g., a
hammer's head is also "grasp").

Which classes count for an affordance is the README's table (:data:`AFFORDANCE_CLASSES`), not the label
files. With the primary rule two listed combinations have objects without the region (the ladles' bowls
are primary "contain", secondary "scoop"; 7 of the 19 mugs show no handle), so a pair whose reference or
target has no pixel of the affordance is skipped (nothing to transfer / nothing to score) and counted in the
report as ``skipped_empty``.

Floors: **chance** labels each target mask pixel with the affordance independently with probability equal to
the reference's share of its own mask (seeded per pair); **whole-mask** labels every target mask pixel.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..device import to_numpy
from ..errors import ConfigError, InputError
from ..features import FeatureExtractor, FeatureMap
from ..io import write_json
from ..matching import nearest_neighbors
from ..preprocessing import mask_to_processed
# the dataset and the metrics live in their own modules; their public names stay importable from here
from .umd_data import (ABSENT_RANK, AFFORDANCE_CLASSES, AFFORDANCES, F_KERNEL_RADIUS, LABEL_RULES,  # noqa: F401
                       METHODS, SETTINGS, TRANSFER_MODES, UMDDataset, UMDSample, affordance_index,
                       labels_from_ranks, load_umd)
from .umd_metrics import f_measure, iou, metric_box  # noqa: F401

# ---------------------------------------------------------------------------------------------- transfer


def reference_cells(fmap: FeatureMap, mask: np.ndarray, labels: np.ndarray, min_fraction: float = 0.25
                    ) -> tuple[torch.Tensor, np.ndarray]:
    """Which reference cells may be matched (``FeatureMap.cell_mask``) and the labels each carries.

    A cell carries affordance ``k`` when ``k`` covers at least half of the cell's object pixels, or is the
    affordance covering most of them (so every object cell of a part labelling carries its dominant part).
    Returns ``(valid (h, w) bool tensor, labels (h * w, K) bool)``.
    """
    mask = np.asarray(mask, bool)
    labels = np.asarray(labels, bool)
    _check_label_shape(fmap, mask, labels, "reference")
    valid = fmap.cell_mask(mask, min_fraction=min_fraction)
    w, h = fmap.grid_wh
    p = fmap.processed_wh[0] // w
    planes = [mask] + [labels[..., k] & mask for k in range(labels.shape[2])]
    processed = np.stack([mask_to_processed(plane, fmap.geometry) for plane in planes]).astype(np.float32)
    coverage = F.avg_pool2d(torch.from_numpy(processed)[None], p)[0][:, :h, :w]
    share = (coverage[1:] / coverage[:1].clamp_min(1e-12)).flatten(1).T  # (h*w, K)
    best = share.max(dim=1, keepdim=True).values
    carried = (share > 0) & (share >= torch.minimum(best, torch.tensor(0.5)))
    return valid, to_numpy(carried)


def _check_label_shape(fmap: FeatureMap, mask: np.ndarray, labels: np.ndarray | None, what: str) -> None:
    size = (fmap.geometry.original_height, fmap.geometry.original_width)
    if mask.shape != size:
        raise InputError(f"{what} mask has shape {mask.shape}; its feature map was computed on an image of "
                         f"{size} (H, W)")
    if labels is not None and (labels.ndim != 3 or labels.shape[:2] != size):
        raise InputError(f"{what} labels have shape {labels.shape}; expected {size} x affordances")


def pixel_cells(fmap: FeatureMap, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Row-major cell index holding each original pixel (its centre), after padding and resizing."""
    processed = fmap.geometry.to_processed(np.stack([xs + 0.5, ys + 0.5], -1))
    w, h = fmap.grid_wh
    p = fmap.processed_wh[0] / w
    col = np.clip(np.floor(processed[:, 0] / p), 0, w - 1).astype(np.int64)
    row = np.clip(np.floor(processed[:, 1] / p), 0, h - 1).astype(np.int64)
    return row * w + col


def transfer_affordances(ref_fmap: FeatureMap, ref_mask: np.ndarray, ref_labels: np.ndarray, trg_fmap: FeatureMap,
                         trg_mask: np.ndarray, mode: str = "cell", min_fraction: float = 0.25,
                         reference: tuple[torch.Tensor, np.ndarray] | None = None) -> np.ndarray:
    """Transfer every affordance region of the reference to the target: ``H x W x K`` bool at the target's size.

    Each target pixel inside ``trg_mask`` takes the labels of the reference cell most similar (cosine) to it,
    among the reference cells inside ``ref_mask`` (:func:`reference_cells`). ``mode="cell"`` matches the
    target's own cell (each pixel gets its cell's match); ``mode="pixel"`` matches the bilinearly sampled
    descriptor at each pixel centre. Works for any FeatureMap source (backbone, functional head, oracle).
    ``reference`` may pass a precomputed :func:`reference_cells` result.
    """
    if mode not in TRANSFER_MODES:
        raise ConfigError(f"transfer mode must be one of {', '.join(TRANSFER_MODES)}, got {mode!r}")
    if ref_fmap.dim != trg_fmap.dim:
        raise InputError(f"reference features have {ref_fmap.dim} channels, target features {trg_fmap.dim}")
    ref_mask = np.asarray(ref_mask, bool)
    trg_mask = np.asarray(trg_mask, bool)
    ref_labels = np.asarray(ref_labels, bool)
    _check_label_shape(trg_fmap, trg_mask, None, "target")
    valid, carried = reference if reference is not None else reference_cells(ref_fmap, ref_mask, ref_labels,
                                                                                min_fraction)
    out = np.zeros(trg_mask.shape + (carried.shape[1],), bool)
    ys, xs = np.nonzero(trg_mask)
    if ys.size == 0:
        return out
    ref_flat = ref_fmap.flat()
    if mode == "cell":
        cells = pixel_cells(trg_fmap, xs, ys)
        unique, inverse = np.unique(cells, return_inverse=True)
        query = trg_fmap.flat()[torch.from_numpy(unique).to(trg_fmap.features.device)]
        best = to_numpy(nearest_neighbors(query, ref_flat, valid.reshape(-1)).index)[inverse]
    else:
        query = trg_fmap.sample(np.stack([xs + 0.5, ys + 0.5], -1))
        best = to_numpy(nearest_neighbors(query, ref_flat, valid.reshape(-1)).index)
    out[ys, xs] = carried[best]
    return out


def chance_prediction(ref_mask: np.ndarray, ref_region: np.ndarray, trg_mask: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """Each target mask pixel gets the affordance with probability = the reference region's share of its mask."""
    ref_mask = np.asarray(ref_mask, bool)
    share = float((np.asarray(ref_region, bool) & ref_mask).sum() / max(1, ref_mask.sum()))
    trg_mask = np.asarray(trg_mask, bool)
    out = np.zeros(trg_mask.shape, bool)
    out[trg_mask] = rng.random(int(trg_mask.sum())) < share
    return out


def chance_expected_iou(share: float, mask_pixels: int, region_pixels: int) -> float:
    """First-order expectation of the chance row's IoU: ``E[TP] / E[|pred u gt|] = p g / (g + p (n - g))``."""
    g, n = float(region_pixels), float(mask_pixels)
    denominator = g + share * (n - g)
    return share * g / denominator if denominator > 0 else 1.0


# ------------------------------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class UMDPair:
    setting: str  # intra | inter
    affordance: str
    reference: str  # sample name
    target: str


def enumerate_pairs(samples: Iterable[UMDSample], setting: str,
                    affordance_classes: dict[str, Sequence[str]] = AFFORDANCE_CLASSES) -> list[UMDPair]:
    """The README's loops: per affordance, over its listed classes; intra: object i of a class -> every other
    object j of the same class; inter: object i of class A -> every object j of every other listed class B."""
    if setting not in SETTINGS:
        raise ConfigError(f"setting must be intra or inter, got {setting!r}")
    by_class: dict[str, list[str]] = {}
    for s in samples:
        by_class.setdefault(s.class_name, []).append(s.name)
    pairs = []
    for affordance, classes in affordance_classes.items():
        present = [c for c in classes if c in by_class]
        for class_a in present:
            for i in sorted(by_class[class_a]):
                if setting == "intra":
                    pairs += [UMDPair(setting, affordance, i, j) for j in sorted(by_class[class_a]) if j != i]
                    continue
                for class_b in present:
                    if class_b != class_a:
                        pairs += [UMDPair(setting, affordance, i, j) for j in sorted(by_class[class_b])]
    return pairs


# --------------------------------------------------------------------------------------------- benchmark


FeatureSource = Callable[[UMDSample], FeatureMap]


def _feature_source(features) -> tuple[FeatureSource | None, dict, str]:
    if features is None:
        return None, {}, ""
    if isinstance(features, FeatureExtractor):
        extractor = features
        description = extractor.describe()
        return (lambda sample: extractor(sample.rgb)), description, description["backbone"]["name"]
    if not callable(features):
        raise ConfigError("features must be a FeatureExtractor or a callable(sample) -> FeatureMap")
    description = features.describe() if hasattr(features, "describe") else {}
    name = getattr(features, "name", None) or getattr(features, "__name__", None) or type(features).__name__
    return features, description or {"features": str(name)}, str(name)


def _stable_seed(*parts) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _select(pairs: list[UMDPair], max_pairs: int | None, seed: int) -> list[UMDPair]:
    if not max_pairs or len(pairs) <= max_pairs:
        return pairs
    first = pairs[0]
    rng = np.random.default_rng([seed, _stable_seed(first.setting, first.affordance)])
    keep = np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))
    return [pairs[i] for i in keep]


@dataclass(frozen=True)
class UMDRunConfig:
    """What one UMD-i run evaluates and how (see :func:`run_umd_benchmark`)."""

    methods: tuple[str, ...] = METHODS
    label_rule: str = "primary"
    mode: str = "cell"
    min_fraction: float = 0.25
    max_pairs: int | None = None
    seed: int = 0
    settings: tuple[str, ...] = SETTINGS
    classes: tuple[str, ...] | None = None
    name: str | None = None
    progress: bool = True
    plot: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "settings", tuple(self.settings))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
        for m in self.methods:
            if m not in METHODS:
                raise ConfigError(f"unknown method {m!r}; known: {', '.join(METHODS)}")
        for s in self.settings:
            if s not in SETTINGS:
                raise ConfigError(f"unknown setting {s!r}; known: intra, inter")
        if self.mode not in TRANSFER_MODES:
            raise ConfigError(f"transfer mode must be one of {', '.join(TRANSFER_MODES)}, got {self.mode!r}")
        if self.max_pairs is not None and self.max_pairs < 0:
            raise ConfigError(f"max_pairs must be >= 0, got {self.max_pairs}")


Scores = dict[str, dict[str, dict[str, list[tuple[float, float]]]]]  # method -> setting -> affordance -> (IoU, F)


def run_umd_benchmark(root: str | Path | UMDDataset, features, out_dir: str | Path,
                      methods: Sequence[str] = METHODS, **options) -> dict:
    """Evaluate one feature source (a FeatureExtractor or ``callable(sample) -> FeatureMap``) and the chance /
    whole-mask floors on UMD-i; write ``umd_results.json``, ``umd_results.md`` and ``umd_results.png``.

    ``options`` are :class:`UMDRunConfig` fields: ``max_pairs`` caps the pairs per (setting, affordance) (seeded
    sample); ``classes`` restricts the dataset. ``root`` may be a loaded :class:`UMDDataset` (its own label rule
    applies; ``label_rule`` is for paths). Every image is encoded once (FeatureMaps cached by sample name). Returns
    the report dict plus ``paths`` and ``markdown``.
    """
    start = time.perf_counter()
    config = UMDRunConfig(methods=tuple(methods), **options)
    source, description, source_name = _feature_source(features)
    if "transfer" in config.methods and source is None:
        raise ConfigError("the transfer method needs features (a FeatureExtractor or callable)")
    dataset, samples = _load_samples(root, config)
    load_seconds = time.perf_counter() - start
    pair_counts, chosen = _choose_pairs(samples, config)
    encode_start = time.perf_counter()
    fmaps = _encode_images(source, samples, chosen, config)
    encode_seconds = time.perf_counter() - encode_start
    pair_start = time.perf_counter()
    scores, ordered_pairs = _score_pairs(samples, chosen, fmaps, config)
    timing = {"load_seconds": load_seconds, "encode_seconds": encode_seconds,
              "pairs_seconds": time.perf_counter() - pair_start, "images_encoded": len(fmaps),
              "ordered_pairs": ordered_pairs, "pair_affordance_evaluations": len(chosen)}
    report = _report(config, dataset, samples, fmaps, pair_counts, _summarise(scores, config),
                     description, source_name, timing)
    report["timing"] = {"wall_seconds": time.perf_counter() - start, **timing}
    return _write_reports(report, Path(out_dir), config, start)


def _load_samples(root, config: UMDRunConfig) -> tuple["UMDDataset", dict[str, "UMDSample"]]:
    if isinstance(root, UMDDataset):
        dataset = root
        chosen = [s for s in dataset if not config.classes or s.class_name in set(config.classes)]
    else:
        dataset = UMDDataset(root, label_rule=config.label_rule, classes=config.classes)
        chosen = list(dataset)
    return dataset, {s.name: s for s in chosen}


def _choose_pairs(samples: dict, config: UMDRunConfig) -> tuple[dict, list[UMDPair]]:
    """Pairs as the dataset README enumerates them, without those lacking the region on either side, capped."""
    pair_counts: dict[str, dict[str, dict[str, int]]] = {}
    chosen: list[UMDPair] = []
    for setting in config.settings:
        pair_counts[setting] = {}
        everything = enumerate_pairs(samples.values(), setting)
        for affordance in AFFORDANCES:
            pairs = [p for p in everything if p.affordance == affordance]
            usable = [p for p in pairs if samples[p.reference].has(affordance) and samples[p.target].has(affordance)]
            selected = _select(usable, config.max_pairs, config.seed)
            pair_counts[setting][affordance] = {"total": len(pairs), "skipped_empty": len(pairs) - len(usable),
                                                "evaluated": len(selected)}
            chosen += selected
    return pair_counts, chosen


def _encode_images(source, samples: dict, chosen: list[UMDPair], config: UMDRunConfig) -> dict[str, FeatureMap]:
    from tqdm.auto import tqdm

    if "transfer" not in config.methods:
        return {}
    needed = sorted({n for p in chosen for n in (p.reference, p.target)})
    return {name: source(samples[name])
            for name in tqdm(needed, desc="umd: encode", unit="img", disable=not config.progress)}


def _score_pairs(samples: dict, chosen: list[UMDPair], fmaps: dict[str, FeatureMap], config: UMDRunConfig
                 ) -> tuple[Scores, int]:
    """(IoU, F) per method, setting and affordance; one transfer per ordered (reference, target), reused by every
    affordance the pair counts for."""
    from tqdm.auto import tqdm

    by_pair: dict[tuple[str, str], list[UMDPair]] = {}
    for p in chosen:
        by_pair.setdefault((p.reference, p.target), []).append(p)
    scores: Scores = {m: {s: {a: [] for a in AFFORDANCES} for s in config.settings} for m in config.methods}
    reference_cache: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
    whole_cache: dict[tuple[str, str], tuple[float, float]] = {}
    boxes: dict[str, tuple[slice, slice]] = {}
    for (ref_name, trg_name), group in tqdm(by_pair.items(), desc="umd: pairs", unit="pair",
                                            disable=not config.progress):
        ref, trg = samples[ref_name], samples[trg_name]
        if trg_name not in boxes:
            boxes[trg_name] = metric_box(trg.mask, trg.labels.any(-1))
        box = boxes[trg_name]
        transferred = None
        if "transfer" in config.methods:
            if ref_name not in reference_cache:
                reference_cache[ref_name] = reference_cells(fmaps[ref_name], ref.mask, ref.labels,
                                                            config.min_fraction)
            transferred = transfer_affordances(fmaps[ref_name], ref.mask, ref.labels, fmaps[trg_name], trg.mask,
                                               mode=config.mode, reference=reference_cache[ref_name])
        for pair in group:
            gt = trg.region(pair.affordance)[box]
            for method in config.methods:
                if method == "whole-mask":
                    key = (trg_name, pair.affordance)
                    if key not in whole_cache:
                        whole = trg.mask[box]
                        whole_cache[key] = (iou(whole, gt), f_measure(whole, gt))
                    scores[method][pair.setting][pair.affordance].append(whole_cache[key])
                    continue
                if method == "transfer":
                    pred = transferred[..., affordance_index(pair.affordance)][box]
                else:  # chance
                    rng = np.random.default_rng([config.seed, _stable_seed(ref_name, trg_name, pair.affordance)])
                    pred = chance_prediction(ref.mask, ref.region(pair.affordance), trg.mask, rng)[box]
                scores[method][pair.setting][pair.affordance].append((iou(pred, gt), f_measure(pred, gt)))
    return scores, len(by_pair)


def _summarise(scores: Scores, config: UMDRunConfig) -> dict:
    """Mean over pairs per affordance, then mean over affordances, per method and setting."""
    results = {}
    for method in config.methods:
        results[method] = {}
        for setting in config.settings:
            per_aff = {}
            for affordance in AFFORDANCES:
                values = scores[method][setting][affordance]
                if values:
                    arr = np.asarray(values, dtype=np.float64)
                    per_aff[affordance] = {"iou": float(arr[:, 0].mean()), "f": float(arr[:, 1].mean()),
                                           "pairs": len(values)}
            mean = ({"iou": float(np.mean([v["iou"] for v in per_aff.values()])),
                     "f": float(np.mean([v["f"] for v in per_aff.values()])), "affordances": len(per_aff)}
                    if per_aff else {"iou": None, "f": None, "affordances": 0})
            results[method][setting] = {"per_affordance": per_aff, "mean": mean}
    return results


def _report(config: UMDRunConfig, dataset, samples: dict, fmaps: dict[str, FeatureMap], pair_counts: dict,
            results: dict, description: dict, source_name: str, timing: dict) -> dict:
    labels = {m: (config.name or source_name) if m == "transfer" else m for m in config.methods}
    grids = sorted({f"{fm.grid_wh[0]}x{fm.grid_wh[1]}" for fm in fmaps.values()})
    processed = sorted({f"{fm.processed_wh[0]}x{fm.processed_wh[1]}" for fm in fmaps.values()})
    return {
        "benchmark": "UMD-i one-shot affordance transfer (AffCorrs protocol, UMD_i/README.md)",
        "protocol": {
            "affordances": list(AFFORDANCES), "affordance_classes": {a: list(c) for a, c in AFFORDANCE_CLASSES.items()},
            "settings": list(config.settings), "label_rule": dataset.label_rule,
            "label_rule_meaning": ("rank == 1 (primary affordance; UMD part regions)" if dataset.label_rule == "primary"
                                   else "1 <= rank < 9 (any ranked affordance)"),
            "metrics": {"iou": "|P & G| / |P | G| on the full target image",
                        "f": "weighted F-measure F^w_beta, beta=1 (Margolin et al. CVPR 2014, WFb.m)"},
            "reduction": "mean over pairs per affordance (pooled over classes), then mean over affordances",
            "pair_rule": "ordered pairs; pairs whose reference or target has no pixel of the affordance are skipped",
            "transfer": {"mode": config.mode, "reference_cell_min_fraction": config.min_fraction,
                         "similarity": "cosine, nearest reference cell inside the reference mask"},
            "chance": "each target mask pixel labelled with p = reference region / reference mask, "
                      "numpy default_rng([seed, crc32(ref|trg|affordance)])",
            "whole_mask": "every target mask pixel labelled",
            "seed": config.seed, "max_pairs_per_setting_affordance": config.max_pairs or None,
            "classes": sorted(config.classes) if config.classes else None,
        },
        "dataset": {"root": str(dataset.root), "samples": len(samples),
                    "classes": {c: sum(1 for s in samples.values() if s.class_name == c)
                                for c in sorted({s.class_name for s in samples.values()})},
                    "without_depth": sorted(n for n, s in samples.items() if s.depth is None)},
        "features": {"description": description, "name": labels.get("transfer"),
                     "processed_sizes": processed, "grids": grids},
        "methods": labels,
        "pairs": pair_counts,
        "results": results,
        "timing": timing,
    }


def _write_reports(report: dict, out: Path, config: UMDRunConfig, start: float) -> dict:
    json_path = write_json(out / "umd_results.json", report)
    markdown = umd_markdown(report)
    md_path = out / "umd_results.md"
    md_path.write_text(markdown, encoding="utf-8")
    png_path = umd_plot(report, out / "umd_results.png") if config.plot else None
    report["timing"]["wall_seconds"] = time.perf_counter() - start
    write_json(json_path, report)
    return {**report, "markdown": markdown,
            "paths": {"json": str(json_path), "markdown": str(md_path), "plot": str(png_path) if png_path else None}}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def umd_markdown(report: dict) -> str:
    results, labels, settings = report["results"], report["methods"], report["protocol"]["settings"]
    feat = report["features"]
    size = ", ".join(feat["processed_sizes"]) or "-"
    lines = ["# UMD-i one-shot affordance transfer",
             "",
             f"Features: {feat['name'] or '-'} (processed {size}, grid {', '.join(feat['grids']) or '-'}); "
             f"labels: {report['protocol']['label_rule']}; transfer mode: {report['protocol']['transfer']['mode']}; "
             f"seed {report['protocol']['seed']}; {report['dataset']['samples']} samples. "
             f"IoU and weighted F-measure (F^w, beta=1): mean over pairs per affordance, then over affordances.",
             ""]
    head = "| method | " + " | ".join(f"{s} IoU | {s} Fw" for s in settings) + " |"
    lines += [head, "|---|" + "---|" * (2 * len(settings))]
    for method, label in labels.items():
        cells = []
        for s in settings:
            mean = results[method][s]["mean"]
            cells += [_fmt(mean["iou"]), _fmt(mean["f"])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Per affordance (IoU / Fw)", ""]
    lines.append("| method | setting | " + " | ".join(AFFORDANCES) + " |")
    lines.append("|---|---|" + "---|" * len(AFFORDANCES))
    for s in settings:
        for method, label in labels.items():
            per = results[method][s]["per_affordance"]
            cells = [f"{per[a]['iou']:.3f} / {per[a]['f']:.3f}" if a in per else "-" for a in AFFORDANCES]
            lines.append(f"| {label} | {s} | " + " | ".join(cells) + " |")
    lines += ["", "## Pairs (evaluated / listed; skipped = reference or target without the region)", ""]
    lines.append("| setting | " + " | ".join(AFFORDANCES) + " |")
    lines.append("|---|" + "---|" * len(AFFORDANCES))
    for s in settings:
        counts = report["pairs"][s]
        cells = [f"{counts[a]['evaluated']} / {counts[a]['total']}"
                 + (f" ({counts[a]['skipped_empty']} skipped)" if counts[a]["skipped_empty"] else "")
                 for a in AFFORDANCES]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def umd_plot(report: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, labels, settings = report["results"], report["methods"], report["protocol"]["settings"]
    names = list(AFFORDANCES) + ["mean"]
    fig, axes = plt.subplots(2, len(settings), figsize=(6.5 * len(settings), 6.5), squeeze=False)
    x = np.arange(len(names))
    width = 0.8 / max(1, len(labels))
    for col, setting in enumerate(settings):
        for row, (metric, title) in enumerate((("iou", "IoU"), ("f", "Fw"))):
            ax = axes[row][col]
            for i, (method, label) in enumerate(labels.items()):
                per = results[method][setting]["per_affordance"]
                values = [per[a][metric] if a in per else 0.0 for a in AFFORDANCES]
                values.append(results[method][setting]["mean"][metric] or 0.0)
                ax.bar(x + (i - (len(labels) - 1) / 2) * width, values, width, label=label)
            ax.set_xticks(x, names, rotation=30, ha="right")
            ax.set_ylim(0, 1)
            ax.set_ylabel(title)
            ax.set_title(f"UMD-i {setting}-class {title}")
            ax.grid(axis="y", alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
