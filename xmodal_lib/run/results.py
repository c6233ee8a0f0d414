"""Results JSON written by notebooks and collected by the reproduce runner.

Metric keys follow the retrieval engine's names (``map_all_voc``, ``map@200_voc``,
``p@100``, ``acc@1`` ...), so every number says which convention produced it.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from xmodal_lib.infra.atomic_io import atomic_write_json
from xmodal_lib.infra.paths import artifacts_dir

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _clean(x: Any) -> Any:
    """Make ``x`` JSON-safe: tensors/arrays -> lists/floats, NaN/inf -> None (strict JSON)."""
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        x = x.tolist()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def results_dir(out_dir: str | Path | None = None) -> Path:
    """``<artifacts>/results`` (or ``out_dir``), created."""
    d = Path(out_dir) if out_dir is not None else artifacts_dir() / "results"
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_results(name: str, results: dict[str, Any], out_dir: str | Path | None = None) -> Path:
    """Write ``results`` to ``<artifacts>/results/<name>.json`` atomically and return the path."""
    if not _NAME.match(name):
        raise ValueError(f"write_results(name=...): use letters, digits, '_', '-', '.', got {name!r}")
    if not isinstance(results, dict):
        raise ValueError(f"write_results: results must be a dict, got {type(results).__name__}")
    path = results_dir(out_dir) / f"{name}.json"
    atomic_write_json(path, _clean(results))
    return path


def read_results(out_dir: str | Path | None = None) -> dict[str, Any]:
    """All results JSON files of a results folder, keyed by name."""
    d = results_dir(out_dir)
    return {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}
