"""Is a retrieval result better than chance, and does it depend on the query at all?

* :func:`label_permutation_test`: chance measured by shuffling the gallery labels (the scores
  stay, their link to the classes is broken), with a one-sided permutation p-value for the
  observed metric. Never ``1 / n_classes``: with few, balanced classes and a small gallery the
  chance mAP is far above that (0.235 vs 0.167 on the smoke split).
* :func:`binomial_p_value`: fine-grained acc@K against its exact chance ``K / gallery size``.
* :func:`check_query_dependent`: warns (:class:`QueryIndependentWarning`) when different queries
  get the same top-k list — a collapsed model whose retrieval strip or explorer panel shows the
  same photos for every sketch. Called by the strip plot and the explorer.
* :func:`query_dependence`: the same question as numbers for a set of queries (distinct top-k
  lists, the overlap of the lists of queries of different classes against random lists).
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
from scipy.stats import binomtest

from xmodal_lib.retrieval.metrics import category_metrics

__all__ = ["QueryIndependentWarning", "label_permutation_test", "binomial_p_value", "same_topk_fraction",
           "check_query_dependent", "query_dependence"]


class QueryIndependentWarning(UserWarning):
    """Different queries were given the same top-k results."""


def label_permutation_test(scores: torch.Tensor, query_labels: Sequence, gallery_labels: Sequence,
                           metric: str = "map_all_voc", n_perm: int = 200, seed: int = 0,
                           largest: bool = True) -> dict[str, float]:
    """Observed ``metric`` vs its distribution under shuffled gallery labels.

    Returns ``observed``, ``chance`` (mean over permutations), ``chance_sd`` and ``p`` =
    (1 + #{perm >= observed}) / (1 + n_perm), the one-sided permutation p-value (smallest
    possible value 1 / (n_perm + 1)).
    """
    if n_perm < 1:
        raise ValueError(f"label_permutation_test: n_perm must be >= 1, got {n_perm}")
    ql, gl = list(query_labels), list(gallery_labels)
    obs = category_metrics(scores, ql, gl, (metric,), largest=largest)[metric]
    g = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(n_perm):
        perm = torch.randperm(len(gl), generator=g).tolist()
        null.append(category_metrics(scores, ql, [gl[i] for i in perm], (metric,), largest=largest)[metric])
    t = torch.tensor(null, dtype=torch.float64)
    p = (1 + int((t >= obs - 1e-12).sum())) / (1 + n_perm)
    return {"metric": metric, "observed": float(obs), "chance": float(t.mean()),
            "chance_sd": float(t.std()) if n_perm > 1 else 0.0, "p": p, "n_perm": n_perm}


def binomial_p_value(successes: int, n: int, p0: float) -> float:
    """One-sided exact binomial p-value P(X >= successes), X ~ Bin(n, p0)."""
    if not 0 <= successes <= n or not 0.0 < p0 < 1.0:
        raise ValueError(f"binomial_p_value: need 0 <= successes <= n and 0 < p0 < 1, got {successes}, {n}, {p0}")
    return float(binomtest(int(successes), int(n), float(p0), alternative="greater").pvalue)


def same_topk_fraction(topk: Sequence[Sequence[int]]) -> float:
    """Fraction of pairs of rows whose top-k lists are identical (same items, same order)."""
    rows = [tuple(int(i) for i in r) for r in topk]
    n = len(rows)
    if n < 2:
        return 0.0
    same = sum(rows[a] == rows[b] for a in range(n) for b in range(a + 1, n))
    return same / (n * (n - 1) / 2)


def check_query_dependent(topk: Sequence[Sequence[int]], where: str = "", queries: Sequence | None = None) -> bool:
    """``False`` (and a :class:`QueryIndependentWarning`) when every row has the same top-k list.

    ``queries``: identifiers of the rows' queries; rows of the same query are not compared
    (the same sketch twice legitimately gets the same list).
    """
    rows = [tuple(int(i) for i in r) for r in topk]
    if queries is not None:
        seen: dict = {}
        for q, r in zip(queries, rows):
            seen.setdefault(q, r)
        rows = list(seen.values())
    if len(rows) < 2 or len(set(rows)) > 1:
        return True
    warnings.warn(f"{where or 'retrieval'}: the {len(rows)} different queries all got the same top-{len(rows[0])} "
                  f"results {list(rows[0])[:10]} -- the ranking does not depend on the query (collapsed or "
                  f"untrained model)", QueryIndependentWarning, stacklevel=2)
    return False


def query_dependence(topk: Sequence[Sequence[int]], query_labels: Sequence, gallery_size: int,
                     where: str = "") -> dict[str, Any]:
    """How much the top-k lists of different queries differ (one row per query, distinct queries).

    Returns ``n_queries``, ``k``, ``distinct`` (distinct lists), ``query_dependent`` (from
    :func:`check_query_dependent`, which warns when every list is the same), ``cross_overlap`` (mean
    share of top-k items two queries of DIFFERENT classes have in common) and ``random_overlap``
    (the same expected for random lists, ``k / gallery_size``): a collapsed model has a cross
    overlap near 1, a working one near or below the random value."""
    rows = [tuple(int(i) for i in r) for r in topk]
    if len(rows) != len(query_labels) or not rows:
        raise ValueError(f"query_dependence: {len(rows)} top-k rows for {len(query_labels)} query labels")
    k = len(rows[0])
    pairs = [(a, b) for a in range(len(rows)) for b in range(a + 1, len(rows)) if query_labels[a] != query_labels[b]]
    cross = sum(len(set(rows[a]) & set(rows[b])) for a, b in pairs) / (k * len(pairs)) if pairs else float("nan")
    return {"n_queries": len(rows), "k": k, "distinct": len(set(rows)),
            "query_dependent": check_query_dependent(rows, where=where), "cross_overlap": cross,
            "random_overlap": k / gallery_size}
