"""Layers shared by the methods: timm ViT backbones with strict local weights, the attention switch
(fused SDPA / explicit), the pretrained EfficientNet-Lite trunk and the hybrid CNN-cell patch embedding.

Every method's network lives in ``xmodal_lib.methods.<method>.model``.
"""
from xmodal_lib.layers.backbones import cls_embedding, create_vit, load_weights_file, tokens

__all__ = ["create_vit", "load_weights_file", "tokens", "cls_embedding"]
