"""How ranks are computed: 0-based rank of every relevant gallery item per query, exactly and fast.

Category metrics only need the positions of the relevant items in the ranked list. The default
("auto") path sorts each score row once (NumPy's SIMD sort on CPU, torch on GPU), finds each
relevant item's rank by binary search (= number of items strictly better) and corrects the few
exact ties explicitly by the tie rule, so the irrelevant items are never ranked individually.
The fallback ("composite") path fully sorts unique int64 keys built from (score bits, tie bit,
gallery index, relevance bit). Tie rules: "stable" (equal scores in gallery-index order),
"pessimistic" (irrelevant first inside a tie), "optimistic" (relevant first).
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["SORT_BACKEND", "TIES", "LabelIndex", "ranked_hits", "row_parallel", "check_finite", "sort_dtype"]

TIES = ("stable", "pessimistic", "optimistic")


def sort_dtype(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 and int64 -> float64 (both exact for the ranking); int8/16/32,
    uint8, float32 and float64 unchanged (small ints rank exactly through the composite keys)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    if x.dtype == torch.int64:
        return x.to(torch.float64)  # exact below 2**53
    if x.dtype == torch.bool:
        return x.to(torch.int32)
    return x


def check_finite(chunk: torch.Tensor, name: str = "scores") -> None:
    if chunk.is_floating_point() and torch.isnan(chunk).any():
        raise ValueError(f"{name} contains NaN; retrieval metrics need a total order")



#: how hits are ranked: "auto" (count-based ranks of the relevant items on float32 scores, falling
#: back to the composite-key sort otherwise; NumPy's SIMD sort on CPU, torch.sort elsewhere),
#: "torch" (same, always torch.sort: the GPU code path, testable on CPU), "composite" (always the
#: full composite-key sort), or "reference" (plain stable torch.sort of the scores; slow).
#: All give identical results; the tests cross-check them.
SORT_BACKEND = "auto"
_SORT_THREADS = [0]  # threads for the row sorts while torch itself runs single-threaded (0 = torch's)


def row_parallel(fn, n_rows: int, device: torch.device) -> list:
    """``[fn(a, b) for each row block]``, blocks run concurrently on CPU.

    With more than one torch thread on CPU, the rows are split into one block per thread and the
    blocks run in Python threads while torch itself is single-threaded (torch ops release the
    GIL). On a shared 2-core machine this beats OpenMP regions on the many small per-hit ops,
    which stall whenever one of their threads is descheduled. Results come back in block order.
    """
    n_thr = torch.get_num_threads()
    if device.type != "cpu" or n_thr <= 1 or n_rows < 2:
        return [fn(0, n_rows)]
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, n_rows, min(n_thr, n_rows) + 1).astype(int).tolist()
    torch.set_num_threads(1)
    _SORT_THREADS[0] = 1
    try:
        with ThreadPoolExecutor(len(bounds) - 1) as ex:
            return list(ex.map(lambda ab: fn(*ab), zip(bounds[:-1], bounds[1:])))
    finally:
        torch.set_num_threads(n_thr)
        _SORT_THREADS[0] = 0


_MAX_COMPOSITE_G = 1 << 30


def _composite_key(s: torch.Tensor, rel0: torch.Tensor, largest: bool, ties: str) -> torch.Tensor | None:
    """Unique int64 sort keys [q, G]: (score rank bits, tie bit, gallery index, relevance bit).

    Ascending key order == ranking order: best score first, then the tie rule (irrelevant first
    for "pessimistic", relevant first for "optimistic"), then gallery index; bit 0 carries the
    relevance so no gather is needed after sorting. None if the dtype/size does not fit 32+32 bits.
    """
    g_n = s.shape[1]
    if g_n >= _MAX_COMPOSITE_G:
        return None
    if s.dtype == torch.float32:
        i = (s + 0.0).view(torch.int32)  # + 0.0 maps -0.0 to +0.0 (equal floats -> equal keys)
        m = torch.where(i < 0, i ^ 0x7FFFFFFF, i)  # int32 ordered like the floats
    elif s.dtype in (torch.int32, torch.int16, torch.int8, torch.uint8):
        m = s.to(torch.int32)
    else:
        return None
    hi = torch.bitwise_not(m) if largest else m  # ascending hi == best first
    key = hi.to(torch.int64) * (1 << 32)  # (q, G)
    key += (torch.arange(g_n, device=s.device, dtype=torch.int64) * 2)[None, :]
    key += rel0
    if ties == "pessimistic":
        key += rel0.to(torch.int64) * (1 << 31)
    elif ties == "optimistic":
        key += (~rel0).to(torch.int64) * (1 << 31)
    return key


def _sort_rows_inplace(key: torch.Tensor) -> torch.Tensor:
    """Sort each row of an int64 [q, G] tensor ascending (keys are unique, stability irrelevant)."""
    if key.device.type != "cpu" or SORT_BACKEND == "torch":
        return torch.sort(key, dim=1).values
    arr = key.numpy()  # shares memory; NumPy's sort is SIMD-accelerated and releases the GIL
    n_thr = max(1, min(_SORT_THREADS[0] or torch.get_num_threads(), arr.shape[0]))
    if n_thr == 1:
        arr.sort(axis=1)
        return key
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, arr.shape[0], n_thr + 1).astype(int)
    with ThreadPoolExecutor(n_thr) as ex:
        list(ex.map(lambda ab: arr[ab[0]:ab[1]].sort(axis=1), zip(bounds[:-1], bounds[1:])))
    return key


def _hits_by_sort(s: torch.Tensor, rel0: torch.Tensor, largest: bool, ties: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, rank) of every relevant item via a full sort of the chunk, grouped by row, rank ascending."""
    key = None if SORT_BACKEND == "reference" else _composite_key(s, rel0, largest, ties)
    if key is not None:
        rel = (_sort_rows_inplace(key) & 1).bool()
    elif ties == "stable":  # generic path (float64 / int64 scores, huge galleries)
        rel = rel0.gather(1, torch.sort(s, dim=1, descending=largest, stable=True).indices)  # (q, G)
    else:
        pre = torch.sort(rel0.to(torch.uint8), dim=1, descending=(ties == "optimistic"), stable=True).indices
        order = torch.sort(s.gather(1, pre), dim=1, descending=largest, stable=True).indices
        rel = rel0.gather(1, pre.gather(1, order))
    row, col = rel.nonzero(as_tuple=True)
    return row, col


