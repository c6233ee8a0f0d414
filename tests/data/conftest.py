"""Fixtures of the data tests: a tiny synthetic benchmark generated once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from xmodal_lib.data.synthetic import SyntheticConfig, generate


def tiny_config(seed: int = 0) -> SyntheticConfig:
    """All 24 classes, 3 photos each, 2 sketches per photo, 64 px; FG 2 x (10 + 5) photos."""
    return SyntheticConfig(seed=seed, n_photos_per_class=3, sketches_per_photo=2, image_size=64,
                           fg_train=10, fg_test=5)


@pytest.fixture(scope="session")
def tiny_cfg() -> SyntheticConfig:
    return tiny_config()


@pytest.fixture(scope="session")
def tiny_root(tiny_cfg: SyntheticConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the tiny benchmark (written into a session temp folder, not the user cache)."""
    return generate(tiny_cfg, root=tmp_path_factory.mktemp("synthetic") / "tiny")
