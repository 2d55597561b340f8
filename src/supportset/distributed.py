"""Multi-process training with torch.distributed (torchrun; NCCL on GPUs, gloo on CPUs).

Every rank takes its slice of each global batch. Embeddings are gathered across ranks with
gradients (torch.distributed.nn), so the contrastive loss sees the whole global batch as
negatives and the support set spans it, and BatchNorm statistics are summed over all
ranks. Each rank's loss is its share of the global loss, and parameter gradients are
summed over ranks after backward: the update equals one process on the global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
from torch.nn import functional


def start_from_environment() -> None:
    """Join the process group that torchrun describes (WORLD_SIZE > 1); no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def rank_and_size() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's (B_r, ...) tensor along dim 0, keeping gradients; tensors
    of rank 2 or more (sequences, masks) are zero-padded along dim 1 to the longest first."""
    _, size = rank_and_size()
    if size == 1:
        return local
    if local.dim() >= 2:
        length = torch.tensor([local.shape[1]], device=local.device)
        dist.all_reduce(length, op=dist.ReduceOp.MAX)
        padding = [0, 0] * (local.dim() - 2) + [0, int(length) - local.shape[1]]
        local = functional.pad(local, padding)
    return torch.cat(dist_functional.all_gather(local), dim=0)


def gather_objects(value: object) -> list:
    """Every rank's picklable `value`, in rank order (a collective: all ranks call it);
    [value] outside a process group."""
    _, size = rank_and_size()
    if size == 1:
        return [value]
    gathered: list = [None] * size
    dist.all_gather_object(gathered, value)
    return gathered


def wait_for_all_ranks() -> None:
    """Return once every rank has called it (no-op outside a process group)."""
    if rank_and_size()[1] > 1:
        dist.barrier()


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, keeping gradients (identity outside a process group)."""
    if rank_and_size()[1] == 1:
        return values
    return dist_functional.all_reduce(values, op=dist.ReduceOp.SUM)


def sum_gradients(parameters) -> None:
    """Add up every parameter's gradient over ranks (after backward, before the step)."""
    if rank_and_size()[1] == 1:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
