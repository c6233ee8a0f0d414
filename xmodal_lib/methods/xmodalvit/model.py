"""XModalViT (BMVC'22): the cross-modal fusion teacher (XMA blocks) and the unimodal students.

Shapes follow methods_spec.md §1.3 (ViT-B/16: D=768, N=196 patches). Notation: c_p, c_s are the
[CLS] tokens of the photo and sketch branch, P_p, P_s their patch tokens.

One XMA layer (only the two [CLS] tokens change; patch tokens never do)::

    q_s = f_21(c_s);  u = q_s + CA_l(LN([q_s ; P_p]));        c_s <- g_12(u)
    q_p = f_12(c_p);  v = q_p + CA_s(LN([q_p ; c_s ; P_s]));  c_p <- g_21(v)

CA is a cross-attention whose query is computed from token 0 only (heads=3, dim_head=D//3,
bias-free q/k/v, output Linear), and LN normalises the whole sequence. The photo [CLS] attends to
the freshly updated sketch branch. The official code's unused modules (CrossViT leftovers,
classification heads, the sigmoid ``mlp_head``) are not built.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal_lib.layers.backbones import create_vit, tokens
from xmodal_lib.layers.hybrid import use_hybrid_embed

__all__ = [
    "CrossAttention",
    "XMALayer",
    "XModalTeacher",
    "FusedEmbeddings",
    "XModalStudent",
    "StudentPair",
    "STUDENT_POOLS",
    "vit_overrides",
    "build_teacher",
    "build_students",
]


def vit_overrides(
    patch_size: int | None = None,
    depth: int | None = None,
    embed_dim: int | None = None,
    num_heads: int | None = None,
) -> dict[str, int]:
    """timm kwargs for the given non-None size overrides (smoke backbones)."""
    kw = {"patch_size": patch_size, "depth": depth, "embed_dim": embed_dim, "num_heads": num_heads}
    return {k: int(v) for k, v in kw.items() if v is not None}


class CrossAttention(nn.Module):
    """PreNorm cross-attention with a single query: token 0 of the (normed) input sequence.

    ``forward(seq [B,T,D], need_weights) -> (out [B,1,D], attn [B,heads,T] or None)``. Without
    weights the fused ``scaled_dot_product_attention`` kernel runs (flash / memory-efficient on
    GPU); with weights the explicit softmax path runs (figures). Both are tested equal.
    """

    def __init__(self, dim: int, heads: int = 3, dim_head: int | None = None, dropout: float = 0.0):
        super().__init__()
        if dim_head is None:
            if dim % heads:
                raise ValueError(f"CrossAttention: dim={dim} not divisible by heads={heads}")
            dim_head = dim // heads
        inner = heads * dim_head
        self.heads, self.dim_head, self.scale = heads, dim_head, dim_head**-0.5
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        self.fused = True  # False forces the explicit path (the official regime, for benchmarks)

    def forward(self, seq: Tensor, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        b, t, _ = seq.shape
        x = self.norm(seq)  # LayerNorm over every token of the sequence
        h, dh = self.heads, self.dim_head
        q = self.to_q(x[:, :1]).view(b, 1, h, dh).transpose(1, 2)  # (B, h, 1, dh)
        k = self.to_k(x).view(b, t, h, dh).transpose(1, 2)  # (B, h, T, dh)
        v = self.to_v(x).view(b, t, h, dh).transpose(1, 2)  # (B, h, T, dh)
        if need_weights or not self.fused:
            attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)  # (B, h, 1, T)
            out, weights = attn @ v, attn[:, :, 0]  # (B, h, 1, dh), (B, h, T)
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, scale=self.scale), None  # (B, h, 1, dh)
        out = out.transpose(1, 2).reshape(b, 1, h * dh)  # (B, 1, h*dh)
        return self.to_out(out), (weights if need_weights else None)


class XMALayer(nn.Module):
    """One cross-modal attention layer: updates the sketch [CLS], then the photo [CLS]."""

    def __init__(self, dim: int, heads: int = 3, dim_head: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.f_12 = nn.Linear(dim, dim)  # photo CLS -> query space
        self.g_21 = nn.Linear(dim, dim)  # back to the photo branch
        self.f_21 = nn.Linear(dim, dim)  # sketch CLS -> query space
        self.g_12 = nn.Linear(dim, dim)  # back to the sketch branch
        self.ca_l = CrossAttention(dim, heads, dim_head, dropout)  # sketch CLS over photo patches
        self.ca_s = CrossAttention(dim, heads, dim_head, dropout)  # photo CLS over sketch branch

    def forward(self, xp: Tensor, xs: Tensor, need_weights: bool = True
                ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """``xp [B,1+Np,D]``, ``xs [B,1+Ns,D]`` -> updated sequences + attention weights.

        Attention dict (empty when ``need_weights=False``, the fused SDPA path):
        ``"sketch_to_photo" [B,h,1+Np]`` over ``[q_s ; P_p]`` and
        ``"photo_to_sketch" [B,h,2+Ns]`` over ``[q_p ; c_s_new ; P_s]``.
        """
        c_p, p_p = xp[:, :1], xp[:, 1:]  # (B, 1, D), (B, Np, D)
        c_s, p_s = xs[:, :1], xs[:, 1:]
        q_s = self.f_21(c_s)
        u, a_sp = self.ca_l(torch.cat([q_s, p_p], dim=1), need_weights)  # (B, 1+Np, D) -> (B, 1, D)
        c_s = self.g_12(q_s + u)
        xs = torch.cat([c_s, p_s], dim=1)
        q_p = self.f_12(c_p)
        v, a_ps = self.ca_s(torch.cat([q_p, xs], dim=1), need_weights)  # (B, 2+Ns, D) -> (B, 1, D)
        c_p = self.g_21(q_p + v)
        xp = torch.cat([c_p, p_p], dim=1)
        maps = {"sketch_to_photo": a_sp, "photo_to_sketch": a_ps} if need_weights else {}
        return xp, xs, maps


class FusedEmbeddings(NamedTuple):
    """The teacher's fused [CLS] embeddings ``[B, D]`` of a (photo, sketch) batch."""

    photo: Tensor
    sketch: Tensor


