"""Devices and the torch -> numpy boundary.

Two rules keep every path correct on a GPU although CI has none:

* a device string from a user goes through :func:`resolve_device`, which fails with a sentence (not a CUDA
  traceback) when the device does not exist here;
* a tensor leaves torch only through :func:`to_numpy` (detach, to the CPU, to numpy). ``tests/test_device_guard.py``
  fails CI when a call of a tensor's ``numpy`` method appears anywhere else in the package.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import DeviceError

# numpy has no bfloat16; these dtypes are widened on the way out.
_WIDEN = {torch.bfloat16: torch.float32}


def to_numpy(tensor: torch.Tensor | np.ndarray | Any, dtype: Any = None) -> np.ndarray:
    """Any tensor (any device, with or without grad) -> a numpy array on the CPU; arrays pass through.

    ``dtype``: optional numpy dtype of the result.
    """
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach()
        if tensor.dtype in _WIDEN:
            tensor = tensor.to(_WIDEN[tensor.dtype])
        array = tensor.cpu().numpy()
    else:
        array = np.asarray(tensor)
    return array.astype(dtype, copy=False) if dtype is not None else array


def cuda_devices() -> list[str]:
    """Names of the CUDA devices torch can see, e.g. ``["cuda:0 (NVIDIA H200)"]``."""
    if not torch.cuda.is_available():
        return []
    return [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Check that ``device`` exists on this machine; ``None`` means the CPU.

    Raises :class:`DeviceError` (exit code 1) with "CUDA is not available on this machine" when CUDA is asked for
    without one, and names the devices that exist for an index that does not.
    """
    if device is None:
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"{device!r} is not a torch device (use cpu, cuda or cuda:N)") from exc
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise DeviceError(f"device {str(resolved)!r} is not supported; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceError(f"CUDA is not available on this machine (asked for {str(resolved)!r}); use --device cpu")
    count = torch.cuda.device_count()
    index = 0 if resolved.index is None else resolved.index
    if index >= count:
        raise DeviceError(f"{str(resolved)!r} does not exist on this machine; it has {count} CUDA device(s): "
                          + ", ".join(cuda_devices()))
    return torch.device("cuda", index)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels (timings are meaningless without it on CUDA); a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
