"""Fine-grained (instance-level) retrieval metrics: the rank of each query's true item and acc@K.

Rank rule: the number of gallery items scoring *at least as well* as the true item (ties count
against the query, rank >= 1); ``acc@K`` = share of queries with rank <= K.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from xmodal_lib.retrieval.ranking import check_finite, row_parallel
from xmodal_lib.retrieval.scores import check_scores as _check_scores
from xmodal_lib.retrieval.scores import chunk_rows as _chunk_rows

__all__ = ["fg_ranks", "fg_accuracy"]


def _median(x: torch.Tensor) -> float:
    """Median as numpy computes it (mean of the two middle values for even n)."""
    v = torch.sort(x.to(torch.float64)).values
    n = v.numel()
    return float(v[n // 2]) if n % 2 else float((v[n // 2 - 1] + v[n // 2]) / 2)



def fg_ranks(scores: torch.Tensor, true_index, largest: bool = True,
             chunk_size: int | None = None) -> torch.Tensor:
    """Rank of each query's true gallery item: #items scoring at least as well (ties count against).

    ``scores`` [Q, G]; ``true_index`` [Q] gallery index of each query's true item (several queries
    may share one item). Returns int64 [Q] with values in 1..G.
    """
    scores = _check_scores(scores)
    q_n, g_n = scores.shape
    t = torch.as_tensor(true_index, dtype=torch.int64, device=scores.device).reshape(-1)
    if t.numel() != q_n:
        raise ValueError(f"true_index has {t.numel()} entries, expected one per query ({q_n})")
    if q_n and (int(t.min()) < 0 or int(t.max()) >= g_n):
        raise ValueError(f"true_index must lie in [0, {g_n}), got range [{int(t.min())}, {int(t.max())}]")
    rows = _chunk_rows(g_n, chunk_size)
    out = torch.empty(q_n, dtype=torch.int64, device=scores.device)
    def block(a: int, b: int) -> None:
        s = scores[a:b]  # (q, G)
        true_s = s.gather(1, t[a:b, None])  # (q, 1)
        if s.device.type == "cpu" and s.dtype in (torch.float32, torch.float64, torch.float16, torch.int32):
            x, xt = s.numpy(), true_s.numpy()  # NumPy's SIMD compare + count is ~10x torch's bool sum
            if x.dtype.kind == "f" and np.isnan(x.max(axis=1)).any():  # max propagates NaN; ~10x torch.isnan
                raise ValueError("scores contains NaN; retrieval metrics need a total order")
            better = (x >= xt) if largest else (x <= xt)  # (q, G) bool
            out[a:b] = torch.from_numpy(better.view(np.uint8).sum(axis=1, dtype=np.int64))
            return
        check_finite(s)
        better = (s >= true_s) if largest else (s <= true_s)
        out[a:b] = better.sum(1)

    for a in range(0, q_n, rows):
        n = min(rows, q_n - a)
        row_parallel(lambda i, j: block(a + i, a + j), n, scores.device)
    return out


def fg_accuracy(scores: torch.Tensor, true_index, ks: Sequence[int] = (1, 5, 10), largest: bool = True,
                chunk_size: int | None = None) -> dict[str, float]:
    """Fine-grained acc@K (fraction in [0, 1]), mean and median rank over all queries.

    Every query is ranked against the whole gallery; see :func:`fg_ranks` for the rank rule.
    Returns ``{"acc@1": .., "acc@5": .., "acc@10": .., "mean_rank": .., "median_rank": .., "n_queries": Q}``.
    """
    ks = tuple(int(k) for k in ks)
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    r = fg_ranks(scores, true_index, largest=largest, chunk_size=chunk_size)
    out: dict[str, float] = {f"acc@{k}": float((r <= k).double().mean()) for k in ks}
    out["mean_rank"] = float(r.double().mean())
    out["median_rank"] = _median(r)
    out["n_queries"] = int(r.numel())
    return out
