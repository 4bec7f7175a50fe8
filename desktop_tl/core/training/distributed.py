"""Multi-process training under `torchrun`: the environment it sets, and the few collectives the loop needs.

Everything here is a no-op in a single process (WORLD_SIZE unset or 1), so the desktop app never
touches torch.distributed.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes of this run (WORLD_SIZE, set by torchrun); 1 on a desktop."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def rank() -> int:
    """This process's rank (RANK); 0 in a single process."""
    return int(os.environ.get("RANK", "0") or 0) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's rank on its machine (LOCAL_RANK): picks its GPU."""
    return int(os.environ.get("LOCAL_RANK", "0") or 0) if world_size() > 1 else 0


def is_main() -> bool:
    """True on rank 0: the only process that writes files and prints."""
    return rank() == 0


def active() -> bool:
    """True once the process group of a multi-process run is up."""
    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def init() -> bool:
    """Join the process group when WORLD_SIZE > 1 (gloo for CPU tensors, NCCL for CUDA ones)."""
    if world_size() <= 1 or active():
        return active()
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return True


def shutdown() -> None:
    """Leave the process group (if joined)."""
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place and return it (unchanged in a single process)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise minimum of `tensor` over ranks, in place (unchanged in a single process)."""
    if active():
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if active():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)
