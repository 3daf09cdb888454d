"""``soco bench homography``: precise same-object transfer, as a vision engineer would test it, against OpenCV.

Pairs (:mod:`.homography_pairs`): real photographs under exact warps over rotation 0-180 deg and scale 0.25-4x
with perspective and photometric change; non-planar views of procedural objects with exact correspondences; and
unrelated photo pairs, where every accepted point is a mistake. Methods (:mod:`.homography_methods`): OpenCV
SIFT / ORB / AKAZE set as an expert would per image size, and ours per backbone (coarse, refined, and verified by
a homography or by ``auto``, with and without local features).

Reported: PCK at 1/3/5/10 px over all points (a point a method does not answer counts as an infinite error), the
median error, the answered share, the time per pair, how many pairs reach 95 % PCK@5 and the worst pair; PCK@5
per rotation bin and per scale bin; the non-planar group; points accepted on unrelated pairs. JSON, markdown and
plots.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .homography_methods import SGBM, Prediction, baseline_labels, our_rows, run_baselines, run_ours
from .homography_pairs import (Pair, SourceImage, WarpSettings, collect_images, default_sources, fold_pair,  # noqa: F401
                               make_pair, project, query_grid, stereo_pair, to_continuous, unrelated_pairs,
                               world_pairs)

THRESHOLDS_PX = (1.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True)
class HomographyBenchConfig:
    backbones: tuple[str, ...] = ("daisy",)
    size: int = 448
    points: int = 200
    pairs_per_image: int = 2
    max_umd: int = 16
    world_pairs: int = 6  # non-planar procedural pairs (the objects' own textures)
    fine_world_pairs: int = 6  # the same objects and cameras with a fine full-contrast texture
    fold_pairs: int = 6  # non-planar pairs of photos folded like an open book (the first photos of >= 300 px)
    stereo_pairs: int = 4  # the same, seen by a rectified stereo rig (StereoSGBM is the baseline there)
    unrelated_pairs: int = 6
    seed: int = 0
    warp: WarpSettings = field(default_factory=WarpSettings)
    random_weights: bool = False
    device: str = "cpu"
    weights: str | None = None


def errors(prediction: Prediction, pair: Pair) -> np.ndarray:
    err = np.linalg.norm(prediction.xy - pair.truth_xy, axis=1)
    return np.where(np.isfinite(err), err, np.inf)


def summarise(errs: list[np.ndarray], seconds: list[float]) -> dict[str, float]:
    pooled = np.concatenate(errs) if errs else np.zeros(0)
    out = {f"pck@{t:g}": float(100.0 * np.mean(pooled < t)) if len(pooled) else 0.0 for t in THRESHOLDS_PX}
    out["median_px"] = float(np.median(pooled)) if len(pooled) else float("nan")
    out["answered"] = float(100.0 * np.mean(np.isfinite(pooled))) if len(pooled) else 0.0
    seconds = [t for t in seconds if np.isfinite(t)]
    out["seconds_per_pair"] = float(np.mean(seconds)) if seconds else float("nan")
    per_pair = [100.0 * np.mean(e < 5.0) for e in errs if len(e)]
    out["pairs"] = len(per_pair)
    out["pairs_pck5_95"] = int(sum(p >= 95.0 for p in per_pair))
    out["worst_pair_pck5"] = float(min(per_pair)) if per_pair else float("nan")
    return out


def markdown(summary: dict[str, dict[str, float]], header: str) -> str:
    lines = [header, "", "| method | PCK@1 | PCK@3 | PCK@5 | PCK@10 | median error (px) | answered | pairs with "
             "PCK@5 >= 95 % | worst pair PCK@5 | s / pair |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in summary.items():
        if not row["pairs"]:
            continue  # a method for other kinds of pair only
        median = "inf" if not np.isfinite(row["median_px"]) else f"{row['median_px']:.2f}"
        lines.append(f"| {name} | {row['pck@1']:.1f} | {row['pck@3']:.1f} | {row['pck@5']:.1f} | {row['pck@10']:.1f} "
                     f"| {median} | {row['answered']:.1f} % | {row['pairs_pck5_95']} / {row['pairs']} | "
                     f"{row['worst_pair_pck5']:.1f} | {row['seconds_per_pair']:.2f} |")
    return "\n".join(lines) + "\n"


def binned(pairs: list[Pair], all_errors: dict[str, list[np.ndarray]], edges: tuple[float, ...], value
           ) -> tuple[list[str], dict[str, list[float]], list[int]]:
    """PCK@5 of each method per bin of ``value(pair)`` (bin labels, rows, pairs per bin)."""
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    members = [[i for i, p in enumerate(pairs) if lo <= value(p) < hi or (hi == edges[-1] and value(p) == hi)]
               for lo, hi in zip(edges[:-1], edges[1:])]
    rows = {label: [float(100.0 * np.mean(np.concatenate([errs[i] for i in m]) < 5.0)) if m else float("nan")
                    for m in members] for label, errs in all_errors.items()}
    return labels, rows, [len(m) for m in members]


def bin_table(title: str, labels: list[str], rows: dict[str, list[float]], counts: list[int]) -> str:
    lines = [title, "", "| method | " + " | ".join(f"{b} ({n} pairs)" for b, n in zip(labels, counts)) + " |",
             "|---|" + "---|" * len(labels)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join("-" if np.isnan(v) else f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def run_homography_benchmark(images: list[SourceImage], config: HomographyBenchConfig, out_dir: str | Path,
                             progress: bool = True) -> dict[str, Any]:
    from ..api import Matcher

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    pairs = [make_pair(rng, source, k * len(images) + j, config.points, config.warp)
             for k in range(config.pairs_per_image) for j, source in enumerate(images)]
    pairs += [fold_pair(source, config.points) for source in
              [s for s in images if min(s.rgb.shape[:2]) >= 300][:config.fold_pairs]]
    pairs += [stereo_pair(source, config.points) for source in
              [s for s in images if min(s.rgb.shape[:2]) >= 300][:config.stereo_pairs]]
    pairs += world_pairs(config.world_pairs, config.points, config.seed) if config.world_pairs else []
    pairs += world_pairs(config.fine_world_pairs, config.points, config.seed, texture="fine") \
        if config.fine_world_pairs else []
    pairs += unrelated_pairs(images, config.unrelated_pairs, config.points // 2)
    methods = baseline_labels() + ([SGBM] if any(p.kind == "stereo" for p in pairs) else [])
    extractors = {}
    for backbone in config.backbones:
        matcher = Matcher.create(backbone, weights=config.weights, random_weights=config.random_weights,
                                 size=config.size, device=config.device, cache_size=0)
        extractors[backbone] = (matcher.extractor, our_rows(backbone))
        methods += [row.label for row in extractors[backbone][1]]
    errs: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    per_pair, examples = [], []
    for i, pair in enumerate(pairs):
        predictions = run_baselines(pair)
        for extractor, rows in extractors.values():
            predictions.update({row.label: p for row, p in zip(rows, run_ours(pair, extractor, rows))})
        record: dict[str, Any] = {"pair": pair.name, "group": pair.group, "kind": pair.kind,
                                  "size": list(pair.demo.shape[1::-1]), "points": len(pair.query_xy),
                                  "rotation_deg": pair.rotation_deg, "scale": pair.scale,
                                  "homography": None if pair.homography is None else pair.homography.tolist(),
                                  "methods": {}}
        for label in methods:
            if label not in predictions:  # a method for one kind of pair only (StereoSGBM): not part of the others
                errs[label].append(np.zeros(0))
                seconds[label].append(float("nan"))
                continue
            prediction = predictions[label]
            err = errors(prediction, pair)
            errs[label].append(err)
            seconds[label].append(prediction.seconds)
            answered = int(np.isfinite(prediction.xy).all(1).sum())
            record["methods"][label] = {**summarise([err], [prediction.seconds]), "accepted": answered,
                                        **prediction.info}
        per_pair.append(record)
        if pair.kind == "warp" and len(examples) < 2 and abs(pair.rotation_deg or 0) > 60:
            examples.append((pair, predictions))
        if progress:
            auto = next((m for m in methods if m.endswith("--geometry auto")), None)
            sift = baseline_labels()[1]
            what = "accepted" if pair.kind == "unrelated" else "pck@5"
            print(f"[{i + 1}/{len(pairs)}] {pair.name} ({pair.kind}, {pair.demo.shape[1]}x{pair.demo.shape[0]}"
                  + (f", rot {pair.rotation_deg:.0f}, scale {pair.scale:.2f}" if pair.kind == "warp" else "")
                  + f"): {what} SIFT {record['methods'][sift][what]:.1f}"
                  + (f", ours auto {record['methods'][auto][what]:.1f}" if auto else ""), flush=True)
    return _report(pairs, images, config, methods, errs, seconds, per_pair, examples, out)


def _report(pairs, images, config, methods, errs, seconds, per_pair, examples, out: Path) -> dict[str, Any]:
    from ..viz import save, save_line_plot

    def subset(keep) -> tuple[list[int], dict[str, dict[str, float]]]:
        index = [i for i, p in enumerate(pairs) if keep(p)]
        return index, {m: summarise([errs[m][i] for i in index], [seconds[m][i] for i in index]) for m in methods}

    warp_index, summary = subset(lambda p: p.kind == "warp")
    warps = [pairs[i] for i in warp_index]
    warp_errs = {m: [errs[m][i] for i in warp_index] for m in methods if summary[m]["pairs"]}
    header = (f"{len(warps)} warped pairs ({len(images)} distinct photos x {config.pairs_per_image}; rotation "
              f"0-180 deg, scale 0.25-4, perspective, photometric), {sum(len(p.query_xy) for p in warps)} points, "
              f"backbone input {config.size} px, seed {config.seed}")
    table = markdown(summary, f"**Real photos, all warps**: {header}")
    by_group = {}
    for group in sorted({p.group for p in warps}):
        index, by_group[group] = subset(lambda p, g=group: p.kind == "warp" and p.group == g)
        table += "\n" + markdown(by_group[group], f"**Group `{group}`**: {len(index)} pairs")
    rot = binned(warps, warp_errs, config.warp.rotation_bins, lambda p: abs(p.rotation_deg))
    scale = binned(warps, warp_errs, config.warp.scale_bins, lambda p: p.scale)
    table += "\n" + bin_table("**PCK@5 by |rotation| (deg)**", *rot)
    table += "\n" + bin_table("**PCK@5 by scale**", *scale)
    stereo_index, stereo = subset(lambda p: p.kind == "stereo")
    if stereo_index:
        table += "\n" + markdown({m: v for m, v in stereo.items() if v["pairs"]},
                                  f"**Non-planar, rectified stereo: folded photos** (a sideways baseline, against "
                                  f"StereoSGBM): {len(stereo_index)} pairs")
    fold_index, fold = subset(lambda p: p.kind == "fold")
    if fold_index:
        table += "\n" + markdown(fold, f"**Non-planar: photos folded like an open book** (pages at 90 deg, cameras "
                                       f"20 deg apart): {len(fold_index)} pairs")
    world = {}
    for group, title in (("world (non-planar)", "the objects' own textures"),
                         ("world, fine texture", "a fine full-contrast texture")):
        world_index, world[group] = subset(lambda p, g=group: p.kind == "world" and p.group == g)
        if world_index:
            table += "\n" + markdown(world[group], f"**Non-planar: procedural objects, {title}** (cameras 15-40 "
                                                    f"deg apart): {len(world_index)} pairs")
    unrelated_index = [i for i, p in enumerate(pairs) if p.kind == "unrelated"]
    unrelated = {}
    if unrelated_index:
        lines = [f"**Unrelated photo pairs**: {len(unrelated_index)} pairs, "
                 f"{sum(len(pairs[i].query_xy) for i in unrelated_index)} points (every accepted point is wrong)", "",
                 "| method | points accepted | pairs with any accepted |", "|---|---|---|"]
        for m in methods:
            if m not in per_pair[unrelated_index[0]]["methods"]:
                continue
            accepted = [int(per_pair[i]["methods"][m]["accepted"]) for i in unrelated_index]
            total = sum(len(pairs[i].query_xy) for i in unrelated_index)
            unrelated[m] = {"accepted": sum(accepted), "points": total, "pairs_with_any": sum(a > 0 for a in accepted)}
            lines.append(f"| {m} | {sum(accepted)} of {total} | {unrelated[m]['pairs_with_any']} |")
        table += "\n" + "\n".join(lines) + "\n"
    (out / "results.md").write_text(table, encoding="utf-8")
    result = {"config": asdict(config), "images": [s.name for s in images], "summary": summary, "by_group": by_group,
              "by_rotation": {"bins": rot[0], "pck@5": rot[1], "pairs": rot[2]},
              "by_scale": {"bins": scale[0], "pck@5": scale[1], "pairs": scale[2]}, "fold": fold, "stereo": stereo,
              "world": world,
              "unrelated": unrelated, "pairs": per_pair}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
    curve = np.linspace(0.0, 20.0, 41)
    plotted = warp_errs if warps else {m: [errs[m][i] for i in range(len(pairs)) if pairs[i].kind != "unrelated"]
                                       for m in methods}
    save_line_plot({m: (curve, [100.0 * np.mean(np.concatenate(e) < t) for t in curve]) for m, e in plotted.items()
                    if sum(map(len, e))}, out / "pck_curve.png", "threshold (px)", "PCK (%)",
                   "real photos, all warps" if warps else "all pairs with a truth", ylim=(0, 100), marker=None)
    for name, (labels, rows, _) in (("rotation", rot), ("scale", scale)) if warps else ():
        save_line_plot({m: (list(range(len(labels))), v) for m, v in rows.items()}, out / f"pck5_by_{name}.png",
                       f"{name} bin: " + ", ".join(f"{k}={b}" for k, b in enumerate(labels)), "PCK@5 (%)",
                       f"PCK@5 by {name}", ylim=(0, 100))
    for k, (pair, predictions) in enumerate(examples):
        save(_example(pair, predictions), out / f"example_{k}.png")
    return {"summary": summary, "markdown": table, "pairs": len(pairs), "paths": {
        "results": str(out / "results.json"), "table": str(out / "results.md"), "plot": str(out / "pck_curve.png")}}


def _example(pair: Pair, predictions: dict[str, Prediction]):
    """``--geometry auto`` on a strongly rotated pair: green within 5 px of the truth, red beyond, faint: none."""
    from ..viz import match_overlay
    label = next((m for m in predictions if m.endswith("--geometry auto")), list(predictions)[-1])
    err = errors(predictions[label], pair)
    xy = np.where(np.isfinite(predictions[label].xy), predictions[label].xy, pair.truth_xy)
    return match_overlay(pair.demo, pair.live, pair.query_xy, xy, [""] * len(xy), accepted=np.isfinite(err),
                         colors=[(30, 180, 60) if e < 5.0 else (220, 40, 40) for e in err],
                         title=f"{pair.name} (rot {pair.rotation_deg:.0f} deg, scale {pair.scale:.2f}): {label}",
                         max_labels=0)
