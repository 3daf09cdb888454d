"""Dense functional correspondence benchmarks under the reference protocol (``correspondence.functional.evaluate``).

Inputs:

* ``soco bench handal --root DIR``: either the reference's released layout (``selected_annotations*.json``,
  ``<action>/<objA>|||<objB>|||0000/trial_N/<obj>|||<img>.npy`` in the 224 crops, images under
  ``<base>/<obj>/rgb_images_processed`` and masks under ``object_masks_processed``; see
  :func:`correspondence.world.writers.handal.read_reference_layout`), or a HANDAL/BOP root with
  ``functional_pairs/`` (full frames; cropped here as the reference crops).
* ``soco bench functional --root DIR``: the cross-instance pairs of a `soco synth functional` split.

Methods: Chance, DINO (the reference's features of the frozen backbone) and, with ``--head``, the trained head.
Reports: ``functional_results.json`` (every record, settings, skip counts), ``functional_results.md`` (Table 1's
columns, with the paper's published rows beside ours, labelled as such) and ``pr_curves.png``.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError, InputError
from ..functional.evaluate import CURVE_TAU, AnnotatedPair, ChanceMethod, EvaluationCounts, evaluate_pair
from ..functional.metrics import aggregate
from ..io import write_json

PROTOCOL = "reference"
COLUMNS = ("normalised_distance", "pck@23", "pck@15", "pck@10", "best_f1@23", "best_f1@15", "best_f1@10",
           "best_f1@5", "ap@23", "ap@15", "ap@10", "ap@5")
PAPER_COLUMNS = {"normalised_distance": "normalized_dist", "pck@23": "PCK@23px", "pck@10": "PCK@10px",
                 "best_f1@23": "bestF1@23px", "best_f1@10": "bestF1@10px", "ap@23": "AP@23px", "ap@10": "AP@10px"}
PAPER_TABLE = "functional_table1.tsv"
ENV_PAPER_TABLES = "SOCO_PAPER_TABLES"
PAPER_LABEL = "published: Stojanov et al. ICCV 2025, Table 1"


# ---------------------------------------------------------------------------------------------------- pairs

def synthetic_pairs(root: str | Path, split: str = "test", size: int = 224) -> list[AnnotatedPair]:
    """Cross-instance functional pairs of a `soco synth functional` split, cropped as the reference crops."""
    from ..functional.data import list_pairs, load_pairs
    out = []
    for pair in load_pairs(list_pairs(root, split)):
        if pair.kind != "functional" or len(pair.xy_a) < 3:
            continue
        meta = pair.meta
        rc_a = np.floor(pair.xy_a[:, ::-1]).astype(int)  # continuous xy -> the pixel index holding it
        rc_b = np.floor(pair.xy_b[:, ::-1]).astype(int)
        out.append(AnnotatedPair.from_full_images(pair.pair_id, pair.function, meta["category_a"], meta["category_b"],
                                                  pair.rgb_a, pair.mask_a, pair.rgb_b, pair.mask_b, rc_a, rc_b,
                                                  size))
    return out


def _bop_pairs(root: Path) -> list[AnnotatedPair]:
    from ..world.writers.handal import read_functional_pairs, read_handal_scene
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
        pair_id = f"{ann.function}/{ann.category_a}|||{ann.category_b}|||{ann.group:04d}/trial_{ann.trial}"
        out.append(AnnotatedPair.from_full_images(pair_id, ann.function, ann.category_a, ann.category_b, fa.rgb,
                                                  fa.mask, fb.rgb, fb.mask, ann.rc_a, ann.rc_b))
    return out


def handal_pairs(root: str | Path, annotation_list: str | Path | None = None, annotation_dir: str | Path | None = None,
                 images_dir: str | Path | None = None) -> list[AnnotatedPair]:
    """Pairs of a HANDAL root: the reference's released layout when it has one (or ``annotation_list`` is given),
    else BOP + ``functional_pairs``."""
    from ..world.writers.handal import FUNCTIONAL_DIR, find_reference_layout, read_reference_layout
    root = Path(root)
    layout = find_reference_layout(root, annotation_list, annotation_dir, images_dir)
    if layout is not None:
        return [AnnotatedPair(t.pair_id, t.function, t.category_a, t.category_b, t.image_a, t.mask_a, t.image_b,
                              t.mask_b, t.rc_a, t.rc_b) for t in read_reference_layout(layout)]
    if (root / FUNCTIONAL_DIR).is_dir():
        return _bop_pairs(root)
    raise InputError(f"{str(root)!r} has neither the reference layout (selected_annotations*.json) nor "
                     f"{FUNCTIONAL_DIR}/ (soco synth handal writes both)")


# -------------------------------------------------------------------------------------------------- running

def run_functional_benchmark(pairs: list[AnnotatedPair], methods: dict[str, Callable], out: str | Path,
                             settings: dict, progress: bool = True, paper_split: str | None = None,
                             paper_table: str | Path | None = None) -> dict:
    if not pairs:
        raise InputError("no annotated pairs to evaluate")
    out = Path(out)
    results: dict = {"settings": {"protocol": PROTOCOL, **settings}, "pairs": len(pairs), "methods": {}}
    curves = {}
    for name, method in methods.items():
        if isinstance(method, ChanceMethod):
            method.reset()
        start = time.perf_counter()
        records = []
        counts = EvaluationCounts()
        for pair in tqdm(pairs, desc=name, unit="pair", disable=not progress):
            records.extend(evaluate_pair(pair, method, counts=counts))
        curve_rows = [r.pop("curve") for r in records if "curve" in r]
        curves[name] = {"precision": np.mean([c["precision"] for c in curve_rows], 0).tolist(),
                        "recall": np.mean([c["recall"] for c in curve_rows], 0).tolist()} if curve_rows else None
        results["methods"][name] = {"aggregate": aggregate(records), "records": records, "skipped": counts.skipped,
                                    "seconds": time.perf_counter() - start, "pr_curve_tau": CURVE_TAU,
                                    "pr_curve": curves[name]}
    published = paper_rows(paper_split, paper_table) if paper_split else None
    if published is not None:
        results["published"] = published
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "functional_results.json", results)
    (out / "functional_results.md").write_text(table1(results), encoding="utf-8")
    plot_curves(curves, out / "pr_curves.png")
    return results


def _fmt(column: str, value) -> str:
    if value is None or value == "":
        return "n/a"
    return f"{float(value):.3f}"


def table1(results: dict) -> str:
    """Our rows (mean over pair directions per split; fractions as in the paper) and the published rows."""
    lines = ["| method | split | pair directions | " + " | ".join(COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for name, data in results["methods"].items():
        for split in ("within", "across", "all"):
            agg = data["aggregate"].get(split, {})
            if not agg:
                continue
            count = sum(1 for r in data["records"] if "normalised_distance" in r
                        and (split == "all" or r["within_category"] == (split == "within")))
            lines.append(f"| {name} | {split} | {count} | " + " | ".join(_fmt(c, agg.get(c)) for c in COLUMNS) + " |")
    published = results.get("published")
    if published:
        for row in published["rows"]:
            cells = [_fmt(c, row.get(PAPER_COLUMNS[c])) if c in PAPER_COLUMNS else "n/a" for c in COLUMNS]
            lines.append(f"| {row['model']} ({PAPER_LABEL}, {published['split']}) | all | - | "
                         + " | ".join(cells) + " |")
    skipped = {name: data["skipped"] for name, data in results["methods"].items() if data.get("skipped")}
    notes = [f"Protocol: {results['settings'].get('protocol', PROTOCOL)} (the released code's metrics, crop and "
             "every-pixel evaluation; see docs/functional.md)."]
    if published:
        notes.append(f"Rows marked '{PAPER_LABEL}' are the paper's published numbers ({published['source']}), not "
                     "runs of this code.")
    else:
        notes.append("Published rows: functional_table1.tsv not found (pass --paper-table or set "
                     f"${ENV_PAPER_TABLES}).")
    if skipped:
        notes.append("Skipped pair directions: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ".")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def find_paper_table(explicit: str | Path | None = None) -> Path | None:
    """``--paper-table``, else ``$SOCO_PAPER_TABLES/functional_table1.tsv``, else ``shared/data/paper_tables`` next
    to the repository (the project's shared folder), else None."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"paper table {str(path)!r} does not exist")
        return path
    candidates = []
    if os.environ.get(ENV_PAPER_TABLES):
        candidates.append(Path(os.environ[ENV_PAPER_TABLES]) / PAPER_TABLE)
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo.parent / "shared" / "data" / "paper_tables" / PAPER_TABLE,
                   Path.cwd().parent / "shared" / "data" / "paper_tables" / PAPER_TABLE]
    return next((p for p in candidates if p.is_file()), None)


