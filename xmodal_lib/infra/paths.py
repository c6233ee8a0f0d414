"""Where things live: repository root, caches, run folders, figures, shared test data.

Paths are resolved from this file, never from the working directory: papermill keeps the
caller's cwd and nbval starts kernels in the notebook folder, so cwd-relative paths break.
Every location can be overridden with an environment variable.
"""
from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]  # xmodal_lib/ (this file is infra/paths.py)


def repo_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml``); the package parent otherwise."""
    env = os.environ.get("XMODAL_ROOT")
    if env:
        return Path(env).resolve()
    cand = _PKG.parent
    return cand


def cache_dir() -> Path:
    """Cache for generated data and intermediate artefacts (``XMODAL_CACHE`` or ``<root>/.cache``)."""
    p = Path(os.environ.get("XMODAL_CACHE", repo_root() / ".cache"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def figures_dir() -> Path:
    """Folder every figure is saved into: ``XMODAL_FIGURES`` (``xmodal reproduce`` sets it to
    ``runs/<ts>/figures``), else ``runs/notebooks/figures`` for notebooks opened by hand. The
    committed ``<root>/figures`` holds the curated reference set and is never written by a run."""
    env = os.environ.get("XMODAL_FIGURES")
    p = Path(env) if env else Path(os.environ.get("XMODAL_RUNS", repo_root() / "runs")) / "notebooks" / "figures"
    p.mkdir(parents=True, exist_ok=True)
    return p


def runs_dir() -> Path:
    """Parent of the per-run output folders ``runs/<timestamp>/`` (``XMODAL_RUNS``)."""
    p = Path(os.environ.get("XMODAL_RUNS", repo_root() / "runs"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def artifacts_dir() -> Path:
    """Where notebooks put checkpoints and results JSON (``XMODAL_ARTIFACTS`` or ``<cache>/artifacts``).

    The reproduce runner points this at its run folder so one run's notebooks hand
    checkpoints to each other (01 -> 02 -> 05 ...).
    """
    p = Path(os.environ.get("XMODAL_ARTIFACTS", cache_dir() / "artifacts"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def notebooks_dir() -> Path:
    """The numbered notebooks."""
    return repo_root() / "notebooks"


def shared_data_dir() -> Path | None:
    """The small real datasets of ``../shared/data`` (``XMODAL_SHARED_DATA``), or None when absent."""
    env = os.environ.get("XMODAL_SHARED_DATA")
    p = Path(env) if env else repo_root().parent / "shared" / "data"
    return p if p.is_dir() else None
