"""The CPU default ranking path (per-row sort + binary search, "auto") against every other path
and the per-query reference: ties, +-0.0, infinities, float64, rows without relevant items, NaN."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal_lib.retrieval import metrics as M
from xmodal_lib.retrieval import ranking as RK

_spec = importlib.util.spec_from_file_location("retrieval_reference", Path(__file__).with_name("retrieval_reference.py"))
_ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ref)

NAMES = ("map_all_voc", "map_all", "map@7_voc", "map@7_strict", "map@7_lenient", "p@3", "p@7_minr")
BACKENDS = ("auto", "matrix", "torch", "composite", "reference")


def _per_backend(monkeypatch, scores, ql, gl, largest, ties, chunk_size=None):
    out = {}
    for backend in BACKENDS:
        monkeypatch.setattr(RK, "SORT_BACKEND", backend)
        out[backend] = M.category_metrics_per_query(scores, ql, gl, NAMES, largest=largest, ties=ties,
                                                    chunk_size=chunk_size)
    return out


def _check_against_reference(got, scores, ql, gl, largest, ties):
    ref = _ref.reference_per_query(torch.as_tensor(scores).double().numpy(), np.asarray(ql), np.asarray(gl),
                                   NAMES, largest, ties)
    for m in NAMES:
        g, r = got[m].numpy(), ref[m]
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=m)
        np.testing.assert_allclose(g[~np.isnan(g)], r[~np.isnan(r)], rtol=0, atol=1e-12, err_msg=m)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("ties", ["stable", "pessimistic", "optimistic"])
def test_all_paths_identical_with_ties_zeros_and_infinities(monkeypatch, dtype, largest, ties):
    g = torch.Generator().manual_seed(21)
    scores = torch.randn(37, 45, generator=g).to(dtype)
    scores[0, :6] = torch.tensor([0.0, -0.0, 0.0, -0.0, 1.0, 1.0], dtype=dtype)  # -0.0 == 0.0 ties
    scores[1, 3:9] = float("inf")  # several +inf, relevant and irrelevant
    scores[2, 10:14] = float("-inf")
    scores[3] = scores[3, 0]  # whole row one value
    for r in range(4, 37, 4):  # a few exact ties copied across columns
        src, dst = torch.randint(0, 45, (3,), generator=g), torch.randint(0, 45, (3,), generator=g)
        scores[r, dst] = scores[r, src]
    ql = torch.randint(0, 4, (37,), generator=g)
    ql[5] = 99  # a query without any relevant gallery item (NaN row)
    gl = torch.randint(0, 4, (45,), generator=g)
    out = _per_backend(monkeypatch, scores, ql, gl, largest, ties, chunk_size=10)
    for backend in BACKENDS[1:]:
        for m in NAMES:
            np.testing.assert_array_equal(out["auto"][m].numpy(), out[backend][m].numpy(),
                                          err_msg=f"{backend} {m}")
    _check_against_reference(out["auto"], scores, ql, gl, largest, ties)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_path_resolves_a_few_ties_itself(monkeypatch, dtype):
    # relevant-relevant and relevant-irrelevant exact ties, float64 too: no fallback to a full sort
    g = torch.Generator().manual_seed(22)
    scores = torch.randn(40, 60, generator=g).to(dtype)
    ql, gl = torch.randint(0, 3, (40,), generator=g), torch.randint(0, 3, (60,), generator=g)
    scores[::2, 1] = scores[::2, 0]
    scores[1::2, 7:10] = scores[1::2, 20:21]
    calls = []
    monkeypatch.setattr(RK, "_hits_by_sort", lambda *a, **k: (_ for _ in ()).throw(AssertionError("full sort")))
    orig = RK._hits_by_row_search
    monkeypatch.setattr(RK, "_hits_by_row_search", lambda *a, **k: calls.append(1) or orig(*a, **k))
    for ties in RK.TIES:
        for largest in (True, False):
            got = M.category_metrics_per_query(scores, ql, gl, NAMES, largest=largest, ties=ties, chunk_size=16)
            _check_against_reference(got, scores, ql, gl, largest, ties)
    assert calls, "the CPU default path was not used"


def test_heavy_ties_fall_back_and_stay_exact(monkeypatch):
    # quantised scores: far more tied hits than the count-based path corrects, full sort takes over
    g = torch.Generator().manual_seed(23)
    scores = torch.randint(0, 2, (200, 150), generator=g).float()  # ~75 tied hits per row
    ql, gl = torch.randint(0, 2, (200,), generator=g), torch.randint(0, 2, (150,), generator=g)
    used = []
    orig = RK._hits_by_sort
    monkeypatch.setattr(RK, "_hits_by_sort", lambda *a, **k: used.append(1) or orig(*a, **k))
    for ties in RK.TIES:
        _check_against_reference(M.category_metrics_per_query(scores, ql, gl, NAMES, ties=ties),
                                 scores, ql, gl, True, ties)
    assert used, "expected the full-sort fallback on heavily tied scores"


def test_nan_is_rejected_on_every_row_and_path(monkeypatch):
    scores = torch.randn(6, 8)
    scores[4, 5] = float("nan")
    ql, gl = [0, 0, 1, 1, 7, 0], [0, 1, 0, 1, 0, 1, 0, 1]  # the NaN row has no relevant item
    for backend in BACKENDS:
        monkeypatch.setattr(RK, "SORT_BACKEND", backend)
        with pytest.raises(ValueError, match="NaN"):
            M.category_metrics(scores, ql, gl, ("map_all",))
    with pytest.raises(ValueError, match="NaN"):
        M.category_metrics(scores, [7] * 6, gl, ("map_all",))  # no relevant item anywhere
    with pytest.raises(ValueError, match="NaN"):
        M.fg_ranks(scores, [0, 1, 2, 3, 0, 1])
    with pytest.raises(ValueError, match="NaN"):
        M.fg_ranks(scores.double(), [0, 1, 2, 3, 0, 1], largest=False)


def test_argsort_rows_orders_like_numpy():
    rng = np.random.default_rng(24)
    x = rng.standard_normal((9, 31)).astype(np.float32)
    x[0, :5] = [0.0, -0.0, np.inf, -np.inf, 0.0]
    x[1] = 2.5  # all equal
    order = RK._argsort_rows(x)
    got = np.take_along_axis(x, order, 1)
    np.testing.assert_array_equal(got, np.sort(x, axis=1))
    np.testing.assert_array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(31), (9, 31)))  # a permutation
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(np.take_along_axis(x64, RK._argsort_rows(x64), 1), np.sort(x64, axis=1))


@pytest.mark.parametrize("blocks", [1, 4, 50])
def test_row_blocks_do_not_change_results(monkeypatch, blocks):
    g = torch.Generator().manual_seed(25)
    scores = torch.randn(53, 40, generator=g)
    ql, gl = torch.randint(0, 3, (53,), generator=g), torch.randint(0, 3, (40,), generator=g)
    t = torch.randint(0, 40, (53,), generator=g)
    monkeypatch.setattr(RK, "_BLOCKS_PER_THREAD", blocks)
    n_thr = torch.get_num_threads()
    torch.set_num_threads(2)  # row_parallel only splits with > 1 thread
    try:
        got = M.category_metrics_per_query(scores, ql, gl, NAMES)
        ranks = M.fg_ranks(scores, t)
    finally:
        torch.set_num_threads(n_thr)
    _check_against_reference(got, scores, ql, gl, True, "stable")
    np.testing.assert_array_equal(ranks.numpy(), _ref.reference_fg_ranks(scores.double().numpy(), t.numpy(), True))
