"""The SOCO dataset layout, field for field as released, written from rendered views.

``Images/<category>/*.JPEG``, ``KeypointAnnotations/<category>/<stem>.json``,
``PairAnnotations/{intra/<category>, cross/<pair-group>, trainsplits/{train,test}/<category>}/*.json``,
``Metadata/keypoint_taxonomy.json`` and ``Metadata/filename_mapping.json``. Positions are ``[x, y]`` in original
image pixels (continuous; pixel (i, j) covers [j, j+1) x [i, i+1)); bounding boxes are ``[left, top, right,
bottom]`` with right/bottom exclusive; image sizes are ``[W, H]``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ...io import write_json
from ...taxonomy import PartKind
from ..types import ObjectInstance, RenderedView

JPEG_QUALITY = 95


@dataclass(frozen=True)
class SocoImage:
    """One written image with everything a pair file needs (visible keypoints only)."""

    category: str
    stem: str
    image_name: str  # file name inside Images/<category>/ (what pair files reference)
    imsize: tuple[int, int]  # (W, H)
    bndbox: tuple[int, int, int, int]
    keypoints: tuple[dict, ...]  # visible keypoints in the pair-file format


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return (0, 0, 0, 0)
    return (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)


class TaxonomyIndex:
    """Stable integer ids for concepts (global) and keypoints (per category), and which concepts are shared."""

    def __init__(self, instances: Iterable[ObjectInstance]) -> None:
        self.categories: dict[str, ObjectInstance] = {}
        for obj in instances:
            self.categories.setdefault(obj.category, obj)
        concept_categories: dict[str, set[str]] = {}
        self.concepts: dict[str, object] = {}
        for cat, obj in sorted(self.categories.items()):
            for kp in obj.keypoints:
                concept_categories.setdefault(kp.keypoint.concept.name, set()).add(cat)
                self.concepts.setdefault(kp.keypoint.concept.name, kp.keypoint.concept)
        self.concept_ids = {name: i for i, name in enumerate(sorted(self.concepts))}
        self.concept_categories = {k: sorted(v) for k, v in concept_categories.items()}

    def keypoint_record(self, obj: ObjectInstance, index: int, xy: np.ndarray | None = None) -> dict:
        kp = obj.keypoints[index]
        concept = kp.keypoint.concept
        record = {"id": index, "name": kp.name, "concept_id": self.concept_ids[concept.name],
                  "concept_name": concept.name, "kind": concept.kind.value,
                  "shared": len(self.concept_categories[concept.name]) > 1}
        if xy is not None:
            record["pos"] = [round(float(xy[0]), 2), round(float(xy[1]), 2)]
        return record

    def taxonomy_json(self, supercategories: dict[str, str], families: dict[str, str]) -> dict:
        concepts = [{"id": self.concept_ids[name], "name": name, "kind": c.kind.value, "template": c.template,
                     "categories": self.concept_categories[name]} for name, c in sorted(self.concepts.items())]
        categories = {}
        for cat, obj in sorted(self.categories.items()):
            categories[cat] = {
                "supercategory": supercategories[cat], "family": families[cat],
                "keypoints": [dict(self.keypoint_record(obj, i), identity=kp.keypoint.identity.as_dict(),
                                   description=kp.keypoint.describe(cat)) for i, kp in enumerate(obj.keypoints)]}
        return {"concepts": concepts, "categories": categories}


def write_image(root: Path, index: TaxonomyIndex, obj: ObjectInstance, view: RenderedView, stem: str,
                mapping: dict) -> SocoImage:
    """Write ``Images/<cat>/<stem>.JPEG`` and its keypoint annotation; record the source in ``mapping``."""
    rel = f"Images/{obj.category}/{stem}.JPEG"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(view.rgb).save(path, quality=JPEG_QUALITY)
    h, w = view.mask.shape
    bbox = mask_bbox(view.mask)
    visible = tuple(index.keypoint_record(obj, i, view.keypoints_xy[i]) for i in range(len(obj.keypoints))
                    if view.keypoints_visible[i])
    everything = [dict(index.keypoint_record(obj, i, view.keypoints_xy[i]), visible=bool(view.keypoints_visible[i]))
                  for i in range(len(obj.keypoints))]
    write_json(root / f"KeypointAnnotations/{obj.category}/{stem}.json",
               {"image": f"{stem}.JPEG", "category": obj.category, "imsize": [w, h], "bndbox": list(bbox), "keypoints": everything})
    mapping[rel] = {"instance_id": obj.instance_id, "category": obj.category, "seed": int(view.seed),
                    "pose_object_to_camera": np.round(view.pose, 6).tolist(), "intrinsics": view.intrinsics.as_dict(),
                    "source": "soco_ros procedural world"}
    return SocoImage(obj.category, stem, f"{stem}.JPEG", (w, h), bbox, visible)


def pair_record(pair_id: int, pair_group: str, category: str, src: SocoImage, trg: SocoImage) -> dict | None:
    """A pair file; None when the two images share no concept (nothing to evaluate).

    As released: ``pair_id`` is an integer; ``pair_group`` is what results are aggregated by (the category for
    intra and train/test pairs, ``<a>-<b>`` for cross pairs); images are file names inside
    ``Images/<src_category>/`` and ``Images/<trg_category>/``."""
    trg_names = {k["name"] for k in trg.keypoints}
    overlap = [k["name"] for k in src.keypoints if k["name"] in trg_names]
    concept_matches = []
    for concept in dict.fromkeys(k["concept_name"] for k in src.keypoints):
        s = [k["name"] for k in src.keypoints if k["concept_name"] == concept]
        t = [k["name"] for k in trg.keypoints if k["concept_name"] == concept]
        if t:
            concept_matches.append({"concept_name": concept, "src_keypoints": s, "trg_keypoints": t})
    if not concept_matches:
        return None
    return {"pair_id": pair_id, "pair_group": pair_group, "category": category, "src_category": src.category,
            "trg_category": trg.category, "src_image": src.image_name, "trg_image": trg.image_name,
            "src_imsize": list(src.imsize), "trg_imsize": list(trg.imsize), "src_bndbox": list(src.bndbox),
            "trg_bndbox": list(trg.bndbox), "src_keypoints": list(src.keypoints), "trg_keypoints": list(trg.keypoints),
            "semantic_overlap": overlap, "concept_matches": concept_matches}


def write_pair(root: Path, folder: str, record: dict) -> Path:
    return write_json(root / "PairAnnotations" / folder / f"{record['pair_id']:07d}.json", record)


def write_metadata(root: Path, index: TaxonomyIndex, mapping: dict, supercategories: dict[str, str],
                   families: dict[str, str], settings: dict) -> None:
    write_json(root / "Metadata" / "keypoint_taxonomy.json", index.taxonomy_json(supercategories, families))
    write_json(root / "Metadata" / "filename_mapping.json", dict(sorted(mapping.items())))
    write_json(root / "Metadata" / "generation.json", settings)


# ---- schema check ---------------------------------------------------------------------------------------------
PAIR_FIELDS = {"pair_id": int, "pair_group": str, "category": str, "src_category": str, "trg_category": str,
               "src_image": str, "trg_image": str, "src_imsize": list, "trg_imsize": list, "src_bndbox": list,
               "trg_bndbox": list, "src_keypoints": list, "trg_keypoints": list, "semantic_overlap": list,
               "concept_matches": list}
KEYPOINT_FIELDS = {"id": int, "name": str, "pos": list, "concept_id": int, "concept_name": str, "kind": str,
                   "shared": bool}


def check_soco_dataset(root: str | Path) -> list[str]:
    """Every field of every pair file, and consistency with images and the taxonomy. Returns the problems."""
    root = Path(root)
    problems: list[str] = []
    for required in ("Images", "KeypointAnnotations", "PairAnnotations", "Metadata/keypoint_taxonomy.json",
                     "Metadata/filename_mapping.json"):
        if not (root / required).exists():
            problems.append(f"missing {required}")
    if problems:
        return problems
    taxonomy = json.loads((root / "Metadata/keypoint_taxonomy.json").read_text())
    for path in sorted((root / "PairAnnotations").rglob("*.json")):
        where = str(path.relative_to(root))
        try:
            pair = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc})")
            continue
        for field, kind in PAIR_FIELDS.items():
            if not isinstance(pair.get(field), kind):
                problems.append(f"{where}: field {field!r} missing or not {kind.__name__}")
        if any(p.startswith(where) for p in problems):
            continue
        for side in ("src", "trg"):
            image = root / "Images" / pair[f"{side}_category"] / pair[f"{side}_image"]
            if not image.is_file():
                problems.append(f"{where}: {side}_image {pair[side + '_image']} does not exist")
                continue
            with Image.open(image) as img:
                if list(img.size) != pair[f"{side}_imsize"]:
                    problems.append(f"{where}: {side}_imsize {pair[side + '_imsize']} != image size {list(img.size)}")
            w, h = pair[f"{side}_imsize"]
            left, top, right, bottom = pair[f"{side}_bndbox"]
            if not (0 <= left < right <= w and 0 <= top < bottom <= h):
                problems.append(f"{where}: {side}_bndbox {pair[side + '_bndbox']} outside the image")
            names = [k.get("name") for k in pair[f"{side}_keypoints"]]
            if len(set(names)) != len(names):
                problems.append(f"{where}: {side}_keypoints names are not unique")
            vocabulary = {k["name"]: k for k in taxonomy["categories"].get(pair[f"{side}_category"], {}).get("keypoints", [])}
            for k in pair[f"{side}_keypoints"]:
                for field, kind in KEYPOINT_FIELDS.items():
                    if not isinstance(k.get(field), kind) or (kind is int and isinstance(k.get(field), bool)):
                        problems.append(f"{where}: {side} keypoint {k.get('name')!r} field {field!r} missing or not {kind.__name__}")
                if k.get("kind") not in (PartKind.STRUCTURAL.value, PartKind.FUNCTIONAL.value):
                    problems.append(f"{where}: {side} keypoint {k.get('name')!r} kind {k.get('kind')!r}")
                pos = k.get("pos") or [-1, -1]
                if not (0 <= pos[0] < w and 0 <= pos[1] < h):
                    problems.append(f"{where}: {side} keypoint {k.get('name')!r} pos {pos} outside the image")
                ref = vocabulary.get(k.get("name"))
                if ref is None or ref["id"] != k.get("id") or ref["concept_id"] != k.get("concept_id"):
                    problems.append(f"{where}: {side} keypoint {k.get('name')!r} disagrees with the taxonomy")
        src_names = {k["name"] for k in pair["src_keypoints"]}
        trg_names = {k["name"] for k in pair["trg_keypoints"]}
        if set(pair["semantic_overlap"]) != src_names & trg_names:
            problems.append(f"{where}: semantic_overlap is not the set of names visible in both images")
        for match in pair["concept_matches"]:
            if not set(match["src_keypoints"]) <= src_names or not set(match["trg_keypoints"]) <= trg_names:
                problems.append(f"{where}: concept_matches for {match['concept_name']} name invisible keypoints")
    return problems
