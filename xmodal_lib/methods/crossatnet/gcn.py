"""Class graph and a 2-layer graph convolutional network (Kipf & Welling) for CrossATNet.

CrossATNet "propagates the semantic class topology to the shared space" with a graph CNN. The
abstract leaves the graph open; our reading:

* nodes = the SEEN classes only (zero-shot protocol), node features = class-name embeddings
  (:mod:`xmodal_lib.methods.crossatnet.semantics`);
* edges from cosine distances between node features, either the symmetric k-nearest-neighbour
  graph (``"knn"``, an edge when either node is among the other's k nearest) or the minimum
  spanning tree (``"mst"``, as in the first author's earlier code, which built an MST over
  word2vec distances); unweighted (0/1) edges;
* propagation matrix ``A_hat = D^-1/2 (A + I) D^-1/2`` with ``D`` the degree of ``A + I``;
* ``Z = A_hat relu(A_hat X W1) W2``: a 2-layer GCN mapping node features into the shared space.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.csgraph import minimum_spanning_tree
from torch import Tensor, nn


def cosine_distances(x: Tensor) -> Tensor:
    """Pairwise cosine distance ``1 - cos`` of the rows of ``x`` [C, d] -> [C, C]."""
    if x.ndim != 2:
        raise ValueError(f"cosine_distances: expected a [C, d] matrix, got shape {tuple(x.shape)}")
    xn = torch.nn.functional.normalize(x.double(), dim=1)
    d = (1.0 - xn @ xn.T).clamp_min(0.0)
    d.fill_diagonal_(0.0)
    return d.to(x.dtype)


def knn_graph(x: Tensor, k: int = 5) -> Tensor:
    """Symmetric unweighted kNN adjacency [C, C] (no self-loops) from cosine distances of ``x``."""
    c = x.shape[0]
    if not 1 <= k < c:
        raise ValueError(f"knn_graph: k must be in [1, {c - 1}] for {c} classes, got k={k}")
    d = cosine_distances(x).double()
    d.fill_diagonal_(float("inf"))
    # stable ordering: ties broken by class index
    nn_idx = torch.argsort(d, dim=1, stable=True)[:, :k]  # (C, k)
    a = torch.zeros(c, c, dtype=torch.float32)
    a.scatter_(1, nn_idx, 1.0)
    return torch.maximum(a, a.T)


def mst_graph(x: Tensor) -> Tensor:
    """Unweighted adjacency [C, C] of the minimum spanning tree of cosine distances (scipy)."""
    c = x.shape[0]
    if c < 2:
        raise ValueError(f"mst_graph: need at least 2 classes, got {c}")
    d = cosine_distances(x).double().numpy()
    # scipy treats 0 as "no edge": lift every off-diagonal distance by a tiny constant so
    # identical embeddings stay connected.
    d = d + 1e-9
    np.fill_diagonal(d, 0.0)
    tree = minimum_spanning_tree(d).toarray() > 0
    a = torch.from_numpy((tree | tree.T).astype(np.float32))
    return a


def build_graph(x: Tensor, kind: str = "knn", k: int = 5) -> Tensor:
    """Adjacency [C, C] of ``kind`` in {"knn", "mst", "none"} ("none": no edges, identity after
    normalisation, i.e. the GCN degenerates to an MLP on the node features)."""
    if kind == "knn":
        return knn_graph(x, k=min(k, x.shape[0] - 1))
    if kind == "mst":
        return mst_graph(x)
    if kind == "none":
        return torch.zeros(x.shape[0], x.shape[0])
    raise ValueError(f"build_graph: kind must be 'knn', 'mst' or 'none', got {kind!r}")


def normalize_adjacency(a: Tensor) -> Tensor:
    """``D^-1/2 (A + I) D^-1/2`` with ``D = diag(rowsum(A + I))`` for a symmetric [C, C] ``A``."""
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"normalize_adjacency: expected a square matrix, got shape {tuple(a.shape)}")
    if not torch.allclose(a, a.T):
        raise ValueError("normalize_adjacency: adjacency must be symmetric")
    a_tilde = a + torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    d_inv_sqrt = a_tilde.sum(dim=1).pow(-0.5)  # (C,)
    return d_inv_sqrt[:, None] * a_tilde * d_inv_sqrt[None, :]


class GCN(nn.Module):
    """Two graph-convolution layers ``A_hat relu(A_hat X W1) W2`` (dropout between them)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.w1 = nn.Linear(in_dim, hidden_dim)
        self.w2 = nn.Linear(hidden_dim, out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, a_hat: Tensor) -> Tensor:
        """Node features ``x`` [C, in_dim] and normalised adjacency [C, C] -> [C, out_dim]."""
        if a_hat.shape != (x.shape[0], x.shape[0]):
            raise ValueError(
                f"GCN: adjacency shape {tuple(a_hat.shape)} does not match {x.shape[0]} nodes"
            )
        h = torch.relu(a_hat @ self.w1(x))  # (C, hidden)
        h = self.dropout(h)
        return a_hat @ self.w2(h)  # (C, out)
