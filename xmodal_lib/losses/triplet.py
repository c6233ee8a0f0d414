"""Triplet margin losses: CrossATNet, ZSE-SBIR and the XModalViT triplet baseline."""
from __future__ import annotations

import torch
from torch import Tensor


def triplet_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> Tensor:
    """mean_i max(0, ||a_i - p_i|| - ||a_i - n_i|| + margin) over rows of [B, D] inputs.

    Matches ``torch.nn.functional.triplet_margin_loss`` (``eps`` is added to the difference
    before the norm, as PyTorch does). ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``.
    """
    if anchor.shape != positive.shape or anchor.shape != negative.shape:
        raise ValueError(
            f"triplet_loss: anchor/positive/negative shapes differ: "
            f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}"
        )
    d_pos = torch.norm(anchor - positive + eps, p=p, dim=-1)
    d_neg = torch.norm(anchor - negative + eps, p=p, dim=-1)
    loss = torch.clamp(d_pos - d_neg + margin, min=0.0)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"triplet_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def batch_all_triplet(sketch: Tensor, photo: Tensor, margin: float = 0.2) -> Tensor:
    """Mean hinge over every (sketch i, photo i, photo j != i) of a batch: ``sketch [B, D]`` anchors,
    ``photo [B, D]`` row-aligned positives, every other photo a negative (Euclidean distances)."""
    if sketch.shape != photo.shape or sketch.dim() != 2 or sketch.shape[0] < 2:
        raise ValueError(f"batch_all_triplet: expected two [B >= 2, D] tensors, got {tuple(sketch.shape)} "
                         f"and {tuple(photo.shape)}")
    d = torch.cdist(sketch, photo)  # (B, B): sketch i to photo j
    pos = d.diagonal()[:, None]
    off = ~torch.eye(d.shape[0], dtype=torch.bool, device=d.device)
    return torch.clamp(pos - d + margin, min=0.0)[off].mean()
