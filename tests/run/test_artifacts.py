"""One artifact layout for every method: weights + the run config by parameter name + info."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from xmodal_lib.infra.errors import CheckpointError
from xmodal_lib.methods.crossatnet.config import CrossATNetRunConfig
from xmodal_lib.methods.zse.pipeline import ZSEPipelineConfig
from xmodal_lib.run import artifacts as A
from xmodal_lib.run.params import preset


def test_save_then_load_gives_the_same_config_weights_and_info(tmp_path):
    cfg = preset("04_zse_sbir", "smoke", dim=32, seed=5)
    model = nn.Linear(3, 2)
    A.save_model(model, tmp_path / "m", cfg, dataset="synthetic", split=None)
    assert A.exists(tmp_path / "m") and not A.exists(tmp_path / "absent")
    assert A.stored_info(tmp_path / "m") == {"dataset": "synthetic", "split": None}
    assert A.stored_params(tmp_path / "m")["dim"] == 32
    back, cfg2 = A.load_model(tmp_path / "m", ZSEPipelineConfig, lambda c: nn.Linear(3, 2), pretrained=False)
    assert (cfg2.model.dim, cfg2.train.seed, cfg2.model.pretrained) == (32, 5, False)
    assert torch.equal(back.weight, model.weight) and not back.training
    meta = json.loads((tmp_path / "m.json").read_text())["config"]
    assert meta["config_class"] == f"{ZSEPipelineConfig.__module__}:ZSEPipelineConfig" and "params" in meta


def test_another_class_or_layout_or_shape_is_refused_naming_the_file(tmp_path):
    A.save_model(nn.Linear(3, 2), tmp_path / "m", preset("04_zse_sbir", "smoke"))
    with pytest.raises(CheckpointError, match=rf"holds a {ZSEPipelineConfig.__module__}:ZSEPipelineConfig config"):
        A.stored_config(tmp_path / "m", CrossATNetRunConfig)
    with pytest.raises(CheckpointError, match=r"m: weights do not fit Linear \(shape mismatch"):
        A.load_model(tmp_path / "m", ZSEPipelineConfig, lambda c: nn.Linear(4, 2))
    from xmodal_lib.infra.checkpoint import save_weights

    save_weights(nn.Linear(3, 2), tmp_path / "old", config={"zse": {"dim": 8}})  # an older layout
    with pytest.raises(CheckpointError, match=r"artifact .*old.*expected 'config_class' and 'params'"):
        A.stored_config(tmp_path / "old", ZSEPipelineConfig)
