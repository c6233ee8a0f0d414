"""Models: timm backbones and the three methods' networks (one module per method).

Every retrieval model exposes ``encode_photo(x) -> [B, D]`` and ``encode_sketch(x) -> [B, D]``;
attention maps are returned on request (``return_attention=True``), never scraped with hooks.
"""
from .backbones import cls_embedding, create_vit, load_weights_file, tokens

__all__ = ["create_vit", "load_weights_file", "tokens", "cls_embedding"]
