"""Chance by label permutation, binomial p-values, and the query-dependence warning."""
from __future__ import annotations

import warnings

import pytest
import torch

from xmodal_lib.retrieval.sanity import (
    QueryIndependentWarning,
    binomial_p_value,
    check_query_dependent,
    label_permutation_test,
    query_dependence,
    same_topk_fraction,
)
from xmodal_lib.viz.retrieval_plots import plot_retrieval_strips, strip_row


def _labels(n_cls: int, per: int) -> list[str]:
    return [f"c{i}" for i in range(n_cls) for _ in range(per)]


def test_permutation_test_separates_signal_from_noise():
    ql, gl = _labels(6, 4), _labels(6, 12)
    q = torch.tensor([int(l[1:]) for l in ql])
    g = torch.tensor([int(l[1:]) for l in gl])
    gen = torch.Generator().manual_seed(0)
    good = (q[:, None] == g[None]).float() + 0.8 * torch.rand(len(ql), len(gl), generator=gen)
    noise = torch.rand(len(ql), len(gl), generator=gen)
    r_good = label_permutation_test(good, ql, gl, n_perm=99)
    r_noise = label_permutation_test(noise, ql, gl, n_perm=99)
    assert r_good["p"] == pytest.approx(0.01) and r_good["observed"] > 0.9
    assert r_noise["p"] > 0.05
    # measured chance with 6 balanced classes and a 72-photo gallery is well above 1/6
    assert 1 / 6 < r_noise["chance"] < 0.3


def test_binomial_p_value():
    assert binomial_p_value(10, 100, 0.1) == pytest.approx(0.549, abs=0.01)
    assert binomial_p_value(30, 100, 0.1) < 1e-6
    with pytest.raises(ValueError):
        binomial_p_value(5, 4, 0.1)


def test_same_topk_warning_and_strip_hook():
    assert same_topk_fraction([[1, 2], [1, 2], [2, 1]]) == pytest.approx(1 / 3)
    with pytest.warns(QueryIndependentWarning, match="same top-2"):
        assert not check_query_dependent([[1, 2], [1, 2], [1, 2]], where="test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_query_dependent([[1, 2], [1, 3]])
        assert check_query_dependent([[1, 2], [1, 2]], queries=["a", "a"])  # the same query twice
    img = torch.zeros(3, 8, 8)
    gallery = torch.zeros(5, 3, 8, 8)
    rows = [strip_row(img, "c0", gallery, ["c0"] * 5, [0, 1, 2]) for _ in range(3)]
    with pytest.warns(QueryIndependentWarning):
        plot_retrieval_strips(rows, title="collapsed")


def test_query_dependence_tells_a_working_ranking_from_a_collapsed_one():
    labels = ["a", "a", "b", "c"]
    working = [[0, 1, 2], [1, 0, 3], [4, 5, 6], [7, 8, 9]]  # same class shares, other classes do not
    r = query_dependence(working, labels, gallery_size=12)
    assert r["query_dependent"] and r["distinct"] == 4 and r["k"] == 3
    assert r["cross_overlap"] == 0.0 and r["random_overlap"] == 0.25
    with pytest.warns(QueryIndependentWarning):
        c = query_dependence([[0, 1, 2]] * 4, labels, gallery_size=12, where="test")
    assert not c["query_dependent"] and c["distinct"] == 1 and c["cross_overlap"] == 1.0
    with pytest.raises(ValueError, match="3 top-k rows for 4"):
        query_dependence(working[:3], labels, 12)
