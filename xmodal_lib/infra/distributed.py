"""Distributed helpers shared by the losses and the training loop (identity in a single process).

Losses that look across the batch (in-batch negatives, triplet mining, RKD relations, contrastive
queues) call :func:`gather_cat` so that under DistributedDataParallel they see the GLOBAL batch,
in global order (rank 0's samples first). The gather is differentiable: its backward sums the
incoming gradient over ranks (every rank computes the same global loss) and hands each rank the
rows it owns. With DDP's gradient averaging this gives exactly the single-process gradient of the
same global batch.

Process-group life cycle for ``torchrun``: :func:`setup` reads the launcher's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), picks NCCL for CUDA
and gloo otherwise and pins this process to ``cuda:LOCAL_RANK``; :func:`cleanup` waits for every
rank and destroys the group. :class:`StepModule` makes a method's ``step_fn`` the ``forward`` of a
module so DistributedDataParallel sees every parameter use, whatever attributes the step calls.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["is_distributed", "rank", "world_size", "local_rank", "is_main_process", "launched_by_torchrun",
           "setup", "cleanup", "barrier", "broadcast_object", "all_reduce_mean", "broadcast_buffers",
           "gather_cat", "gather_cat_nograd", "StepModule", "wrap_step", "mean_scalars"]


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK`` set by torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 (writes checkpoints, logs, figures)."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when the launcher's environment (``RANK`` and ``WORLD_SIZE``) is present."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(backend: str = "auto", device: str = "auto", timeout_s: float = 1800.0) -> torch.device:
    """Join the process group described by torchrun's environment; return this rank's device.

    ``backend="auto"``: ``"nccl"`` when this rank trains on CUDA, else ``"gloo"``. ``device="auto"``
    means CUDA when available. With CUDA the process is pinned to ``cuda:LOCAL_RANK``. Without
    torchrun's variables, or with ``WORLD_SIZE=1``, nothing is initialised (single process).
    """
    if device == "auto":
        use_cuda = torch.cuda.is_available()
    elif device == "cpu" or device.startswith("cuda"):
        use_cuda = device != "cpu"
        if use_cuda and not torch.cuda.is_available():
            raise ValueError(f"distributed.setup: device={device!r} but CUDA is not available")
    else:
        raise ValueError(f"distributed.setup: device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"distributed.setup: backend must be 'auto', 'nccl' or 'gloo', got {backend!r}")
    if backend == "nccl" and not use_cuda:
        raise ValueError("distributed.setup: backend='nccl' needs CUDA tensors; use 'gloo' for CPU training")
    multi = launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1
    dev = torch.device("cpu")
    if use_cuda:  # one GPU per rank; a single process keeps an explicit index ("cuda:1")
        dev = torch.device("cuda", local_rank()) if multi or ":" not in device else torch.device(device)
        torch.cuda.set_device(dev)
    if not multi or dist.is_initialized():
        return dev
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ValueError(f"distributed.setup: {var} is not set (launch with torchrun)")
    kw: dict[str, Any] = {"device_id": dev} if backend == "nccl" else {}
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), **kw)
    return dev


def cleanup() -> None:
    """Barrier, then destroy the process group (no-op when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable Python objects; trusted peers only)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@torch.no_grad()
def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over ranks (a new tensor; ``x`` itself when not distributed)."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()


@torch.no_grad()
def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy every buffer of ``module`` (e.g. BatchNorm running statistics) from rank ``src``."""
    if not is_distributed():
        return
    for b in module.buffers():
        dist.broadcast(b, src=src)


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


class StepModule(nn.Module):
    """``forward(batch) = step_fn(model, batch)``: the unit DDP (and ``torch.compile``) wraps.

    DDP syncs gradients only for uses that run inside its ``forward``; method steps call
    submodules and helpers directly (``students.photo(x)``, ``model.sa_features(x)``), so the
    whole step becomes the forward. ``step_fn`` always receives the plain, unwrapped model.
    """

    def __init__(self, model: nn.Module, step_fn: Callable[[nn.Module, Any], dict[str, Tensor]]) -> None:
        super().__init__()
        self.model = model
        self.step_fn = step_fn

    def forward(self, batch: Any) -> dict[str, Tensor]:
        return self.step_fn(self.model, batch)


def wrap_step(model: nn.Module, step_fn: Callable, device: torch.device, trainable: list[nn.Parameter], *,
              find_unused_parameters: bool = False, compile: bool = False) -> nn.Module:
    """The step as a module: DDP around it when distributed, ``torch.compile`` around that if asked.

    Parameters of ``model`` that require grad but are not in ``trainable`` are left out of DDP."""
    runner: nn.Module = StepModule(model, step_fn)
    if is_distributed():
        from torch.nn.parallel import DistributedDataParallel as DDP  # lazy: only needed on this branch

        ids = {id(p) for p in trainable}
        if not ids <= {id(p) for p in model.parameters()}:
            raise ValueError("fit under DDP: every parameter in params must belong to model")
        frozen = [f"model.{n}" for n, p in model.named_parameters() if p.requires_grad and id(p) not in ids]
        if frozen:  # trainable-looking parameters the optimiser does not own: not synchronised
            DDP._set_params_and_buffers_to_ignore_for_model(runner, frozen)
        runner = DDP(runner, device_ids=[device.index] if device.type == "cuda" else None,
                     find_unused_parameters=find_unused_parameters)
    if compile:
        runner = torch.compile(runner)
    return runner


def mean_scalars(out: dict[str, Any], device: torch.device) -> dict[str, float]:
    """Logged values as floats; under DDP their mean over ranks (the global value for per-sample
    means, the common value for losses computed on the gathered global batch)."""
    keys = list(out)
    vals = torch.stack([(v.detach().float() if isinstance(v, Tensor) else torch.tensor(float(v))).reshape(())
                        .to(device) for v in out.values()])
    vals = all_reduce_mean(vals).tolist()
    return dict(zip(keys, vals))
