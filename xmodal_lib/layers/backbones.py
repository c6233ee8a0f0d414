"""ViT backbones through timm, with strict loading of local weight files.

``create_vit(name, pretrained=...)`` accepts three kinds of ``pretrained``:

* ``False`` - random init (the only option on a machine without internet);
* ``True``  - timm downloads its default checkpoint where the network allows;
* a path   - a local ``.safetensors`` (preferred) or ``.pth``/``.pt``/``.bin`` file read with
  ``torch.load(weights_only=True)``, loaded STRICTLY: any missing or unexpected key raises a
  ``ValueError`` listing them. Two deliberate, reported exceptions: a classifier head whose
  shape differs from the model's (``num_classes`` changed) is dropped, and an absolute position
  embedding of another grid size is resampled (timm's bicubic resampling).

``tokens(vit, x)`` returns the full normed token sequence ``[B, 1+N, D]`` (timm >= 0.9
``forward_features``), which is what the XModalViT teacher fuses; the official code assumed old
timm (<= 0.5) where ``forward_features`` returned a pooled vector (methods_spec.md §1.2).
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from xmodal_lib.infra.errors import CheckpointError, UntrustedPickleError

__all__ = ["create_vit", "load_weights_file", "tokens", "cls_embedding"]

_HEAD_KEYS = ("head.weight", "head.bias", "head.fc.weight", "head.fc.bias")


def load_weights_file(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle with ``weights_only=True``.

    A ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper is unwrapped. Never executes code.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"pretrained={str(path)!r}: weight file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file  # lazy: only needed on this branch

        return dict(load_file(str(p)))
    if p.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        obj = _torch_load_refusing_code(p, f"pretrained={str(path)!r}")
        for key in ("state_dict", "model"):
            if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
                obj = obj[key]
        if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
            raise ValueError(f"pretrained={str(path)!r}: expected a dict of tensors (a state dict)")
        return dict(obj)
    raise ValueError(f"pretrained={str(path)!r}: expected a .safetensors or .pth/.pt/.bin file")


def _torch_load_refusing_code(p: Path, source: str) -> Any:
    """``torch.load(weights_only=True)``; a pickle that needs code -> ``UntrustedPickleError``.

    torch's own message advises ``weights_only=False`` (running the file's code), the one thing not
    to do with an untrusted file, so it is replaced by ours (``from None``), naming what it wanted."""
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        wanted = re.search(r"GLOBAL ([\w.]+)", str(e))
        if wanted is None:  # not a pickle that names code: a damaged or foreign file
            stop = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(e))
            raise CheckpointError(f"{source}: not a readable torch weight file (the weights-only reader stopped: "
                                  f"{stop.group(1).strip() if stop else 'unknown content'}); nothing in it "
                                  f"was executed") from None
        raise UntrustedPickleError(f"{source}: refused: untrusted pickle (it asks for {wanted.group(1)}); only "
                                   f"plain tensors can be loaded from {p.name}, nothing in it was executed; "
                                   f"convert trusted weights to .safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{source}: not a readable torch weight file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None


def _adapt_state_dict(sd: dict[str, Tensor], model: nn.Module, source: str) -> dict[str, Tensor]:
    """Drop a differently-shaped classifier head and resample pos_embed; warn about both."""
    own = model.state_dict()
    sd = dict(sd)
    dropped = [k for k in _HEAD_KEYS if k in sd and (k not in own or own[k].shape != sd[k].shape)]
    if dropped:
        for k in dropped:
            del sd[k]
        warnings.warn(f"{source}: classifier head {dropped} ignored (num_classes differs from the file)")
    if "pos_embed" in sd and "pos_embed" in own and sd["pos_embed"].shape != own["pos_embed"].shape:
        from timm.layers import resample_abs_pos_embed  # lazy: only needed on this branch

        npt = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
        old = sd["pos_embed"]
        sd["pos_embed"] = resample_abs_pos_embed(
            old, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=npt
        )
        warnings.warn(
            f"{source}: pos_embed resampled {tuple(old.shape)} -> {tuple(sd['pos_embed'].shape)}"
        )
    return sd


def load_pretrained_strict(model: nn.Module, path: str | Path) -> None:
    """Load a local file into ``model``; raise ``ValueError`` naming missing/unexpected keys."""
    sd = _adapt_state_dict(load_weights_file(path), model, f"pretrained={str(path)!r}")
    own = model.state_dict()
    head_ok = {k for k in _HEAD_KEYS if k in own}  # a dropped head may leave these missing
    missing = [k for k in own if k not in sd and k not in head_ok]
    unexpected = [k for k in sd if k not in own]
    bad_shape = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sd
        if k in own and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or bad_shape:
        raise ValueError(
            f"pretrained={str(path)!r} does not match the model: missing keys {missing}, "
            f"unexpected keys {unexpected}, shape mismatches {bad_shape}"
        )
    missing_heads = [k for k in head_ok if k not in sd]
    model.load_state_dict(sd, strict=not missing_heads)
    if missing_heads:
        warnings.warn(f"pretrained={str(path)!r}: head {missing_heads} keeps its random init")


def create_vit(
    name: str,
    pretrained: bool | str | Path = False,
    img_size: int | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """A timm ViT without classifier head by default (``num_classes=0``).

    Args:
        name: any timm ViT name, e.g. ``"vit_base_patch16_224"`` or ``"vit_tiny_patch16_224"``.
        pretrained: ``False``, ``True`` (timm download) or a local weight-file path (strict).
        img_size: input size (square); ``None`` keeps the model's default.
        **timm_kwargs: passed to ``timm.create_model`` (``patch_size``, ``depth``, ``embed_dim``,
            ``num_heads``, ``num_classes`` ...) for tiny smoke backbones.
    """
    kw = dict(timm_kwargs)
    kw.setdefault("num_classes", 0)
    if img_size is not None:
        if int(img_size) <= 0:
            raise ValueError(f"create_vit: img_size must be positive, got {img_size}")
        kw["img_size"] = int(img_size)
    if not isinstance(pretrained, (bool, str, Path)):
        raise ValueError(f"create_vit: pretrained must be bool or a path, got {type(pretrained).__name__}")
    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        raise ValueError(f"create_vit: unknown timm model name {name!r}")
    if isinstance(pretrained, bool):
        model = timm.create_model(name, pretrained=pretrained, **kw)
    else:
        model = timm.create_model(name, pretrained=False, **kw)
        load_pretrained_strict(model, pretrained)
    if not hasattr(model, "forward_features") or not hasattr(model, "embed_dim"):
        raise ValueError(f"create_vit: {name!r} is not a ViT-like model with forward_features/embed_dim")
    return model


def tokens(vit: nn.Module, x: Tensor) -> Tensor:
    """The full final-normed token sequence ``[B, P+N, D]`` (P prefix tokens, [CLS] first)."""
    out = vit.forward_features(x)
    if out.dim() != 3:
        raise ValueError(
            f"tokens: forward_features returned shape {tuple(out.shape)}; expected [B, tokens, D] (timm >= 0.9)"
        )
    return out


def cls_embedding(vit: nn.Module, x: Tensor) -> Tensor:
    """The final-normed [CLS] token ``[B, D]``."""
    return tokens(vit, x)[:, 0]
