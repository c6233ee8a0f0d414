"""Atomic file writes: a temp file in the same folder, fsync, then ``os.replace``.

Torch-free on purpose, so the notebook runner (``xmodal reproduce``) writes its manifest with the
same writer as the checkpoints (:mod:`xmodal_lib.infra.checkpoint`) without importing torch. Temp files
are ``.<name>.<random>.tmp`` with the mode of ordinary files (``0o666`` less the umask).

Fault-injection hook (tests only): with ``XMODAL_FAULT_WRITE_SLEEP=<seconds>`` every atomic write
sleeps that long between writing its temp file and renaming it.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable


def _create_temp(path: Path) -> str:
    """A new, empty temp file next to ``path``, mode 0o666 less the umask (O_EXCL: never reused)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return str(tmp)
        except FileExistsError:
            continue


def _atomic_write_bytes(path: Path, write: Callable[[str], None]) -> None:
    """Write via ``write(tmp_path)`` into a temp file next to ``path``, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    mode = os.stat(tmp).st_mode & 0o777  # 0o666 less the umask, read back from the file we created
    try:
        write(tmp)
        os.chmod(tmp, mode)  # safetensors writes through its own 0o600 temp file and renames it over ours
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        pause = os.environ.get("XMODAL_FAULT_WRITE_SLEEP")
        if pause:  # fault-injection hook, see the module docstring
            time.sleep(float(pause))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temps(folder: str | Path, pattern: str = ".*.tmp") -> list[Path]:
    """Delete temp files a killed writer left in ``folder``; returns what was removed.

    Only call this when no other process writes into ``folder``."""
    removed = []
    for p in sorted(Path(folder).glob(pattern)):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_json(path: Path, data: Any, sort_keys: bool = True) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (``sort_keys=False`` keeps insertion order)."""

    def _w(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=sort_keys, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())

    _atomic_write_bytes(Path(path), _w)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):  # one-element tensors and numpy scalars (duck-typed: no torch import here)
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
