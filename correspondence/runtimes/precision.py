"""Precision ``auto``: the fastest verified precision for the torch runtime on this machine.

On a CPU with native bf16 (AVX-512 BF16 or AMX: oneDNN runs bf16 matmuls at about twice the fp32 rate) a ViT
runs 2-3x faster under bf16 autocast; on a CPU without it bf16 is emulated and slower than fp32. So ``auto``:

* CPU with native bf16: bf16, but only once it has been verified **on these weights** (a user's checkpoint may
  have activations bf16 cannot hold): on first use the network runs in fp32 and in bf16 on a photo-like image
  pair at the configured size and output kind, and the parity checks of the exports (per-patch cosine, argmax
  agreement, max error against the feature scale; thresholds ``bf16`` in :mod:`.parity`) decide. The outcome is
  recorded next to the weights' hash (:func:`cache_dir`), so later starts do not re-run it. Below threshold the
  extractor falls back to fp32 and logs why.
* CPU without native bf16: fp32 (the reason, with the detected CPU capability, is recorded).
* CUDA: fp32, as before ``auto`` existed (half precision on a GPU stays an explicit ``float16`` / ``bfloat16``).
* An exported model (onnxruntime, tensorrt) fixes its own precision: fp32 for the torch side.

An explicit ``float32`` / ``float16`` / ``bfloat16`` always wins and is not checked.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..device import to_numpy
from ..errors import ConfigError
from ..hashing import state_dict_sha256
from .parity import THRESHOLDS, parity_checks

if TYPE_CHECKING:  # features imports this module
    from ..backbones.registry import LoadedBackbone
    from ..features import ExtractionSettings

AUTO = "auto"
CHECK_FORMAT = "soco_ros.precision-check/1"
ENV_CACHE = "SOCO_PRECISION_CACHE"
TAGS = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
LOG = logging.getLogger("soco.precision")


@dataclass(frozen=True)
class CpuBf16:
    """Whether this CPU computes bf16 natively, and the evidence (torch's probes, /proc/cpuinfo flags)."""

    native: bool
    capability: str  # torch.backends.cpu.get_cpu_capability(): the widest vector ISA torch dispatches to
    evidence: tuple[str, ...]  # e.g. ("avx512_bf16", "amx_tile")

    def describe(self) -> str:
        found = ", ".join(self.evidence) if self.evidence else "no avx512_bf16 / amx_bf16 / bf16 flag"
        return f"{'native' if self.native else 'no native'} bf16 (torch capability {self.capability}; {found})"


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> CpuBf16:
    """Detect native bf16: torch's own probes (x86: AVX-512 BF16, AMX tiles) and the kernel's CPU flags (also
    ARM's ``bf16`` feature)."""
    evidence = []
    probes = (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_tile", "_is_amx_tile_supported"))
    for name, probe in probes:
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                evidence.append(name)
        except RuntimeError:  # a probe that is not built for this architecture
            pass
    evidence += [flag for flag in sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"}) if flag not in evidence]
    return CpuBf16(bool(evidence), torch.backends.cpu.get_cpu_capability(), tuple(evidence))


def cpu_flags() -> set[str]:
    """Feature flags of the first CPU in /proc/cpuinfo (``flags`` on x86, ``Features`` on ARM); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``dtype`` the torch runtime runs with, what was asked for, and why (recorded with every result)."""

    requested: str
    dtype: str
    reason: str
    cpu: str = ""
    verification: dict | None = field(default=None)  # the bf16 check: passed, checks, cached, cache file

    def as_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    """Where precision checks are recorded: ``$SOCO_PRECISION_CACHE``, else ``$XDG_CACHE_HOME/soco_ros/precision``
    (``~/.cache/soco_ros/precision``). One JSON file per weights hash."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "soco_ros" / "precision"


def weights_key(backbone: "LoadedBackbone") -> str:
    """The weights' hash: the file's sha256 for a checkpoint, the state dict's for random or in-memory weights."""
    return backbone.weights.sha256 or state_dict_sha256(backbone.module)


def resolve_precision(settings: "ExtractionSettings", backbone: "LoadedBackbone", device: torch.device,
                      runtime: str = "torch") -> tuple["ExtractionSettings", PrecisionChoice]:
    """``settings`` with ``dtype`` resolved (``auto`` -> float32 or bfloat16) and the record of the choice."""
    requested = settings.dtype
    if requested != AUTO:
        return settings, PrecisionChoice(requested, requested, "explicit")
    choice = _choose(settings, backbone, torch.device(device), runtime)
    return replace(settings, dtype=choice.dtype), choice


def _choose(settings, backbone, device: torch.device, runtime: str) -> PrecisionChoice:
    def fp32(reason: str, cpu: str = "", verification: dict | None = None) -> PrecisionChoice:
        return PrecisionChoice(AUTO, "float32", reason, cpu, verification)

    if runtime != "torch":
        return fp32(f"the {runtime} runtime runs the exported model in the precision it was exported with")
    if device.type != "cpu":
        return fp32(f"{device.type}: auto keeps float32 (choose float16 / bfloat16 explicitly on a GPU)")
    if not any(p.numel() for p in backbone.module.parameters()):
        return fp32(f"{backbone.spec.name} has no learned weights: nothing for bf16 matmuls to speed up")
    cpu = cpu_bf16_support()
    if not cpu.native:
        return fp32(f"this CPU has {cpu.describe()}: bf16 would be emulated, slower than float32", cpu.describe())
    record = verified_record(backbone, settings, device, "bfloat16")
    if record["passed"]:
        return PrecisionChoice(AUTO, "bfloat16", "native bf16 CPU and bf16 verified on these weights",
                               cpu.describe(), record)
    reason = f"bf16 failed verification on these weights ({record['failures']}; record {record['cache_file']})"
    LOG.warning("precision auto: falling back to float32: %s", reason)
    return fp32(reason, cpu.describe(), record)


def _check_key(backbone, settings, device: torch.device, dtype: str) -> str:
    """Everything the check's outcome depends on besides the weights (which name the file)."""
    return json.dumps({"backbone": backbone.spec.name, "dtype": dtype, "device": device.type,
                       "preprocess": settings.preprocess.as_dict(), "kind": settings.kind.value,
                       "layers": list(settings.layers), "torch": torch.__version__,
                       "cpu": torch.backends.cpu.get_cpu_capability(), "thresholds": THRESHOLDS[TAGS[dtype]]},
                      sort_keys=True)


def verified_record(backbone: "LoadedBackbone", settings: "ExtractionSettings", device: torch.device,
                    dtype: str) -> dict:
    """The check of ``dtype`` against fp32 for these weights and settings: from the cache file when this exact
    check ran before (``cached: True``), else run now and recorded there."""
    return cached_check(weights_key(backbone), backbone.identity, _check_key(backbone, settings, device, dtype),
                        lambda: check_precision(backbone, settings, device, dtype))


def cached_check(weights_hash: str, weights_name: str, key: str, run) -> dict:
    """``run()``'s record (a dict with ``passed``), stored under ``key`` in ``<cache_dir>/<weights_hash>.json``
    and read from there when this exact check ran before (``cached: True``)."""
    path = cache_dir() / f"{weights_hash}.json"
    entries = _read_entries(path)
    if key in entries:
        return {**entries[key], "cached": True, "cache_file": str(path)}
    start = time.perf_counter()
    record = run()
    record["seconds"] = round(time.perf_counter() - start, 3)
    record["checked_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries[key] = record
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": CHECK_FORMAT, "weights": weights_name, "entries": entries},
                                  indent=1, default=str) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:  # a read-only home: the check still decides, it is only re-run next start
        LOG.warning("precision check not recorded (%s): it will run again next time", exc)
    return {**record, "cached": False, "cache_file": str(path)}


def _read_entries(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if isinstance(data, dict) and data.get("format") == CHECK_FORMAT else {}


def check_precision(backbone: "LoadedBackbone", settings: "ExtractionSettings", device: torch.device,
                    dtype: str) -> dict:
    """Run the network in fp32 and in ``dtype`` (the torch runtime's own autocast path) on the photo-like pair at
    the configured size and kind, and compare with :func:`.parity.parity_checks`."""
    from ..preprocessing import network_batch
    from ..photo_pair import image_pair
    from .metadata import output_names
    from .torch_runtime import TorchRuntime

    if dtype not in TAGS or dtype == "float32":
        raise ConfigError(f"nothing to check for dtype {dtype!r}; reduced precisions: float16, bfloat16")
    contract, norm = backbone.spec.contract, backbone.spec.preprocessing
    batch, _ = network_batch(list(image_pair()), settings.preprocess, contract.patch_size, norm.mean, norm.std,
                             device)
    kind = settings.kind
    layers = contract.check_layers(settings.layers) if kind.value == "blocks" else (contract.num_blocks - 1,)
    outputs = {}
    with torch.no_grad():
        for name in ("float32", dtype):
            runtime = TorchRuntime(backbone.module, device, name)
            runtime.prepare(tuple(batch.shape[-2:]), kind, settings.layers)
            outputs[name] = [to_numpy(o, np.float32) for o in runtime.forward(batch, kind, settings.layers)]
    names = list(output_names(kind.value, layers))[:len(outputs["float32"])]
    checks, details = parity_checks(outputs["float32"], outputs[dtype], names, TAGS[dtype])
    failed = [c for c in checks if not c.passed]
    return {"passed": not failed, "dtype": dtype, "reference": "float32 (same runtime, same device)",
            "images": "generated photo-like pair (correspondence.photo_pair)",
            "checks": [asdict(c) for c in checks], "details": details,
            "failures": "; ".join(f"{c.name}: {c.value:.6g} vs {c.threshold:g}" for c in failed)}
