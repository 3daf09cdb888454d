"""Transcriptions of the released SOCO reference shared by the parity tests (written from GenIntel/OmniProbe
``omniprobe/datasets/soco.py``, never from this project's code)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image


@dataclass
class RefPair:
    """What ``SOCODataset.__getitem__`` (use_bbox=False) computes for one pair file, but the images."""

    src_cat: str
    trg_cat: str
    kps_i: torch.Tensor  # int (N, 3): x, y scaled by S / side, visibility
    kps_j: torch.Tensor
    thresh_scale: float
    semantic_pairs: list[tuple[int, int]]
    concept_map: dict[int, list[int]]
    hw_j: int


def ref_side(root: Path, category: str, name: str) -> int:
    with Image.open(Path(root) / "Images" / category / name) as im:
        return max(im.size)  # _load_image pads to a square


def ref_keypoints(keypoints) -> tuple[torch.Tensor, dict[str, int]]:
    tensor = torch.zeros(len(keypoints), 3).int()
    for i, kp in enumerate(keypoints):
        tensor[i, 0], tensor[i, 1], tensor[i, 2] = int(kp["pos"][0]), int(kp["pos"][1]), 1
    return tensor, {kp["name"]: i for i, kp in enumerate(keypoints)}


def ref_pair(root: Path, pair: dict, size: int) -> RefPair:
    """Int keypoints scaled by ``S / side`` into an int tensor, the target box's threshold scale, the exact (SOC)
    and concept (CC) matches by keypoint name."""
    src_cat = pair.get("src_category", pair.get("category"))
    trg_cat = pair.get("trg_category", pair.get("category"))
    kps_i, map_i = ref_keypoints(pair["src_keypoints"])
    kps_j, map_j = ref_keypoints(pair["trg_keypoints"])
    hw_i, hw_j = ref_side(root, src_cat, pair["src_image"]), ref_side(root, trg_cat, pair["trg_image"])
    kps_i[:, :2] = kps_i[:, :2] * size / hw_i
    kps_j[:, :2] = kps_j[:, :2] * size / hw_j
    if pair.get("trg_bndbox"):
        l, u, r, d = pair["trg_bndbox"]
        thresh_scale = float(max(r - l, d - u)) / max(pair["trg_imsize"][:2])
    else:
        thresh_scale = 1.0
    semantic_pairs = [(map_i[n], map_j[n]) for n in pair.get("semantic_overlap", []) if n in map_i and n in map_j]
    concept_map: dict[int, set] = {}
    for concept in pair.get("concept_matches", []):
        trg = [map_j[n] for n in concept.get("trg_keypoints", []) if n in map_j]
        if not trg:
            continue
        for n in concept.get("src_keypoints", []):
            if n in map_i:
                concept_map.setdefault(map_i[n], set()).update(trg)
    return RefPair(src_cat, trg_cat, kps_i, kps_j, thresh_scale, semantic_pairs,
                   {k: sorted(v) for k, v in concept_map.items() if v}, hw_j)
