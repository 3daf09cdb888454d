"""The metadata written into every exported ONNX file (``soco.*`` keys in ``metadata_props``).

The schema itself lives in :mod:`correspondence.runtimes.metadata` because the runtimes read it back; this
module fills it from a loaded backbone or head and writes it into an ONNX model.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from correspondence.backbones.contract import OutputKind
from correspondence.hashing import state_dict_sha256
from correspondence.backbones.registry import LoadedBackbone
from correspondence.runtimes.deps import import_onnx
from correspondence.runtimes.metadata import (FORMAT, PREFIX, VERIFICATION_KEY, ModelMetadata, VerificationRecord,
                                              output_names)


def backbone_metadata(loaded: LoadedBackbone, size: int, kind: OutputKind, layers: tuple[int, ...], precision: str,
                      opset: int, batch: str) -> ModelMetadata:
    contract = loaded.spec.contract
    sha = loaded.weights.sha256 or state_dict_sha256(loaded.module)
    hash_of = "weights file" if loaded.weights.sha256 else "state dict"
    norm = loaded.spec.preprocessing
    return ModelMetadata(
        backbone=loaded.spec.name, size=size, patch_size=contract.patch_size,
        feature_dim=contract.feature_dim_for(kind, 1), output_kind=kind.value, layers=layers,
        outputs=output_names(kind.value, layers), precision=precision, mean=tuple(norm.mean),
        std=tuple(norm.std), weights_kind=loaded.weights.kind, weights_sha256=sha, batch=batch, opset=opset,
        extra={"weights_hash_of": hash_of, "weights_path": loaded.weights.path or "", "torch_version": torch.__version__,
               "exporter": "torch.onnx.export (TorchScript tracer)", "host": platform.node()})


def head_props(checkpoint_path: str, backbone: str, layers: tuple[int, ...], grid: int, size: int, config: dict,
               function: str | None, text_encoder: str, precision: str, weights_sha256: str, inputs: list[str],
               outputs: list[str], opset: int) -> dict[str, str]:
    values = {"format": FORMAT, "model": "functional_head", "backbone": backbone, "layers": list(layers),
              "size": size, "grid": grid, "head": config, "text_input": "baked" if function else "input:text",
              "function": function or "", "text_encoder": text_encoder, "precision": precision,
              "weights_sha256": weights_sha256, "checkpoint": checkpoint_path, "inputs": inputs, "outputs": outputs,
              "opset": opset, "torch_version": torch.__version__,
              "input_layout": "block_<L>: float32 (B, C, grid, grid) raw block outputs of the backbone export; grid: "
                              "float32 (B, N, 2) sampling points in [-1, 1], align_corners=True; text: float32 (B, T)",
              "output_layout": "embeddings: float32 (B, N, D), L2-normalised; mask_logits: float32 (B, N)"}
    return {PREFIX + k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def write_props(path: str | Path, props: dict[str, str]) -> None:
    """Store ``props`` in the ONNX file's ``metadata_props`` (replacing older soco.* keys)."""
    onnx = import_onnx()
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "soco_ros"
    if model.ByteSize() >= 2**31 - 1:  # protobuf's 2 GB limit: ViT-L/g weights go to a side file
        onnx.save(model, str(path), save_as_external_data=True, location=Path(path).name + ".data")
    else:
        onnx.save(model, str(path))


def write_verification(path: str | Path, props: dict[str, str], record: VerificationRecord) -> dict[str, str]:
    """Store the export metadata plus the verification record (``soco.verification``); returns the props written."""
    props = {**props, VERIFICATION_KEY: record.to_json()}
    write_props(path, props)
    return props


def read_props(path: str | Path) -> dict[str, str]:
    onnx = import_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
