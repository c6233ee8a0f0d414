"""ZSE-SBIR (Lin et al., CVPR 2023): SA (ViT + [Ret]) → CA over a sketch-photo pair → kernel RN.

Public API::

    cfg = ZSEConfig()                  # the tiny CPU model; paper: preset("04_zse_sbir", "paper").model
    model = ZSESBIR(cfg)
    model.encode_sketch(x) / model.encode_photo(x)   # (B, D) pre-CA [Ret] ("Ours-Ret")
    model.similarity(q, g)                           # (Q, G) cosine of [Ret] embeddings
    sa = model.sa_features(x, "sketch")               # tokens, kept positions (SAOutput)
    sa = model.sa_attention(x, "sketch")              # the same with every layer's [Ret] attention maps
    out = model.pair_forward(sa_s, sa_p)              # post-CA [Ret] of both + RN score (n,)
    model.score_pairs(x_sketch, x_photo)              # RN scores of paired images (n,)

Submodules: :mod:`.sa` (SA, tokenizer, token selection), :mod:`.ca` (CA variants),
:mod:`.rn` (relation network).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from xmodal_lib.layers.hybrid import use_hybrid_embed
from xmodal_lib.methods.zse.ca import CrossAttention
from xmodal_lib.methods.zse.rn import RelationNetwork
from xmodal_lib.methods.zse.sa import SAOutput, SelfAttentionModule, kept_count, select_tokens

__all__ = ["ZSEConfig", "ZSESBIR", "PairOutput", "SAOutput", "kept_count", "select_tokens"]


@dataclass
class ZSEConfig:
    """Model hyper-parameters (methods_spec.md §3.3–3.5); notebook 04's parameters of the same names
    (``ZSEPipelineConfig.model``). The defaults are a tiny CPU model (48 px, patch 8: a 6x6 grid and
    3x3 RN anchors, dim 48, depth 4); the paper's ViT-B/16 at 224 px is the paper profile
    (``notebooks/params/paper/04_zse_sbir.yaml``, :func:`xmodal_lib.run.params.preset`)."""

    img_size: int = 48
    patch_size: int = 8
    dim: int = 48
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    stem: str = "sketch"          # "sketch" (paper) | "both" (official code) | "none"
    keep_rate: float = 1.0        # token selection r; paper ablation 0.9, released default 1.0
    prune_layers: tuple[int, ...] = (2, 3)  # 1-based
    ca_variant: str = "paper"     # "paper" (Q from other modality) | "code" (K from other)
    ca_heads: int = 4
    ca_ffn: int = 96
    rn_dim: int = 24
    rn_tokens: str = "grid"       # "grid" (scatter kept tokens, zeros elsewhere) | "kept"
    rn_raw_view: bool = False     # official raw memory view before the RN conv
    pretrained: bool | str = False
    patch_embed: str = "pixels"   # "pixels" (paper) | "hybrid_lite0"/"hybrid_lite2": our CNN-cell tokens (layers.hybrid)
    cnn_trainable_blocks: int = 0  # hybrid only: last CNN stages trained (0 = frozen CNN, features cached)
    ln_eps: float = 1e-6          # SA ViT LayerNorm eps: timm 1e-6 | official code 1e-5 (nn.LayerNorm)
    vit_name: str = "vit_base_patch16_224.sam_in1k"  # timm name (pretrained=True): SAM ViT-B/16 ImageNet-1k

    def __post_init__(self) -> None:
        choices = {"stem": ("sketch", "both", "none"), "ca_variant": ("paper", "code"), "rn_tokens": ("grid", "kept")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"ZSEConfig.{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.img_size % self.patch_size:
            raise ValueError(f"ZSEConfig: img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if not 0.0 < self.keep_rate <= 1.0:
            raise ValueError(f"ZSEConfig.keep_rate must be in (0, 1], got {self.keep_rate}")
        self.prune_layers = tuple(int(x) for x in self.prune_layers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prune_layers"] = list(self.prune_layers)
        d["pretrained"] = str(self.pretrained) if isinstance(self.pretrained, Path) else self.pretrained
        return d


@dataclass
class PairOutput:
    """Outputs for n paired rows: post-CA [Ret] tokens (n, D) of sketch and photo, RN score (n,)."""

    ret_sketch: Tensor
    ret_photo: Tensor
    score: Tensor


class ZSESBIR(nn.Module):
    """The whole ZSE-SBIR network; see the module docstring for the API."""

    def __init__(self, cfg: ZSEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sa = SelfAttentionModule(
            img_size=cfg.img_size, patch_size=cfg.patch_size, dim=cfg.dim, depth=cfg.depth,
            heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, stem=cfg.stem,
            keep_rate=cfg.keep_rate, prune_layers=tuple(cfg.prune_layers), pretrained=cfg.pretrained,
            ln_eps=cfg.ln_eps, vit_name=cfg.vit_name,
        )
        use_hybrid_embed(self.sa.vit, cfg.patch_embed, cfg.cnn_trainable_blocks)  # "pixels": unchanged
        self.ca = CrossAttention(cfg.dim, cfg.ca_heads, cfg.ca_ffn, cfg.dropout, cfg.ca_variant)
        n_kept = self.sa.kept_per_layer()[-1]
        self.rn = RelationNetwork(cfg.dim, self.sa.grid, cfg.rn_dim, cfg.rn_tokens, n_kept,
                                  cfg.rn_raw_view, cfg.dropout)

    # --- SA -----------------------------------------------------------------------------------
    def sa_features(self, x: Tensor, modality: str) -> SAOutput:
        """SA tokens (B, 1+N, D) and kept grid positions (B, N); no attention maps."""
        return self.sa(x, modality)

    def sa_attention(self, x: Tensor, modality: str) -> SAOutput:
        """:meth:`sa_features` plus every layer's [Ret] attention maps (``ret_attn``, ``ret_attn_pos``)."""
        return self.sa.with_attention(x, modality)

    def encode_sketch(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) sketches -> (B, D) pre-CA [Ret] embedding (official ``sa`` retrieval)."""
        return self.sa(x, "sketch").ret

    def encode_photo(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) photos -> (B, D) pre-CA [Ret] embedding."""
        return self.sa(x, "photo").ret

    @staticmethod
    def similarity(q: Tensor, g: Tensor) -> Tensor:
        """Cosine scores ``[Q, G]`` of [Ret] embeddings (larger = more similar; "Ours-Ret"). The RN
        score of image pairs ("Ours-RN") is :meth:`score_pairs`."""
        return F.normalize(q, dim=-1) @ F.normalize(g, dim=-1).t()

    # --- CA + RN ------------------------------------------------------------------------------
    def pair_forward(self, s_tokens: Tensor, s_pos: Tensor, p_tokens: Tensor, p_pos: Tensor) -> PairOutput:
        """Paired SA tokens (n, 1+N, D) with grid positions (n, N) -> :class:`PairOutput`."""
        cs, cp = self.ca(s_tokens, p_tokens)  # (n, 1+N, D) each
        score = self.rn(cs[:, 1:], s_pos, cp[:, 1:], p_pos)
        return PairOutput(cs[:, 0], cp[:, 0], score)

    def pairs_from_cache(self, s_tokens: Tensor, s_pos: Tensor, s_proj: dict[str, Tensor],
                         p_tokens: Tensor, p_pos: Tensor, p_proj: dict[str, Tensor]) -> Tensor:
        """RN scores (n,) of paired rows whose CA projections come from :meth:`CrossAttention.project`."""
        cs, cp = self.ca.pairs_from_projections(s_proj, p_proj, s_tokens, p_tokens)
        return self.rn(cs[:, 1:], s_pos, cp[:, 1:], p_pos)

    def score_pairs(self, sketches: Tensor, photos: Tensor) -> Tensor:
        """Paired images (n, 3, H, W) each -> RN relation scores (n,) in (0, 1)."""
        s, p = self.sa(sketches, "sketch"), self.sa(photos, "photo")
        return self.pair_forward(s.tokens, s.kept, p.tokens, p.kept).score

    def forward(self, sketches: Tensor, photos: Tensor) -> PairOutput:
        """Paired images -> :class:`PairOutput` (used by training)."""
        s, p = self.sa(sketches, "sketch"), self.sa(photos, "photo")
        return self.pair_forward(s.tokens, s.kept, p.tokens, p.kept)
