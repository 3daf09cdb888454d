"""Dense functional correspondence benchmarks: HANDAL-format data (``soco bench handal``) and the held-out
categories of a `soco synth functional` set (``soco bench functional``). Reports: JSON, a Markdown table laid
out like the paper's Table 1 (label transfer and discovery, within- and across-category), PR curves."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..errors import InputError
from ..functional.evaluate import CURVE_TAU, AnnotatedPair, evaluate_pair
from ..functional.metrics import aggregate
from ..io import write_json

COLUMNS = ("normalised_distance", "pck@23", "pck@15", "pck@10", "best_f1@23", "best_f1@15", "best_f1@10",
           "best_f1@5", "ap@23", "ap@10")


def synthetic_pairs(root: str | Path, split: str = "test") -> list[AnnotatedPair]:
    """Cross-instance functional pairs of a `soco synth functional` split, as evaluation pairs."""
    from ..functional.data import list_pairs, load_pairs
    out = []
    for pair in load_pairs(list_pairs(root, split)):
        if pair.kind != "functional" or len(pair.xy_a) < 3:
            continue
        meta = pair.meta
        out.append(AnnotatedPair.from_full_images(pair.pair_id, pair.function, meta["category_a"], meta["category_b"],
                                                  pair.rgb_a, pair.mask_a, pair.rgb_b, pair.mask_b, pair.xy_a,
                                                  pair.xy_b))
    return out


def handal_pairs(root: str | Path) -> list[AnnotatedPair]:
    """Pairs from HANDAL functional annotations (``functional_pairs/...``) and their scenes' masks."""
    from ..world.writers.handal import read_functional_pairs, read_handal_scene
    root = Path(root)
    frames: dict[str, object] = {}

    def frame(image: str):
        if image not in frames:
            rel = Path(image)
            scene = root / rel.parent.parent
            frame_id = int(rel.stem)
            matches = [f for f in read_handal_scene(scene) if f.frame_id == frame_id]
            if not matches:
                raise InputError(f"{scene}: no annotated frame {frame_id} for {image}")
            frames[image] = matches[0]
        return frames[image]

    out = []
    for ann in read_functional_pairs(root):
        fa, fb = frame(ann.image_a), frame(ann.image_b)
        xy_a = ann.rc_a[:, ::-1] + 0.5
        xy_b = ann.rc_b[:, ::-1] + 0.5
        pair_id = f"{ann.function}/{ann.category_a}|||{ann.category_b}|||{ann.group:04d}/trial_{ann.trial}"
        out.append(AnnotatedPair.from_full_images(pair_id, ann.function, ann.category_a, ann.category_b, fa.rgb,
                                                  fa.mask, fb.rgb, fb.mask, xy_a, xy_b))
    return out


def run_functional_benchmark(pairs: list[AnnotatedPair], methods: dict[str, Callable], out: str | Path,
                             settings: dict, progress: bool = True) -> dict:
    if not pairs:
        raise InputError("no annotated pairs to evaluate")
    out = Path(out)
    results: dict = {"settings": settings, "pairs": len(pairs), "methods": {}}
    curves = {}
    for name, embed in methods.items():
        start = time.perf_counter()
        records = []
        for pair in tqdm(pairs, desc=name, unit="pair", disable=not progress):
            records.extend(evaluate_pair(pair, embed))
        curve_rows = [r.pop("curve") for r in records if "curve" in r]
        curves[name] = {"precision": np.mean([c["precision"] for c in curve_rows], 0).tolist(),
                        "recall": np.mean([c["recall"] for c in curve_rows], 0).tolist()} if curve_rows else None
        results["methods"][name] = {"aggregate": aggregate(records), "records": records,
                                    "seconds": time.perf_counter() - start, "pr_curve_tau": CURVE_TAU,
                                    "pr_curve": curves[name]}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "functional_results.json", results)
    (out / "functional_results.md").write_text(table1(results), encoding="utf-8")
    plot_curves(curves, out / "pr_curves.png")
    return results


def table1(results: dict) -> str:
    lines = ["| method | split | pairs-directions | " + " | ".join(COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for name, data in results["methods"].items():
        for split in ("within", "across", "all"):
            agg = data["aggregate"].get(split, {})
            if not agg:
                continue
            count = sum(1 for r in data["records"] if split == "all" or r["within_category"] == (split == "within"))
            cells = [("n/a" if c not in agg else f"{agg[c]:.3f}" if c == "normalised_distance" else f"{agg[c]:.1f}")
                     for c in COLUMNS]
            lines.append(f"| {name} | {split} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict, path: Path) -> Path:
    from ..viz import save_line_plot
    series = {name: (c["recall"], c["precision"]) for name, c in curves.items() if c}
    return save_line_plot(series, path, f"recall (tau = {CURVE_TAU} px)", "precision",
                          "correspondence discovery (mean over pairs)", marker=None)


def methods_for(backbone, head_path: str | None, image_size: int = 224, device: str = "cpu",
                stride: int = 4) -> dict[str, Callable]:
    """'base' (frozen backbone features) and, with a checkpoint, 'head' (the trained functional head)."""
    from ..functional.checkpoint import HeadCheckpoint
    from ..functional.inference import BaseEmbedder, FunctionalEmbedder
    methods: dict[str, Callable] = {f"base ({backbone.spec.name})": BaseEmbedder.create(backbone, image_size, device,
                                                                                       stride)}
    if head_path:
        checkpoint = HeadCheckpoint.load(head_path)
        methods[f"head ({Path(head_path).stem})"] = FunctionalEmbedder.create(checkpoint, backbone, image_size,
                                                                              device, stride)
    return methods


