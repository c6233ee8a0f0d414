"""Distributed helpers shared by the losses and the training loop (identity in a single process).

Losses that look across the batch (in-batch negatives, triplet mining, RKD relations, contrastive
queues) call :func:`gather_cat` so that under DistributedDataParallel they see the GLOBAL batch,
in global order (rank 0's samples first). The gather is differentiable: its backward sums the
incoming gradient over ranks (every rank computes the same global loss) and hands each rank the
rows it owns. With DDP's gradient averaging this gives exactly the single-process gradient of the
same global batch.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "rank", "world_size", "is_main_process", "gather_cat", "gather_cat_nograd"]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Rank 0 (writes checkpoints, logs, figures)."""
    return rank() == 0


def _check_same_shape(x: Tensor) -> None:
    shapes = [None] * world_size()
    dist.all_gather_object(shapes, tuple(x.shape))
    if len(set(shapes)) != 1:
        raise ValueError(f"gather_cat: every rank must pass the same shape (use drop_last=True), got {shapes}")


class _GatherCat(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.n, ctx.rank = x.shape[0], rank()
        return torch.cat(parts, dim=0)  # (W*B, ...)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every rank's global loss contributes
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]  # (B, ...) this rank's rows


def gather_cat(x: Tensor, check: bool = False) -> Tensor:
    """Concatenate ``x [B, ...]`` from every rank along dim 0 (differentiable); ``x`` itself when not
    distributed. ``check=True`` first verifies every rank passes the same shape (one extra sync)."""
    if not is_distributed():
        return x
    if check:
        _check_same_shape(x)
    return _GatherCat.apply(x)


@torch.no_grad()
def gather_cat_nograd(x: Tensor) -> Tensor:
    """:func:`gather_cat` without autograd (queue keys, labels, indices)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)
