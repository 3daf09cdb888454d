"""Finding and loading pretrained weights the real way, without surprises.

Resolution order (first hit wins): an explicit path; ``$SOCO_WEIGHTS_DIR/<file>``; the torch hub checkpoint
cache (``$TORCH_HOME/hub/checkpoints/<file>``); a download from the official URL with a progress bar into that
cache. ``SOCO_OFFLINE=1`` skips the download. Every load is ``torch.load(..., weights_only=True)``: a checkpoint
is data, never code.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CorruptCheckpointError, WeightsNotFoundError
from ..hashing import file_sha256

ENV_WEIGHTS_DIR = "SOCO_WEIGHTS_DIR"
ENV_OFFLINE = "SOCO_OFFLINE"
DOWNLOAD_TIMEOUT_S = float(os.environ.get("SOCO_DOWNLOAD_TIMEOUT", "20"))


@dataclass(frozen=True)
class PretrainedSource:
    """Where a backbone's official weights live and which key layout they use.

    ``url`` is None for licence-gated weights (DINOv3) that users must download themselves.
    """

    filename: str
    url: str | None
    key_layout: str  # "dinov2" | "dino" | "dinov3" | "timm"
    note: str = ""


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def candidate_paths(source: PretrainedSource) -> list[Path]:
    """Local places searched, in order (without the explicit path)."""
    paths = []
    if os.environ.get(ENV_WEIGHTS_DIR):
        paths.append(Path(os.environ[ENV_WEIGHTS_DIR]).expanduser() / source.filename)
    paths.append(hub_checkpoint_dir() / source.filename)
    return paths


def set_phrase(setting: str) -> str:
    """How a user gives the file: ``--weights`` -> "pass --weights PATH", ``$SOCO_CLIP_WEIGHTS`` -> "set
    $SOCO_CLIP_WEIGHTS=PATH"."""
    return f"set {setting}=PATH" if setting.startswith("$") else f"pass {setting} PATH"


def resolve_weights(source: PretrainedSource, explicit: str | os.PathLike | None = None,
                    allow_download: bool = True, setting: str = "--weights") -> Path:
    """Return a local path to the checkpoint, downloading it if needed and allowed.

    ``setting`` is what gives these weights an explicit path (a backbone's ``--weights``; CLIP's
    ``$SOCO_CLIP_WEIGHTS``): the errors tell the user to use it. Raises :class:`WeightsNotFoundError` (exit code
    2) naming the file, the URL, the setting and the environment variable.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {str(path)!r} does not exist (given by {setting})")
        return path
    for path in candidate_paths(source):
        if path.is_file():
            return path
    searched = ", ".join(str(p) for p in candidate_paths(source))
    if source.url is None:
        raise WeightsNotFoundError(
            f"weights {source.filename!r} are not available for automatic download ({source.note or 'licence-gated'}). "
            f"Download them yourself and {set_phrase(setting)} or put the file in ${ENV_WEIGHTS_DIR}. Searched: {searched}")
    offline = os.environ.get(ENV_OFFLINE, "").lower() in ("1", "true", "yes")
    if not allow_download or offline:
        why = f"${ENV_OFFLINE} is set" if offline else "downloads are disabled"
        raise WeightsNotFoundError(
            f"weights {source.filename!r} not found and {why}. Get them from {source.url} and {set_phrase(setting)} "
            f"or put the file in ${ENV_WEIGHTS_DIR}. Searched: {searched}")
    target = hub_checkpoint_dir() / source.filename
    try:
        download(source.url, target)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise WeightsNotFoundError(
            f"weights {source.filename!r} not found locally and the download from {source.url} failed ({exc}). "
            f"Download the file on a machine with internet and {set_phrase(setting)} or put it in ${ENV_WEIGHTS_DIR}. "
            f"Searched: {searched}") from exc
    return target


def download(url: str, target: Path) -> None:
    """Download to a temporary file next to ``target`` and rename, with a progress bar."""
    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 - official URLs only
        total = int(response.headers.get("Content-Length") or 0) or None
        with tempfile.NamedTemporaryFile(delete=False, dir=target.parent, suffix=".part") as tmp, \
                tqdm(total=total, unit="B", unit_scale=True, desc=f"download {target.name}") as bar:
            while chunk := response.read(1 << 20):
                tmp.write(chunk)
                bar.update(len(chunk))
    shutil.move(tmp.name, target)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a checkpoint as a flat ``{name: tensor}`` dict, safely, with a clear error if it is corrupt."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj: object = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for a bad file
        raise CorruptCheckpointError(f"cannot read checkpoint {str(path)!r}: {type(exc).__name__}: {exc}. "
                                     "Delete it and download it again.") from exc
    for key in ("model", "state_dict", "teacher"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptCheckpointError(f"checkpoint {str(path)!r} is not a state dict of tensors")
    state = {}
    for key, value in obj.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    return state


def weights_hash(path: str | os.PathLike) -> str:
    """Content hash prefix of a weights file, recorded in every result so runs are traceable."""
    return file_sha256(path, 16)