def paper_rows(split: str, explicit: str | Path | None = None) -> dict | None:
    """The published Table 1 rows of ``split`` ("real" for HANDAL, "synthetic") or None when the TSV is absent."""
    path = find_paper_table(explicit)
    if path is None:
        return None
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t") if row.get("split") == split]
    return {"source": str(path), "split": split, "rows": rows}


def plot_curves(curves: dict, path: Path) -> Path:
    from ..viz import save_line_plot
    series = {name: (c["recall"], c["precision"]) for name, c in curves.items() if c}
    return save_line_plot(series, path, f"recall (tau = {CURVE_TAU} px)", "precision",
                          "correspondence discovery (mean over pair directions)", marker=None)


def needs_backbone(head_path: str | None, dino: bool) -> bool:
    """The DINO row and the head run the backbone; the Chance row alone never does (so it never loads weights)."""
    return bool(dino or head_path)


def methods_for(backbone, head_path: str | None, image_size: int = 224, device: str = "cpu",
                chance: bool = True, dino: bool = True, chunk: int | None = None) -> dict[str, Callable]:
    """'Chance', 'DINO (<backbone>)' (the reference's baseline features) and, with a checkpoint, the head.
    ``backbone`` may be None when only Chance runs (:func:`needs_backbone`)."""
    from ..functional.checkpoint import HeadCheckpoint
    from ..functional.inference import DinoEmbedder, FunctionalEmbedder
    if not (chance or dino or head_path):
        raise ConfigError("nothing to evaluate: --no-chance and --no-dino without --head leave no method")
    if backbone is None and needs_backbone(head_path, dino):
        raise ValueError("the DINO row and the head need a backbone")
    methods: dict[str, Callable] = {}
    if chance:
        methods["Chance"] = ChanceMethod()
    if dino:
        methods[f"DINO ({backbone.spec.name})"] = DinoEmbedder.create(backbone, image_size, device)
    if head_path:
        checkpoint = HeadCheckpoint.load(head_path)
        methods[f"head ({Path(head_path).stem})"] = FunctionalEmbedder.create(checkpoint, backbone, image_size,
                                                                              device, chunk=chunk)
    return methods
