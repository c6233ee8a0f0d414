"""ZSE-SBIR self-attention module (SA): ViT with a [Ret] token, conv tokenizer and token selection.

methods_spec.md §3.3. The ViT itself is a timm ``VisionTransformer`` built by
:func:`xmodal_lib.layers.backbones.create_vit` (strict loading of local weight files); this module
adds

* the learnable convolutional tokenizer ("ConvStem"): tokens = ½·(PatchEmbed(x) + ConvStem(x)).
  The paper applies it to sketches only (our default); the official code to both modalities
  (``stem="both"``). The stem is not part of any ViT checkpoint, so it always starts random —
  this is the only non-strict part of loading ``pretrained`` weights, and it is reported.
* EViT-style token selection: at chosen layers, keep the ⌈r·N⌉ patch tokens the [Ret] token
  attends to most (head-averaged), re-sorted by position; the kept positions are returned so
  downstream code (relation network, explainability) knows where every token sits on the grid.
* [Ret] attention maps per layer and head on request. timm's fused attention (SDPA) returns no
  weights, so the manual softmax path is used only when maps are requested; pruning layers
  compute just the [Ret] row next to the fused output. A block whose timm ``Attention`` has
  ``fused_attn = False`` (the official explicit regime, set by
  :func:`xmodal_lib.layers.attention.set_attention_impl`) runs the explicit softmax everywhere.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal_lib.layers.backbones import create_vit

__all__ = ["ConvStem", "SAOutput", "SelfAttentionModule", "kept_count", "select_tokens"]


class ConvStem(nn.Module):
    """Conv tokenizer: 7x7/2 then 3x3/2 convs (no bias, no norm), ReLU between; total stride = patch.

    For patch 16 this is exactly the official Conv(3→64,k7,s2) → Conv(64→128) → Conv(128→256) →
    Conv(256→768) (spec §3.3). Other patch sizes use log2(patch) stride-2 convs with channels
    growing 64, 128, 256 ... capped below ``dim``; the last conv always maps to ``dim``.
    """

    def __init__(self, dim: int, patch_size: int = 16, in_chans: int = 3) -> None:
        super().__init__()
        n = int(round(math.log2(patch_size)))
        if 2 ** n != patch_size or n < 1:
            raise ValueError(f"ConvStem: patch_size must be a power of two >= 2, got {patch_size}")
        chans = [in_chans] + [min(64 * 2 ** i, dim) for i in range(n - 1)] + [dim]
        layers: list[nn.Module] = []
        for i in range(n):
            k, p = (7, 3) if i == 0 else (3, 1)
            layers.append(nn.Conv2d(chans[i], chans[i + 1], k, stride=2, padding=p, bias=False))
            if i < n - 1:
                layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, N, D) tokens in row-major grid order."""
        return self.net(x).flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, N, D)


@dataclass
class SAOutput:
    """SA result of a batch of images.

    tokens: (B, 1+N, D) final-normed tokens, [Ret] first, N = patch tokens kept after selection.
    kept: (B, N) long, grid position (0 .. grid²-1) of every kept patch token.
    ret_attn: per layer, (B, H, N_l) [Ret]→patch attention (only from :meth:`SelfAttentionModule.with_attention`).
    ret_attn_pos: per layer, (B, N_l) grid positions of the columns of ``ret_attn``.
    """

    tokens: Tensor
    kept: Tensor
    ret_attn: list[Tensor] = field(default_factory=list)
    ret_attn_pos: list[Tensor] = field(default_factory=list)

    @property
    def ret(self) -> Tensor:
        """(B, D) the [Ret] token."""
        return self.tokens[:, 0]


