"""Fixtures shared by every test module.

* ``repo``: the repository root (resolved from the package, never from cwd).
* ``shared_data``: ``../shared/data`` (or ``$XMODAL_SHARED_DATA``); skips with a clear reason
  when absent, which is the normal case on a user's fresh clone.
* ``shared_path(*parts)``: a sub-path of the shared data; skips when that part is missing.

Tests run headless: matplotlib uses the Agg backend and torch stays on 2 threads unless the
caller says otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session", autouse=True)
def _outputs_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Runs, figures and artefacts of the tests go to a temporary folder, never into the clone."""
    base = tmp_path_factory.mktemp("xmodal_outputs")
    keys = ("XMODAL_RUNS", "XMODAL_FIGURES", "XMODAL_ARTIFACTS")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ.setdefault(k, str(base / k.split("_", 1)[1].lower()))
    yield base
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    from xmodal_lib.infra.paths import repo_root

    return repo_root()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the small real datasets; skips the test when the folder is absent."""
    from xmodal_lib.infra.paths import shared_data_dir

    root = shared_data_dir()
    if root is None:
        pytest.skip("real test data ../shared/data absent (set XMODAL_SHARED_DATA to point at it)")
    return root


@pytest.fixture(scope="session")
def shared_path(shared_data: Path) -> Callable[..., Path]:
    """``shared_path("qmul_v1", "shoes")`` -> that folder; skips when it is missing."""

    def get(*parts: str) -> Path:
        p = shared_data.joinpath(*parts)
        if not p.exists():
            pytest.skip(f"{Path('../shared/data').joinpath(*parts)} absent (set XMODAL_SHARED_DATA to the folder "
                        "holding the small real datasets)")
        return p

    return get
