"""Retrieval metrics over a query x gallery score (or distance) matrix: one engine for every notebook.

Conventions (methods_spec.md §1.8, §3.9, §4):

* ``largest=True``: the matrix holds similarities (higher = better); ``largest=False``: distances.
* Fine-grained (:func:`fg_accuracy`): rank = number of gallery items scoring *at least as well*
  as the true item (ties count against the query, rank >= 1); ``acc@K`` = share of queries with
  rank <= K.
* Category-level (:func:`category_metrics`), relevant = same label, ``R`` = relevant items in the
  gallery, ``L = min(K, G)``:

  ``map_all_voc``    SAKE / ZSE-SBIR ``VOCap``: precision made non-increasing from the right,
                     summed over recall steps (>= plain AP).
  ``map_all``        plain non-interpolated AP (== ``sklearn.metrics.average_precision_score``
                     when there are no ties).
  ``map@K_voc``      SAKE / ZSE-SBIR mAP@200: VOC interpolation inside the top L, divided by
                     ``min(K, R)`` (the "strict" SAKE variant, interpolated).
  ``map@K_strict``   non-interpolated, sum of precision at relevant hits in the top L / ``min(K, R)``.
  ``map@K_lenient``  non-interpolated, same sum / relevant items found in the top L
                     (Doodle2Search style; 0 when none is found).
  ``p@K``            relevant items in the top L / L (SAKE ``prec``).
  ``p@K_minr``       relevant items in the top ``min(K, R)`` / ``min(K, R)`` (ZSE-SBIR ``Prec@K``).

* Ties (category metrics): ``ties="stable"`` (default) orders equal scores by gallery index, a
  stable sort -- deterministic, unlike the official unstable ``argsort``.  ``"pessimistic"`` puts
  irrelevant items first within a tie, ``"optimistic"`` relevant ones first (bounds for ties).
* Queries with no relevant gallery item get NaN for every category metric and are excluded from
  the mean (``nanmean``, as the official code does); ``n_valid`` counts the queries that remain.
* Which paper table uses which name (the paper profile's presets use these):

  ====================================  =====================================================
  official name (ZSE-SBIR / SAKE)       project metric
  ====================================  =====================================================
  mAP@all (TU-Berlin, Sketchy-25, QD)   ``map_all_voc``
  mAP@200 (Sketchy-21, ``zeroshot0``)   ``map@200_voc`` (not ``map@200_strict``: not interpolated)
  P@100 / P@200                         ``p@K_minr``; equal to ``p@K`` on these splits (every
                                        unseen class has >= 261 gallery photos)
  Doodle2Search-style mAP@200           ``map@200_lenient``
  XModalViT acc@1 / acc@10              :func:`fg_accuracy` ``acc@1`` / ``acc@10``
  ====================================  =====================================================

* Hamming / integer scores: use :func:`xmodal_lib.retrieval.ties.tie_robust_metrics` (mean over
  random tie orders with optimistic / pessimistic bounds); a stable sort favours the gallery order.
* Runs on the device of ``scores`` (torch; on CPU the row sorts use NumPy's SIMD sort), chunked
  over queries so memory is bounded by ``chunk_size x G``; precision sums are float64. How ranks
  are found without ranking every gallery item: :mod:`xmodal_lib.retrieval.ranking`.
* float16 / bfloat16 scores are ranked as float32 (exact); int64 as float64.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from xmodal_lib.retrieval.fg_metrics import fg_accuracy, fg_ranks  # noqa: F401  (re-exported: one import for every metric)
from xmodal_lib.retrieval.ranking import TIES as _TIES
from xmodal_lib.retrieval.ranking import LabelIndex, ranked_hits, row_parallel
from xmodal_lib.retrieval.scores import DEFAULT_CHUNK_ELEMENTS, encode_labels
from xmodal_lib.retrieval.scores import check_scores as _check_scores
from xmodal_lib.retrieval.scores import chunk_rows as _chunk_rows

__all__ = [
    "fg_ranks",
    "fg_accuracy",
    "parse_metric",
    "category_metrics",
    "category_metrics_per_query",
    "average_precision_per_query",
    "precision_recall_curve",
    "category_metrics_from_embeddings",
    "encode_labels",
    "CategoryAccumulator",
    "DEFAULT_CHUNK_ELEMENTS",
]

_NAME_RE = re.compile(r"^(map|p)@(\d+)(?:_(strict|lenient|voc|minr))?$")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------
# category-level
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """One parsed metric name: kind in {map_all_voc, map_all, map, p}, k, variant."""
    name: str
    kind: str
    k: int | None = None
    variant: str | None = None


def parse_metric(name: str) -> MetricSpec:
    """Parse ``map_all_voc``, ``map_all``, ``map@K_{strict,lenient,voc}``, ``p@K`` and ``p@K_minr``."""
    if name in ("map_all_voc", "map_all"):
        return MetricSpec(name, name)
    m = _NAME_RE.match(name)
    if m is None:
        raise ValueError(f"unknown metric name {name!r}; expected map_all_voc, map_all, map@K_strict, "
                         "map@K_lenient, map@K_voc, p@K or p@K_minr")
    kind, k, var = m.group(1), int(m.group(2)), m.group(3)
    if k < 1:
        raise ValueError(f"metric {name!r}: K must be >= 1")
    if kind == "map" and var not in ("strict", "lenient", "voc"):
        raise ValueError(f"metric {name!r}: mAP@K needs a convention suffix _strict, _lenient or _voc")
    if kind == "p" and var not in (None, "minr"):
        raise ValueError(f"metric {name!r}: P@K takes no suffix or _minr")
    return MetricSpec(name, kind, k, var)


def _segment_rev_cummax(v: torch.Tensor, row: torch.Tensor, pos: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Running max from the right inside each row of a ragged array (exact).

    ``v`` [nnz] values >= 0 grouped by ``row``, ``pos`` [nnz] their 0-based position in the row.
    Scattered into a zero-padded [n_rows, max_len] matrix (zeros never win a max of values >= 0).
    """
    if v.numel() == 0:
        return v
    width = int(pos.max()) + 1
    dense = torch.zeros(n_rows, width, dtype=v.dtype, device=v.device)  # (q, R_max)
    dense[row, pos] = v
    dense = dense.flip(1).cummax(1).values.flip(1)
    return dense[row, pos]


