"""One switch for every attention implementation the three methods use: fused SDPA or explicit softmax.

The fused path is ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
kernels on GPU, a fused kernel on CPU); the explicit path materialises ``softmax(QKᵀ·scale)``
as the official code does. Both compute the same function (tested equal within float tolerance,
forward and backward); the explicit one also runs whenever attention *weights* are requested
for figures (the models' named attention methods, e.g. ``xma_attention``), whatever the switch says.

What :func:`set_attention_impl` switches:

* timm attention modules (``Attention`` of the ViTs in XModalViT, ZSE-SBIR SA and any ViT
  backbone): their ``fused_attn`` flag. ZSE SA's token-selection layers follow the same flag.
* XModalViT XMA :class:`~xmodal_lib.methods.xmodalvit.model.CrossAttention`: ``fused``.
* ZSE-SBIR CA :class:`~xmodal_lib.methods.zse.ca.CrossAttentionLayer`: ``fused``.

Not switched: CrossATNet's own and sketch-guided attention are single-query softmax poolings
whose weights are part of the method (always explicit, see :mod:`xmodal_lib.methods.crossatnet.model`).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

__all__ = ["IMPLS", "set_attention_impl", "attention_impl_counts", "attention_impl"]

IMPLS = ("fused", "explicit")


def _switches(model: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """(module, flag attribute) of every switchable attention module in ``model``."""
    from xmodal_lib.methods.xmodalvit.model import CrossAttention as XMACrossAttention  # lazy: upward import (layers -> methods)
    from xmodal_lib.methods.zse.ca import CrossAttentionLayer as ZSECALayer  # lazy: upward import (layers -> methods)

    for m in model.modules():
        if isinstance(m, (XMACrossAttention, ZSECALayer)):
            yield m, "fused"
        elif isinstance(getattr(m, "fused_attn", None), bool):  # timm attention modules
            yield m, "fused_attn"


def _check(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"attention impl must be one of {IMPLS}, got {impl!r}")
    return impl


def set_attention_impl(model: nn.Module, impl: str) -> int:
    """Switch every attention module of ``model`` to ``"fused"`` (SDPA) or ``"explicit"`` (softmax).

    Returns the number of attention modules found (all of them now use ``impl``), so a caller can
    check that a regime really is explicit (0 means the model has no switchable attention).
    """
    flag = _check(impl) == "fused"
    n = 0
    for m, attr in _switches(model):
        setattr(m, attr, flag)
        n += 1
    return n


def attention_impl_counts(model: nn.Module) -> dict[str, int]:
    """``{"fused": n, "explicit": m}``: how many attention modules use each implementation."""
    out = {"fused": 0, "explicit": 0}
    for m, attr in _switches(model):
        out["fused" if getattr(m, attr) else "explicit"] += 1
    return out


@contextmanager
def attention_impl(model: nn.Module, impl: str) -> Iterator[int]:
    """Context manager: ``impl`` inside the block, every module's previous setting restored after."""
    _check(impl)
    saved = [(m, attr, getattr(m, attr)) for m, attr in _switches(model)]
    try:
        yield set_attention_impl(model, impl)
    finally:
        for m, attr, v in saved:
            setattr(m, attr, v)
