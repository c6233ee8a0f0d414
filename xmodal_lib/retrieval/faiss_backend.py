"""Optional FAISS backend (extra ``[index]``: ``faiss-cpu``) for galleries too large for one matrix.

``IndexFlatIP`` (cosine / dot), ``IndexFlatL2`` (euclidean) and ``IndexBinaryFlat`` (Hamming) are
exact indexes, so on data without ties they return the same neighbours as the torch path in
:mod:`xmodal_lib.retrieval.search`; the order of exact ties may differ. Scores follow the torch
conventions (larger = better; minus the distance for euclidean).

Sharding (galleries larger than one index or one device): :class:`ShardedFaissIndex` splits the
gallery into S contiguous shards, searches each for its own top-k and merges the S·k candidates
exactly (:func:`merge_topk`: larger score first, equal scores by gallery index), so the result is
the unsharded top-k. :func:`sharded_topk` does the same with ``backend="torch"`` (chunked exact
search on the inputs' device, e.g. a GPU without faiss-gpu) or ``backend="faiss"``.
"""
from __future__ import annotations

import numpy as np
import torch

from xmodal_lib.retrieval.search import topk

__all__ = ["faiss_available", "FaissIndex", "faiss_topk", "faiss_hamming_topk", "merge_topk", "shard_bounds",
           "ShardedFaissIndex", "sharded_topk"]

_METRICS = ("cosine", "dot", "euclidean")


def faiss_available() -> bool:
    """True if ``import faiss`` works (install the ``[index]`` extra otherwise)."""
    try:
        import faiss  # lazy: optional dependency, ImportError handled; noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss  # lazy: optional dependency, ImportError handled
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


# ---------------------------------------------------------------------------------------------
# sharded search
# ---------------------------------------------------------------------------------------------
def merge_topk(scores: list[torch.Tensor], indices: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of per-shard candidate lists ``[Q, k_s]`` (global gallery indices), best first.

    Larger score first; equal scores ordered by gallery index (deterministic, shard-independent).
    """
    if not scores or len(scores) != len(indices):
        raise ValueError("merge_topk: one (scores, indices) pair per shard expected")
    s = torch.cat([x.float() for x in scores], dim=1)  # (Q, sum k_s)
    i = torch.cat([x.to(torch.int64) for x in indices], dim=1)
    io = torch.sort(i, dim=1).indices  # by index first ...
    s, i = s.gather(1, io), i.gather(1, io)
    so = torch.sort(s, dim=1, descending=True, stable=True).indices[:, : min(int(k), s.shape[1])]  # ... then by score
    return s.gather(1, so), i.gather(1, so)


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous, near-equal ``[start, end)`` row ranges covering ``n`` rows (empty ones dropped)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    edges = [round(j * n / shards) for j in range(shards + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class ShardedFaissIndex:
    """Exact search over a gallery held as several FAISS flat indexes (one per shard).

    ``ShardedFaissIndex(dim, metric).add(g, shards=4).search(q, k)``; shards can also be added one
    at a time with :meth:`add_shard` (e.g. streamed from disk). Results equal the unsharded top-k.
    """

    def __init__(self, dim: int, metric: str = "cosine") -> None:
        FaissIndex(dim, metric)  # validates dim / metric / faiss
        self.dim, self.metric = int(dim), metric
        self.shards: list[FaissIndex] = []
        self.offsets: list[int] = []

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def add_shard(self, g: torch.Tensor) -> "ShardedFaissIndex":
        """Append one shard; its rows get the next gallery indices."""
        if torch.as_tensor(g).shape[0] == 0:
            raise ValueError("add_shard: empty shard")
        self.offsets.append(len(self))
        self.shards.append(FaissIndex(self.dim, self.metric).add(g))
        return self

    def add(self, g: torch.Tensor, shards: int = 2) -> "ShardedFaissIndex":
        """Split ``g`` [G, D] into ``shards`` contiguous shards and add them."""
        g = torch.as_tensor(g)
        for a, b in shard_bounds(g.shape[0], shards):
            self.add_shard(g[a:b])
        return self

    def search(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores float32 [Q, k], indices int64 [Q, k])`` over all shards, best first."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not self.shards:
            raise ValueError("search: the index is empty")
        q = torch.as_tensor(q).detach().float().cpu()
        parts_s, parts_i = [], []
        for off, shard in zip(self.offsets, self.shards):
            s, i = shard.search(q, k)  # k clamped to the shard size
            parts_s.append(s)
            parts_i.append(i + off)
        return merge_topk(parts_s, parts_i, min(int(k), len(self)))


def sharded_topk(q: torch.Tensor, g: torch.Tensor, k: int, metric: str = "cosine", shards: int = 2,
                 backend: str = "faiss", chunk_size: int | None = None,
                 device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k with the gallery split into ``shards``; same result as unsharded search.

    ``backend="faiss"``: one flat FAISS index per shard (CPU). ``backend="torch"``:
    :func:`xmodal_lib.retrieval.search.topk` per shard on ``device`` (GPU-capable); only one
    shard's ``[chunk, G/S]`` score block exists at a time.
    """
    if backend == "faiss":
        return ShardedFaissIndex(torch.as_tensor(g).shape[1], metric).add(g, shards).search(q, k)
    if backend != "torch":
        raise ValueError(f"backend must be 'faiss' or 'torch', got {backend!r}")

    g = torch.as_tensor(g)
    if torch.as_tensor(q).ndim != 2 or g.ndim != 2:
        raise ValueError(f"q and g must be 2-D [N, D], got {tuple(torch.as_tensor(q).shape)} and {tuple(g.shape)}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    parts_s, parts_i = [], []
    for a, b in shard_bounds(g.shape[0], shards):
        s, i = topk(q, g[a:b], k, metric=metric, chunk_size=chunk_size, device=device)
        parts_s.append(s)
        parts_i.append(i + a)
    return merge_topk(parts_s, parts_i, min(int(k), g.shape[0]))
