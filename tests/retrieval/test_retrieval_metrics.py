"""Metrics vs. independent per-query references (retrieval_reference.py) and sklearn."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from xmodal_lib.retrieval import metrics as M
from xmodal_lib.retrieval import ranking as RK
from xmodal_lib.retrieval.search import similarity

# the suite runs with --import-mode=importlib: load the sibling reference module by path
_spec = importlib.util.spec_from_file_location("retrieval_reference", Path(__file__).with_name("retrieval_reference.py"))
_ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ref)
reference_fg_ranks, reference_per_query = _ref.reference_fg_ranks, _ref.reference_per_query

ALL = ("map_all_voc", "map_all", "map@5_strict", "map@5_lenient", "map@5_voc", "map@200_strict",
       "map@200_lenient", "map@200_voc", "p@1", "p@5", "p@200", "p@5_minr", "p@200_minr")


def _compare(scores, ql, gl, metrics=ALL, largest=True, ties="stable", chunk_size=None):
    got = M.category_metrics_per_query(scores, ql, gl, metrics, largest=largest, chunk_size=chunk_size, ties=ties)
    ref = reference_per_query(torch.as_tensor(scores).double().numpy(), np.asarray(ql), np.asarray(gl),
                              metrics, largest, ties)
    for m in metrics:
        g, r = got[m].numpy(), ref[m]
        assert g.dtype == np.float64
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=m)
        np.testing.assert_allclose(g[~np.isnan(g)], r[~np.isnan(r)], rtol=0, atol=1e-12, err_msg=m)
    means = M.category_metrics(scores, ql, gl, metrics, largest=largest, chunk_size=chunk_size, ties=ties)
    for m in metrics:
        r = ref[m]
        expected = float(np.nanmean(r)) if (~np.isnan(r)).any() else math.nan
        assert means[m] == pytest.approx(expected, abs=1e-12, nan_ok=True), m
    assert means["n_valid"] == int((~np.isnan(ref[metrics[0]])).sum())
    return got


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_random_matches_reference(seed, chunk_size):
    g = torch.Generator().manual_seed(seed)
    q_n, g_n = 23, 61
    scores = torch.randn(q_n, g_n, generator=g)
    ql = torch.randint(0, 4, (q_n,), generator=g)
    gl = torch.randint(0, 4, (g_n,), generator=g)
    _compare(scores, ql, gl, chunk_size=chunk_size)


@pytest.mark.parametrize("ties", ["stable", "pessimistic", "optimistic"])
def test_heavy_ties(ties):
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 3, (17, 40), generator=g).float()  # 3 distinct values only
    ql = torch.randint(0, 3, (17,), generator=g)
    gl = torch.randint(0, 3, (40,), generator=g)
    _compare(scores, ql, gl, ties=ties, chunk_size=5)


def test_tie_modes_bound_the_stable_value():
    g = torch.Generator().manual_seed(4)
    scores = torch.randint(0, 2, (30, 50), generator=g).float()
    ql, gl = torch.randint(0, 3, (30,), generator=g), torch.randint(0, 3, (50,), generator=g)
    res = {t: M.category_metrics(scores, ql, gl, ("map_all", "map_all_voc"), ties=t) for t in RK.TIES}
    for m in ("map_all", "map_all_voc"):
        assert res["pessimistic"][m] <= res["stable"][m] <= res["optimistic"][m]
        assert res["pessimistic"][m] < res["optimistic"][m]  # ties matter with 2 score values


def test_plain_ap_equals_sklearn():
    g = torch.Generator().manual_seed(5)
    scores = torch.rand(12, 80, generator=g, dtype=torch.float64)  # continuous: no ties
    ql, gl = torch.randint(0, 5, (12,), generator=g), torch.randint(0, 5, (80,), generator=g)
    ap = M.average_precision_per_query(scores, ql, gl, voc=False)
    for i in range(12):
        y = (gl == ql[i]).numpy()
        if y.any():
            assert ap[i].item() == pytest.approx(average_precision_score(y, scores[i].numpy()), abs=1e-12)
    voc = M.average_precision_per_query(scores, ql, gl, voc=True)
    assert bool((voc >= ap - 1e-15).all())  # interpolation never lowers AP


def test_no_relevant_query_is_nan_and_excluded():
    scores = torch.randn(4, 10)
    gl = torch.tensor([0] * 5 + [1] * 5)
    ql = torch.tensor([0, 1, 2, 0])  # class 2 has no gallery item
    got = _compare(scores, ql, gl)
    assert all(math.isnan(v[2].item()) for v in got.values())
    res = M.category_metrics(scores, ql, gl, ("map_all_voc", "p@3"))
    assert res["n_queries"] == 4 and res["n_valid"] == 3
    only_missing = M.category_metrics(scores[2:3], ql[2:3], gl, ("map_all_voc",))
    assert math.isnan(only_missing["map_all_voc"]) and only_missing["n_valid"] == 0


def test_all_relevant_gives_one():
    scores = torch.randn(3, 9)
    res = M.category_metrics(scores, [1, 1, 1], [1] * 9, ALL)
    for m in ALL:
        assert res[m] == pytest.approx(1.0, abs=1e-15), m


def test_k_larger_than_gallery_and_one_query():
    scores = torch.randn(1, 6)
    ql, gl = torch.tensor([0]), torch.tensor([0, 1, 0, 1, 1, 0])
    got = _compare(scores, ql, gl, ("map@50_strict", "map@50_lenient", "map@50_voc", "p@50", "p@50_minr", "map_all"))
    # with K >= G every mAP@K convention equals mAP@all over the whole list
    assert got["map@50_strict"].item() == pytest.approx(got["map_all"].item(), abs=1e-15)
    assert got["p@50"].item() == pytest.approx(0.5)  # SAKE prec divides by min(K, G) = 6


def test_float16_and_distances_match():
    g = torch.Generator().manual_seed(6)
    scores = torch.randn(15, 70, generator=g).half()  # coarse values: many ties
    ql, gl = torch.randint(0, 3, (15,), generator=g), torch.randint(0, 3, (70,), generator=g)
    sim = _compare(scores, ql, gl)
    dist = _compare(-scores, ql, gl, largest=False)
    for m in ALL:
        np.testing.assert_array_equal(sim[m].numpy(), dist[m].numpy())


def test_string_labels():
    scores = torch.randn(3, 5)
    a = M.category_metrics(scores, ["cat", "dog", "cow"], ["dog", "cat", "cat", "dog", "emu"], ("map_all",))
    b = M.category_metrics(scores, [0, 1, 2], [1, 0, 0, 1, 3], ("map_all",))
    assert a == b


def test_hand_worked_example():
    # Gallery already in ranked order (scores 6 > 5 > ... > 1).
    # Query A: relevance [0,1,1,0,0,1], R = 3; precision at hits: 1/2, 2/3, 3/6.
    #   plain AP  = (1/2 + 2/3 + 1/2) / 3 = 5/9
    #   VOC AP    : interpolated precision at hits = max to the right = 2/3, 2/3, 1/2
    #               -> (2/3 + 2/3 + 1/2) / 3 = 11/18
    #   K = 3: top-3 = [0,1,1], found = 2, min(K, R) = 3
    #   map@3_strict  = (1/2 + 2/3) / 3 = 7/18;  map@3_lenient = (1/2 + 2/3) / 2 = 7/12
    #   map@3_voc     = (2/3 + 2/3) / 3 = 4/9;   p@3 = 2/3;  p@3_minr = 2/3
    # Query B: relevance [1,0,0,0,0,0], R = 1: every AP = 1, p@3 = 1/3, p@3_minr = top-1 = 1.
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1]] * 2)
    gl = torch.tensor([1, 0, 0, 1, 1, 0])
    ql = torch.tensor([0, 1])
    gl_b = torch.tensor([1, 2, 2, 2, 2, 2])
    names = ("map_all", "map_all_voc", "map@3_strict", "map@3_lenient", "map@3_voc", "p@3", "p@3_minr")
    a = M.category_metrics_per_query(scores[:1], ql[:1], gl, names)
    expected_a = [5 / 9, 11 / 18, 7 / 18, 7 / 12, 4 / 9, 2 / 3, 2 / 3]
    for n, e in zip(names, expected_a):
        assert a[n].item() == pytest.approx(e, abs=1e-15), n
    b = M.category_metrics_per_query(scores[1:], ql[1:], gl_b, names)
    for n, e in zip(names, [1, 1, 1, 1, 1, 1 / 3, 1]):
        assert b[n].item() == pytest.approx(e, abs=1e-15), n


def test_bad_names_and_inputs():
    s = torch.randn(2, 3)
    for bad in ("map@200", "p@0", "map@10_weird", "mAP", "p@5_strict"):
        with pytest.raises(ValueError, match="metric"):
            M.category_metrics(s, [0, 1], [0, 1, 1], (bad,))
    with pytest.raises(ValueError, match="gallery_labels"):
        M.category_metrics(s, [0, 1], [0, 1], ("map_all",))
    with pytest.raises(ValueError, match="NaN"):
        M.category_metrics(torch.tensor([[0.0, float("nan"), 1.0]]), [0], [0, 1, 1], ("map_all",))
    with pytest.raises(ValueError, match="ties"):
        M.category_metrics(s, [0, 1], [0, 1, 1], ("map_all",), ties="random")
    with pytest.raises(ValueError, match="2-D"):
        M.category_metrics(torch.randn(3), [0], [0, 1, 1])


def test_precision_recall_curve_matches_loop():
    g = torch.Generator().manual_seed(7)
    scores = torch.randn(9, 40, generator=g)
    ql, gl = torch.randint(0, 3, (9,), generator=g), torch.randint(0, 3, (40,), generator=g)
    levels, curve = M.precision_recall_curve(scores, ql, gl, 11)
    ref = []
    for i in range(9):
        order = sorted(range(40), key=lambda j: (-scores[i, j].item(), j))
        rel = [(gl[j] == ql[i]).item() for j in order]
        r_tot, tp, pts = sum(rel), 0, []
        for k, r in enumerate(rel, 1):
            tp += r
            pts.append((tp / r_tot, tp / k))
        ref.append([max(p for rc, p in pts if rc >= lv - 1e-12) for lv in levels.tolist()])
    np.testing.assert_allclose(curve.numpy(), np.mean(ref, 0), atol=1e-12)
    assert curve[-1] <= curve[0]


@pytest.mark.parametrize("largest", [True, False])
def test_fg_accuracy_matches_reference(largest):
    g = torch.Generator().manual_seed(8)
    scores = torch.randint(0, 6, (30, 25), generator=g).float()  # many ties
    true = torch.randint(0, 25, (30,), generator=g)  # several queries may share a photo
    ranks = M.fg_ranks(scores, true, largest=largest, chunk_size=4)
    ref = reference_fg_ranks(scores.numpy(), true.numpy(), largest)
    np.testing.assert_array_equal(ranks.numpy(), ref)
    res = M.fg_accuracy(scores, true, ks=(1, 5, 10), largest=largest)
    for k in (1, 5, 10):
        assert res[f"acc@{k}"] == pytest.approx(float(np.mean(ref <= k)))
    assert res["mean_rank"] == pytest.approx(float(ref.mean()))
    assert res["median_rank"] == pytest.approx(float(np.median(ref)))


def test_fg_hand_example_ties_count_against():
    scores = torch.tensor([[0.9, 0.5, 0.9, 0.1], [0.2, 0.8, 0.3, 0.1]])
    res = M.fg_accuracy(scores, [2, 1], ks=(1, 2))
    # query 0: item 0 ties with the true item 2 -> rank 2; query 1: rank 1
    assert M.fg_ranks(scores, [2, 1]).tolist() == [2, 1]
    assert res["acc@1"] == 0.5 and res["acc@2"] == 1.0 and res["median_rank"] == 1.5
    with pytest.raises(ValueError, match="true_index"):
        M.fg_accuracy(scores, [4, 0])


def test_from_embeddings_equals_matrix_path():
    g = torch.Generator().manual_seed(9)
    q, gal = torch.randn(20, 8, generator=g), torch.randn(50, 8, generator=g)
    ql, gl = torch.randint(0, 4, (20,), generator=g), torch.randint(0, 4, (50,), generator=g)
    names = ("map_all_voc", "map@10_voc", "p@10")
    for metric in ("cosine", "dot", "euclidean"):
        a = M.category_metrics_from_embeddings(q, gal, ql, gl, names, metric=metric, chunk_size=3)
        b = M.category_metrics(similarity(q, gal, metric), ql, gl, names)
        assert a == pytest.approx(b, abs=1e-12)


@pytest.mark.parametrize("ties", ["stable", "pessimistic", "optimistic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int32, torch.float64])
def test_sort_backends_agree(monkeypatch, ties, dtype):
    # composite-key sort (NumPy on CPU / torch) vs plain stable torch.sort on the scores
    g = torch.Generator().manual_seed(10)
    vals = torch.tensor([-1.5, -0.0, 0.0, 0.25, 2.0])  # includes -0.0 == 0.0 and negative values
    scores = vals[torch.randint(0, 5, (40, 33), generator=g)]
    scores = (scores * 4).to(dtype) if dtype == torch.int32 else scores.to(dtype)
    ql, gl = torch.randint(0, 3, (40,), generator=g), torch.randint(0, 3, (33,), generator=g)
    out = {}
    for backend in ("auto", "composite", "torch", "reference"):
        monkeypatch.setattr(RK, "SORT_BACKEND", backend)
        out[backend] = M.category_metrics_per_query(scores, ql, gl, ALL, largest=True, ties=ties, chunk_size=9)
    for m in ALL:
        np.testing.assert_array_equal(out["auto"][m].numpy(), out["reference"][m].numpy(), err_msg=m)
        np.testing.assert_array_equal(out["torch"][m].numpy(), out["reference"][m].numpy(), err_msg=m)
        np.testing.assert_array_equal(out["composite"][m].numpy(), out["reference"][m].numpy(), err_msg=m)
    _compare(scores, ql, gl, ties=ties)


def test_many_queries_tiny_gallery_default_chunks():
    g = torch.Generator().manual_seed(12)
    scores = torch.randn(3000, 6, generator=g)  # default chunk = all 3000 rows at once
    ql, gl = torch.randint(0, 2, (3000,), generator=g), torch.tensor([0, 1, 0, 0, 1, 1])
    _compare(scores, ql, gl, ("map_all_voc", "map_all", "map@3_voc", "p@2_minr"))


@pytest.mark.parametrize("ties", ["stable", "pessimistic", "optimistic"])
@pytest.mark.parametrize("largest", [True, False])
def test_counting_path_with_a_few_ties(monkeypatch, ties, largest):
    # continuous scores with a handful of injected exact ties (relevant-irrelevant and relevant-relevant):
    # the count-based ranking must resolve them itself, without falling back to the full sort
    g = torch.Generator().manual_seed(13)
    scores = torch.randn(30, 50, generator=g)
    ql, gl = torch.randint(0, 3, (30,), generator=g), torch.randint(0, 3, (50,), generator=g)
    for r in range(0, 30, 3):
        src = torch.randint(0, 50, (3,), generator=g)
        dst = torch.randint(0, 50, (3,), generator=g)
        scores[r, dst] = scores[r, src]
    scores[1, :4] = 0.5  # a 4-way tie

    def no_sort(*a, **k):
        raise AssertionError("fell back to the full sort")

    monkeypatch.setattr(RK, "_hits_by_sort", no_sort)
    _compare(scores, ql, gl, largest=largest, ties=ties, chunk_size=8)


def test_counting_path_blocks_of_tied_hits(monkeypatch):
    # > 64 tied hits in one chunk: the tie correction runs in several blocks
    g = torch.Generator().manual_seed(14)
    scores = torch.round(torch.randn(100, 300, generator=g) * 400) / 400  # ~2k distinct values: some ties
    ql, gl = torch.randint(0, 4, (100,), generator=g), torch.randint(0, 4, (300,), generator=g)
    monkeypatch.setattr(RK, "_hits_by_sort", lambda *a, **k: (_ for _ in ()).throw(AssertionError("full sort")))
    for ties in RK.TIES:
        _compare(scores, ql, gl, ("map_all_voc", "map_all", "map@20_voc", "p@20_minr"), ties=ties, chunk_size=50)


@pytest.mark.parametrize("backend", ["torch", "composite", "reference"])
def test_backends_on_continuous_scores(monkeypatch, backend):
    # "torch" = the GPU code path (torch.sort of the values + binary search), run on CPU here
    g = torch.Generator().manual_seed(15)
    scores = torch.randn(25, 70, generator=g)
    scores[3, 10:13] = scores[3, 0]  # one tie group
    ql, gl = torch.randint(0, 3, (25,), generator=g), torch.randint(0, 3, (70,), generator=g)
    monkeypatch.setattr(RK, "SORT_BACKEND", backend)
    for ties in RK.TIES:
        _compare(scores, ql, gl, ties=ties, chunk_size=6)


def test_scores_that_require_grad():
    q = torch.randn(6, 4, requires_grad=True)
    gal = torch.randn(9, 4)
    s = q @ gal.T  # part of an autograd graph
    ql, gl = [0, 1, 0, 1, 0, 1], [0, 1, 1, 0, 0, 1, 1, 0, 1]
    a = M.category_metrics(s, ql, gl, ("map_all_voc", "p@3"))
    b = M.category_metrics(s.detach(), ql, gl, ("map_all_voc", "p@3"))
    assert a == b
    assert M.fg_accuracy(s, [0, 1, 2, 3, 4, 5])["n_queries"] == 6
    assert M.category_metrics_from_embeddings(q, gal, ql, gl, ("map_all",))["n_valid"] == 6
