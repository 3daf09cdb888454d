"""Head checkpoints: ``<name>.safetensors`` (weights) + ``<name>.json`` (backbone, layers, dims, text encoder and
the function table), so inference on known functions needs no text encoder."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import CorruptCheckpointError, InputError
from .model import FunctionalHead, HeadConfig

FORMAT = "soco_ros.functional_head/2"  # /2: the reference's layout (shared bias-free projection, mask on the output)


@dataclass
class HeadCheckpoint:
    head: FunctionalHead
    backbone: str
    layers: tuple[int, ...]
    text_encoder: str
    functions: dict[str, torch.Tensor]
    extra: dict = field(default_factory=dict)

    def function_embedding(self, function: str) -> torch.Tensor:
        if function in self.functions:
            return self.functions[function]
        from .text import get_text_encoder, embed_functions
        encoder = get_text_encoder(self.text_encoder)
        return embed_functions([function], encoder)[function]

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file
        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, str(path))
        meta = {"format": FORMAT, "head": self.head.config.as_dict(), "backbone": self.backbone,
                "layers": list(self.layers), "text_encoder": self.text_encoder,
                "functions": {k: v.tolist() for k, v in sorted(self.functions.items())}, **self.extra}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "HeadCheckpoint":
        from safetensors.torch import load_file
        path = Path(path).with_suffix(".safetensors")
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise InputError(f"head checkpoint {str(path)!r} needs both the .safetensors and the .json file")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT:
                old = meta.get("format") == "soco_ros.functional_head/1"
                raise CorruptCheckpointError(
                    f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}"
                    + ("; /1 heads (per-block projections, mask head on the MLP input) predate the reference layout: "
                       "retrain with `soco train functional`" if old else ""))
            head = FunctionalHead(HeadConfig(**meta["head"]))
            head.load_state_dict(load_file(str(path)))
        except (KeyError, TypeError, json.JSONDecodeError, RuntimeError) as exc:
            raise CorruptCheckpointError(f"cannot load head checkpoint {str(path)!r}: {exc}") from exc
        functions = {k: torch.tensor(v, dtype=torch.float32) for k, v in meta["functions"].items()}
        extra = {k: v for k, v in meta.items() if k not in ("format", "head", "backbone", "layers", "text_encoder",
                                                            "functions")}
        return cls(head.eval(), meta["backbone"], tuple(meta["layers"]), meta["text_encoder"], functions, extra)

    @classmethod
    def from_reference(cls, state_path: str | Path, backbone: str, feature_dim: int, functions: dict[str, torch.Tensor],
                       text_encoder: str = "clip-vit-b-32", mask_head: bool | None = None) -> "HeadCheckpoint":
        """A released reference checkpoint (``epoch_XXXX.pt``: ``{"model": ConditionedDino.state_dict()}``) as a
        head checkpoint; ``functions`` is the reference's CLIP feature table (``<function>.pth`` vectors)."""
        from ..backbones.weights import load_state_dict
        from .model import load_reference_state_dict
        state = load_state_dict(state_path)
        if mask_head is None:
            mask_head = "mask_projection.weight" in state
        projection = int(state["image_embedder.lin_proj.weight"].shape[0])
        text_dim = int(state["mlp_conditioner.mlp.0.weight"].shape[1]) - projection
        config = HeadConfig(feature_dim, text_dim, num_blocks=int(state["image_embedder.w"].numel()),
                            projection=int(state["image_embedder.lin_proj.weight"].shape[0]),
                            hidden=int(state["mlp_conditioner.mlp.0.weight"].shape[0]),
                            output=int(state["mlp_conditioner.mlp.4.weight"].shape[0]), mask_head=mask_head)
        head = load_reference_state_dict(FunctionalHead(config), state)
        layers = tuple(range(-config.num_blocks, 0))
        return cls(head.eval(), backbone, layers, text_encoder, {k: v.float() for k, v in functions.items()},
                   {"converted_from": str(state_path)})
