"""Sharded gallery search (FAISS per shard, or torch per shard) equals the unsharded exact top-k."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.retrieval.faiss_backend import faiss_available, merge_topk, shard_bounds, sharded_topk
from xmodal_lib.retrieval.search import topk

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss not importable (extra [index])")


def _data(q=37, g=503, d=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(q, d, generator=gen), torch.randn(g, d, generator=gen)


def test_shard_bounds_cover_everything_once():
    assert shard_bounds(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shard_bounds(2, 4) == [(0, 1), (1, 2)]  # empty shards dropped
    with pytest.raises(ValueError):
        shard_bounds(5, 0)


def test_merge_topk_orders_ties_by_index():
    s = [torch.tensor([[3.0, 1.0]]), torch.tensor([[3.0, 2.0]])]
    i = [torch.tensor([[5, 0]]), torch.tensor([[2, 9]])]
    ms, mi = merge_topk(s, i, 3)
    assert mi.tolist() == [[2, 5, 9]] and ms.tolist() == [[3.0, 3.0, 2.0]]


@needs_faiss
@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("shards", [1, 3, 7])
def test_faiss_sharded_equals_unsharded(metric, shards):
    from xmodal_lib.retrieval.faiss_backend import faiss_topk

    q, g = _data()
    ref_s, ref_i = faiss_topk(q, g, 10, metric=metric)
    s, i = sharded_topk(q, g, 10, metric=metric, shards=shards, backend="faiss")
    assert torch.equal(i, ref_i)
    torch.testing.assert_close(s, ref_s, atol=1e-4, rtol=1e-5)
    # and the exact torch path agrees too
    t_s, t_i = topk(q, g, 10, metric=metric)
    assert torch.equal(i, t_i)


@pytest.mark.parametrize("shards", [1, 4])
def test_torch_sharded_equals_unsharded(shards):
    q, g = _data(seed=1)
    ref_s, ref_i = topk(q, g, 25, metric="cosine")
    s, i = sharded_topk(q, g, 25, metric="cosine", shards=shards, backend="torch", chunk_size=8)
    assert torch.equal(i, ref_i)
    torch.testing.assert_close(s, ref_s)


@needs_faiss
def test_k_larger_than_a_shard_and_streamed_shards():
    from xmodal_lib.retrieval.faiss_backend import ShardedFaissIndex

    q, g = _data(q=5, g=30, seed=2)
    idx = ShardedFaissIndex(16, "dot")
    for a, b in [(0, 4), (4, 20), (20, 30)]:  # uneven shards, first one smaller than k
        idx.add_shard(g[a:b])
    assert len(idx) == 30
    s, i = idx.search(q, 12)
    ref_s, ref_i = topk(q, g, 12, metric="dot")
    assert torch.equal(i, ref_i) and i.shape == (5, 12)
    s_all, i_all = idx.search(q, 100)  # clamped to the gallery
    assert i_all.shape == (5, 30) and sorted(i_all[0].tolist()) == list(range(30))
    with pytest.raises(ValueError, match="empty"):
        ShardedFaissIndex(16).search(q, 3)
    with pytest.raises(ValueError, match="backend"):
        sharded_topk(q, g, 3, backend="annoy")
