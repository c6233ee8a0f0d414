"""Checkpoints without pickle: tensors in safetensors, everything else in a JSON sidecar.

A checkpoint ``<stem>`` is the pair ``<stem>.safetensors`` + ``<stem>.json``. Both are written
atomically (temporary file in the same folder, then ``os.replace``), the JSON last, so a
checkpoint whose JSON exists is complete. Loading never executes code: safetensors holds raw
tensors and JSON holds plain data.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def _atomic_write_bytes(path: Path, write) -> None:
    """Write via ``write(tmp_path)`` into a temp file next to ``path``, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""

    def _w(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
            f.flush()
            os.fsync(f.fileno())

    _atomic_write_bytes(Path(path), _w)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor) and o.numel() == 1:
        return o.item()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


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


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_tensors`; raises ``FileNotFoundError`` naming the file."""
    stem = _stem(path)
    st_path = stem.with_name(stem.name + ".safetensors")
    js_path = stem.with_name(stem.name + ".json")
    for p in (st_path, js_path):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file missing: {p} (expected <stem>.safetensors + <stem>.json)")
    try:
        tensors = load_file(str(st_path), device=str(device))
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{st_path}: not a valid safetensors file ({e})") from e
    try:
        meta = json.loads(js_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{js_path}: not valid JSON ({e})") from e
    return tensors, meta


def save_weights(module: nn.Module, path: str | Path, config: dict[str, Any] | None = None) -> Path:
    """Save a module's ``state_dict`` and its config (``<stem>.json`` holds ``{"config": ...}``)."""
    return save_tensors(path, module.state_dict(), {"config": config or {}, "kind": "weights",
                                                    "class": type(module).__name__})


def load_weights(module: nn.Module, path: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load weights saved by :func:`save_weights` into ``module``; returns the stored config.

    With ``strict=True`` any missing or unexpected key raises a ``ValueError`` listing them.
    """
    tensors, meta = load_tensors(path)
    result = module.load_state_dict(tensors, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise ValueError(
            f"{_stem(path)}: weights do not match {type(module).__name__}: "
            f"missing {result.missing_keys[:10]}, unexpected {result.unexpected_keys[:10]}"
        )
    return meta.get("config", {})


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