def _sorted_values(s: torch.Tensor) -> torch.Tensor:
    """Each row of ``s`` sorted ascending (a new tensor); NumPy's SIMD sort on CPU, row blocks in threads."""
    if s.device.type != "cpu" or SORT_BACKEND == "torch":
        return torch.sort(s, dim=1).values
    n_thr = max(1, min(_SORT_THREADS[0] or torch.get_num_threads(), s.shape[0]))
    if n_thr == 1:
        return torch.from_numpy(np.sort(s.numpy(), axis=1))  # NumPy's copy is faster than clone()
    out = s.clone()
    arr = out.numpy()
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, arr.shape[0], n_thr + 1).astype(int)
    with ThreadPoolExecutor(n_thr) as ex:
        list(ex.map(lambda ab: arr[ab[0]:ab[1]].sort(axis=1), zip(bounds[:-1], bounds[1:])))
    return out


class LabelIndex:
    """Gallery items grouped by label (CSR): the relevant items of a query without a [q, G] mask."""

    def __init__(self, gl: torch.Tensor) -> None:
        self.gl = gl
        self.order = torch.argsort(gl, stable=True)  # gallery indices grouped by label, ascending
        self.uniq, self.counts = torch.unique_consecutive(gl[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def relevant(self, ql: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row, col, pos, R): every relevant (query row, gallery col) pair, grouped by row, col
        ascending; ``pos`` = 0-based position inside the row; ``R`` [q] = relevant items per query."""
        u = torch.searchsorted(self.uniq, ql).clamp(max=self.uniq.numel() - 1)
        found = self.uniq[u] == ql
        big_r = torch.where(found, self.counts[u], 0)  # (q,)
        row = torch.repeat_interleave(torch.arange(ql.numel(), device=ql.device), big_r)  # (nnz,)
        pos = torch.arange(row.numel(), device=ql.device) - (torch.cumsum(big_r, 0) - big_r)[row]
        col = self.order[self.starts[u][row] + pos]
        return row, col, pos, big_r


def _hits_by_counting(s: torch.Tensor, ql: torch.Tensor, lab: LabelIndex, largest: bool,
                      ties: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(row, rank) of every relevant item from counts, without ranking the irrelevant ones.

    rank = #items strictly better (binary search in the sorted scores) + #items tied with it that
    the tie rule puts first (counted explicitly for the few tied hits). None if too many ties.
    """
    q_n, g_n = s.shape
    s = s.contiguous()
    row, col, pos, big_r = lab.relevant(ql)  # gallery order, grouped by row
    srt = _sorted_values(s)  # (q, G) ascending; NaN would sort last
    if bool(torch.isnan(srt[:, -1]).any()):
        raise ValueError("scores contains NaN; retrieval metrics need a total order")
    if row.numel() == 0:
        return row, col
    rmax = int(big_r.max())
    v = s.view(-1)[row * g_n + col]  # (nnz,) scores of the relevant items
    vals = torch.zeros(q_n, rmax, dtype=s.dtype, device=s.device)  # (q, R_max) padded
    vals[row, pos] = v
    lo = torch.searchsorted(srt, vals, right=False)  # (q, R_max) items strictly smaller
    flat = row * rmax + pos
    lo = lo.view(-1)[flat]  # (nnz,)
    # the item itself sits at srt[lo]; another item has exactly this score iff srt[lo + 1] == v
    nxt = srt.view(-1)[(row * g_n + (lo + 1).clamp(max=g_n - 1))]
    tied = (nxt == v) & (lo + 1 < g_n)
    del srt, vals
    rank = (g_n - 1 - lo) if largest else lo  # items strictly better, if no tie
    if bool(tied.any()):
        t = tied.nonzero(as_tuple=True)[0]
        if t.numel() > 16 * max(64, q_n):  # heavy ties (quantised scores): the full sort is cheaper
            return None
        for a in range(0, t.numel(), max(64, q_n)):  # blocks keep the (T, G) mask chunk-sized
            tb = t[a:a + max(64, q_n)]
            tr, tc = row[tb], col[tb]
            ti, gc = (s[tr] == v[tb, None]).nonzero(as_tuple=True)  # items tied with each tied hit
            other = gc != tc[ti]
            ti, gc = ti[other], gc[other]
            is_rel = lab.gl[gc] == ql[tr[ti]]
            before = gc < tc[ti]
            if ties == "stable":
                first = before
            elif ties == "pessimistic":
                first = before | ~is_rel
            else:
                first = before & is_rel
            # rank so far assumed no tie: fix it to (#strictly better) + (#tied placed first)
            n_eq = torch.zeros(tb.numel(), dtype=torch.int64, device=s.device).index_add_(
                0, ti, torch.ones_like(ti))
            n_first = torch.zeros(tb.numel(), dtype=torch.int64, device=s.device).index_add_(
                0, ti, first.to(torch.int64))
            lo_t = lo[tb]
            strictly = (g_n - 1 - lo_t - n_eq) if largest else lo_t
            rank[tb] = strictly + n_first
    dense = torch.full((q_n, rmax), g_n, dtype=rank.dtype, device=s.device)  # (q, R_max)
    dense[row, pos] = rank
    dense = torch.sort(dense, dim=1).values
    return row, dense[torch.arange(rmax, device=s.device)[None, :] < big_r[:, None]]


def ranked_hits(s: torch.Tensor, ql: torch.Tensor, lab: LabelIndex, largest: bool,
                 ties: str) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks of all relevant gallery items per query: (row [nnz], rank [nnz]), grouped by row,
    ranks ascending; the ranking follows ``largest`` and the tie rule ``ties``."""
    s = sort_dtype(s)
    if SORT_BACKEND in ("auto", "torch") and s.dtype == torch.float32:
        out = _hits_by_counting(s, ql, lab, largest, ties)
        if out is not None:
            return out
    check_finite(s)
    rel0 = lab.gl[None, :] == ql[:, None]  # (q, G) in gallery order
    return _hits_by_sort(s, rel0, largest, ties)
