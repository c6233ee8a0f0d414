"""Checkpoints without pickle: tensors in safetensors, everything else in a JSON sidecar.

A checkpoint ``<stem>`` is the pair ``<stem>.safetensors`` + ``<stem>.json``. Both are written
atomically (temporary file ``.<name>.<random>.tmp`` in the same folder, fsync, then
``os.replace``), the JSON last, so a checkpoint whose JSON exists is complete. Files are created
with the mode of ordinary files (``0o666`` less the umask), not ``mkstemp``'s ``0o600``. A kill
during a write leaves only a ``.*.tmp`` file (or safetensors' own ``.tmpXXXXXX``), which
:func:`xmodal_lib.infra.atomic_io.remove_stale_temps` deletes. Loading
never executes code: safetensors holds raw tensors and JSON holds plain data; every failure is a
:class:`~xmodal_lib.infra.errors.CheckpointError` naming the file.

The atomic writer and its fault-injection hook (``XMODAL_FAULT_WRITE_SLEEP``, so a test can kill a
process inside a checkpoint write) live in :mod:`xmodal_lib.infra.atomic_io`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xmodal_lib.infra.atomic_io import _atomic_write_bytes, _create_temp, atomic_write_json
from xmodal_lib.infra.errors import CheckpointError, OutputError


def ensure_writable_dir(path: str | Path, what: str) -> Path:
    """Create ``path`` if needed and prove it writable with a probe file; :class:`OutputError` otherwise.

    ``what`` names the folder in the message (e.g. ``"--out"`` or ``"checkpoint folder"``)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        Path(_create_temp(p / ".write-probe")).unlink(missing_ok=True)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise OutputError(f"{what} {p}: cannot write there ({reason}); expected a folder this user can "
                          f"create files in") from None
    return p


def _stem(path: str | Path) -> Path:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Save ``tensors`` to ``<stem>.safetensors`` and ``meta`` to ``<stem>.json`` (JSON last)."""
    stem = _stem(path)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    # safetensors refuses tensors sharing storage; clone aliased ones.
    seen: dict[int, str] = {}
    for k, v in flat.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else -1
        if ptr in seen and ptr != -1:
            flat[k] = v.clone()
        seen[ptr] = k
    st_path = stem.with_name(stem.name + ".safetensors")
    _atomic_write_bytes(st_path, lambda tmp: save_file(flat, tmp))
    atomic_write_json(stem.with_name(stem.name + ".json"), meta)
    return stem


def read_json(path: str | Path, what: str = "checkpoint") -> Any:
    """Parse the JSON file ``path``; a missing, unreadable or invalid file -> :class:`CheckpointError`
    naming it (``what`` says what the file is, e.g. ``"teacher config"``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{what} {p}: file missing (expected the JSON written next to the "
                              f".safetensors file)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{what} {p}: cannot be read ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{what} {p}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                              f"the file is damaged, write it again") from None


def read_config(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """The ``"config"`` mapping of ``<stem>.json`` (as :func:`save_weights` writes it), checked."""
    js = _stem(path).with_name(_stem(path).name + ".json")
    meta = read_json(js, what)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        found = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{what} {js}: expected a JSON object with a 'config' mapping, found {found}")
    return meta["config"]


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_tensors`; :class:`CheckpointError` naming the file."""
    stem = _stem(path)
    st_path = stem.with_name(stem.name + ".safetensors")
    js_path = stem.with_name(stem.name + ".json")
    for p in (st_path, js_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file missing: {p} (expected <stem>.safetensors + <stem>.json)")
    try:
        tensors = load_file(str(st_path), device=str(device))
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"{st_path}: not a valid safetensors file ({e})") from None
    return tensors, read_json(js_path)


def check_state_dict(module: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """:class:`CheckpointError` naming ``source`` and every missing, unexpected or wrongly shaped key."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    shapes = [f"{k} {tuple(tensors[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{label} {len(keys)}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
             for label, keys in (("missing", missing), ("unexpected", unexpected),
                                 ("shape mismatch (file vs model)", shapes)) if keys]
    raise CheckpointError(f"{source}: weights do not fit {type(module).__name__} ({'; '.join(parts)}); "
                          f"was it written by another model or config?")


def save_weights(module: nn.Module, path: str | Path, config: dict[str, Any] | None = None) -> Path:
    """Save a module's ``state_dict`` and its config (``<stem>.json`` holds ``{"config": ...}``)."""
    return save_tensors(path, module.state_dict(), {"config": config or {}, "kind": "weights",
                                                    "class": type(module).__name__})


def load_weights(module: nn.Module, path: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load weights saved by :func:`save_weights` into ``module``; returns the stored config.

    With ``strict=True`` any missing, unexpected or wrongly shaped key raises a
    :class:`CheckpointError` listing them (a ``ValueError``); non-strict skips missing and
    unexpected keys but still refuses wrong shapes.
    """
    tensors, meta = load_tensors(path)
    if strict:
        check_state_dict(module, tensors, _stem(path))
    else:
        own = module.state_dict()
        check_state_dict(module, {k: v for k, v in tensors.items() if k in own}
                         | {k: v for k, v in own.items() if k not in tensors}, _stem(path))
    module.load_state_dict(tensors, strict=strict)
    return meta.get("config", {}) if isinstance(meta, dict) else {}


# --- optimiser / scheduler state as flat tensors + JSON -------------------------------------


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state_dict into flat tensors and JSON-able metadata."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_to_flat`: load state into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if not key.startswith("optim."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
