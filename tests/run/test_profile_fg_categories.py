"""Notebook 04's fine-grained part reads QMUL-V1 by folder name: every profile that sets
FG_KIND qmul_v1 must name categories that exist there (the cpu profile once kept the synthetic
default "shoe" and failed after 23 minutes of training)."""
from __future__ import annotations

import pytest

from xmodal_lib.infra.paths import notebooks_dir, shared_data_dir
from xmodal_lib.run.plan import load_yaml_params, notebook_parameters

PROFILES = ("smoke", "paper", "cpu")


@pytest.mark.parametrize("profile", PROFILES)
def test_qmul_v1_categories_are_folders_of_the_shared_data(profile: str) -> None:
    nb = notebooks_dir() / "04_zse_sbir.ipynb"
    params = {**notebook_parameters(nb), **load_yaml_params(notebooks_dir() / "params" / profile / "04_zse_sbir.yaml")}
    if params["FG_KIND"] != "qmul_v1":
        pytest.skip(f"{profile}: FG_KIND is {params['FG_KIND']}")
    root = shared_data_dir()
    if root is None or not (root / "qmul_v1").is_dir():
        pytest.skip("needs ../shared/data/qmul_v1 (set XMODAL_SHARED_DATA to the folder holding it)")
    have = sorted(d.name for d in (root / "qmul_v1").iterdir() if d.is_dir())
    for key in ("FG_TRAIN_CATEGORY", "FG_TEST_CATEGORY"):
        assert params[key] in have, f"params/{profile}/04_zse_sbir.yaml: {key} = {params[key]!r}, folders {have}"


def test_missing_category_is_refused_by_name(tmp_path, monkeypatch) -> None:
    from xmodal_lib.data.index import DataError
    from xmodal_lib.methods.zse import pipeline as zse

    (tmp_path / "qmul_v1" / "shoes").mkdir(parents=True)
    monkeypatch.setenv("XMODAL_SHARED_DATA", str(tmp_path))
    cfg = zse.ZSEPipelineConfig(fg_kind="qmul_v1")
    with pytest.raises(DataError, match=r"FG_TRAIN_CATEGORY / FG_TEST_CATEGORY = 'shoe'.*\['shoes'\]"):
        zse._fg_index(cfg, "shoe", "train")