class XModalTeacher(nn.Module):
    """Modality fusion network: photo ViT + sketch ViT + ``depth`` XMA layers.

    ``forward(photo, sketch) -> FusedEmbeddings(z_p, z_s)`` fused [CLS] embeddings ``[B, D]``
    (D = encoder width, 768 for ViT-B; unpacks as ``z_p, z_s``). :meth:`xma_attention` gives the
    attention weights, one dict per XMA layer (see :meth:`XMALayer.forward`). The patch grid is ``grid``.
    """

    def __init__(self, photo_encoder: nn.Module, sketch_encoder: nn.Module, depth: int = 3,
                 heads: int = 3, dim_head: int | None = None, dropout: float = 0.0):
        super().__init__()
        dp, ds = photo_encoder.embed_dim, sketch_encoder.embed_dim
        if dp != ds:
            raise ValueError(f"XModalTeacher: encoder widths differ (photo {dp}, sketch {ds})")
        if depth < 1:
            raise ValueError(f"XModalTeacher: depth (number of XMA layers) must be >= 1, got {depth}")
        self.photo_encoder, self.sketch_encoder = photo_encoder, sketch_encoder
        self.embed_dim = dp
        self.layers = nn.ModuleList(XMALayer(dp, heads, dim_head, dropout) for _ in range(depth))

    def _tokens(self, vit: nn.Module, x: Tensor) -> Tensor:
        t = tokens(vit, x)  # (B, P+N, D)
        extra = getattr(vit, "num_prefix_tokens", 1) - 1
        if extra > 0:  # distillation/register tokens: keep [CLS] + patches only
            t = torch.cat([t[:, :1], t[:, 1 + extra:]], dim=1)
        return t

    def _fuse(self, photo: Tensor, sketch: Tensor, need_weights: bool) -> tuple[FusedEmbeddings, list[dict]]:
        xp = self._tokens(self.photo_encoder, photo)  # (B, 1+Np, D)
        xs = self._tokens(self.sketch_encoder, sketch)  # (B, 1+Ns, D)
        maps = []
        for layer in self.layers:
            xp, xs, a = layer(xp, xs, need_weights=need_weights)
            maps.append(a)
        return FusedEmbeddings(xp[:, 0], xs[:, 0]), maps  # (B, D) each

    def forward(self, photo: Tensor, sketch: Tensor) -> FusedEmbeddings:
        """Fused [CLS] embeddings of paired rows (fused SDPA attention where the switch allows)."""
        return self._fuse(photo, sketch, need_weights=False)[0]

    def xma_attention(self, photo: Tensor, sketch: Tensor) -> list[dict[str, Tensor]]:
        """Per XMA layer ``{"sketch_to_photo": [B,h,1+Np], "photo_to_sketch": [B,h,2+Ns]}`` (explicit
        softmax path; column layout in :meth:`XMALayer.forward`)."""
        return self._fuse(photo, sketch, need_weights=True)[1]

    def encode_photo(self, photo: Tensor, sketch: Tensor) -> Tensor:
        """Photo-branch fused embedding z_p(photo, sketch); the teacher always needs both inputs."""
        return self.forward(photo, sketch)[0]

    def encode_sketch(self, photo: Tensor, sketch: Tensor) -> Tensor:
        """Sketch-branch fused embedding z_s(photo, sketch); the teacher always needs both inputs."""
        return self.forward(photo, sketch)[1]

    @property
    def grid(self) -> tuple[int, int]:
        """Patch-token grid (rows, cols) of the photo encoder (both encoders share the input size)."""
        return tuple(self.photo_encoder.patch_embed.grid_size)


