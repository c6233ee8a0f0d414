"""Hybrid patch embedding: the cells of a pretrained CNN's stride-16 feature map as ViT tokens.

The ViT paper's "hybrid" (Dosovitskiy et al. 2021, §3.1; timm ``HybridEmbed``): instead of
linearly embedding 16x16 pixel patches, every cell of a CNN feature map at stride 16 becomes one
token, projected to the ViT width by a learned linear map. Here the CNN is the ImageNet
EfficientNet-Lite of :mod:`.pretrained_cnn` (frozen, or with its last stages trained; frozen
features cached per image), so XMA, the [Ret] token, token selection, cross-attention and the
relation network see meaningful tokens on a machine without ViT weights.

This is **our option**, not the papers' (they use ImageNet ViT-B/16 patch embeddings); it is off
in the paper profile and every table that uses it names it (``patch_embed="hybrid_lite0"``).
Differences from timm's ``HybridEmbed``: a LayerNorm after the projection (the CNN's features
are unnormalised ReLU6 outputs, far from the ViT's token scale), and the CNN keeps ImageNet
BatchNorm statistics (frozen part in eval mode).
"""
from __future__ import annotations

from torch import Tensor, nn

from xmodal_lib.layers.pretrained_cnn import PretrainedCNN

__all__ = ["PATCH_EMBEDS", "HybridPatchEmbed", "use_hybrid_embed"]

#: accepted values of the ``patch_embed`` option of the ViT methods
PATCH_EMBEDS = ("pixels", "hybrid_lite0", "hybrid_lite2")


class HybridPatchEmbed(nn.Module):
    """Images [B, 3, H, W] -> tokens [B, (H/16)*(W/16), dim] from a stride-16 CNN map.

    Has the attributes timm's ``VisionTransformer`` reads from its ``patch_embed``
    (``grid_size``, ``num_patches``, ``patch_size``, ``img_size``).
    """

    def __init__(self, dim: int, img_size: int, variant: str = "lite0", trainable_blocks: int = 0,
                 input_norm: str = "half", cache: bool = True, allow_random: bool = False) -> None:
        super().__init__()
        if img_size % 16:
            raise ValueError(f"HybridPatchEmbed: img_size must be a multiple of 16 (the CNN stride), got {img_size}")
        self.cnn = PretrainedCNN(variant, cut="s16", trainable_blocks=trainable_blocks, input_norm=input_norm,
                                 cache=cache, allow_random=allow_random)
        self.proj = nn.Linear(self.cnn.num_features, dim)
        self.norm = nn.LayerNorm(dim)
        self.img_size = (img_size, img_size)
        self.patch_size = (16, 16)
        self.grid_size = (img_size // 16, img_size // 16)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.dynamic_img_pad = False

    def forward(self, x: Tensor) -> Tensor:
        f = self.cnn.forward_features(x)  # (B, C, h, w)
        t = f.flatten(2).transpose(1, 2)  # (B, h*w, C), row-major grid order like a ViT
        return self.norm(self.proj(t))  # (B, N, dim)


def use_hybrid_embed(vit: nn.Module, patch_embed: str, trainable_blocks: int = 0,
                     input_norm: str = "half", cache: bool = True) -> nn.Module:
    """Replace ``vit.patch_embed`` by a :class:`HybridPatchEmbed` (``patch_embed != "pixels"``).

    The ViT's position embedding must be for a 16-pixel grid (``img_size / 16`` per side).
    Returns ``vit`` (changed in place); ``"pixels"`` leaves it unchanged.
    """
    if patch_embed not in PATCH_EMBEDS:
        raise ValueError(f"patch_embed: expected one of {PATCH_EMBEDS}, got {patch_embed!r}")
    if patch_embed == "pixels":
        return vit
    old = vit.patch_embed
    grid, img = tuple(old.grid_size), tuple(old.img_size)
    if img[0] != img[1] or grid != (img[0] // 16, img[1] // 16):
        raise ValueError(f"patch_embed={patch_embed!r} needs a ViT with patch size 16 (grid img/16); this ViT "
                         f"has img_size {img} and grid {grid}: set the patch size to 16")
    dim = int(vit.embed_dim)
    vit.patch_embed = HybridPatchEmbed(dim, img[0], patch_embed.split("_")[1], trainable_blocks, input_norm, cache)
    return vit
