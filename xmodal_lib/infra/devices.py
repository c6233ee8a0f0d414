"""Devices: which one a config asks for (:func:`resolve_device`) and which one a model is on
(:func:`module_device`). The one place that answers both; everything else imports from here."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["resolve_device", "module_device"]


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``.

    CUDA without an index resolves to the current device (``cuda:LOCAL_RANK`` after
    :func:`xmodal_lib.infra.distributed.setup`)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def module_device(m: nn.Module) -> torch.device:
    """The device of ``m``'s first parameter (where its inputs must go); CPU for a module without
    parameters. The one place that answers "which device is this model on"."""
    p = next(m.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
