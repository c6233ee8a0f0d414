"""Exhaustive ZSE-SBIR CA + RN scoring at the machine's matmul rate: per-image work done once.

For a sketch-photo pair the CA layers (:mod:`xmodal_lib.methods.zse.ca`) need, per layer, Q from one
image, K from one image and V (plus the residual) from the layer's own modality. Every Q/K/V
projection is a function of a single image, so :meth:`PairScorer.project` computes them once per
image; a block of ``bq`` sketches × ``bg`` photos then only runs what truly depends on the pair:
``softmax(Q Kᵀ/√d) V``, the output projection, the post-norm residuals, the FFN, the RN conv on
both CA outputs, the cosine kernel and the RN MLP. The sketch-side and photo-side tensors are
broadcast over the block (``(bq, 1, …)`` against ``(1, bg, …)``) instead of being repeated per pair.

Exactness: only the patch-token rows of the CA outputs reach the RN (the [Ret] row of each CA
output is not used by the score), and attention, output projection, norms and FFN act row by row,
so the [Ret] *query* row is dropped; the [Ret] token still serves as a key and value. Scores equal
:func:`xmodal_lib.methods.zse.evaluate.scores_rn` up to float rounding (tested for both CA variants,
token selection on and off, "grid" and "kept" RN tokens). Dropout is off (eval).

Attention is the explicit ``softmax(QKᵀ)V`` (counted exactly by ``FlopCounterMode``; on CPU SDPA
gives no gain here), with 1/√d folded into the cached Q.
:func:`pair_flops` counts the FLOPs per pair analytically (matmuls and convs only, the convention
of ``FlopCounterMode``) for this path and for the official per-pair path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal_lib.methods.zse.ca import CALayerNorm
from xmodal_lib.methods.zse.model import ZSESBIR
from xmodal_lib.methods.zse.rn import scatter_to_grid

__all__ = ["ImageCache", "PairScorer", "pair_flops", "score_matrix"]

# CA layer -> (modality giving Q, modality giving K); V and the residual come from the layer's own one.
_ROLES = {"paper": {"s": ("photo", "sketch"), "p": ("sketch", "photo")},
          "code": {"s": ("sketch", "photo"), "p": ("photo", "sketch")}}
_OWN = {"s": "sketch", "p": "photo"}


@dataclass
class ImageCache:
    """Per-image tensors of one modality: patch tokens (B, N, D), kept positions (B, N), projections.

    ``proj`` keys ``"{layer}{q|k|v}"`` (layer ``s`` or ``p``): q (B, H, N, hd) patch rows only,
    pre-scaled by 1/√hd; k and v (B, H, 1+N, hd) with the [Ret] row.
    """

    patches: Tensor
    kept: Tensor
    proj: dict[str, Tensor]
    modality: str

    def __len__(self) -> int:
        return self.patches.shape[0]

    def select(self, idx: Tensor) -> "ImageCache":
        """Rows ``idx`` (a slice or an index tensor) as a new cache."""
        return ImageCache(self.patches[idx], self.kept[idx], {k: v[idx] for k, v in self.proj.items()}, self.modality)


class PairScorer:
    """CA + RN scores of sketch × photo blocks (or paired rows) from :class:`ImageCache` es."""

    def __init__(self, model: ZSESBIR) -> None:
        variant = getattr(model.ca, "variant", "paper")
        if variant not in _ROLES:
            raise ValueError(f"PairScorer: CA variant {variant!r} not supported (expected one of {sorted(_ROLES)})")
        self.model, self.roles = model, _ROLES[variant]
        self.layers = {"s": model.ca.sketch_layer, "p": model.ca.photo_layer}

    @torch.no_grad()
    def project(self, tokens: Tensor, kept: Tensor, modality: str) -> ImageCache:
        """SA tokens (B, 1+N, D) and kept positions (B, N) of one modality -> :class:`ImageCache`."""
        if modality not in ("sketch", "photo"):
            raise ValueError(f"modality must be 'sketch' or 'photo', got {modality!r}")
        proj = {}
        for name, layer in self.layers.items():
            q_src, k_src = self.roles[name]
            if q_src == modality:
                proj[name + "q"] = self._heads(layer, layer.q(tokens[:, 1:])) * layer.hd ** -0.5
            if k_src == modality:
                proj[name + "k"] = self._heads(layer, layer.k(tokens))
            if _OWN[name] == modality:
                proj[name + "v"] = self._heads(layer, layer.v(tokens))
        return ImageCache(tokens[:, 1:], kept, proj, modality)

    @staticmethod
    def _heads(layer, x: Tensor) -> Tensor:
        B, L, _ = x.shape
        return x.view(B, L, layer.heads, layer.hd).transpose(1, 2).contiguous()  # (B, H, L, hd)

    def _layer(self, name: str, side: dict[str, dict[str, Tensor]], resid: Tensor) -> Tensor:
        """One CA layer over a broadcast block; side[modality] holds (b, 1|b', H, L, hd) tensors."""
        layer = self.layers[name]
        q_src, k_src = self.roles[name]
        q, k, v = side[q_src][name + "q"], side[k_src][name + "k"], side[_OWN[name]][name + "v"]
        w = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # broadcast -> (bq, bg, H, N, 1+N)
        a = w @ v  # (bq, bg, H, N, hd)
        bq, bg, H, N, hd = a.shape
        x = F.linear(a.transpose(2, 3).reshape(bq, bg, N, H * hd), layer.o.weight, layer.o.bias)  # (bq, bg, N, D)
        x = _norm(layer.norm1, x.add_(resid))
        ffn = layer.ffn
        h = F.linear(x, ffn[0].weight, ffn[0].bias).relu_()
        return _norm(layer.norm2, F.linear(h, ffn[3].weight, ffn[3].bias).add_(x))

    @torch.no_grad()
    def _scores(self, sk: ImageCache, ph: ImageCache, paired: bool) -> Tensor:
        if paired:  # row i of sk with row i of ph: batch (n, 1)
            s = {k: v.unsqueeze(1) for k, v in sk.proj.items()}
            p = {k: v.unsqueeze(1) for k, v in ph.proj.items()}
            s_res, p_res = sk.patches.unsqueeze(1), ph.patches.unsqueeze(1)
            bq, bg = len(sk), 1
        else:  # every sketch with every photo: (bq, 1) against (1, bg)
            s = {k: v.unsqueeze(1) for k, v in sk.proj.items()}
            p = {k: v.unsqueeze(0) for k, v in ph.proj.items()}
            s_res, p_res = sk.patches.unsqueeze(1), ph.patches.unsqueeze(0)
            bq, bg = len(sk), len(ph)
        side = {"sketch": s, "photo": p}
        cs = self._layer("s", side, s_res)  # (bq, bg, N, D)
        cp = self._layer("p", side, p_res)
        N, D = cs.shape[-2:]
        n = bq * bg
        s_pos = sk.kept.unsqueeze(1).expand(bq, bg, N).reshape(n, N) if not paired else sk.kept
        p_pos = ph.kept.unsqueeze(0).expand(bq, bg, N).reshape(n, N) if not paired else ph.kept
        rn = self.model.rn
        score = rn.score(_anchors(rn, cs.reshape(n, N, D), s_pos), _anchors(rn, cp.reshape(n, N, D), p_pos))
        return score.view(bq, bg) if not paired else score

    def score_block(self, sk: ImageCache, ph: ImageCache) -> Tensor:
        """Every sketch of ``sk`` (bq) against every photo of ``ph`` (bg) -> RN scores (bq, bg)."""
        return self._scores(sk, ph, paired=False)

    def score_pairs(self, sk: ImageCache, ph: ImageCache) -> Tensor:
        """Row-aligned pairs (n sketches, n photos) -> RN scores (n,) (``rn_rerank`` shortlists)."""
        if len(sk) != len(ph):
            raise ValueError(f"score_pairs: {len(sk)} sketches vs {len(ph)} photos; rows must be paired")
        return self._scores(sk, ph, paired=True)


def _norm(norm: nn.Module, x: Tensor) -> Tensor:
    """The CA norm a·(x−μ)/(σ+eps)+b (σ unbiased) in fewer passes than ``CALayerNorm`` (same value)."""
    if not isinstance(norm, CALayerNorm):
        return norm(x)
    xc = x - x.mean(-1, keepdim=True)
    std = torch.linalg.vector_norm(xc, dim=-1, keepdim=True).div_(math.sqrt(x.shape[-1] - 1))
    return torch.addcmul(norm.b, xc.div_(std.add_(norm.eps)), norm.a)


def _anchors(rn: nn.Module, x: Tensor, pos: Tensor) -> Tensor:
    """RN anchors (n, M, C) of CA patch outputs (n, N, D); the 2x2/2 conv as one GEMM ("grid", no raw view)."""
    if rn.mode != "grid" or rn.raw_view:
        return rn.anchor_tokens(x, pos)
    n, N, D = x.shape
    g = rn.grid
    if N != g * g or not bool((pos == torch.arange(N, device=pos.device)).all()):
        x = scatter_to_grid(x, pos, g * g)  # kept tokens at their grid positions, zeros elsewhere
    h = g // 2
    patches = x.reshape(n, h, 2, h, 2, D).permute(0, 1, 3, 2, 4, 5).reshape(n, h * h, 4 * D)  # (n, M, [kh, kw, D])
    w = rn.conv.weight.permute(0, 2, 3, 1).reshape(rn.conv.out_channels, 4 * D)  # (C, D, kh, kw) -> (C, [kh, kw, D])
    return F.linear(patches, w, rn.conv.bias)  # (n, M, C)


@torch.no_grad()
def score_matrix(model: ZSESBIR, s_tokens: Tensor, s_kept: Tensor, p_tokens: Tensor, p_kept: Tensor,
                 block_q: int = 8, block_g: int = 32) -> Tensor:
    """Exhaustive RN scores (Q, G) from SA tokens (Q|G, 1+N, D) and kept positions, float32 on CPU."""
    model.eval()
    sc = PairScorer(model)
    sk, ph = sc.project(s_tokens, s_kept, "sketch"), sc.project(p_tokens, p_kept, "photo")
    Q, G = len(sk), len(ph)
    out = torch.empty(Q, G)
    for i in range(0, Q, block_q):
        s = sk.select(slice(i, i + block_q))
        for j in range(0, G, block_g):
            out[i:i + len(s), j:j + block_g] = sc.score_block(s, ph.select(slice(j, j + block_g))).float().cpu()
    return out


def pair_flops(model: ZSESBIR) -> dict[str, int]:
    """Matmul + conv FLOPs per sketch-photo pair of CA + RN (FlopCounterMode's convention).

    Keys: ``cached`` (this module: per-pair work only), ``official_pair`` (CA + RN from raw tokens,
    :meth:`ZSESBIR.pair_forward`: + 6 projections of 1+N rows and the [Ret] query row),
    ``projections_per_image`` (what :meth:`PairScorer.project` spends per image, averaged over
    the two modalities, the same for both) and the components of ``cached``.
    """
    ca = model.ca.sketch_layer
    D, F_ = ca.q.in_features, ca.ffn[0].out_features
    N = model.sa.kept_per_layer()[-1]
    L = N + 1
    attn = 2 * 2 * N * L * D  # Q Kᵀ and w V, summed over heads (H * hd = D)
    out_proj, ffn = 2 * N * D * D, 2 * 2 * N * D * F_
    rn = model.rn
    M = rn.anchors
    if rn.mode == "grid":
        C = rn.conv.out_channels
        conv = 2 * (2 * M * C * rn.conv.in_channels * 4)  # both sides, 2x2 kernel
    else:
        C, conv = D, 0
    kernel = 2 * M * M * C
    lin = [m for m in rn.mlp if isinstance(m, torch.nn.Linear)]
    mlp = sum(2 * m.in_features * m.out_features for m in lin)
    cached = 2 * (attn + out_proj + ffn) + conv + kernel + mlp
    ret_row = 2 * (2 * 2 * L * D + 2 * D * D + 2 * 2 * D * F_)  # the [Ret] query row in both layers
    official = cached + 6 * 2 * L * D * D + ret_row
    per_image = 2 * D * D * (2 * L + N)  # 3 projections per image: two over 1+N rows, Q over the N patch rows
    return {"cached": cached, "official_pair": official, "projections_per_image": per_image,
            "ca_attention": 2 * attn, "ca_out_proj": 2 * out_proj, "ca_ffn": 2 * ffn, "rn_conv": conv,
            "rn_kernel": kernel, "rn_mlp": mlp, "tokens": N, "dim": D, "ffn_dim": F_, "anchors": M,
            "heads": ca.heads, "log10_cached": round(math.log10(cached), 3)}
