"""Tie rule for Hamming / integer scores: the tie-averaged value cannot favour the gallery order."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from xmodal_lib.retrieval.codes import hamming_distance, pack_bits, to_codes
from xmodal_lib.retrieval.metrics import category_metrics
from xmodal_lib.retrieval.ties import tie_robust_metrics

METRICS = ("map_all_voc", "map_all", "map@3_voc", "p@3")


def _hashing_toy(n_classes: int = 5, per_class: int = 20, bits: int = 8, seed: int = 0):
    """Noisy class prototypes -> short sign codes; gallery grouped by class like a SAKE list."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.randn(n_classes, 32, generator=g)
    lab = torch.arange(n_classes).repeat_interleave(per_class)  # class-grouped order
    emb = proto[lab] + 1.5 * torch.randn(len(lab), 32, generator=g)
    proj = torch.randn(32, bits, generator=g)
    codes = pack_bits(to_codes(emb @ proj))
    q_lab = torch.arange(n_classes).repeat_interleave(4)
    q_emb = proto[q_lab] + 1.5 * torch.randn(len(q_lab), 32, generator=g)
    return hamming_distance(pack_bits(to_codes(q_emb @ proj)), codes), q_lab, lab


def test_exact_expectation_matches_enumeration_of_all_tie_orders():
    # one query, 6 gallery items, two ties; enumerate every order of the gallery (720)
    scores = torch.tensor([[2, 1, 1, 1, 0, 0]], dtype=torch.int32)
    gl = torch.tensor([0, 1, 0, 1, 0, 1])
    ql = torch.tensor([0])
    vals = {m: [] for m in METRICS}
    for perm in itertools.permutations(range(6)):
        p = torch.tensor(perm)
        r = category_metrics(scores[:, p], ql, gl[p], METRICS, ties="stable")
        for m in METRICS:
            vals[m].append(r[m])
    out = tie_robust_metrics(scores, ql, gl, METRICS, draws=400, seed=1)
    for m in METRICS:
        exact = float(np.mean(vals[m]))
        assert out[f"{m}_se"] > 0
        assert abs(out[m] - exact) < 4 * out[f"{m}_se"] + 1e-12, (m, out[m], exact)
        assert out[f"{m}_pessimistic"] - 1e-12 <= exact <= out[f"{m}_optimistic"] + 1e-12
        assert out[f"{m}_pessimistic"] < out[f"{m}_optimistic"]


def test_class_grouped_gallery_order_inflates_stable_but_not_tie_average():
    dist, ql, gl = _hashing_toy()
    rev = torch.arange(gl.numel() - 1, -1, -1)
    stable = category_metrics(dist.float(), ql, gl, ("map_all_voc",), largest=False)["map_all_voc"]
    stable_rev = category_metrics(dist[:, rev].float(), ql, gl[rev], ("map_all_voc",),
                                  largest=False)["map_all_voc"]
    fair = tie_robust_metrics(dist, ql, gl, ("map_all_voc",), largest=False, draws=32)
    fair_rev = tie_robust_metrics(dist[:, rev], ql, gl[rev], ("map_all_voc",), largest=False, draws=32, seed=5)
    # the old (stable) rule depends on the file order; the tie average does not (within its SE)
    assert abs(stable - stable_rev) > 0.01
    se = np.hypot(fair["map_all_voc_se"], fair_rev["map_all_voc_se"])
    assert abs(fair["map_all_voc"] - fair_rev["map_all_voc"]) < 4 * se
    lo, hi = fair["map_all_voc_pessimistic"], fair["map_all_voc_optimistic"]
    assert lo < fair["map_all_voc"] < hi
    assert lo <= stable <= hi


def test_first_class_queries_stable_equals_optimistic_bound():
    # gallery grouped by class, queries of class 0: a stable sort puts class 0 first in every tie
    dist, ql, gl = _hashing_toy()
    keep = ql == 0
    stable = category_metrics(dist[keep].float(), ql[keep], gl, ("map_all",), largest=False)["map_all"]
    fair = tie_robust_metrics(dist[keep], ql[keep], gl, ("map_all",), largest=False, draws=32)
    assert stable == pytest.approx(fair["map_all_optimistic"])
    assert stable > fair["map_all"] + 4 * fair["map_all_se"]


def test_no_ties_all_three_equal_and_bad_draws_rejected():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(7, 30, generator=g, dtype=torch.float64)
    ql, gl = torch.randint(0, 3, (7,), generator=g), torch.randint(0, 3, (30,), generator=g)
    ref = category_metrics(s, ql, gl, METRICS)
    out = tie_robust_metrics(s, ql, gl, METRICS, draws=3)
    for m in METRICS:
        assert out[m] == pytest.approx(ref[m]) and out[f"{m}_se"] == pytest.approx(0.0, abs=1e-15)
        assert out[f"{m}_optimistic"] == pytest.approx(ref[m]) == out[f"{m}_pessimistic"]
    with pytest.raises(ValueError, match="draws"):
        tie_robust_metrics(s, ql, gl, METRICS, draws=0)


def test_fair_metrics_dispatch_on_integer_valued_scores():
    from xmodal_lib.retrieval.ties import fair_category_metrics, integer_valued
    dist, ql, gl = _hashing_toy()
    assert integer_valued(dist) and integer_valued(-dist.float()) and not integer_valued(dist.float() + 0.5)
    out = fair_category_metrics(-dist.float(), ql, gl, ("map_all_voc",))
    assert out["map_all_voc"] == pytest.approx(tie_robust_metrics(dist, ql, gl, ("map_all_voc",), largest=False)["map_all_voc"])
    assert "map_all_voc_pessimistic" in out
    assert "map_all_voc_pessimistic" not in fair_category_metrics(dist.float() + torch.rand(dist.shape), ql, gl,
                                                                  ("map_all_voc",), largest=False)
