"""Chance, measured: the metrics of random rankings, and a test of "above chance".

Chance is never ``1 / n_classes``: mAP under a random ranking depends on the class sizes and the
AP convention (measured 0.235 where 1/6 = 0.167 on the smoke split), so it is computed with the
same metric engine on uniformly random scores.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .metrics import category_metrics, category_metrics_per_query

__all__ = ["chance_metrics", "above_chance"]


def chance_metrics(query_labels: Sequence, gallery_labels: Sequence,
                   metrics: Sequence[str] = ("map_all_voc", "p@100"), repeats: int = 5,
                   seed: int = 0) -> dict[str, float]:
    """Mean metrics of ``repeats`` uniformly random score matrices [Q, G] (seeded)."""
    acc = {m: 0.0 for m in metrics}
    g = torch.Generator().manual_seed(int(seed))
    for _ in range(int(repeats)):
        r = category_metrics(torch.rand(len(query_labels), len(gallery_labels), generator=g),
                             list(query_labels), list(gallery_labels), tuple(metrics))
        for m in metrics:
            acc[m] += r[m] / repeats
    return acc


def above_chance(scores: torch.Tensor, query_labels: Sequence, gallery_labels: Sequence,
                 metric: str = "map_all_voc", largest: bool = True, seed: int = 0) -> dict[str, float]:
    """Is ``metric`` of ``scores`` [Q, G] above chance? One-sided Wilcoxon signed-rank test of the
    per-query values against those of one random score matrix on the same queries.

    Returns ``value`` (mean), ``chance`` (mean under random scores), ``p_value`` and ``n`` (queries
    with a relevant item)."""
    from scipy.stats import wilcoxon

    ours = category_metrics_per_query(scores, list(query_labels), list(gallery_labels), (metric,), largest)[metric]
    g = torch.Generator().manual_seed(int(seed))
    rnd = category_metrics_per_query(torch.rand(tuple(scores.shape), generator=g), list(query_labels),
                                     list(gallery_labels), (metric,))[metric]
    ok = ~(torch.isnan(ours) | torch.isnan(rnd))
    a, b = ours[ok].numpy(), rnd[ok].numpy()
    p = float(wilcoxon(a, b, alternative="greater").pvalue) if len(a) and np.any(a != b) else 1.0
    return {"value": float(a.mean()) if len(a) else float("nan"), "chance": float(b.mean()) if len(b) else float("nan"),
            "p_value": p, "n": int(ok.sum())}


def uninformative_metrics(metrics: Sequence[str], n_gallery: int) -> dict[str, str]:
    """Metrics that carry no information about the ranking at this gallery size, with the reason:
    ``p@K`` with K >= G is R / G for any ranking; ``map@K_*`` with K >= G is mAP over the whole
    gallery again (the ``map_all`` family already shows it)."""
    from .metrics import parse_metric

    out: dict[str, str] = {}
    for name in metrics:
        spec = parse_metric(name)
        if spec.k is None or spec.k < n_gallery:
            continue
        if spec.kind == "p" and spec.variant is None:
            out[name] = f"K = {spec.k} >= gallery size {n_gallery}: equals relevant / gallery for any ranking"
        elif spec.kind == "map":
            out[name] = f"K = {spec.k} >= gallery size {n_gallery}: the same as mAP over the whole gallery"
    return out
