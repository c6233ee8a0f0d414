"""Exact search, Gallery persistence, binary codes / Hamming paths and the optional FAISS backend."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xmodal_lib.data.index import DataError
from xmodal_lib.retrieval import codes as C
from xmodal_lib.retrieval import search as S
from xmodal_lib.retrieval.faiss_backend import faiss_available


def _data(seed=0, q=13, g=57, d=12):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(q, d, generator=gen), torch.randn(g, d, generator=gen)


def test_similarity_against_numpy():
    q, g = _data()
    qn, gn = q.numpy().astype(np.float64), g.numpy().astype(np.float64)
    cos = (qn / np.linalg.norm(qn, axis=1, keepdims=True)) @ (gn / np.linalg.norm(gn, axis=1, keepdims=True)).T
    np.testing.assert_allclose(S.similarity(q, g, "cosine").numpy(), cos, atol=1e-5)
    np.testing.assert_allclose(S.similarity(q, g, "dot").numpy(), qn @ gn.T, atol=1e-4)
    eu = np.sqrt(((qn[:, None, :] - gn[None, :, :]) ** 2).sum(-1))
    np.testing.assert_allclose(S.similarity(q, g, "euclidean").numpy(), -eu, atol=1e-4)
    with pytest.raises(ValueError, match="metric"):
        S.similarity(q, g, "manhattan")
    with pytest.raises(ValueError, match="dims"):
        S.similarity(q, g[:, :5])


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_topk_matches_full_sort(metric, chunk_size):
    q, g = _data(1)
    full = S.similarity(q, g, metric)
    ref = torch.sort(full, dim=1, descending=True, stable=True)
    v, i = S.topk(q, g, 7, metric=metric, chunk_size=chunk_size)
    assert torch.equal(i, ref.indices[:, :7])
    torch.testing.assert_close(v, ref.values[:, :7])
    v1, i1 = S.topk(q[3], g, 7, metric=metric)  # single query -> 1-D
    assert i1.shape == (7,) and torch.equal(i1, i[3])
    v_all, i_all = S.topk(q, g, 10_000, metric=metric)  # k > G is clamped
    assert i_all.shape == (13, 57)


def test_topk_ties_ordered_by_index():
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    v, i = S.topk(torch.tensor([1.0, 0.0]), g, 3, metric="dot")
    assert i.tolist() == [0, 1, 3]


def test_gallery_roundtrip_and_query(tmp_path):
    q, g = _data(2)
    ids = [f"photo_{k:03d}.jpg" for k in range(len(g))]
    gal = S.Gallery(g, ids, labels=[f"c{k % 3}" for k in range(len(g))], metric="cosine")
    path = gal.save(tmp_path / "sub" / "gallery")
    assert path.name == "gallery.safetensors" and (tmp_path / "sub" / "gallery.json").is_file()
    back = S.Gallery.load(tmp_path / "sub" / "gallery.safetensors")
    assert back.ids == ids and back.labels == gal.labels and back.metric == "cosine"
    assert torch.equal(back.embeddings, gal.embeddings)
    hits = back.query(q[0], k=5)
    _, ref = S.topk(q[0], g, 5)
    assert torch.equal(hits.indices, ref) and hits.ids == [ids[j] for j in ref.tolist()]
    batch = back.query(q[:2], k=3)
    assert len(batch.ids) == 2 and len(batch.ids[0]) == 3
    with pytest.raises(ValueError, match="dim"):
        back.query(torch.randn(5), k=2)


def test_gallery_validation_and_bad_files(tmp_path):
    g = torch.randn(4, 3)
    with pytest.raises(ValueError, match="ids"):
        S.Gallery(g, ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        S.Gallery(g, ["a", "a", "b", "c"])
    with pytest.raises(DataError, match="missing"):
        S.Gallery.load(tmp_path / "nothing")
    S.Gallery(g, list("abcd")).save(tmp_path / "gal")
    (tmp_path / "gal.json").write_text(json.dumps({"format": "xmodal-gallery", "ids": ["a"]}))
    with pytest.raises(DataError, match="ids"):
        S.Gallery.load(tmp_path / "gal")
    (tmp_path / "gal.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DataError, match="safetensors"):
        S.Gallery.load(tmp_path / "gal")


def test_codes_and_packing():
    x = torch.tensor([[0.5, -0.1, 0.0, -2.0, 3.0, 1.0, -1.0, 0.2, -0.3, 0.0]])
    c = C.to_codes(x)
    assert c.tolist() == [[1, -1, 1, -1, 1, 1, -1, 1, -1, 1]]  # zero -> +1
    p = C.pack_bits(c)
    # bits 1010 1101 | 01(000000) -> 0xAD, 0x40 (MSB first, zero padding)
    assert p.dtype == torch.uint8 and p.tolist() == [[0xAD, 0x40]]
    assert np.array_equal(p.numpy(), np.packbits((c.numpy() > 0).astype(np.uint8), axis=1))
    assert torch.equal(C.unpack_bits(p, 10), c)
    with pytest.raises(ValueError, match=r"\+1/-1"):
        C.pack_bits(torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize("bits", [16, 45, 64])
def test_hamming_paths_agree(bits):
    gen = torch.Generator().manual_seed(bits)
    qc = C.to_codes(torch.randn(21, bits, generator=gen))
    gc = C.to_codes(torch.randn(90, bits, generator=gen))
    ref = (qc[:, None, :] != gc[None, :, :]).sum(-1).to(torch.int32)  # literal bit disagreement count
    d_lut = C.hamming_distance(C.pack_bits(qc), C.pack_bits(gc), chunk_size=5)
    d_mm = C.hamming_scores_matmul(qc, gc, chunk_size=4)
    assert torch.equal(d_lut, ref) and torch.equal(d_mm, ref)
    rank_lut = torch.sort(d_lut, dim=1, stable=True).indices
    rank_mm = torch.sort(d_mm, dim=1, stable=True).indices
    assert torch.equal(rank_lut, rank_mm)  # identical rankings (ties included)
    dk, ik = C.hamming_topk(C.pack_bits(qc), C.pack_bits(gc), 6, chunk_size=7)
    assert torch.equal(ik, rank_lut[:, :6]) and torch.equal(dk, d_lut.gather(1, ik))


@pytest.mark.skipif(not faiss_available(), reason="faiss not importable (extra [index])")
@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_faiss_matches_exact_path(metric):
    from xmodal_lib.retrieval.faiss_backend import faiss_topk

    q, g = _data(3, q=20, g=300, d=16)  # continuous data: no ties
    v, i = S.topk(q, g, 10, metric=metric)
    fv, fi = faiss_topk(q, g, 10, metric=metric)
    assert torch.equal(fi, i)
    torch.testing.assert_close(fv, v, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not faiss_available(), reason="faiss not importable (extra [index])")
def test_faiss_binary_matches_hamming():
    from xmodal_lib.retrieval.faiss_backend import faiss_hamming_topk

    gen = torch.Generator().manual_seed(11)
    g_codes = C.to_codes(torch.randn(64, 256, generator=gen))  # 256 bits: distinct distances likely
    q_codes = C.to_codes(torch.randn(8, 256, generator=gen))
    qp, gp = C.pack_bits(q_codes), C.pack_bits(g_codes)
    d = C.hamming_distance(qp, gp)
    k = 5
    fd, fi = faiss_hamming_topk(qp, gp, k)
    ed, ei = C.hamming_topk(qp, gp, k)
    assert torch.equal(fd, ed)
    for r in range(8):  # neighbour sets equal wherever the k-th distance is not tied with the (k+1)-th
        srt = torch.sort(d[r]).values
        if srt[k - 1] < srt[k]:
            assert set(fi[r].tolist()) == set(ei[r].tolist())
