"""methods.compare helpers used by notebooks 05/06 (no training here: that is the notebook test)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xmodal_lib.data.index import Record, SBIRIndex
from xmodal_lib.methods import compare as C


def _index(n_sk: int = 10) -> SBIRIndex:
    photos = [Record(Path(f"p{i}.png"), "photo", "a" if i < 2 else "b", str(i), "test") for i in range(4)]
    sketches = [Record(Path(f"s{i}.png"), "sketch", "a" if i % 2 else "b", str(i % 4), "test") for i in range(n_sk)]
    return SBIRIndex("toy", photos, sketches, ["a", "b"], ["a", "b"], Path("."))


def test_config_validation():
    with pytest.raises(ValueError, match="methods"):
        C.CompareConfig(methods=("zse", "nope"))
    with pytest.raises(ValueError, match="profile"):
        C.CompareConfig(profile="fast")
    with pytest.raises(ValueError, match="zse_steps"):
        C.CompareConfig(zse_steps=0)
    from xmodal_lib.run.params import preset

    paper = preset("05_zero_shot_evaluation", "paper")  # the paper profile is its YAML file
    assert (paper.profile, paper.split, paper.zse_rn) == ("paper", "zeroshot1", False)


def test_test_index_subsamples_queries_only():
    cfg = C.CompareConfig(max_test_sketches=4)
    t = C.test_index(cfg, _index(10))
    assert len(t.sketches) <= 4 and len(t.photos) == 4
    assert [r.path.name for r in t.sketches] == ["s0.png", "s3.png", "s6.png", "s9.png"]


def test_evaluate_runs_uses_engine_on_same_split():
    idx = _index(2)  # sketch 0: class b, sketch 1: class a
    scores = torch.tensor([[0.0, 0.1, 0.9, 0.8], [0.9, 0.8, 0.1, 0.0]])  # perfect ranking
    runs = [C.MethodRun("perfect", "zse", None, None, torch.zeros(2, 3, 4, 4), torch.zeros(4, 3, 4, 4), scores, "x"),
            C.MethodRun("inverted", "zse", None, None, torch.zeros(2, 3, 4, 4), torch.zeros(4, 3, 4, 4), -scores, "x")]
    res = C.evaluate_runs(runs, idx, metrics=("map_all_voc", "p@100_minr"))
    assert res["perfect"]["map_all_voc"] == pytest.approx(1.0)
    assert res["perfect"]["p@100_minr"] == pytest.approx(1.0)
    # relevant at ranks 3, 4: precisions 1/3, 2/4; VOC interpolation lifts 1/3 to 1/2 -> AP 0.5
    assert res["inverted"]["map_all_voc"] == pytest.approx(0.5)


def test_artifact_only_for_same_dataset(tmp_path, monkeypatch):
    from torch import nn

    from xmodal_lib.run.artifacts import save_model
    from xmodal_lib.run.params import preset

    Z, X = C.Z.ZSEPipelineConfig, C.X.XModalViTConfig

    monkeypatch.setenv("XMODAL_ARTIFACTS", str(tmp_path))
    save_model(nn.Linear(2, 2), tmp_path / "m", preset("04_zse_sbir", "smoke"))  # the config's own dataset
    assert C._artifact("m", C.CompareConfig(), Z) == tmp_path / "m"
    assert C._artifact("m", C.CompareConfig(use_artifacts=False), Z) is None
    assert C._artifact("m", C.CompareConfig(dataset="sketchy", data_root="x", split="zeroshot1"), Z) is None
    xc = preset("02_distillation", "smoke")  # names its fine-grained data: the info says what 05 trained on
    save_model(nn.Linear(2, 2), tmp_path / "z", xc, dataset="sketchy", split="zeroshot1")
    assert C._artifact("z", C.CompareConfig(dataset="sketchy", data_root="x", split="zeroshot1"), X) is not None
    assert C._artifact("z", C.CompareConfig(), X) is None
    assert C._artifact("absent", C.CompareConfig(), Z) is None
    assert C._artifact("m", C.CompareConfig(), X) is None  # another method's config: said, not read


def test_default_data_root(monkeypatch, tmp_path):
    assert C.default_data_root("synthetic", None) is None
    assert C.default_data_root("sketchy", "/x") == "/x"
    monkeypatch.setenv("XMODAL_SHARED_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="DATA_ROOT"):
        C.default_data_root("sketchy", None)
    (tmp_path / "sketchy_mini").mkdir()
    assert C.default_data_root("sketchy", None) == str(tmp_path / "sketchy_mini")


def test_method_configs_are_the_notebooks_profile_values():
    """The models trained here take notebooks 02/03/04's profile YAML (params.preset), then this
    run's step budget with epochs=None (the budget alone sets the length), then the XMODAL_* fields."""
    from xmodal_lib.run.params import preset

    cfg = C.CompareConfig(profile="smoke", zse_steps=7, xmodal_patch_embed="hybrid_lite0", xmodal_image_size=96,
                          xmodal_lr=3e-4)
    z = C._method_config("04_zse_sbir", cfg, max_steps=cfg.zse_steps, epochs=None)
    nb04 = preset("04_zse_sbir", "smoke")
    assert z.model == nb04.model and z.model.patch_embed == "hybrid_lite0"
    assert (z.train.epochs, z.train.max_steps) == (None, 7)
    x = C._method_config("02_distillation", cfg, **C._xmodal_overrides(cfg))
    assert (x.patch_embed, x.image_size, x.teacher.patch_size, x.student.patch_size) == ("hybrid_lite0", 96, 16, 16)
    assert (x.teacher_train.lr, x.student_train.lr, x.standardize_inputs, x.teacher_photo_aug) == (3e-4, 3e-4, False, False)
    assert x.teacher_train.device == x.student_train.device == cfg.device  # 05's DEVICE reaches both loops
    plain = C._method_config("02_distillation", C.CompareConfig(), **C._xmodal_overrides(C.CompareConfig()))
    assert plain.patch_embed == preset("02_distillation", "smoke").patch_embed == "pixels"
    tiny = C.CompareConfig(profile="paper", scale_file="tests/fixtures/paper_tiny.yaml")
    assert C._method_config("04_zse_sbir", tiny, epochs=None, max_steps=2).model.dim == 24  # scale file
    assert C._method_config("02_distillation", tiny).teacher.depth == 1  # 01's section reaches 02


