"""ZSE-SBIR token-level "kernel" relation network (RN), methods_spec.md §3.5.

patch tokens (n, N, D) → channels-first grid (n, D, g, g) → Conv2d(D→C, 2, stride 2) → (n, M, C)
with M = (g/2)² (49 for 224/16) → cosine kernel matrix K_ij = cos(s_i, p_j) (n, M, M), NaN → 0
→ MLP M² → M·√M → M → 1 (ReLU + Dropout between; 2401 → 343 → 49 → 1 for M = 49) → sigmoid.

Channels-first is a proper ``permute``; the official code reinterprets memory with a raw ``view``
(tokens (n, 196, 768) viewed as (n, 768, 14, 14)), which mixes token and channel axes.
``raw_view=True`` reproduces that for loading the released checkpoint; it is off by default.

Token selection: a 2×2 stride-2 conv needs the full grid, which pruned images no longer have.
Two designs (``tokens``):

* ``"grid"`` (default): scatter the kept tokens back onto the g×g grid at their positions, with
  zero vectors for dropped ones, then conv as usual. The RN weights are the same with or without
  selection (the paper's "warm up with all tokens, then switch selection on" works), and kernel
  entries keep their spatial meaning.
* ``"kept"``: no conv; the kernel is taken over the kept tokens directly (official anchor-144
  variant: 144² → 1728 → 144 → 1). Needs the kept count fixed at construction; kernel rows are
  "k-th kept token", which has no fixed spatial meaning.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RelationNetwork", "kernel_matrix", "scatter_to_grid"]


def kernel_matrix(s: Tensor, p: Tensor) -> Tensor:
    """Cosine similarities (n, M, C) × (n, M', C) -> (n, M, M'); zero vectors give 0 (NaN → 0)."""
    k = F.normalize(s, dim=-1) @ F.normalize(p, dim=-1).transpose(1, 2)
    return torch.nan_to_num(k, nan=0.0)


def scatter_to_grid(tokens: Tensor, pos: Tensor, n_grid: int) -> Tensor:
    """Kept tokens (n, N, D) at grid positions pos (n, N) -> (n, n_grid, D), zeros elsewhere."""
    n, N, D = tokens.shape
    out = tokens.new_zeros(n, n_grid, D)
    return out.scatter(1, pos.unsqueeze(-1).expand(n, N, D), tokens)


class RelationNetwork(nn.Module):
    """Patch tokens of a sketch-photo pair -> relation score in (0, 1).

    Args:
        dim: token dimension D.  grid: patch grid side g (14 for 224/16; must be even for "grid").
        rn_dim: conv output channels C (512).  tokens: "grid" or "kept" (see module doc).
        n_kept: kept patch tokens per image (only for "kept").  raw_view: official memory view.
        dropout: MLP dropout (0.1).
    """

    def __init__(self, dim: int = 768, grid: int = 14, rn_dim: int = 512, tokens: str = "grid",
                 n_kept: int | None = None, raw_view: bool = False, dropout: float = 0.1) -> None:
        super().__init__()
        if tokens not in ("grid", "kept"):
            raise ValueError(f"rn tokens must be 'grid' or 'kept', got {tokens!r}")
        self.mode, self.grid, self.raw_view = tokens, grid, raw_view
        if tokens == "grid":
            if grid % 2:
                raise ValueError(f"RN 'grid' needs an even patch grid for the 2x2/2 conv, got {grid}")
            self.conv = nn.Conv2d(dim, rn_dim, kernel_size=2, stride=2)
            m = (grid // 2) ** 2
        else:
            if not n_kept:
                raise ValueError("RN 'kept' needs n_kept (kept patch tokens per image)")
            self.conv = None
            m = int(n_kept)
        self.anchors = m
        hidden = int(round(m * math.sqrt(m)))
        self.mlp = nn.Sequential(
            nn.Linear(m * m, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, m), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(m, 1),
        )

    def anchor_tokens(self, patches: Tensor, pos: Tensor) -> Tensor:
        """Patch tokens (n, N, D) at grid positions pos (n, N) -> RN anchors (n, M, C)."""
        n, N, D = patches.shape
        if self.mode == "kept":
            if N != self.anchors:
                raise ValueError(f"RN 'kept' built for {self.anchors} tokens, got {N}")
            return patches
        g = self.grid
        full = patches if (N == g * g and not self._is_pruned(pos)) else scatter_to_grid(patches, pos, g * g)
        if self.raw_view:
            grid = full.reshape(n, D, g, g)  # official: raw memory reinterpretation
        else:
            grid = full.transpose(1, 2).reshape(n, D, g, g)  # (n, N, D) -> (n, D, g, g)
        down = self.conv(grid)  # (n, C, g/2, g/2)
        return down.flatten(2).transpose(1, 2)  # (n, M, C)

    @staticmethod
    def _is_pruned(pos: Tensor) -> bool:
        return not bool((pos == torch.arange(pos.shape[1], device=pos.device)).all())

    def score(self, s_anchor: Tensor, p_anchor: Tensor) -> Tensor:
        """Anchors (n, M, C) of paired sketches and photos -> scores (n,) in (0, 1)."""
        k = kernel_matrix(s_anchor, p_anchor).flatten(1)  # (n, M*M)
        return torch.sigmoid(self.mlp(k)).squeeze(-1)

    def forward(self, s_patches: Tensor, s_pos: Tensor, p_patches: Tensor, p_pos: Tensor) -> Tensor:
        """Post-CA patch tokens (n, N, D) and grid positions (n, N) of pairs -> scores (n,)."""
        return self.score(self.anchor_tokens(s_patches, s_pos), self.anchor_tokens(p_patches, p_pos))
