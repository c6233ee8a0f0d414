"""Chance, measured: the metrics of random rankings, and which metrics a gallery can inform at all.

Chance is never ``1 / n_classes``: mAP under a random ranking depends on the class sizes and the
AP convention (measured 0.235 where 1/6 = 0.167 on the smoke split), so it is computed with the
same metric engine on uniformly random scores. The test of "above chance" (shuffled gallery labels,
a permutation p-value) is :func:`xmodal_lib.retrieval.sanity.label_permutation_test`.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

from xmodal_lib.retrieval.fg_metrics import fg_accuracy
from xmodal_lib.retrieval.metrics import category_metrics, parse_metric

__all__ = ["chance_metrics", "fg_chance_metrics", "uninformative_metrics"]


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


def fg_chance_metrics(true_index: Sequence[int], n_gallery: int, ks: Sequence[int] = (1, 10),
                      repeats: int = 20, seed: int = 0) -> dict[str, float]:
    """Fine-grained acc@K of uniformly random score matrices [Q, G] (mean of ``repeats``, seeded):
    query q's true photo is ``true_index[q]`` among ``n_gallery`` photos."""
    true = torch.as_tensor(list(true_index), dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed))
    acc = {f"acc@{k}": 0.0 for k in ks}
    for _ in range(int(repeats)):
        r = fg_accuracy(torch.rand(len(true), int(n_gallery), generator=g), true, ks=tuple(ks))
        for k in ks:
            acc[f"acc@{k}"] += r[f"acc@{k}"] / repeats
    return acc


def uninformative_metrics(metrics: Sequence[str], n_gallery: int,
                          gallery_labels: Sequence[str] | None = None) -> dict[str, str]:
    """Metrics that carry no information about the ranking at this gallery size, with the reason:
    ``p@K`` with K >= G is R / G for any ranking; ``map@K_*`` with K >= G is mAP over the whole
    gallery again (the ``map_all`` family already shows it). With ``gallery_labels``, ``p@K_minr``
    (precision in the top min(K, R)) for every K >= the largest class R is R-precision: the first
    such metric stays, the others are named as its repeats."""
    out: dict[str, str] = {}
    r_max = max(Counter(gallery_labels).values()) if gallery_labels else None
    first_rprec: str | None = None
    for name in metrics:
        spec = parse_metric(name)
        if spec.k is None:
            continue
        if spec.kind == "p" and spec.variant == "minr" and r_max is not None and spec.k >= r_max:
            if first_rprec is None:
                first_rprec = name
            else:
                out[name] = f"K = {spec.k} >= R = {r_max} (largest class): R-precision, the same as {first_rprec}"
            continue
        if spec.k < n_gallery:
            continue
        if spec.kind == "p" and spec.variant is None:
            out[name] = f"K = {spec.k} >= gallery size {n_gallery}: equals relevant / gallery for any ranking"
        elif spec.kind == "map":
            out[name] = f"K = {spec.k} >= gallery size {n_gallery}: the same as mAP over the whole gallery"
    return out
