"""How ranks are computed: 0-based rank of every relevant gallery item per query, exactly and fast.

Category metrics only need the positions of the relevant items in the ranked list.
rank = #items strictly better + #items with exactly the same score that the tie rule puts first.

* CPU default ("auto", float32/float64): each row is sorted on its own into a reused buffer
  (NumPy's SIMD sort) and the relevant scores, sorted, are binary-searched in it while it is
  still in cache; no sorted (q, G) copy is stored. Exact ties are detected from the neighbour
  in the sorted row and corrected explicitly by the tie rule for those few hits only.
* GPU / "torch" / "matrix": the whole chunk is sorted (torch.sort on GPU, NumPy on CPU for
  "matrix"), then the same binary search and tie correction in torch ops.
* Fallback ("composite"): full sort of unique int64 keys built from (score bits, tie bit,
  gallery index, relevance bit); used for heavily tied (quantised) scores and other dtypes.

Tie rules: "stable" (equal scores in gallery-index order), "pessimistic" (irrelevant first inside
a tie), "optimistic" (relevant first). Why not binary-search every *irrelevant* score into the
few sorted relevant ones (O(G log R))? Measured on the 2-core AVX2 box: ~50 ns per searched item
(np/torch.searchsorted) against ~5.5 ns per item for NumPy's sort of a 20k row, so on CPU the
row sort stays the floor.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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



#: how hits are ranked: "auto" (CPU float32/float64: per-row sort + binary search, see the module
#: docstring; GPU float32: the "torch" path; otherwise the composite-key sort), "matrix" (the
#: whole chunk sorted at once with NumPy, then torch binary search: the previous CPU default),
#: "torch" (same, always torch.sort: the GPU code path, testable on CPU), "composite" (always the
#: full composite-key sort), or "reference" (plain stable torch.sort of the scores; slow).
#: All give identical results; the tests cross-check them.
SORT_BACKEND = "auto"
_BLOCKS_PER_THREAD = 4  # row blocks per thread in row_parallel (dynamic load balancing)
_SORT_THREADS = [0]  # threads for the row sorts while torch itself runs single-threaded (0 = torch's)


def row_parallel(fn, n_rows: int, device: torch.device) -> list:
    """``[fn(a, b) for each row block]``, blocks run concurrently on CPU.

    With more than one torch thread on CPU, the rows are split into row blocks and the
    blocks run in Python threads while torch itself is single-threaded (torch ops release the
    GIL). On a shared 2-core machine this beats OpenMP regions on the many small per-hit ops,
    which stall whenever one of their threads is descheduled. Results come back in block order.
    The rows are cut into a few blocks per thread so a slowed thread hands work to the other.
    """
    n_thr = torch.get_num_threads()
    if device.type != "cpu" or n_thr <= 1 or n_rows < 2:
        return [fn(0, n_rows)]

    # a few blocks per thread, handed out as threads free up: on a shared machine a descheduled
    # thread then delays only its current small block, not half of the chunk
    bounds = np.linspace(0, n_rows, min(_BLOCKS_PER_THREAD * n_thr, n_rows) + 1).astype(int).tolist()
    torch.set_num_threads(1)
    _SORT_THREADS[0] = 1
    try:
        with ThreadPoolExecutor(min(n_thr, len(bounds) - 1)) as ex:
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

    bounds = np.linspace(0, arr.shape[0], n_thr + 1).astype(int)
    with ThreadPoolExecutor(n_thr) as ex:
        list(ex.map(lambda ab: arr[ab[0]:ab[1]].sort(axis=1), zip(bounds[:-1], bounds[1:])))
    return out


def _ranked_first(before, is_rel, ties: str):
    """Which items tied with a relevant hit rank ahead of it (torch or numpy booleans alike; the one
    rule of both counting paths): ``stable`` those earlier in the gallery, ``pessimistic`` every
    non-relevant tie plus the relevant ones earlier in the gallery, ``optimistic`` only the relevant
    ones earlier in the gallery."""
    if ties == "stable":
        return before
    if ties == "pessimistic":
        return before | ~is_rel
    return before & is_rel


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


def _tied_first(s: torch.Tensor, ql: torch.Tensor, lab: LabelIndex, tr: torch.Tensor, tc: torch.Tensor,
                tv: torch.Tensor, ties: str, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For tied hits (row ``tr``, col ``tc``, score ``tv``): (#other items with exactly that score,
    #of those the tie rule puts first). Blocks of ``block`` hits keep the (T, G) mask chunk-sized."""
    n_eq = torch.zeros(tr.numel(), dtype=torch.int64, device=s.device)
    n_first = torch.zeros_like(n_eq)
    for a in range(0, tr.numel(), block):
        br, bc, bv = tr[a:a + block], tc[a:a + block], tv[a:a + block]
        ti, gc = (s[br] == bv[:, None]).nonzero(as_tuple=True)  # items tied with each tied hit
        other = gc != bc[ti]
        ti, gc = ti[other], gc[other]
        is_rel = lab.gl[gc] == ql[br[ti]]
        before = gc < bc[ti]
        first = _ranked_first(before, is_rel, ties)
        n_eq[a:a + block].index_add_(0, ti, torch.ones_like(ti))
        n_first[a:a + block].index_add_(0, ti, first.to(torch.int64))
    return n_eq, n_first