def test_xmodal_fields_are_checked():
    with pytest.raises(ValueError, match="XMODAL_PATCH_EMBED"):
        C.CompareConfig(xmodal_patch_embed="cnn")
    with pytest.raises(ValueError, match="XMODAL_IMAGE_SIZE"):
        C.CompareConfig(xmodal_patch_embed="hybrid_lite0", xmodal_image_size=40)
    with pytest.raises(ValueError, match="XMODAL_LR"):
        C.CompareConfig(xmodal_lr=0.0)
    assert C.CompareConfig(xmodal_image_size=40).xmodal_image_size == 40  # pixel patches: any size


def test_xmodal_loader_standardises_files_and_drawings_alike(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 40), (255, 255, 255)).save(tmp_path / "s.png")
    im = Image.open(tmp_path / "s.png").copy()
    im.paste((0, 0, 0), (10, 5, 14, 35))
    im.save(tmp_path / "s.png")
    rec = Record(tmp_path / "s.png", "sketch", "a", "0", "test")
    loader = C._XModalLoader(32, normalize="half")
    raw = loader.load(rec)
    loader.standardize = True
    x = loader(rec)
    assert x.shape == raw.shape == (3, 32, 32)
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-2 and not torch.allclose(x, raw)


def test_paper_sketchy_xmodalvit_takes_the_papers_sketchy_recipe():
    from xmodal_lib.methods.xmodalvit.config import PAPER_DATASETS

    cfg = C.CompareConfig(profile="paper", dataset="sketchy", data_root="unused")
    xc = C._method_config("02_distillation", cfg, **C._xmodal_overrides(cfg))
    sk = PAPER_DATASETS["sketchy"]
    assert (xc.student.backbone, xc.teacher_queue, xc.student_queue) == (
        sk["student_backbone"], sk["teacher_queue"], sk["student_queue"])
    smoke = C._method_config("02_distillation", C.CompareConfig(), **C._xmodal_overrides(C.CompareConfig()))
    assert smoke.student.backbone != sk["student_backbone"]
