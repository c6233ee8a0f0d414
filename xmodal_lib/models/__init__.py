"""Models: timm backbones and the three methods' networks (one module per method).

Every retrieval model exposes ``encode_photo(x) -> [B, D]``, ``encode_sketch(x) -> [B, D]`` and
``similarity(q, g) -> [Q, G]`` (larger = more similar), one return type per method; attention maps
come from named methods (``CrossATNet.photo_attention`` / ``guided_attention``,
``XModalTeacher.xma_attention``, ``ZSESBIR.sa_attention``), never scraped with hooks.
"""
from .backbones import cls_embedding, create_vit, load_weights_file, tokens

__all__ = ["create_vit", "load_weights_file", "tokens", "cls_embedding"]
