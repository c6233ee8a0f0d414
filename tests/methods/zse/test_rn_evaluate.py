"""The cached-projection CA + RN kernel (methods/zse/rn_evaluate.py) equals the existing exhaustive path."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from xmodal_lib.layers.attention import set_attention_impl
from xmodal_lib.methods.zse.evaluate import build_cache, scores_rn, scores_rn_naive
from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig
from xmodal_lib.methods.zse.rn_evaluate import PairScorer, pair_flops, score_matrix

CASES = {
    "paper": {},
    "code": {"ca_variant": "code"},
    "paper_pruned": {"keep_rate": 0.7},
    "code_pruned_kept": {"ca_variant": "code", "keep_rate": 0.7, "rn_tokens": "kept"},
    "raw_view": {"rn_raw_view": True},
}


def _setup(over: dict, q: int = 5, g: int = 7):
    torch.manual_seed(0)
    model = ZSESBIR(ZSEConfig(**over)).eval()
    gen = torch.Generator().manual_seed(1)
    sk = torch.randn(q, 3, 48, 48, generator=gen)
    ph = torch.randn(g, 3, 48, 48, generator=gen)
    return model, sk, ph, build_cache(model, sk, "sketch"), build_cache(model, ph, "photo")


@pytest.mark.parametrize("case", sorted(CASES))
def test_score_matrix_equals_exhaustive_and_naive(case):
    model, sk, ph, a, b = _setup(CASES[case])
    ref = scores_rn(model, a, b, block_q=2, block_g=3)
    new = score_matrix(model, a.tokens, a.kept, b.tokens, b.kept, block_q=2, block_g=4)  # blocks cut differently
    assert new.shape == ref.shape == (5, 7)
    torch.testing.assert_close(new, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(new, scores_rn_naive(model, sk, ph, block=3), atol=1e-5, rtol=0)
    assert new.std() > 0  # not a constant matrix


@pytest.mark.parametrize("case", ["paper", "code_pruned_kept"])
def test_score_pairs_equals_block_entries(case):
    model, _, _, a, b = _setup(CASES[case])
    sc = PairScorer(model)
    s, p = sc.project(a.tokens, a.kept, "sketch"), sc.project(b.tokens, b.kept, "photo")
    full = sc.score_block(s, p)
    qi, gi = torch.tensor([0, 1, 4, 4]), torch.tensor([6, 2, 3, 0])
    torch.testing.assert_close(sc.score_pairs(s.select(qi), p.select(gi)), full[qi, gi], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="paired"):
        sc.score_pairs(s.select(qi), p.select(gi[:3]))


def test_variants_differ():
    """Guard against a kernel that ignores the CA variant: the two variants give different scores."""
    m1, _, _, a1, b1 = _setup({})
    m2 = ZSESBIR(ZSEConfig(ca_variant="code")).eval()
    m2.load_state_dict(m1.state_dict())
    s1 = score_matrix(m1, a1.tokens, a1.kept, b1.tokens, b1.kept)
    s2 = score_matrix(m2, a1.tokens, a1.kept, b1.tokens, b1.kept)
    assert (s1 - s2).abs().max() > 1e-4


@pytest.mark.parametrize("case", ["paper", "paper_pruned", "code_pruned_kept"])
def test_pair_flops_match_flop_counter(case):
    model, _, _, a, b = _setup(CASES[case])
    fl = pair_flops(model)
    sc = PairScorer(model)
    s, p = sc.project(a.tokens, a.kept, "sketch"), sc.project(b.tokens, b.kept, "photo")
    with FlopCounterMode(display=False) as fc:
        sc.score_block(s.select(slice(0, 2)), p.select(slice(0, 3)))
    assert fc.get_total_flops() == 6 * fl["cached"]
    with FlopCounterMode(display=False) as fc:
        sc.project(a.tokens[:1], a.kept[:1], "sketch")
    assert fc.get_total_flops() == fl["projections_per_image"]
    set_attention_impl(model, "explicit")  # SDPA is not counted on CPU
    with FlopCounterMode(display=False) as fc:
        model.pair_forward(a.tokens[:1], a.kept[:1], b.tokens[:1], b.kept[:1])
    assert fc.get_total_flops() == fl["official_pair"] > fl["cached"]


def test_bad_modality():
    model, _, _, a, _ = _setup({})
    with pytest.raises(ValueError, match="modality"):
        PairScorer(model).project(a.tokens, a.kept, "drawing")