STUDENT_POOLS = ("cls", "avg", "cls+avg")


class XModalStudent(nn.Module):
    """One-modality student: ViT feature -> LayerNorm -> Linear into the teacher's width (not L2-normed).

    ``pool`` picks the ViT feature: ``"cls"`` (the paper: the final-normed [CLS] token), ``"avg"``
    (mean of the patch tokens) or ``"cls+avg"`` (their mean). The last two are our additions.
    """

    def __init__(self, backbone: nn.Module, out_dim: int, pool: str = "cls"):
        super().__init__()
        if pool not in STUDENT_POOLS:
            raise ValueError(f"XModalStudent: pool must be one of {STUDENT_POOLS}, got {pool!r}")
        self.backbone, self.pool = backbone, pool
        self.head = nn.Sequential(nn.LayerNorm(backbone.embed_dim), nn.Linear(backbone.embed_dim, out_dim))
        self.out_dim = out_dim

    def features(self, x: Tensor) -> Tensor:
        """The pooled ViT feature ``[B, D_s]`` fed to the head."""
        t = tokens(self.backbone, x)  # (B, P+N, D_s)
        if self.pool == "cls":
            return t[:, 0]
        patches = t[:, getattr(self.backbone, "num_prefix_tokens", 1):].mean(dim=1)  # (B, D_s)
        return patches if self.pool == "avg" else 0.5 * (t[:, 0] + patches)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, D_s) -> (B, out_dim)


class StudentPair(nn.Module):
    """Photo student + sketch student: the test-time retrieval model.

    ``normalize=True`` L2-normalises both outputs (used by the triplet baseline, so the dot
    product is the cosine); the distilled students are kept un-normalised as in the paper's code.
    """

    def __init__(self, photo: XModalStudent, sketch: XModalStudent, normalize: bool = False):
        super().__init__()
        if photo.out_dim != sketch.out_dim:
            raise ValueError(f"StudentPair: output widths differ ({photo.out_dim} vs {sketch.out_dim})")
        self.photo, self.sketch, self.normalize = photo, sketch, normalize

    def _out(self, e: Tensor) -> Tensor:
        return F.normalize(e, dim=-1) if self.normalize else e

    def encode_photo(self, x: Tensor) -> Tensor:
        return self._out(self.photo(x))

    def encode_sketch(self, x: Tensor) -> Tensor:
        return self._out(self.sketch(x))

    def forward(self, photo: Tensor, sketch: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode_photo(photo), self.encode_sketch(sketch)

    @staticmethod
    def similarity(q: Tensor, g: Tensor) -> Tensor:
        """Dot-product scores ``[Q, G]`` of sketch ``q`` [Q, D] and photo ``g`` [G, D] embeddings
        (larger = more similar; the cosine when ``normalize=True``)."""
        return q @ g.t()


def build_teacher(backbone: str = "vit_base_patch16_224", pretrained: bool | str = False,
                  img_size: int | None = None, xma_depth: int = 3, xma_heads: int = 3,
                  patch_embed: str = "pixels", cnn_trainable_blocks: int = 0, input_norm: str = "half",
                  **vit_kwargs: Any) -> XModalTeacher:
    """Two separate ViTs (same recipe) fused by ``xma_depth`` XMA layers. ``patch_embed`` other than
    ``"pixels"`` gives each ViT hybrid CNN-cell tokens (:func:`xmodal_lib.layers.hybrid.use_hybrid_embed`, our option)."""
    enc = [use_hybrid_embed(create_vit(backbone, pretrained, img_size, **vit_kwargs), patch_embed,
                            cnn_trainable_blocks, input_norm) for _ in range(2)]
    return XModalTeacher(enc[0], enc[1], depth=xma_depth, heads=xma_heads)


def build_students(backbone: str = "vit_tiny_patch16_224", out_dim: int = 768,
                   pretrained: bool | str = False, img_size: int | None = None,
                   normalize: bool = False, pool: str = "cls", patch_embed: str = "pixels",
                   cnn_trainable_blocks: int = 0, input_norm: str = "half", **vit_kwargs: Any) -> StudentPair:
    """A photo and a sketch student (separate weights) projecting into ``out_dim``; ``pool`` as in
    :class:`XModalStudent`; ``patch_embed`` as in :func:`build_teacher`."""
    hy = dict(patch_embed=patch_embed, trainable_blocks=cnn_trainable_blocks, input_norm=input_norm)
    ph = XModalStudent(use_hybrid_embed(create_vit(backbone, pretrained, img_size, **vit_kwargs), **hy), out_dim, pool)
    sk = XModalStudent(use_hybrid_embed(create_vit(backbone, pretrained, img_size, **vit_kwargs), **hy), out_dim, pool)
    return StudentPair(ph, sk, normalize=normalize)
