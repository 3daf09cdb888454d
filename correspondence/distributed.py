"""Several processes with torch's own launcher and process groups (``torchrun`` / ``torch.distributed``), shared
by training and evaluation.

``torchrun --nproc_per_node N -m correspondence.cli ...`` starts N copies of a command with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. This module turns that environment into a :class:`DistContext`:

* the device of a rank comes from the ``--device`` argument *and* ``LOCAL_RANK``: ``--device cuda`` puts local
  rank k on ``cuda:k`` (``torch.cuda.set_device`` is called), ``--device cpu`` keeps every rank on the CPU;
* the backend follows that device, not what the machine happens to have: NCCL for CUDA, Gloo for the CPU;
* object collectives (Python objects, feature maps on their way to rank 0) always go through a Gloo group, so
  they work the same under NCCL;
* :func:`session` initialises the process group when it is not yet initialised and destroys it on the way out
  (only the session that created it does), so library calls and the CLI can both use it.

Without torchrun (``WORLD_SIZE`` unset or 1) every helper is a cheap no-op and rank 0 is the only rank.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

from .device import resolve_device
from .errors import DeviceError

T = TypeVar("T")

#: How long a collective may wait for the slowest rank (image encoding or a training step, not a whole run).
DEFAULT_TIMEOUT = timedelta(minutes=30)

_state: dict[str, Any] = {"object_group": None}


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 without torchrun)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def env_local_rank() -> int:
    """``LOCAL_RANK`` (the process's index on its node), falling back to ``RANK``."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")) or 0)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def backend_for(device: torch.device | str) -> str:
    """The process-group backend for a device: NCCL for CUDA, Gloo for the CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def device_for_rank(device: str | torch.device | None, local_rank: int | None = None,
                    world: int | None = None) -> torch.device:
    """The device one rank works on.

    Single process: :func:`correspondence.device.resolve_device` of ``device``. Several processes: CPU stays CPU;
    ``cuda`` becomes ``cuda:LOCAL_RANK`` (checked to exist); an explicit ``cuda:N`` is only accepted when N is this
    rank's local rank, because one command line is shared by every rank.
    """
    world = env_world_size() if world is None else world
    local_rank = env_local_rank() if local_rank is None else local_rank
    requested = resolve_device(device) if world <= 1 else None
    if requested is not None:
        return requested
    try:
        kind = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"{device!r} is not a torch device (use cpu, cuda or cuda:N)") from exc
    if kind.type == "cpu":
        return torch.device("cpu")
    if kind.type == "cuda" and kind.index is not None and kind.index != local_rank:
        raise DeviceError(f"under torchrun every rank takes cuda:LOCAL_RANK; {str(kind)!r} was asked for on local rank "
                          f"{local_rank}: pass --device cuda")
    return resolve_device(f"cuda:{local_rank}" if kind.type == "cuda" else kind)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes, its device and the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: a single process, no process group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend, "device": str(self.device)}


def init(device: str | torch.device | None = "cpu", timeout: timedelta = DEFAULT_TIMEOUT) -> DistContext:
    """The context of this process; under torchrun (``WORLD_SIZE > 1``) the process group is initialised here
    (once) with the backend of this rank's device. Idempotent; a group someone else initialised is used as is."""
    if not is_initialized():
        world = env_world_size()
        if world <= 1:
            return DistContext(device=resolve_device(device))
        local_rank = env_local_rank()
        resolved = device_for_rank(device, local_rank, world)
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend_for(resolved), timeout=timeout)
    else:
        world = dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        resolved = device_for_rank(device, local_rank, world)
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
    backend = dist.get_backend()
    if backend == "nccl" and resolved.type != "cuda":
        raise DeviceError("the process group runs NCCL but this rank's device is the CPU; use --device cuda or "
                          "initialise the group with Gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                       device=resolved, backend=backend)


def shutdown() -> None:
    """Destroy the process group (a no-op when none exists)."""
    if is_initialized():
        dist.destroy_process_group()
    _state["object_group"] = None


@contextmanager
def session(device: str | torch.device | None = "cpu", timeout: timedelta = DEFAULT_TIMEOUT
            ) -> Iterator[DistContext]:
    """``with session("cuda") as ctx:`` -- initialise (under torchrun) and, if this call created the process
    group, destroy it at the end. No final barrier: a rank that is done leaves (rank 0 may go on evaluating for
    longer than any collective timeout)."""
    created = not is_initialized() and env_world_size() > 1
    ctx = init(device, timeout)
    try:
        yield ctx
    finally:
        if created:
            shutdown()


def _object_group():
    """A Gloo group for pickled objects: object collectives then work the same on NCCL runs."""
    if dist.get_backend() == "gloo":
        return None  # the default group
    if _state["object_group"] is None:
        _state["object_group"] = dist.new_group(backend="gloo")
    return _state["object_group"]


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not is_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``src``'s ``obj`` on every rank (tensors inside come back on the CPU)."""
    if not is_initialized() or world_size() == 1:
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=_object_group())
    return box[0]


def all_gather_objects(obj: Any) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_initialized() or world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj, group=_object_group())
    return out


def gather_objects(obj: Any, dst: int = 0) -> list | None:
    """Every rank's ``obj`` in rank order on ``dst``; None on the other ranks."""
    if not is_initialized() or world_size() == 1:
        return [obj]
    out: list | None = [None] * world_size() if rank() == dst else None
    dist.gather_object(obj, out, dst=dst, group=_object_group())
    return out


def all_reduce_sum(values: Sequence[float], device: torch.device | str | None = None) -> list[float]:
    """Element-wise sum of a list of numbers over all ranks (float64; on the device NCCL needs)."""
    if not is_initialized() or world_size() == 1:
        return [float(v) for v in values]
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu().tolist()]


def shard(items: Sequence[T], rank_: int | None = None, world: int | None = None) -> list[T]:
    """This rank's share of ``items``: every ``world``-th item from ``rank`` (uneven shares allowed; for work
    without collectives in the loop)."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    return list(items[rank_::world])


def padded_shard(order: Sequence[T], rank_: int | None = None, world: int | None = None) -> list[T]:
    """This rank's share of ``order`` padded to equal length on every rank (the ``DistributedSampler`` rule:
    the tail is filled by repeating the start), so every rank runs the same number of collective steps."""
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    items = list(order)
    if not items:
        return []
    per_rank = -(-len(items) // world)
    total = per_rank * world
    padded = (items * (-(-total // len(items))))[:total]
    return padded[rank_::world]


def state_digest(module: torch.nn.Module | dict) -> str:
    """SHA-1 of a module's state dict (names, dtypes, shapes and bytes, any device): equal digests = equal weights."""
    import hashlib

    from .device import to_numpy
    state = module.state_dict() if isinstance(module, torch.nn.Module) else module
    digest = hashlib.sha1()
    for name in sorted(state):
        array = to_numpy(state[name])
        digest.update(f"{name}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def replica_digests(module: torch.nn.Module) -> list[str]:
    """:func:`state_digest` of ``module`` on every rank, in rank order (DDP replicas must all agree)."""
    return all_gather_objects(state_digest(module))
