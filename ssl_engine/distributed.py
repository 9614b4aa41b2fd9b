"""The one place that knows about torch.distributed: rank queries and batch gathering.

Everything here also works in a single process, where torch.distributed is not initialised
(or not even built): rank 0 of a world of 1, and the gathers return their input. Methods call
`gather_with_grad` on their embeddings unconditionally, so the same code runs on one CPU and
under torchrun on many GPUs, and both compute the same loss on the same global batch.

The gathers use `all_gather`, so every rank must pass a tensor of the same shape (a
DistributedSampler with drop_last gives every rank the same batch size).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "is_distributed",
    "rank",
    "world_size",
    "is_main_process",
    "gather_with_grad",
    "gather_no_grad",
    "all_reduce_mean",
    "all_reduce_sum",
    "all_reduce_sum_with_grad",
    "setup_from_environment",
]


def is_distributed() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group; 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes in the default group; 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, the process that logs and writes checkpoints (and in a single process)."""
    return rank() == 0


def _all_gather_concatenated(x: Tensor) -> Tensor:
    pieces = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(pieces, x.contiguous())
    return torch.cat(pieces, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 forward; all-reduce (sum) and take this rank's slice backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.local_batch_size = x.shape[0]
        return _all_gather_concatenated(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        summed = grad_output.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        start = rank() * ctx.local_batch_size
        return summed[start : start + ctx.local_batch_size]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` from every rank along dim 0, keeping the gradient path to this rank's `x`.

    Returns `x` itself when not distributed or in a world of 1. Otherwise returns the
    (world_size * N, ...) global batch, rank 0's rows first; this rank's rows are
    `[rank * N, (rank + 1) * N)`. Backward sums the incoming gradient over all ranks and
    returns this rank's slice.

    Why this gives the single-process gradient: every rank computes the same full loss L on
    the global batch, so each holds the same dL/dz for all rows. Summing over ranks makes the
    gradient reaching this rank's rows z_r equal world_size * dL/dz_r; DDP then averages the
    parameter gradients over ranks (divides by world_size), leaving sum_r dL/dz_r * dz_r/dθ,
    which is dL/dθ of one process running L on the whole global batch.

    Every rank must call this (and later run backward) with a tensor of the same shape.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


class _AllReduceSumWithGrad(torch.autograd.Function):
    """all_reduce (sum) forward; all_reduce (sum) of the incoming gradient backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        summed = x.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        summed = grad_output.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed


def all_reduce_sum_with_grad(x: Tensor) -> Tensor:
    """The sum of `x` over all ranks, keeping the gradient path to every rank's `x` (the batch
    moments of a BatchNorm over the global batch). Returns `x` itself in a world of 1.

    Backward sums the incoming gradient over the ranks: every rank's loss depends on the sum
    through its own rows only, so the gradient of the sum is the sum of the ranks' parts, the
    same convention as `gather_with_grad` (DDP's averaging then gives the single-process step)."""
    if world_size() == 1:
        return x
    return _AllReduceSumWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """Concatenate `x` from every rank along dim 0, outside autograd (e.g. MoCo's keys for the
    queue, batch statistics). Returns `x.detach()` when not distributed."""
    if world_size() == 1:
        return x.detach()
    return _all_gather_concatenated(x.detach())


@torch.no_grad()
def all_reduce_mean(x: Tensor) -> Tensor:
    """The mean of `x` over all ranks, detached; the input is left untouched. Returns
    `x.detach()` when not distributed. For metrics, centres and other statistics."""
    if world_size() == 1:
        return x.detach()
    summed = x.detach().clone()
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed / world_size()


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """The sum of `x` over all ranks, detached (Sinkhorn's normalisers over the global batch).
    Returns `x.detach()` when not distributed."""
    return _all_reduce(x, dist.ReduceOp.SUM)


@torch.no_grad()
def all_reduce_max(x: Tensor) -> Tensor:
    """The element-wise maximum of `x` over all ranks, detached."""
    return _all_reduce(x, dist.ReduceOp.MAX)


def _all_reduce(x: Tensor, op) -> Tensor:
    if world_size() == 1:
        return x.detach()
    reduced = x.detach().clone()
    dist.all_reduce(reduced, op=op)
    return reduced


def setup_from_environment() -> tuple[int, int]:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR...) if any.

    NCCL when this process has a GPU, gloo otherwise. Returns (rank, world size); (0, 1) in a
    plain single-process run. Safe to call twice.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return rank(), world_size()