def kept_count(n: int, rate: float) -> int:
    """⌈rate·n⌉ tokens (rounded to 1e-6 first, so 0.9·160 gives 144 despite float error)."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"keep rate must be in (0, 1], got {rate}")
    return max(1, math.ceil(round(rate * n, 6)))


def select_tokens(x: Tensor, ret_attn: Tensor, pos: Tensor, rate: float) -> tuple[Tensor, Tensor]:
    """Keep the top-⌈rate·N⌉ patch tokens by head-averaged [Ret] attention, in grid order.

    x: (B, 1+N, D); ret_attn: (B, H, N) [Ret]→patch attention; pos: (B, N) grid positions.
    Returns (B, 1+k, D) tokens and (B, k) positions.
    """
    B, n1, D = x.shape
    k = kept_count(n1 - 1, rate)
    score = ret_attn.mean(dim=1)  # (B, N)
    top = score.topk(k, dim=1).indices.sort(dim=1).values  # (B, k) sequence indices, re-sorted
    patches = x[:, 1:].gather(1, top.unsqueeze(-1).expand(B, k, D))  # (B, k, D)
    return torch.cat([x[:, :1], patches], dim=1), pos.gather(1, top)


def _attend(attn: nn.Module, y: Tensor, mode: str) -> tuple[Tensor, Tensor | None]:
    """timm ``Attention`` on normed input y (B, N, D); mode: "none" | "ret" (fused + [Ret] row) | "full" (manual)."""
    if mode == "none":
        return attn(y), None  # timm picks SDPA or the explicit softmax from attn.fused_attn
    if mode == "ret" and not getattr(attn, "fused_attn", True):
        mode = "full"  # explicit regime: the [Ret] row comes from the full softmax
    if getattr(attn, "gate", None) is not None:
        raise ValueError("ZSE SA: gated timm attention is not supported")
    B, N, _ = y.shape
    qkv = attn.qkv(y).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, H, N, hd) each
    q, k = attn.q_norm(q), attn.k_norm(k)
    if mode == "full":
        w = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
        out = attn.attn_drop(w) @ v
        row = w[:, :, 0]  # (B, H, N)
    elif mode == "ret":
        drop = attn.attn_drop.p if attn.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        row = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)[:, :, 0]  # (B, H, N)
    else:
        raise ValueError(f"attention mode must be 'none', 'ret' or 'full', got {mode!r}")
    out = out.transpose(1, 2).reshape(B, N, attn.attn_dim)  # (B, N, H*hd)
    out = attn.proj_drop(attn.proj(attn.norm(out)))
    return out, row


class SelfAttentionModule(nn.Module):
    """ViT encoder with [Ret] token, optional conv tokenizer and EViT token selection.

    Args:
        img_size, patch_size, dim, depth, heads, mlp_ratio: ViT geometry (paper: 224/16, 768, 12, 12, 4).
        dropout: dropout after position embedding, attention projection and MLP (paper 0.1).
        stem: "sketch" (paper), "both" (official code) or "none".
        keep_rate: r of token selection; 1.0 disables it.
        prune_layers: 1-based layer numbers where tokens are selected (paper 4, 7, 10).
        pretrained: False | True (timm download) | path of a timm-format ViT file (strict).
        ln_eps: eps of every ViT LayerNorm: timm's 1e-6 (default) or 1e-5, the official code's
            ``nn.LayerNorm`` default (needed to reproduce the released checkpoint).
        vit_name: timm model name; only matters for ``pretrained=True`` (which weights timm
            fetches): ``vit_base_patch16_224.sam_in1k`` = the released SAM ViT-B/16 on ImageNet-1k.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, dim: int = 768, depth: int = 12,
                 heads: int = 12, mlp_ratio: float = 4.0, dropout: float = 0.1, stem: str = "sketch",
                 keep_rate: float = 1.0, prune_layers: tuple[int, ...] = (4, 7, 10),
                 pretrained: bool | str | Path = False, ln_eps: float = 1e-6,
                 vit_name: str = "vit_base_patch16_224") -> None:
        super().__init__()
        if not ln_eps > 0:
            raise ValueError(f"ln_eps must be > 0, got {ln_eps}")
        if stem not in ("sketch", "both", "none"):
            raise ValueError(f"stem must be 'sketch', 'both' or 'none', got {stem!r}")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        bad = [l for l in prune_layers if not 1 <= int(l) <= depth] if keep_rate < 1.0 else []
        if bad:
            raise ValueError(f"prune_layers must be 1-based layer numbers in 1..{depth}, got {bad}")
        kept_count(1, keep_rate)  # validates the rate
        self.stem_mode, self.keep_rate = stem, float(keep_rate)
        self.prune_layers = tuple(int(l) for l in prune_layers)
        self.grid = img_size // patch_size
        name = vit_name
        self.vit = create_vit(
            name, pretrained=pretrained, img_size=img_size, patch_size=patch_size, embed_dim=dim,
            depth=depth, num_heads=heads, mlp_ratio=mlp_ratio, qkv_bias=True, pos_drop_rate=dropout,
            proj_drop_rate=dropout, num_classes=0, global_pool="token",
        )
        if ln_eps != 1e-6:  # timm's default; the official ZSE-SBIR ViT uses nn.LayerNorm (1e-5)
            for m in self.vit.modules():
                if isinstance(m, nn.LayerNorm):
                    m.eps = float(ln_eps)
        self.stem = ConvStem(dim, patch_size) if stem != "none" else None
        if pretrained is not False and self.stem is not None:
            warnings.warn("ZSE SA: pretrained ViT weights loaded strictly; the conv tokenizer (stem) "
                          "is not in ViT checkpoints and keeps its random init")
        self.dim, self.heads = dim, heads
        self.forward_images = 0  # images passed through SA (benchmarks count backbone passes)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def kept_per_layer(self) -> list[int]:
        """Number of patch tokens entering each layer's MLP (after selection at that layer)."""
        n, out = self.num_patches, []
        for l in range(1, len(self.vit.blocks) + 1):
            if self.keep_rate < 1.0 and l in self.prune_layers:
                n = kept_count(n, self.keep_rate)
            out.append(n)
        return out

    def tokenize(self, x: Tensor, use_stem: bool) -> Tensor:
        """(B, 3, H, W) -> (B, N, D) patch tokens (averaged with the conv stem when ``use_stem``)."""
        t = self.vit.patch_embed(x)  # (B, N, D)
        if use_stem and self.stem is not None:
            t = 0.5 * (t + self.stem(x))
        return t

    def forward(self, x: Tensor, modality: str = "photo") -> SAOutput:
        """SA(x) for ``modality`` "sketch" or "photo"; see :class:`SAOutput` (no attention maps)."""
        return self._run(x, modality, maps=False)

    def with_attention(self, x: Tensor, modality: str = "photo") -> SAOutput:
        """SA(x) with every layer's [Ret] attention in ``ret_attn``/``ret_attn_pos`` (explicit softmax)."""
        return self._run(x, modality, maps=True)

    def _run(self, x: Tensor, modality: str, maps: bool) -> SAOutput:
        if modality not in ("sketch", "photo"):
            raise ValueError(f"modality must be 'sketch' or 'photo', got {modality!r}")
        use_stem = self.stem_mode == "both" or (self.stem_mode == "sketch" and modality == "sketch")
        if not torch.compiler.is_compiling():  # a mutated int attribute would recompile every call
            self.forward_images += int(x.shape[0])
        vit = self.vit
        t = self.tokenize(x, use_stem)
        B = t.shape[0]
        x = torch.cat([vit.cls_token.expand(B, -1, -1), t], dim=1) + vit.pos_embed  # (B, 1+N, D)
        x = vit.pos_drop(x)
        pos = torch.arange(t.shape[1], device=x.device).expand(B, -1)  # (B, N)
        attn_maps: list[Tensor] = []
        attn_pos: list[Tensor] = []
        for l, blk in enumerate(vit.blocks, start=1):
            prune = self.keep_rate < 1.0 and l in self.prune_layers
            mode = "full" if maps else ("ret" if prune else "none")
            h, row = _attend(blk.attn, blk.norm1(x), mode)
            x = x + blk.drop_path1(blk.ls1(h))
            if maps:
                attn_maps.append(row[:, :, 1:])  # (B, H, N_l) [Ret]→patches
                attn_pos.append(pos)
            if prune:
                x, pos = select_tokens(x, row[:, :, 1:], pos, self.keep_rate)
            x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        return SAOutput(tokens=vit.norm(x), kept=pos, ret_attn=attn_maps, ret_attn_pos=attn_pos)
