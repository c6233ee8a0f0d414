"""XAQC: XModalViT's queue-based (MoCo-style) contrastive loss (methods_spec.md §1.5).

    logits = [q . k_hat , q . Q] / tau,  L = CrossEntropy(logits, 0)

with ``k_hat = k / ||k||`` under stop-gradient and ``Q`` a FIFO queue of past normalised keys
(``[D, K]``, random column-normalised init). There is no momentum encoder (the official ``m`` is
unused). The query is un-normalised by default, as in the official code
(``normalize_query=False``); ``True`` gives the bounded, InfoNCE-style variant.

Defect fixed: the official enqueue writes columns ``ptr:ptr+B`` and is skipped when ``K % B != 0``;
a partial last batch whose size divides K leaves the pointer misaligned and a later full batch
overflows. Here the enqueue wraps around modulo K, so any batch size is fine (a batch larger than
K keeps its last K keys, exactly as if enqueued one at a time). The queue and pointer are registered buffers, so they are saved in
checkpoints (pass the module to ``fit(state_modules=...)``).

Under DDP the loss itself is a per-sample mean (DDP's gradient averaging gives the global mean);
the training step passes every rank's keys in rank order as ``enqueue_keys``
(``distributed.gather_cat_nograd``), so each rank's queue equals the queue a single process would
hold after the same global batches. The loss module itself imports nothing from the training or
distributed code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["xaqc_loss", "enqueue_wraparound", "XAQC"]


def xaqc_loss(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.07,
              normalize_query: bool = False) -> Tensor:
    """XAQC for queries ``q [B,D]``, keys ``k [B,D]`` (normalised here, no gradient), ``queue [D,K]``."""
    if q.shape != k.shape or q.dim() != 2:
        raise ValueError(f"xaqc_loss: q and k must both be [B, D], got {tuple(q.shape)} and {tuple(k.shape)}")
    if queue.dim() != 2 or queue.shape[0] != q.shape[1]:
        raise ValueError(f"xaqc_loss: queue must be [D={q.shape[1]}, K], got {tuple(queue.shape)}")
    if temperature <= 0:
        raise ValueError(f"xaqc_loss: temperature must be > 0, got {temperature}")
    q = q.float()
    if normalize_query:
        q = F.normalize(q, dim=1)
    k_hat = F.normalize(k.detach().float(), dim=1)
    l_pos = (q * k_hat).sum(dim=1, keepdim=True)  # (B, 1)
    l_neg = q @ queue.detach().float().clone()  # (B, K); a copy: the queue is updated in place later
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (B, 1+K)
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


@torch.compiler.disable  # bookkeeping with Python ints: eager, not one recompile per pointer value
@torch.no_grad()
def enqueue_wraparound(queue: Tensor, ptr: Tensor, keys: Tensor) -> None:
    """Write normalised ``keys [B,D]`` into ``queue [D,K]`` at ``ptr`` modulo K (in place)."""
    d, size = queue.shape
    keys = F.normalize(keys.detach().float(), dim=1).to(queue.dtype)
    b, start = keys.shape[0], int(ptr.item())
    if b > size:  # same result as enqueueing one by one: only the last K keys survive
        keys, start = keys[-size:], start + (b - size)
    cols = (torch.arange(keys.shape[0], device=queue.device) + start) % size
    queue[:, cols] = keys.t()
    ptr.fill_((int(ptr.item()) + b) % size)


class XAQC(nn.Module):
    """XAQC with its queue as buffers. ``forward(q, k, enqueue=True) -> loss``.

    Args:
        dim: embedding width D (768 for the paper's teacher).
        queue_size: K (paper: 128 teacher / 256 students on Shoe, Chair; 64 on Sketchy).
        temperature: tau (paper: 0.07).
        normalize_query: L2-normalise the query too (default False = official behaviour).
        seed: seed of the random queue init (reproducible runs).
    """

    def __init__(self, dim: int, queue_size: int, temperature: float = 0.07,
                 normalize_query: bool = False, seed: int = 0):
        super().__init__()
        if dim <= 0 or queue_size <= 0:
            raise ValueError(f"XAQC: dim and queue_size must be positive, got {dim}, {queue_size}")
        if temperature <= 0:
            raise ValueError(f"XAQC: temperature must be > 0, got {temperature}")
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size, generator=g), dim=0))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.temperature, self.normalize_query = float(temperature), bool(normalize_query)

    def forward(self, q: Tensor, k: Tensor, enqueue: bool = True, enqueue_keys: Tensor | None = None) -> Tensor:
        """The loss of ``q`` against ``k`` and the queue; then ``enqueue_keys`` (default ``k``; the
        step passes the global batch's keys under DDP) are written into the queue."""
        loss = xaqc_loss(q, k, self.queue, self.temperature, self.normalize_query)
        if enqueue:
            queue = self.queue.clone()  # out of place: torch.compile may save the old queue for backward
            enqueue_wraparound(queue, self.ptr, (k if enqueue_keys is None else enqueue_keys).detach())
            self.queue = queue
        return loss

    def extra_repr(self) -> str:
        d, size = self.queue.shape
        return f"dim={d}, queue_size={size}, temperature={self.temperature}, normalize_query={self.normalize_query}"
