"""Parity of two runs of one network (a reduced-precision or exported candidate against eager fp32 PyTorch).

Shared by the export verification (``export/verify.py``: ONNX, TensorRT) and the first-use check of a reduced
precision on the user's own weights (:mod:`correspondence.runtimes.precision`), so both measure the same figures
against the same thresholds. Per output: the largest absolute difference relative to the feature scale (the largest
reference magnitude), the cosine similarity of every patch feature vector (its minimum), and the share of identical
argmax matches from the first image of the pair to the second.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..device import to_numpy

# max_relative_error: the largest |reference - candidate| of an output divided by its largest |reference| (the
# feature scale). fp32 exports differ from eager PyTorch by ~1e-6 of the scale (op order, fused kernels); fp16
# rounds every op to 11 significant bits, ~1e-3 of the scale after a ViT's depth; bf16 keeps 8 bits (8x coarser
# than fp16); int8 rounds weights (and, dynamic, activations) to 256 levels per tensor. The bounds leave a margin
# over what each precision measures on a ViT (docs/export.md, "Verification") and still fail a model with a
# localised real error that the per-vector cosine would average away.
THRESHOLDS = {"fp32": {"min_cosine": 0.9999, "argmax_agreement": 0.99, "max_relative_error": 1e-3},
              "fp16": {"min_cosine": 0.999, "argmax_agreement": 0.97, "max_relative_error": 5e-2},
              "bf16": {"min_cosine": 0.99, "argmax_agreement": 0.97, "max_relative_error": 1e-1},
              "int8": {"min_cosine": 0.98, "argmax_agreement": 0.95, "max_relative_error": 1.5e-1,
                       "argmax_tie_margin": 2e-3}}
# argmax_tie_margin (int8 only): a differing match still agrees when the reference itself scores the candidate's
# choice within this cosine of its own best (a near-tie: neighbouring points of a bilinearly sampled head grid
# differ by less than int8's rounding). The strict identical share is reported beside it.


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float | None  # None: reported only
    passed: bool


def as_rows(array: np.ndarray) -> np.ndarray:
    """``(B, C, h, w)`` maps -> ``(B, h*w, C)``; ``(B, N, D)`` point embeddings pass through."""
    if array.ndim == 4:
        return array.reshape(array.shape[0], array.shape[1], -1).transpose(0, 2, 1)
    return array


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    dot = (a * b).sum(-1)
    return dot / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def similarities(features: np.ndarray) -> np.ndarray:
    """Cosine similarities ``(N0, N1)`` of every feature of item 0 to every feature of item 1."""
    a = torch.from_numpy(np.ascontiguousarray(features[0])).double()
    b = torch.from_numpy(np.ascontiguousarray(features[1])).double()
    return to_numpy(torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T)


def parity_checks(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], names: Sequence[str],
                  precision: str, argmax_outputs: Sequence[int] | None = None) -> tuple[list[Check], dict]:
    """Compare two runs of the same model on the same two-item batch.

    ``argmax_outputs``: which outputs are concatenated into the matching descriptor (default: all, as the
    feature extractor concatenates blocks)."""
    limits = THRESHOLDS[precision]
    checks, details = [], {}
    for name, ref, out in zip(names, reference, candidate):
        if ref.shape != out.shape:
            checks.append(Check(f"{name}: shape {tuple(out.shape)} == {tuple(ref.shape)}", 0.0, 1.0, False))
            continue
        error = float(np.abs(ref.astype(np.float64) - out).max())
        scale = float(np.abs(ref).max()) or 1.0
        relative = error / scale
        cos = cosine_rows(as_rows(ref), as_rows(out))
        details[name] = {"max_abs_error": error, "max_abs_reference": scale, "relative_error": relative,
                         "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "vectors": int(cos.size)}
        checks.append(Check(f"{name}: max abs error / max |reference| ({scale:.4g})", relative,
                            limits["max_relative_error"], bool(relative <= limits["max_relative_error"])))
        checks.append(Check(f"{name}: min cosine of {cos.size} vectors", float(cos.min()), limits["min_cosine"],
                            bool(cos.min() >= limits["min_cosine"])))
    chosen = list(argmax_outputs) if argmax_outputs is not None else list(range(len(names)))
    ref_desc = np.concatenate([as_rows(reference[i]) for i in chosen], -1)
    out_desc = np.concatenate([as_rows(candidate[i]) for i in chosen], -1)
    ref_sim = similarities(ref_desc)
    ref_best, out_best = ref_sim.argmax(1), similarities(out_desc).argmax(1)
    same = ref_best == out_best
    rows = np.arange(len(ref_best))
    margin = ref_sim[rows, ref_best] - ref_sim[rows, out_best]  # how much worse the candidate's choice is
    details["argmax"] = {"matches": int(same.size), "identical": int(same.sum()),
                         "differing_reference_ties": int(((~same) & (margin < 1e-6)).sum()),
                         "largest_reference_margin_of_a_differing_match": float(margin.max()),
                         "outputs": [names[i] for i in chosen]}
    tie = limits.get("argmax_tie_margin", 0.0)
    if not tie:
        checks.append(Check(f"identical argmax matches image 1 -> 2 ({same.size})", float(same.mean()),
                            limits["argmax_agreement"], bool(same.mean() >= limits["argmax_agreement"])))
        return checks, details
    agree = same | (margin <= tie)
    details["argmax"]["agreeing_up_to_ties"] = int(agree.sum())
    checks.append(Check(f"argmax matches image 1 -> 2 identical or within {tie:g} of the reference's best "
                        f"({same.size})", float(agree.mean()), limits["argmax_agreement"],
                        bool(agree.mean() >= limits["argmax_agreement"])))
    checks.append(Check(f"identical argmax matches image 1 -> 2 ({same.size}), reported", float(same.mean()), None,
                        True))
    return checks, details
