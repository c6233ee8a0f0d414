"""XMRD: relational knowledge distillation (RKD distance + angle; methods_spec.md §1.5).

* distance: pairwise Euclidean distances (clamped, diagonal 0) divided by the mean of the non-zero
  distances; SmoothL1 (beta=1) between student and teacher, mean over all N x N entries.
* angle: for every triple (i, j, k) the cosine at vertex i between e_j - e_i and e_k - e_i
  (degenerate triples give 0); SmoothL1 mean over all N^3 triples.

The angle term is O(N^2 D + N^3) in memory if done at once. ``rkd_angle`` works in chunks of
vertices and, when gradients are needed, wraps each chunk in activation checkpointing so the
autograd graph keeps only the inputs: peak memory is O(chunk * N * (D + N)). Teacher tensors are
always treated as constants (no gradient).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["pairwise_distances", "rkd_distance", "angle_cosines", "rkd_angle"]


def pairwise_distances(e: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distances ``[N,N]`` of rows of ``e [N,D]``; squared distances clamped at ``eps``, diagonal 0.

    Computed from explicit differences (O(N^2 D) memory, small for distillation batches) rather than
    ``|a|^2 + |b|^2 - 2ab``, whose cancellation gives identical rows a distance of ~1e-3 instead of
    ~0 and makes the loss depend on how the batch is split (e.g. across DDP ranks).
    """
    diff = e[:, None, :] - e[None, :, :]  # (N, N, D)
    d2 = diff.square().sum(dim=-1).clamp(min=eps)  # (N, N)
    d = d2.sqrt()
    n = e.shape[0]
    return d * (1.0 - torch.eye(n, device=e.device, dtype=d.dtype))


def _normed_distances(e: Tensor) -> Tensor:
    d = pairwise_distances(e.float())
    pos = d[d > 0]
    if pos.numel() == 0:
        return d
    return d / pos.mean()


def rkd_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """RKD distance loss between ``student [N,Ds]`` and ``teacher [N,Dt]`` embeddings."""
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"rkd_distance: batch sizes differ ({student.shape[0]} vs {teacher.shape[0]})")
    with torch.no_grad():
        t = _normed_distances(teacher.detach())
    return F.smooth_l1_loss(_normed_distances(student), t, reduction="mean", beta=1.0)


def angle_cosines(e: Tensor, vertices: Tensor | None = None) -> Tensor:
    """Cosines ``[V,N,N]`` at vertices ``i`` (all rows by default): <unit(e_j-e_i), unit(e_k-e_i)>."""
    v = e if vertices is None else e[vertices]
    diff = F.normalize(e[None, :, :] - v[:, None, :], p=2, dim=2)  # (V, N, D); zero rows stay 0
    return diff @ diff.transpose(1, 2)  # (V, N, N)


def _angle_chunk_sum(s: Tensor, t: Tensor, lo: int, hi: int) -> Tensor:
    idx = torch.arange(lo, hi, device=s.device)
    with torch.no_grad():
        ta = angle_cosines(t, idx)
    return F.smooth_l1_loss(angle_cosines(s, idx), ta, reduction="sum", beta=1.0)


def rkd_angle(student: Tensor, teacher: Tensor, chunk_size: int | None = None) -> Tensor:
    """RKD angle loss (mean SmoothL1 over all N^3 triples, every vertex), memory-bounded.

    ``chunk_size`` vertices are processed at a time (default: so that chunk * N * D <= 2^22).
    """
    n = student.shape[0]
    if teacher.shape[0] != n:
        raise ValueError(f"rkd_angle: batch sizes differ ({n} vs {teacher.shape[0]})")
    s, t = student.float(), teacher.detach().float()
    if chunk_size is None:
        chunk_size = max(1, (1 << 22) // max(1, n * max(s.shape[1], t.shape[1], n)))
    if chunk_size <= 0:
        raise ValueError(f"rkd_angle: chunk_size must be positive, got {chunk_size}")
    total = s.new_zeros(())
    for lo in range(0, n, chunk_size):
        hi = min(n, lo + chunk_size)
        if s.requires_grad and chunk_size < n:
            total = total + checkpoint(_angle_chunk_sum, s, t, lo, hi, use_reentrant=False)
        else:
            total = total + _angle_chunk_sum(s, t, lo, hi)
    return total / float(n**3)
