"""ZSE-SBIR retrieval modes: cached exhaustive == naive, rerank semantics, training smoke."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.methods.zse.evaluate import (
    build_cache,
    evaluate_category,
    scores_ret,
    scores_rn,
    scores_rn_naive,
    scores_rn_rerank,
)
from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig
from xmodal_lib.run.params import build, preset


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    sk, ph = torch.randn(9, 3, 48, 48), torch.randn(11, 3, 48, 48)
    ql, gl = [i % 3 for i in range(9)], [i % 3 for i in range(11)]
    return sk, ph, ql, gl


@pytest.mark.parametrize("variant,keep_rate", [("paper", 1.0), ("code", 1.0), ("paper", 0.9)])
def test_cached_exhaustive_equals_naive(small, variant, keep_rate):
    sk, ph, ql, gl = small
    torch.manual_seed(1)
    model = ZSESBIR(ZSEConfig(ca_variant=variant, keep_rate=keep_rate)).eval()
    model.sa.forward_images = 0
    naive = scores_rn_naive(model, sk, ph, block=4)
    n_naive = model.sa.forward_images
    model.sa.forward_images = 0
    sc, pc = build_cache(model, sk, "sketch"), build_cache(model, ph, "photo")
    cached = scores_rn(model, sc, pc, block_q=4, block_g=5)
    assert model.sa.forward_images == 9 + 11  # SA once per image
    assert n_naive == 9 + 3 * 11  # photos recomputed for each of the 3 sketch blocks
    torch.testing.assert_close(cached, naive, atol=1e-6, rtol=1e-5)
    assert cached.std() > 0
    m_n = evaluate_category({"x": naive}, ql, gl)["x"]
    m_c = evaluate_category({"x": cached}, ql, gl)["x"]
    assert m_n == pytest.approx(m_c)


def test_rerank_full_depth_equals_exhaustive_and_keeps_ret_order_below(small):
    sk, ph, ql, gl = small
    torch.manual_seed(2)
    model = ZSESBIR(ZSEConfig()).eval()
    sc, pc = build_cache(model, sk, "sketch"), build_cache(model, ph, "photo")
    rn, ret = scores_rn(model, sc, pc), scores_ret(sc, pc)
    full = scores_rn_rerank(model, sc, pc, k=len(pc))
    torch.testing.assert_close(full - 2, rn, atol=1e-6, rtol=0)
    assert evaluate_category({"a": full}, ql, gl)["a"] == pytest.approx(evaluate_category({"a": rn}, ql, gl)["a"])
    k = 3
    part = scores_rn_rerank(model, sc, pc, k=k)
    top = ret.topk(k, dim=1).indices
    for q in range(part.shape[0]):
        order = part[q].argsort(descending=True)
        assert set(order[:k].tolist()) == set(top[q].tolist())  # shortlist first
        torch.testing.assert_close(part[q, top[q]] - 2, rn[q, top[q]], atol=1e-6, rtol=0)
        rest = order[k:]
        assert torch.equal(part[q, rest], ret[q, rest])  # the rest keeps ret scores
    with pytest.raises(ValueError):
        scores_rn_rerank(model, sc, pc, k=0)


def test_training_steps_through_shared_loop(tmp_path):
    from xmodal_lib.engine.train import fit
    from xmodal_lib.methods.zse.data import ZSEBatchDataset
    from xmodal_lib.methods.zse.pipeline import ZSEPipelineConfig, zse_step
    cfg = build(ZSEPipelineConfig, batch_size=4, items_per_epoch=8, keep_rate=0.9)
    torch.manual_seed(0)
    model = ZSESBIR(cfg.model)
    groups = [str(i % 4) for i in range(16)]
    ds = ZSEBatchDataset(torch.randn(16, 3, 48, 48), groups, torch.randn(16, 3, 48, 48), groups, 8, seed=0)
    before = model.rn.mlp[0].weight.clone()
    res = fit(model, zse_step, ds, cfg.train, tmp_path, progress=False)
    assert res.steps == 2 and {"loss", "triplet", "matching"} <= set(res.history[-1])
    assert not torch.equal(before, model.rn.mlp[0].weight)  # RN receives gradients through the pruned path


def test_pipeline_config_presets():
    from xmodal_lib.methods.zse.pipeline import PAPER_DATASETS, ZSEPipelineConfig
    p = preset("04_zse_sbir", "paper", **PAPER_DATASETS["sketchy21"])
    assert {"map@200_voc", "p@200"} <= set(p.metrics) and p.split == "zeroshot0" and p.model.dim == 768
    assert p.model.prune_layers == (4, 7, 10) and p.dataset == "sake"
    assert {"map_all_voc", "p@100", "p@200"} <= set(preset("04_zse_sbir", "paper", **PAPER_DATASETS["quickdraw"]).metrics)
    with pytest.raises(ValueError, match="dimm"):
        preset("04_zse_sbir", "paper", dimm=3)
    with pytest.raises(ValueError, match="stem"):
        build(ZSEPipelineConfig, stem="x")


def test_build_cache_bf16_is_float32_and_close_to_fp32(small):
    sk, _, _, _ = small
    torch.manual_seed(1)
    model = ZSESBIR(ZSEConfig(keep_rate=1.0)).eval()
    full = build_cache(model, sk, "sketch", precision="fp32")
    half = build_cache(model, sk, "sketch", precision="bf16")  # CPU autocast; CUDA's default under "auto"
    assert half.tokens.dtype == torch.float32 and set(half.proj) == set(full.proj)
    assert not torch.equal(half.tokens, full.tokens)  # really computed in bf16
    rel = (half.tokens - full.tokens).norm() / full.tokens.norm()
    assert rel < 0.05
    with pytest.raises(ValueError, match="precision"):
        build_cache(model, sk, "sketch", precision="fp8")  # fp16 is allowed (the official evaluation precision)
