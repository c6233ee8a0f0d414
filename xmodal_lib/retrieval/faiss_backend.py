"""Optional FAISS backend (extra ``[index]``: ``faiss-cpu``) for galleries too large for one matrix.

``IndexFlatIP`` (cosine / dot), ``IndexFlatL2`` (euclidean) and ``IndexBinaryFlat`` (Hamming) are
exact indexes, so on data without ties they return the same neighbours as the torch path in
:mod:`xmodal_lib.retrieval.search`; the order of exact ties may differ. Scores follow the torch
conventions (larger = better; minus the distance for euclidean).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["faiss_available", "FaissIndex", "faiss_topk", "faiss_hamming_topk"]

_METRICS = ("cosine", "dot", "euclidean")


def faiss_available() -> bool:
    """True if ``import faiss`` works (install the ``[index]`` extra otherwise)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the FAISS backend needs faiss-cpu: pip install 'xmodal[index]'") from e
    return faiss


def _np32(x: torch.Tensor, metric: str) -> np.ndarray:
    x = torch.as_tensor(x).detach().float().cpu()
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [N, D], got shape {tuple(x.shape)}")
    if metric == "cosine":
        x = torch.nn.functional.normalize(x, dim=-1)
    return np.ascontiguousarray(x.numpy())


class FaissIndex:
    """Exact FAISS index over gallery embeddings: ``FaissIndex(dim, metric).add(g).search(q, k)``."""

    def __init__(self, dim: int, metric: str = "cosine") -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        faiss = _faiss()
        self.dim, self.metric = int(dim), metric
        self.index = faiss.IndexFlatL2(self.dim) if metric == "euclidean" else faiss.IndexFlatIP(self.dim)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, g: torch.Tensor) -> "FaissIndex":
        x = _np32(g, self.metric)
        if x.shape[1] != self.dim:
            raise ValueError(f"gallery dim {x.shape[1]} does not match index dim {self.dim}")
        self.index.add(x)
        return self

    def search(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores float32 [Q, k], indices int64 [Q, k])``, best first; k is clamped to the gallery size."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        x = _np32(q, self.metric)
        d, i = self.index.search(x, min(int(k), len(self)))
        s = torch.from_numpy(d)
        if self.metric == "euclidean":
            s = -torch.sqrt(torch.clamp(s, min=0))  # IndexFlatL2 returns squared distances
        return s, torch.from_numpy(i).to(torch.int64)


def faiss_topk(q: torch.Tensor, g: torch.Tensor, k: int, metric: str = "cosine") -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k via FAISS, same conventions as :func:`xmodal_lib.retrieval.search.topk`."""
    g = torch.as_tensor(g)
    return FaissIndex(g.shape[1], metric).add(g).search(q, k)


def faiss_hamming_topk(q_packed: torch.Tensor, g_packed: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hamming top-k with ``IndexBinaryFlat`` on codes from :func:`pack_bits`: ``(distances int32, indices int64)``."""
    faiss = _faiss()
    for name, t in (("q_packed", q_packed), ("g_packed", g_packed)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 2:
            raise ValueError(f"{name} must be a uint8 [N, B] tensor from pack_bits")
    if q_packed.shape[1] != g_packed.shape[1]:
        raise ValueError(f"code lengths differ: {q_packed.shape[1]} vs {g_packed.shape[1]} bytes")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    index = faiss.IndexBinaryFlat(8 * g_packed.shape[1])
    index.add(np.ascontiguousarray(g_packed.cpu().numpy()))
    d, i = index.search(np.ascontiguousarray(q_packed.cpu().numpy()), min(int(k), g_packed.shape[0]))
    return torch.from_numpy(d).to(torch.int32), torch.from_numpy(i).to(torch.int64)
