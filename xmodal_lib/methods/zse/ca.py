"""ZSE-SBIR cross-attention module (CA): one post-norm layer per modality over a sketch-photo pair.

methods_spec.md §3.4. Each layer: multi-head attention (four Linear(D, D) with bias, attention
dropout), post-norm residual on the layer's *own* modality, ReLU FFN, post-norm again, with the
official custom LayerNorm a·(x−μ)/(σ+eps)+b (σ = unbiased std).

Query/key assignment (``variant``):

* ``"paper"`` (default, the paper's figure): the **query** comes from the other modality, key and
  value from the own modality: sketch_out = L_s(Q=X_p, K=X_s, V=X_s), photo_out = L_p(Q=X_s, K=X_p, V=X_p).
* ``"code"`` (the released code and checkpoint): the **key** comes from the other modality,
  query and value from the own: sketch_out = L_s(Q=X_s, K=X_p, V=X_s), photo_out = L_p(Q=X_p, K=X_s, V=X_p).

Both need the sketch and photo sequences to have the same length (true with or without token
selection, which keeps the same count for every image). The official third, unused copy of
the layer is not built.

For exhaustive scoring the Q/K/V projections of every image can be computed once
(:meth:`CrossAttention.project`) and reused for every pair (:meth:`CrossAttention.pairs_from_projections`).

Attention kernel: the fused ``scaled_dot_product_attention`` (flash / memory-efficient kernels on
GPU) runs unless the weights are requested (:meth:`CrossAttention.attention`, figures) or the layer's
``fused`` flag is False (the official explicit-softmax regime, for benchmarks; see
:func:`xmodal_lib.layers.attention.set_attention_impl`). Both paths are tested equal.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CALayerNorm", "CrossAttentionLayer", "CrossAttention", "CAOutput"]


class CAOutput(NamedTuple):
    """CA outputs of paired rows, (n, N, D) each, and the softmax weights (n, H, N, N) of each layer
    (rows = that layer's queries, columns = keys)."""

    sketch: Tensor
    photo: Tensor
    sketch_weights: Tensor
    photo_weights: Tensor


class CALayerNorm(nn.Module):
    """a·(x − mean)/(std + eps) + b with the unbiased std (the official CA norm)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(dim))
        self.b = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)  # unbiased
        return self.a * (x - mean) / (std + self.eps) + self.b


class CrossAttentionLayer(nn.Module):
    """Post-norm encoder layer whose Q, K, V inputs may come from different sequences."""

    def __init__(self, dim: int = 768, heads: int = 8, ffn: int = 1024, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"CA: dim {dim} not divisible by heads {heads}")
        self.heads, self.hd = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.attn_drop = nn.Dropout(dropout)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm1, self.norm2 = CALayerNorm(dim), CALayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.fused = True  # False forces the explicit softmax path (official regime, benchmarks)

    def _split(self, x: Tensor) -> Tensor:
        B, N, _ = x.shape
        return x.view(B, N, self.heads, self.hd).transpose(1, 2)  # (B, H, N, hd)

    def from_projections(self, q: Tensor, k: Tensor, v: Tensor, v_in: Tensor) -> Tensor:
        """Layer output (B, N, D) from projected q, k, v (B, N, D) and the residual input v_in (B, N, D)."""
        return self._layer(q, k, v, v_in, need_weights=False)[0]

    def _layer(self, q: Tensor, k: Tensor, v: Tensor, v_in: Tensor,
               need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """(output (B, N, D), softmax weights (B, H, N, N) with ``need_weights`` (explicit path), else None)."""
        if q.shape[1] != v_in.shape[1]:
            raise ValueError(f"CA: query length {q.shape[1]} != own-modality length {v_in.shape[1]}")
        B, N, D = q.shape
        qh, kh, vh = self._split(q), self._split(k), self._split(v)
        w = None
        if need_weights or not self.fused:
            w = ((qh @ kh.transpose(-2, -1)) * self.hd ** -0.5).softmax(dim=-1)  # (B, H, N, N)
            a = self.attn_drop(w) @ vh  # (B, H, N, hd)
        else:
            drop = self.attn_drop.p if self.training else 0.0
            a = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=drop)  # (B, H, N, hd)
        a = self.o(a.transpose(1, 2).reshape(B, N, D))  # (B, N, D)
        x = self.norm1(v_in + self.drop1(a))
        out = self.norm2(x + self.drop2(self.ffn(x)))
        return out, (w if need_weights else None)

    def forward(self, q_in: Tensor, k_in: Tensor, v_in: Tensor) -> Tensor:
        """Attend with Q from q_in, K from k_in, V (and the residual) from v_in; all (B, N, D)."""
        return self.from_projections(self.q(q_in), self.k(k_in), self.v(v_in), v_in)

    def with_weights(self, q_in: Tensor, k_in: Tensor, v_in: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward` and its softmax weights (B, H, N, N) (explicit path)."""
        return self._layer(self.q(q_in), self.k(k_in), self.v(v_in), v_in, need_weights=True)


class CrossAttention(nn.Module):
    """One CA layer for sketches and one for photos; ``variant`` "paper" (default) or "code"."""

    def __init__(self, dim: int = 768, heads: int = 8, ffn: int = 1024, dropout: float = 0.1,
                 variant: str = "paper") -> None:
        super().__init__()
        if variant not in ("paper", "code"):
            raise ValueError(f"CA variant must be 'paper' or 'code', got {variant!r}")
        self.variant = variant
        self.sketch_layer = CrossAttentionLayer(dim, heads, ffn, dropout)
        self.photo_layer = CrossAttentionLayer(dim, heads, ffn, dropout)

    def _inputs(self, xs: Tensor, xp: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Q/K/V inputs of the sketch and the photo layer for ``variant``."""
        if xs.shape != xp.shape:
            raise ValueError(f"CA: sketch {tuple(xs.shape)} and photo {tuple(xp.shape)} shapes differ")
        if self.variant == "paper":
            return dict(q_in=xp, k_in=xs, v_in=xs), dict(q_in=xs, k_in=xp, v_in=xp)
        return dict(q_in=xs, k_in=xp, v_in=xs), dict(q_in=xp, k_in=xs, v_in=xp)

    def forward(self, xs: Tensor, xp: Tensor) -> tuple[Tensor, Tensor]:
        """Paired sequences xs, xp (n, N, D) -> (sketch_out, photo_out), each (n, N, D)."""
        s_in, p_in = self._inputs(xs, xp)
        return self.sketch_layer(**s_in), self.photo_layer(**p_in)

    def attention(self, xs: Tensor, xp: Tensor) -> CAOutput:
        """:meth:`forward` with the softmax weights of both layers (explicit path, figures)."""
        s_in, p_in = self._inputs(xs, xp)
        (s, ws), (p, wp) = self.sketch_layer.with_weights(**s_in), self.photo_layer.with_weights(**p_in)
        return CAOutput(s, p, ws, wp)

    def project(self, x: Tensor, modality: str) -> dict[str, Tensor]:
        """Every projection of one modality's sequences (B, N, D) that any pair will need."""
        ls, lp = self.sketch_layer, self.photo_layer
        if modality == "sketch":  # sketch supplies K,V (paper) or Q,V (code) of L_s and Q (paper) / K (code) of L_p
            if self.variant == "paper":
                return {"s_k": ls.k(x), "s_v": ls.v(x), "p_q": lp.q(x)}
            return {"s_q": ls.q(x), "s_v": ls.v(x), "p_k": lp.k(x)}
        if modality == "photo":
            if self.variant == "paper":
                return {"s_q": ls.q(x), "p_k": lp.k(x), "p_v": lp.v(x)}
            return {"s_k": ls.k(x), "p_q": lp.q(x), "p_v": lp.v(x)}
        raise ValueError(f"modality must be 'sketch' or 'photo', got {modality!r}")

    def pairs_from_projections(self, ps: dict[str, Tensor], pp: dict[str, Tensor],
                               xs: Tensor, xp: Tensor) -> tuple[Tensor, Tensor]:
        """CA outputs of already paired rows: projections of :meth:`project` and inputs (n, N, D)."""
        both = {**ps, **pp}
        s = self.sketch_layer.from_projections(both["s_q"], both["s_k"], both["s_v"], xs)
        p = self.photo_layer.from_projections(both["p_q"], both["p_k"], both["p_v"], xp)
        return s, p