class CategoryAccumulator:
    """Per-query category metrics, fed chunk by chunk (used by the matrix and the streaming APIs).

    ``add(scores_chunk, query_labels_chunk)`` computes the metrics for those queries;
    ``per_query()`` returns float64 [Q] tensors (NaN = no relevant item), ``result()`` the means.
    """

    def __init__(self, gallery_labels: torch.Tensor, metrics: Sequence[str], largest: bool = True,
                 ties: str = "stable", recall_levels: torch.Tensor | None = None) -> None:
        if ties not in _TIES:
            raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")
        if isinstance(metrics, str):
            metrics = (metrics,)
        self.specs = [parse_metric(m) for m in metrics]
        if not self.specs and recall_levels is None:
            raise ValueError("metrics must name at least one metric")
        self.gl = gallery_labels
        self._lab: LabelIndex | None = None
        self.largest, self.ties = bool(largest), ties
        self.recall_levels = recall_levels
        self._parts: dict[str, list[torch.Tensor]] = {s.name: [] for s in self.specs}
        self._pr: list[torch.Tensor] = []
        self._valid: list[torch.Tensor] = []

    def add(self, scores: torch.Tensor, query_labels: torch.Tensor) -> None:
        """Process one chunk: ``scores`` [q, G] and ``query_labels`` [q] (int64, same device)."""
        scores = scores.detach()
        gl = self.gl.to(scores.device)
        ql = query_labels.to(scores.device)
        g_n = scores.shape[1]
        if g_n != gl.numel():
            raise ValueError(f"scores have {g_n} gallery columns but gallery_labels has {gl.numel()}")
        if self._lab is None or self._lab.gl.device != gl.device:
            self._lab = LabelIndex(gl)
        blocks = row_parallel(lambda a, b: self._compute(scores[a:b], ql[a:b]), scores.shape[0], scores.device)
        for vals, pr, valid in blocks:
            for k, v in vals.items():
                self._parts[k].append(v)
            if pr is not None:
                self._pr.append(pr)
            self._valid.append(valid)

    def _compute(self, scores: torch.Tensor, ql: torch.Tensor):
        """Per-query values of one block: ({metric: float64 [q]}, pr [q, n_levels] or None, valid [q])."""
        g_n = scores.shape[1]
        # sparse view: one entry per relevant hit, grouped by query, in rank order
        row, col = ranked_hits(scores, ql, self._lab, self.largest, self.ties)  # (nnz,), 0-based ranks
        q_n, dev = scores.shape[0], scores.device
        big_r = torch.bincount(row, minlength=q_n)  # (q,) relevant items per query
        valid = big_r > 0
        r64 = big_r.to(torch.float64)
        starts = torch.cumsum(big_r, 0) - big_r  # (q,) offset of each query's first hit
        hit_no = torch.arange(1, row.numel() + 1, device=dev) - starts[row]  # 1..R
        prec = hit_no.to(torch.float64) / (col + 1).to(torch.float64)  # precision at each hit
        nan = torch.full((q_n,), float("nan"), dtype=torch.float64, device=dev)
        iprec = None
        if any(sp.kind == "map_all_voc" for sp in self.specs) or self.recall_levels is not None:
            iprec = _segment_rev_cummax(prec, row, hit_no - 1, q_n)  # VOC-interpolated precision at each hit

        def per_row_sum(v: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return torch.zeros(q_n, dtype=torch.float64, device=dev).index_add_(0, rows, v)

        out: dict[str, torch.Tensor] = {}
        pr_out = None
        for spec in self.specs:
            if spec.kind == "map_all":
                val = per_row_sum(prec, row) / r64
            elif spec.kind == "map_all_voc":
                val = per_row_sum(iprec, row) / r64
            else:
                kc = min(spec.k, g_n)  # L = min(K, G)
                minr = torch.clamp(big_r, max=spec.k)  # min(K, R) <= G
                if spec.kind == "p" and spec.variant == "minr":
                    m = minr.clamp(min=1)
                    val = per_row_sum((col < m[row]).to(torch.float64), row) / m.to(torch.float64)
                else:
                    ink = col < kc  # hits inside the top L
                    found = per_row_sum(ink.to(torch.float64), row)
                    if spec.kind == "p":
                        val = found / kc
                    else:
                        pk = prec[ink]
                        if spec.variant == "voc":  # interpolate inside the truncated list only
                            pk = _segment_rev_cummax(pk, row[ink], hit_no[ink] - 1, q_n)
                        hit_sum = per_row_sum(pk, row[ink])
                        if spec.variant == "lenient":
                            val = torch.where(found > 0, hit_sum / found.clamp(min=1), 0.0)
                        else:  # strict / voc: divide by min(K, R)
                            val = hit_sum / minr.to(torch.float64)
            out[spec.name] = torch.where(valid, val, nan).cpu()
        if self.recall_levels is not None:
            lv = self.recall_levels.to(device=dev, dtype=torch.float64)
            # j-th hit reaches recall j/R >= level (tolerance guards 0.1*30 = 3.0000000000000004)
            j = torch.clamp(torch.ceil(lv[None, :] * r64[:, None] - 1e-9), min=1).to(torch.int64)  # (q, n_lv)
            idx = (starts[:, None] + j - 1).clamp(0, max(row.numel() - 1, 0))
            pr = iprec[idx] if row.numel() else torch.zeros_like(idx, dtype=torch.float64)
            pr_out = torch.where(valid[:, None], pr, torch.nan).cpu()
        return out, pr_out, valid.cpu()

    def per_query(self) -> dict[str, torch.Tensor]:
        """float64 [Q] per metric, NaN for queries without any relevant gallery item."""
        return {k: torch.cat(v) if v else torch.empty(0, dtype=torch.float64) for k, v in self._parts.items()}

    def result(self) -> dict[str, float]:
        """nanmean of every metric plus ``n_queries`` and ``n_valid`` (queries with >= 1 relevant item)."""
        valid = torch.cat(self._valid) if self._valid else torch.empty(0, dtype=torch.bool)
        out: dict[str, float] = {}
        for k, v in self.per_query().items():
            out[k] = float(v[valid].mean()) if bool(valid.any()) else float("nan")
        out["n_queries"] = int(valid.numel())
        out["n_valid"] = int(valid.sum())
        return out

    def pr_curve(self) -> torch.Tensor:
        """Mean interpolated precision at each recall level over valid queries (float64 [n_levels])."""
        if self.recall_levels is None or not self._pr:
            raise ValueError("accumulator was built without recall_levels")
        pr = torch.cat(self._pr)
        return torch.nanmean(pr, 0) if pr.shape[0] else pr.sum(0)


def _iter_chunks(scores: torch.Tensor, ql: torch.Tensor, rows: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for a in range(0, scores.shape[0], rows):
        yield scores[a:a + rows], ql[a:a + rows]


def _run(scores, query_labels, gallery_labels, metrics, largest, chunk_size, ties,
         recall_levels=None) -> CategoryAccumulator:
    scores = _check_scores(scores)
    ql, gl = encode_labels(query_labels, gallery_labels)
    if ql.numel() != scores.shape[0]:
        raise ValueError(f"query_labels has {ql.numel()} entries, scores has {scores.shape[0]} rows")
    if gl.numel() != scores.shape[1]:
        raise ValueError(f"gallery_labels has {gl.numel()} entries, scores has {scores.shape[1]} columns")
    acc = CategoryAccumulator(gl.to(scores.device), metrics, largest=largest, ties=ties,
                              recall_levels=recall_levels)
    for s, q in _iter_chunks(scores, ql.to(scores.device), _chunk_rows(scores.shape[1], chunk_size)):
        acc.add(s, q)
    return acc


def category_metrics(scores: torch.Tensor, query_labels, gallery_labels,
                     metrics: Sequence[str] = ("map_all_voc", "p@100"), largest: bool = True,
                     chunk_size: int | None = None, ties: str = "stable") -> dict[str, float]:
    """Category-level retrieval metrics (means over queries), see the module docstring for names.

    ``scores`` [Q, G] similarities (``largest=True``) or distances (``largest=False``);
    ``query_labels`` [Q], ``gallery_labels`` [G] (ints or strings). ``chunk_size`` = queries per
    chunk (default: chunks of ~16M elements). Queries without a relevant gallery item are NaN and
    excluded from the means (nanmean); the dict also holds ``n_queries`` and ``n_valid``.
    ``ties``: "stable" (equal scores in gallery-index order), "pessimistic" or "optimistic".
    """
    return _run(scores, query_labels, gallery_labels, metrics, largest, chunk_size, ties).result()


def category_metrics_per_query(scores: torch.Tensor, query_labels, gallery_labels,
                               metrics: Sequence[str] = ("map_all_voc", "p@100"), largest: bool = True,
                               chunk_size: int | None = None, ties: str = "stable") -> dict[str, torch.Tensor]:
    """Like :func:`category_metrics` but returns float64 [Q] per metric (NaN = no relevant item)."""
    return _run(scores, query_labels, gallery_labels, metrics, largest, chunk_size, ties).per_query()


def average_precision_per_query(scores: torch.Tensor, query_labels, gallery_labels, voc: bool = True,
                                largest: bool = True, chunk_size: int | None = None,
                                ties: str = "stable") -> torch.Tensor:
    """AP of every query over the whole gallery (VOC-interpolated if ``voc`` else plain); NaN if R = 0.

    Group by ``query_labels`` for per-class AP plots.
    """
    name = "map_all_voc" if voc else "map_all"
    return category_metrics_per_query(scores, query_labels, gallery_labels, (name,), largest,
                                      chunk_size, ties)[name]


def precision_recall_curve(scores: torch.Tensor, query_labels, gallery_labels,
                           recall_levels: Iterable[float] | int = 11, largest: bool = True,
                           chunk_size: int | None = None, ties: str = "stable") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean interpolated precision (max precision at recall >= r) at fixed recall levels.

    ``recall_levels``: an int n gives ``linspace(0, 1, n)`` (11 = the VOC 11-point curve).
    Returns ``(levels, precision)``, float64 tensors; queries with R = 0 are excluded.
    """
    if isinstance(recall_levels, int):
        if recall_levels < 2:
            raise ValueError(f"recall_levels must be >= 2 points, got {recall_levels}")
        lv = torch.linspace(0, 1, recall_levels, dtype=torch.float64)
    else:
        lv = torch.as_tensor(list(recall_levels), dtype=torch.float64)
        if lv.numel() == 0 or bool(((lv < 0) | (lv > 1)).any()):
            raise ValueError("recall_levels must be non-empty values in [0, 1]")
    acc = _run(scores, query_labels, gallery_labels, (), largest, chunk_size, ties, recall_levels=lv)
    return lv, acc.pr_curve()


def category_metrics_from_embeddings(query_emb: torch.Tensor, gallery_emb: torch.Tensor, query_labels,
                                     gallery_labels, metrics: Sequence[str] = ("map_all_voc", "p@100"),
                                     metric: str = "cosine", chunk_size: int | None = None,
                                     device: str | torch.device | None = None, ties: str = "stable",
                                     per_query: bool = False) -> dict[str, float] | dict[str, torch.Tensor]:
    """Category metrics straight from embeddings, scores computed chunk by chunk (never the full matrix).

    ``metric`` in {"cosine", "dot", "euclidean"} (see :func:`xmodal_lib.retrieval.search.similarity`);
    ``device`` where scores are computed (default: the gallery's). Returns the same dict as
    :func:`category_metrics`, or the per-query float64 tensors if ``per_query``.
    """
    from xmodal_lib.retrieval.search import iter_score_chunks  # lazy: import cycle (xmodal_lib.retrieval.search imports xmodal_lib.retrieval.metrics)

    ql, gl = encode_labels(query_labels, gallery_labels)
    if ql.numel() != query_emb.shape[0] or gl.numel() != gallery_emb.shape[0]:
        raise ValueError(f"labels ({ql.numel()}, {gl.numel()}) do not match embeddings "
                         f"({query_emb.shape[0]}, {gallery_emb.shape[0]})")
    rows = _chunk_rows(gallery_emb.shape[0], chunk_size)
    dev = torch.device(device) if device is not None else gallery_emb.device
    acc = CategoryAccumulator(gl.to(dev), metrics, largest=True, ties=ties)
    with torch.no_grad():
        for a, s in iter_score_chunks(query_emb, gallery_emb, metric, rows, dev):
            acc.add(s, ql[a:a + s.shape[0]].to(dev))
    return acc.per_query() if per_query else acc.result()


def metrics_from_chunks(chunks: Iterable[tuple[torch.Tensor, torch.Tensor]], gallery_labels: torch.Tensor,
                        metrics: Sequence[str], largest: bool = True, ties: str = "stable") -> CategoryAccumulator:
    """Feed ``(scores_chunk [q, G], query_labels_chunk [q])`` pairs (e.g. computed from embeddings)."""
    acc = CategoryAccumulator(gallery_labels, metrics, largest=largest, ties=ties)
    for s, q in chunks:
        acc.add(s, q)
    return acc
