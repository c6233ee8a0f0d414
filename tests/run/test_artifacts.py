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


def test_unusable_says_why_an_artifact_of_another_version_or_class_is_not_read(tmp_path):
    from xmodal_lib.infra.checkpoint import save_weights

    A.save_model(nn.Linear(3, 2), tmp_path / "m", preset("04_zse_sbir", "smoke"))
    assert A.unusable(tmp_path / "m", ZSEPipelineConfig) is None
    assert "holds a" in A.unusable(tmp_path / "m", CrossATNetRunConfig)
    save_weights(nn.Linear(3, 2), tmp_path / "old", config={"zse": {"dim": 8}})
    assert "older version" in A.unusable(tmp_path / "old", ZSEPipelineConfig)
    save_weights(nn.Linear(3, 2), tmp_path / "moved", config={"config_class": "xmodal_lib.pipelines.zse_config:ZSEPipelineConfig",
                                                            "params": {"dim": 8}})
    assert "xmodal_lib.pipelines.zse_config" in A.unusable(tmp_path / "moved", ZSEPipelineConfig)


def test_compare_trains_anew_instead_of_reading_an_old_artifact(tmp_path, monkeypatch, capsys):
    from xmodal_lib.infra.checkpoint import save_weights
    from xmodal_lib.methods import compare as C

    monkeypatch.setattr(C, "_artifacts", lambda: tmp_path)
    save_weights(nn.Linear(3, 2), tmp_path / "zse_zero_shot", config={"zse": {"dim": 8}})
    assert C._artifact("zse_zero_shot", C.CompareConfig(), ZSEPipelineConfig) is None
    assert "older version" in capsys.readouterr().out
    A.save_model(nn.Linear(3, 2), tmp_path / "zse_zero_shot", preset("04_zse_sbir", "smoke"), dataset="synthetic",
                 split=None)
    assert C._artifact("zse_zero_shot", C.CompareConfig(), ZSEPipelineConfig) == tmp_path / "zse_zero_shot"


def test_an_older_flat_xmodalvit_config_fills_every_loop(tmp_path):
    from xmodal_lib.methods.xmodalvit.config import XModalViTConfig
    from xmodal_lib.run.params import from_dict

    cfg = from_dict(XModalViTConfig, {"batch_size": 32, "precision": "fp32", "device": "cpu", "teacher_lr": 3e-6,
                                      "student_batch_size": 8})
    assert (cfg.teacher_train.batch_size, cfg.student_train.batch_size, cfg.baseline_train.batch_size) == (32, 8, 32)
    assert {cfg.teacher_train.precision, cfg.student_train.precision, cfg.baseline_train.precision} == {"fp32"}
    assert cfg.teacher_train.device == "cpu" and cfg.teacher_train.lr == 3e-6
