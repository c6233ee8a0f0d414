"""CrossATNet graph CNN: class graphs, D^-1/2 (A+I) D^-1/2, GCN shapes and locality."""
from __future__ import annotations

import math

import pytest
import torch

from xmodal_lib.methods.crossatnet.gcn import (
    GCN,
    build_graph,
    cosine_distances,
    knn_graph,
    mst_graph,
    normalize_adjacency,
)


def test_normalize_adjacency_path_graph_by_hand():
    # path 0 - 1 - 2: degrees of A + I are 2, 3, 2
    a = torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 1, 0]])
    s6 = math.sqrt(6)
    expected = torch.tensor([[1 / 2, 1 / s6, 0], [1 / s6, 1 / 3, 1 / s6], [0, 1 / s6, 1 / 2]])
    got = normalize_adjacency(a)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got, got.T)
    # spectrum of the renormalised adjacency lies in (-1, 1], with 1 attained (connected graph)
    ev = torch.linalg.eigvalsh(got.double())
    assert ev.max().item() == pytest.approx(1.0, abs=1e-6) and ev.min().item() > -1.0


def test_normalize_adjacency_rejects_asymmetric():
    with pytest.raises(ValueError, match="symmetric"):
        normalize_adjacency(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))


def test_knn_graph_symmetric_degrees_and_neighbours():
    torch.manual_seed(0)
    x = torch.randn(12, 16)
    a = knn_graph(x, k=3)
    assert torch.equal(a, a.T) and a.diagonal().sum() == 0
    assert (a.sum(1) >= 3).all()
    d = cosine_distances(x)
    d.fill_diagonal_(float("inf"))
    nearest = d.argmin(1)
    assert all(a[i, nearest[i]] == 1 for i in range(12))
    with pytest.raises(ValueError, match="k must be"):
        knn_graph(x, k=12)


def test_mst_graph_is_a_spanning_tree_of_minimum_weight():
    torch.manual_seed(1)
    x = torch.randn(9, 5)
    a = mst_graph(x)
    assert torch.equal(a, a.T)
    assert int(a.sum().item()) // 2 == 8  # C - 1 edges
    # connected: (A + I)^(C-1) has no zero entry
    reach = torch.linalg.matrix_power(a + torch.eye(9), 8)
    assert (reach > 0).all()
    # a tree that contains the globally shortest edge (true for every MST)
    d = cosine_distances(x)
    d.fill_diagonal_(float("inf"))
    i, j = divmod(int(d.argmin()), 9)
    assert a[i, j] == 1
    assert torch.equal(build_graph(x, "mst"), a)
    assert build_graph(x, "none").sum() == 0


def test_gcn_shapes_and_two_hop_locality():
    torch.manual_seed(0)
    # path graph 0-1-2-3-4: node 0's output depends on nodes within 2 hops only
    a = torch.zeros(5, 5)
    for i in range(4):
        a[i, i + 1] = a[i + 1, i] = 1
    a_hat = normalize_adjacency(a)
    gcn = GCN(7, 11, 3).eval()
    x = torch.randn(5, 7)
    z = gcn(x, a_hat)
    assert z.shape == (5, 3)
    x2 = x.clone()
    x2[4] += 10.0  # 4 hops away from node 0
    z2 = gcn(x2, a_hat)
    assert torch.allclose(z[0], z2[0]) and torch.allclose(z[1], z2[1])
    assert not torch.allclose(z[2], z2[2])  # node 2 is 2 hops from node 4
    with pytest.raises(ValueError, match="adjacency shape"):
        gcn(x, torch.eye(4))
