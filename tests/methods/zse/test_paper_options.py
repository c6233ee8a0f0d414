"""ZSE-SBIR paper-profile options: official preset values, token-selection warm-up, official crop hook."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from xmodal_lib.data.index import Record
from xmodal_lib.methods.zse import pipeline as Z
from xmodal_lib.run.params import build, preset


def test_paper_preset_is_official():
    p = preset("04_zse_sbir", "paper", **Z.PAPER_DATASETS["sketchy25"])
    assert (p.model.ln_eps, p.preprocess, p.train.precision, p.val_classes) == (1e-5, "official", "fp32", 0)
    assert p.train.optimizer == "adamw" and p.train.ckpt_every is None  # the method's loop defaults survive the preset
    m = p.model
    assert m.ln_eps == 1e-5 and m.vit_name == "vit_base_patch16_224.sam_in1k"
    s = Z.ZSEPipelineConfig()
    assert (s.model.ln_eps, s.preprocess, s.ts_warmup_epochs) == (1e-6, "ours", 0)
    with pytest.raises(ValueError, match="preprocess"):
        build(Z.ZSEPipelineConfig, preprocess="cv2")
    with pytest.raises(ValueError, match="ts_warmup_epochs needs rn_tokens"):
        build(Z.ZSEPipelineConfig, ts_warmup_epochs=1, rn_tokens="kept", keep_rate=0.5)


def test_ln_eps_reaches_every_sa_layernorm():
    from xmodal_lib.methods.zse.model import ZSESBIR
    model = ZSESBIR(build(Z.ZSEPipelineConfig, ln_eps=1e-5).model)
    eps = {m.eps for m in model.sa.vit.modules() if isinstance(m, torch.nn.LayerNorm)}
    assert eps == {1e-5}


def test_official_preprocess_uses_the_released_crop(monkeypatch):
    seen = []
    monkeypatch.setattr(Z, "preload", lambda recs, loader, desc, progress: seen.append(loader) or torch.zeros(0))
    Z.load_images([], build(Z.ZSEPipelineConfig, preprocess="official"), "sketch")
    Z.load_images([], Z.ZSEPipelineConfig(), "sketch")
    assert type(seen[0]).__name__ == "OfficialZSELoader" and type(seen[1]).__name__ == "ImageLoader"


def test_token_selection_warm_up_trains_with_all_tokens_first(tmp_path, monkeypatch):
    cfg = build(Z.ZSEPipelineConfig, keep_rate=0.5, ts_warmup_epochs=1, items_per_epoch=16, batch_size=8,
                epochs=1, val_classes=0)
    recs = lambda mod: [Record(Path(f"{mod}{i}.png"), mod, f"c{i % 4}", "", "train") for i in range(12)]
    index = SimpleNamespace(sketches=recs("sketch"), photos=recs("photo"))
    g = torch.Generator().manual_seed(0)
    monkeypatch.setattr(Z, "load_images", lambda r, c, m: torch.randn(len(r), 3, 48, 48, generator=g))
    rates = []
    real_step = Z.zse_step
    monkeypatch.setattr(Z, "zse_step", lambda model, batch: rates.append(model.sa.keep_rate) or real_step(model, batch))
    model, res = Z.train_zse(cfg, index, tmp_path)
    assert rates == [1.0, 1.0, 0.5, 0.5]  # 2 warm-up steps with every token, then 2 pruned steps
    assert model.sa.keep_rate == 0.5 and (tmp_path / "ts_warmup").is_dir() and res.steps == 2
