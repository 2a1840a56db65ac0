"""Data-parallel training and prediction over torchrun's processes (torch.distributed).

``torchrun --nproc_per_node K -m cryoai train …`` starts K copies of the command with RANK,
WORLD_SIZE and LOCAL_RANK in the environment; ``init`` joins them into one process group
(NCCL for CUDA tensors, Gloo for CPU tensors: the reconstructions and pose bookkeeping live on
the CPU). Without those variables nothing is initialised and every helper here is a no-op, so a
plain ``cryoai train`` behaves exactly as before.

How training is split (see ``Trainer``):
- every rank draws the same global batch (the draw is seeded by the step) and takes its strided
  slice (``shard``), so the global batch is the single-process one;
- after ``backward`` the gradients are averaged across ranks (``average_gradients``: one
  all-reduce per dtype, what DistributedDataParallel does) and every rank takes the same
  optimiser step. DDP's module wrapper is not used: the volume is queried through methods, not
  ``forward``, the encoder runs twice per step (data and synthetic batch), the volume is frozen
  in some stages, and rank 0 alone evaluates the encoder for metrics, all of which the wrapper's
  hooks and buffer broadcasts handle badly. BatchNorm statistics are per-rank batch statistics
  (as under DDP) and their running averages are averaged across ranks after each step;
- the warm start runs on every rank with the same seed, then rank 0's result is broadcast, so
  ranks agree exactly even where floating-point reductions are not deterministic;
- log, metrics, progress bar, volumes, checkpoints, report and final files: rank 0 only
  (``RunDir`` is inert on the other ranks); ``--resume`` makes every rank read rank 0's
  checkpoint, so OUT must be on a file system every node sees;
- ``finish`` and ``cryoai predict`` shard the particles: each rank predicts (and back-projects)
  its contiguous share, the poses are gathered and the back-projections summed. The passes after
  the final map do the same: the fit scores and contrast scales (each rank its share of the rows,
  gathered before the keep mask and the median are taken from all of them) and ``--classes``
  (each rank searches its share, the fits and poses are gathered, the class maps summed, the
  ab initio seeds shared out between ranks and broadcast, the labels broadcast from rank 0), so
  every rank ends with the same scores, keep mask, scales, labels and class maps.
"""

from __future__ import annotations

import importlib
import os
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


def launched() -> bool:
    """Started by torchrun (or any launcher that sets WORLD_SIZE and RANK)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init(device: str) -> str:
    """Join torchrun's process group if launched by it; returns this rank's device
    ("cuda" → "cuda:LOCAL_RANK"). A no-op (returns ``device``) in a plain single process."""
    if not launched():
        return device
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not active():
        # torch.distributed.nn binds the default group as a default argument when it is imported.
        # Imported after the group exists (torch._dynamo, which roma imports, pulls it in), it
        # would keep the group alive past destroy_process_group. Gloo's threads would then be torn
        # down at interpreter exit, which now and then aborts a rank
        # ("terminate called without an active exception"). Importing it first binds None.
        importlib.import_module("torch.distributed.nn")  # not `import torch.…`: that would make torch local here

        # NCCL for GPU tensors (gradients), Gloo for CPU ones (reconstructions, poses); a long
        # timeout because rank 0 alone writes volumes, checkpoints and the report meanwhile.
        backend = "cpu:gloo,cuda:nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend, timeout=timedelta(hours=2))
    return device


def cleanup() -> None:
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's strided slice of a batch every rank drew identically."""
    return indices[rank() :: world_size()]


def shard_range(n: int) -> slice:
    """This rank's contiguous share of n rows (sizes differ by at most one)."""
    bounds = np.linspace(0, n, world_size() + 1).round().astype(int)
    return slice(int(bounds[rank()]), int(bounds[rank() + 1]))


def from_main(value: float) -> float:
    """Rank 0's value of a float (e.g. a time measured there), on every rank."""
    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.broadcast(t, 0)
    return float(t)


def mean_over_ranks(value: float, count: int) -> float:
    """The count-weighted mean of per-rank means: the mean over the global batch."""
    if not active():
        return value
    t = torch.tensor([value * count, float(count)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0] / t[1])


def broadcast_tensors(*tensors: torch.Tensor) -> None:
    """Overwrite each tensor (in place) with rank 0's."""
    if active():
        for t in tensors:
            dist.broadcast(t.data, 0)


def from_rank(value, src: int = 0):
    """Rank ``src``'s value of any picklable object (an array, a map one rank computed), on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src)
    return box[0]


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (as DDP does when it wraps a module)."""
    broadcast_tensors(*module.parameters(), *module.buffers())


def _all_reduce_mean(tensors: list[torch.Tensor]) -> None:
    """Average tensors across ranks in place: one flat all-reduce per (device, dtype) group."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def average_gradients(module: torch.nn.Module) -> None:
    """Mean of the ranks' gradients, after ``backward`` and before the optimiser step. Every rank
    runs the same code path, so the same parameters have gradients everywhere."""
    if active():
        _all_reduce_mean([p.grad for p in module.parameters() if p.grad is not None])


def average_buffers(module: torch.nn.Module) -> None:
    """Mean of floating-point buffers (BatchNorm running statistics) across ranks."""
    if active():
        _all_reduce_mean([b.data for b in module.buffers() if b.is_floating_point()])


def _all_ranks(items: tuple) -> list[tuple]:
    """Every rank's ``items`` (any picklable objects), in rank order, on every rank."""
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, items)
    return parts


def gather_rows(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Concatenate each rank's rows (in rank order) on every rank."""
    if not active():
        return arrays
    parts = _all_ranks(arrays)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(arrays)))


def gather_tensors(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate each rank's rows of CPU tensors (in rank order) on every rank."""
    if not active():
        return tensors
    parts = _all_ranks(tensors)
    return tuple(torch.cat([p[i] for p in parts]) for i in range(len(tensors)))


def sum_tensors(*tensors: torch.Tensor) -> None:
    """Sum tensors across ranks in place (e.g. back-projection numerators)."""
    if active():
        for t in tensors:
            dist.all_reduce(t)


def mean_record(record: dict) -> dict:
    """A metrics record with its float values averaged over the ranks (every rank must call it
    with the same keys)."""
    if not active():
        return record
    keys = [k for k, v in record.items() if isinstance(v, float)]
    t = torch.tensor([record[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return dict(record, **{k: float(v) / world_size() for k, v in zip(keys, t)})
