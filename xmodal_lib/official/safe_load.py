"""Read the authors' released ``.pth`` files without ever executing code from them.

* ``torch.load(..., map_location="cpu", weights_only=True)`` always: the released files hold
  CUDA storages (``cuda:0``), and a pickle may name any Python callable.
* The ZSE-SBIR checkpoint is a dict ``{model, epoch, map_all, precision_100}`` whose two metrics
  are numpy scalars, so the unpickler must resolve a few numpy globals. Exactly those are
  allowed (:data:`NUMPY_GLOBALS`): ``numpy.core.multiarray.scalar`` (the name numpy 1.x, which
  wrote the real file, uses), ``numpy._core.multiarray.scalar`` (numpy 2.x), ``numpy.dtype`` and
  the float64 / float32 / int64 dtype classes numpy 2 rebuilds dtypes through. Nothing else.
* A file that names any other global is refused with :class:`UntrustedPickleError`
  ("refused: untrusted pickle"), naming the file and the global. We never fall back to
  ``weights_only=False``.
* ``.xz`` files (the test fixtures) are decompressed in memory with :mod:`lzma` first.
"""
from __future__ import annotations

import io
import lzma
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xmodal_lib.infra.errors import UntrustedPickleError as _UntrustedPickleError

__all__ = ["NUMPY_GLOBALS", "UntrustedPickleError", "read_official", "state_dict_of"]


class UntrustedPickleError(_UntrustedPickleError):
    """A checkpoint refers to Python globals outside the allow-list; nothing from it was run."""


def _numpy_globals() -> list[Any]:
    try:
        from numpy._core.multiarray import scalar  # lazy: optional dependency, ImportError handled
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar  # lazy: only needed on this branch; type: ignore[no-redef]
    out: list[Any] = [(scalar, "numpy._core.multiarray.scalar"), (scalar, "numpy.core.multiarray.scalar"),
                      np.dtype]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    if dtypes is not None:
        out += [dtypes.Float64DType, dtypes.Float32DType, dtypes.Int64DType]
    return out


#: Globals the unpickler may resolve in addition to torch's own tensor-rebuilding allow-list.
NUMPY_GLOBALS: tuple[Any, ...] = tuple(_numpy_globals())

_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _refusal(path: str, err: Exception) -> UntrustedPickleError:
    """Our own message: torch's suggests weights_only=False, which we never do."""
    m = _GLOBAL_RE.search(str(err))
    what = f"it refers to the Python global {m.group(1)!r}" if m else \
        "it holds objects other than tensors, containers, numbers and numpy scalars"
    return UntrustedPickleError(
        f"{path}: refused: untrusted pickle ({what}, which is not on the allow-list). Nothing in the "
        "file was executed. An official checkpoint holds only tensors and numpy scalars; if this file "
        "should be one, it is damaged or not the released file.")


def read_official(path: str | Path) -> Any:
    """The object stored in an official ``.pth`` (or ``.pth.xz``), tensors on CPU, no code run.

    Raises ``FileNotFoundError`` naming the file, :class:`UntrustedPickleError` for a pickle that
    names a global outside the allow-list, ``ValueError`` for a file that is not a torch file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"official checkpoint {p}: file not found")
    try:
        if p.suffix == ".xz":
            with lzma.open(p) as f:
                src: Any = io.BytesIO(f.read())
        else:
            src = str(p)
        with torch.serialization.safe_globals(list(NUMPY_GLOBALS)):
            return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise _refusal(str(p), e) from None
    except lzma.LZMAError as e:
        raise ValueError(f"official checkpoint {p}: not a valid .xz file ({e})") from None
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"official checkpoint {p}: not a torch checkpoint ({type(e).__name__}: "
                         f"{str(e)[:200]})") from None


def state_dict_of(obj: Any, source: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split a loaded checkpoint into ``(state_dict, extras)``.

    A bare state dict (XModalViT) gives no extras; a ``{"model": state_dict, ...}`` dict
    (ZSE-SBIR) gives the other entries as plain Python numbers (``epoch``, ``map_all``, ...).
    A uniform ``module.`` prefix (a DataParallel save) is removed and reported in the extras.
    """
    extras: dict[str, Any] = {}
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        extras = {k: (v.item() if hasattr(v, "item") else v) for k, v in obj.items() if k != "model"}
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{source}: expected a state dict (name -> tensor) or a dict with a 'model' "
                         f"state dict, got {type(obj).__name__}")
    sd = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
        extras["stripped_prefix"] = "module."
    return sd, extras