def _hits_by_counting(s: torch.Tensor, ql: torch.Tensor, lab: LabelIndex, largest: bool,
                      ties: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(row, rank) of every relevant item from counts, without ranking the irrelevant ones.

    The torch / "matrix" path: sort the whole chunk (q, G), then rank = #items strictly better
    (binary search in the sorted scores) + #items tied with it that the tie rule puts first
    (counted explicitly for the few tied hits). None if too many ties.
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
        n_eq, n_first = _tied_first(s, ql, lab, row[t], col[t], v[t], ties, max(64, q_n))
        lo_t = lo[t]
        # rank so far assumed no tie: fix it to (#strictly better) + (#tied placed first)
        rank[t] = ((g_n - 1 - lo_t - n_eq) if largest else lo_t) + n_first
    dense = torch.full((q_n, rmax), g_n, dtype=rank.dtype, device=s.device)  # (q, R_max)
    dense[row, pos] = rank
    dense = torch.sort(dense, dim=1).values
    return row, dense[torch.arange(rmax, device=s.device)[None, :] < big_r[:, None]]


def _argsort_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise argsort of a small (q, R) float matrix; for float32 one int64 sort of
    (order-preserving score bits, column) keys, several times faster than ``np.argsort``."""
    if x.dtype != np.float32 or x.shape[1] >= (1 << 31):
        return np.argsort(x, axis=1)
    i = (x + np.float32(0.0)).view(np.int32)  # + 0.0 maps -0.0 to +0.0
    m = np.where(i < 0, i ^ np.int32(0x7FFFFFFF), i).astype(np.int64)  # (q, R) ordered like x
    m <<= 32
    m |= np.arange(x.shape[1], dtype=np.int64)[None, :]
    m.sort(axis=1)
    return m & np.int64(0xFFFFFFFF)


def _tied_first_np(a: np.ndarray, ql: np.ndarray, gl: np.ndarray, tr: np.ndarray, tc: np.ndarray,
                   tv: np.ndarray, ties: str, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`_tied_first` (CPU path): (#other items with the tied hit's exact score,
    #of those the tie rule puts first) for hits at rows ``tr``, cols ``tc`` with scores ``tv``."""
    n_eq = np.zeros(tr.size, dtype=np.int64)
    n_first = np.zeros(tr.size, dtype=np.int64)
    for b in range(0, tr.size, block):  # blocks keep the (T, G) mask small
        br, bc, bv = tr[b:b + block], tc[b:b + block], tv[b:b + block]
        ti, gc = np.nonzero(a[br] == bv[:, None])  # items tied with each tied hit
        other = gc != bc[ti]
        ti, gc = ti[other], gc[other]
        is_rel = gl[gc] == ql[br[ti]]
        before = gc < bc[ti]
        first = _ranked_first(before, is_rel, ties)
        n_eq[b:b + block] = np.bincount(ti, minlength=br.size)
        n_first[b:b + block] = np.bincount(ti[first], minlength=br.size)
    return n_eq, n_first


def _row_search(a: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per row i: ``lo[i, j]`` = #items of ``a[i]`` < ``keys[i, j]`` and ``nxt[i, j]`` = the next
    sorted value after position ``lo`` (== the key iff another item has exactly that score, for a
    key taken from the row); and whether any row holds a NaN. One row at a time: sorted into a
    reused buffer and searched while it is still in cache (no sorted (q, G) copy is stored)."""
    q_n, g_n = a.shape
    lo = np.empty(keys.shape, dtype=np.int64)  # (q, R_max)
    nxt = np.empty(keys.shape, dtype=a.dtype)  # (q, R_max)
    buf = np.empty(g_n + 1, dtype=a.dtype)
    buf[g_n] = np.nan  # sentinel after the row: equal to nothing
    row_buf = buf[:g_n]
    last = np.empty(q_n, dtype=a.dtype)  # each row's maximum (NaN sorts last)
    for i in range(q_n):
        np.copyto(row_buf, a[i])
        row_buf.sort()
        j = row_buf.searchsorted(keys[i], "left")
        lo[i] = j
        nxt[i] = buf.take(j + 1, mode="clip")  # padding keys may give j = G
        last[i] = row_buf[-1]
    return lo, nxt, bool(np.isnan(last).any())


def _hits_by_row_search(s: torch.Tensor, ql: torch.Tensor, lab: LabelIndex, largest: bool,
                        ties: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(row, rank) of every relevant item, CPU default: per-row sort + binary search in cache.

    rank = #items strictly better (one binary search of the item's own score in its sorted row) +
    #items with exactly its score that the tie rule puts first (counted explicitly, only for
    the few hits whose score occurs more than once in the row). None if too many ties.
    """
    q_n, g_n = s.shape
    row, col, pos, big_r = lab.relevant(ql)  # gallery order, grouped by row
    a = s.contiguous().numpy()
    if row.numel() == 0:
        if np.isnan(a.max(axis=1)).any():  # max propagates NaN
            raise ValueError("scores contains NaN; retrieval metrics need a total order")
        return row, col
    rmax = int(big_r.max())
    rown, coln, posn = row.numpy(), col.numpy(), pos.numpy()
    v = a.reshape(-1).take(rown * g_n + coln)  # (nnz,) scores of the relevant items
    keys = np.full((q_n, rmax), np.inf, dtype=a.dtype)  # (q, R_max) padded (+inf keeps rows sorted)
    keys[rown, posn] = v
    cols = np.zeros((q_n, rmax), dtype=np.int64)  # (q, R_max) gallery index of each key
    cols[rown, posn] = coln
    valid = np.arange(rmax)[None, :] < big_r.numpy()[:, None]  # (q, R_max) real keys
    # keys ascending per row make the binary searches ~2x faster (neighbouring paths stay cached)
    order = _argsort_rows(keys)
    keys = np.take_along_axis(keys, order, 1)
    valid = np.take_along_axis(valid, order, 1)
    lo, nxt, has_nan = _row_search(a, keys)
    if has_nan:
        raise ValueError("scores contains NaN; retrieval metrics need a total order")
    rank = np.subtract(g_n - 1, lo, out=lo) if largest else lo  # (q, R_max) items strictly better, if no tie
    tied = valid & (nxt == keys)  # another item has exactly this score
    del nxt
    if tied.any():
        tr, tp = np.nonzero(tied)
        if tr.size > 16 * max(64, q_n):  # heavy ties (quantised scores): the full sort is cheaper
            return None
        tc = cols[tr, order[tr, tp]]  # gallery index of each tied hit (cols is in unsorted order)
        n_eq, n_first = _tied_first_np(a, ql.numpy(), lab.gl.numpy(), tr, tc, keys[tr, tp], ties)
        # rank so far assumed no tie: fix it to (#strictly better) + (#tied placed first)
        rank[tr, tp] += n_first - (n_eq if largest else 0)
    rank[~valid] = g_n
    rank.sort(axis=1)
    return row, torch.from_numpy(rank[valid])


def ranked_hits(s: torch.Tensor, ql: torch.Tensor, lab: LabelIndex, largest: bool,
                 ties: str) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks of all relevant gallery items per query: (row [nnz], rank [nnz]), grouped by row,
    ranks ascending; the ranking follows ``largest`` and the tie rule ``ties``."""
    s = sort_dtype(s)
    if SORT_BACKEND == "auto" and s.device.type == "cpu" and s.dtype in (torch.float32, torch.float64):
        out = _hits_by_row_search(s, ql, lab, largest, ties)
        if out is not None:
            return out
    elif SORT_BACKEND in ("auto", "torch", "matrix") and s.dtype == torch.float32:
        out = _hits_by_counting(s, ql, lab, largest, ties)
        if out is not None:
            return out
    check_finite(s)
    rel0 = lab.gl[None, :] == ql[:, None]  # (q, G) in gallery order
    return _hits_by_sort(s, rel0, largest, ties)
