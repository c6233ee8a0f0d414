"""Obviously-correct per-query reference implementations of the retrieval metrics (test only).

Written as plain Python/NumPy loops straight from the definitions in methods_spec.md §3.9, with
no vectorisation tricks, so the library's chunked torch code is checked against something simple.
Ranking rule: stable sort on the score (descending for similarities), ties by gallery index;
"pessimistic" puts irrelevant items first inside a tie, "optimistic" relevant ones first.
"""
from __future__ import annotations

import math

import numpy as np


def ranked_relevance(scores_row, q_label, g_labels, largest=True, ties="stable"):
    s = np.asarray(scores_row, dtype=np.float64)
    rel = (np.asarray(g_labels) == q_label)
    key = -s if largest else s
    items = list(range(len(s)))
    if ties == "stable":
        items.sort(key=lambda i: (key[i], i))
    elif ties == "pessimistic":
        items.sort(key=lambda i: (key[i], bool(rel[i]), i))
    else:
        items.sort(key=lambda i: (key[i], not rel[i], i))
    return [bool(rel[i]) for i in items]


def voc_ap(ranked, total_pos):
    """SAKE VOCap on a ranked 0/1 list: pad, make precision non-increasing from the right, sum."""
    if total_pos == 0:
        return math.nan
    tp = 0
    rec, prec = [], []
    for k, r in enumerate(ranked, start=1):
        tp += r
        rec.append(tp / total_pos)
        prec.append(tp / k)
    mrec = [0.0] + rec + [1.0]
    mpre = [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def plain_ap(ranked, denom):
    """Sum of precision at every relevant position divided by ``denom`` (NaN if denom is 0)."""
    if denom == 0:
        return math.nan
    tp, total = 0, 0.0
    for k, r in enumerate(ranked, start=1):
        if r:
            tp += 1
            total += tp / k
    return total / denom


def query_metric(name, ranked):
    """One metric for one query's full ranked relevance list."""
    big_r = sum(ranked)
    if big_r == 0:
        return math.nan
    if name == "map_all_voc":
        return voc_ap(ranked, big_r)
    if name == "map_all":
        return plain_ap(ranked, big_r)
    head, _, var = name.partition("_")
    k = int(head.split("@")[1])
    top = ranked[: min(k, len(ranked))]
    if head.startswith("p@"):
        if var == "minr":
            m = min(k, big_r)
            return sum(ranked[:m]) / m
        return sum(top) / len(top)
    if var == "voc":
        return voc_ap(top, min(k, big_r))
    if var == "strict":
        return plain_ap(top, min(k, big_r))
    found = sum(top)
    return 0.0 if found == 0 else plain_ap(top, found)


def reference_per_query(scores, q_labels, g_labels, metrics, largest=True, ties="stable"):
    s = np.asarray(scores, dtype=np.float64)
    out = {m: [] for m in metrics}
    for i in range(s.shape[0]):
        ranked = ranked_relevance(s[i], q_labels[i], g_labels, largest, ties)
        for m in metrics:
            out[m].append(query_metric(m, ranked))
    return {m: np.array(v, dtype=np.float64) for m, v in out.items()}


def reference_fg_ranks(scores, true_index, largest=True):
    s = np.asarray(scores, dtype=np.float64)
    ranks = []
    for i in range(s.shape[0]):
        t = s[i, true_index[i]]
        ranks.append(sum(1 for v in s[i] if (v >= t if largest else v <= t)))
    return np.array(ranks)
