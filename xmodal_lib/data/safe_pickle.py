"""Restricted unpickler for untrusted pickles (QMUL-V2 stroke coordinates and the like).

A pickle can run arbitrary code while loading (any global it names is imported and called).
:func:`safe_load` admits only plain containers and numbers (``dict``, ``list``, ``tuple``,
``set``, ``frozenset``, ``str``, ``bytes``, ``int``, ``float``, ``bool``, ``None``; only sets
need a global, below protocol 4) plus the few numpy globals needed to rebuild arrays, listed
exactly in :data:`ALLOWED_GLOBALS`. Any other global raises :class:`DataError` naming the file
and the refused global, *before* anything is called.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from xmodal_lib.data.index import DataError

#: (module, name) pairs the unpickler may resolve. Nothing else is importable.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    # ndarray reconstruction (numpy 1.x and 2.x module names)
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # numpy scalars (np.float64(1.0) pickles through this) and protocol-5 buffers
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # sets are pickled through their constructor below protocol 4 (py2 name mapped by pickle)
    ("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set"), ("__builtin__", "frozenset"),
    # protocol-2 pickles store array bytes as latin-1 text re-encoded with _codecs.encode;
    # it is wrapped below so only the 'latin1' codec is accepted.
    ("_codecs", "encode"),
})


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return obj.encode("latin1", errors)


class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy 2: avoid the deprecated alias
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with the restricted unpickler; ``source`` names it in errors."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise DataError(
            f"{source}: pickle refers to global {e.qualname!r}, which is not allowed "
            "(expected only plain containers, numbers, strings and numpy arrays)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, ImportError, MemoryError, OverflowError) as e:
        raise DataError(f"{source}: not a readable pickle of plain data ({type(e).__name__}: {e})") from None


def safe_load(path: str | Path) -> Any:
    """Read the pickle file ``path`` with :func:`safe_loads`; missing file -> DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: pickle file not found")
    return safe_loads(p.read_bytes(), source=str(p))
