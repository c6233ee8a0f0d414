"""Category metrics that no gallery order can inflate: tie-averaged value with its bounds.

Hamming distances (and any integer score) tie massively: with 64-bit codes a query sees at
most 65 distinct distances over a gallery of thousands. A stable sort then orders every tie by
gallery index, and SAKE-style lists are grouped by class, so within a tie the relevant items
come out as one block -- a rule that rewards the file order, not the model (a class-grouped toy
in ``tests/retrieval/test_retrieval_ties.py`` shows the inflation). The official zero-shot code
uses numpy's unstable quicksort, which is arbitrary in another, undocumented way.

:func:`tie_robust_metrics` reports, for every metric:

* ``<metric>``: the expected value over uniformly random orders of the tied items, estimated by
  the mean over ``draws`` seeded random permutations of the gallery (each permutation followed by
  a stable sort gives every query a uniform random order inside each of its ties);
  ``<metric>_se`` is the standard error of that mean over draws (0 when nothing ties);
* ``<metric>_optimistic`` / ``<metric>_pessimistic``: relevant items first / last inside every
  tie, the exact bounds of any tie rule.

A score matrix without ties gives the same number for all three (and ``_se`` = 0).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from xmodal_lib.retrieval.metrics import category_metrics, encode_labels

__all__ = ["tie_robust_metrics", "fair_category_metrics", "integer_valued", "DEFAULT_TIE_DRAWS"]

#: random tie orders averaged by default (SE of the mean shrinks as 1/sqrt(draws))
DEFAULT_TIE_DRAWS = 16


def tie_robust_metrics(scores: torch.Tensor, query_labels, gallery_labels,
                       metrics: Sequence[str] = ("map_all_voc", "p@100"), largest: bool = True,
                       draws: int = DEFAULT_TIE_DRAWS, seed: int = 0,
                       chunk_size: int | None = None) -> dict[str, float]:
    """Tie-averaged metrics (mean over ``draws`` random tie orders) with ``_se``, ``_optimistic``
    and ``_pessimistic`` entries per metric, plus ``n_queries``, ``n_valid`` and ``tie_draws``.

    ``scores`` [Q, G] similarities (``largest=True``) or distances (``largest=False``, e.g. Hamming);
    labels as in :func:`~xmodal_lib.retrieval.metrics.category_metrics`. ``seed`` fixes the draws.
    """
    if int(draws) < 1:
        raise ValueError(f"tie_robust_metrics: draws must be >= 1, got {draws}")
    scores = torch.as_tensor(scores)
    ql, gl = encode_labels(query_labels, gallery_labels)
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    kw = dict(metrics=metrics, largest=largest, chunk_size=chunk_size)
    lo = category_metrics(scores, ql, gl, ties="pessimistic", **kw)
    hi = category_metrics(scores, ql, gl, ties="optimistic", **kw)
    out: dict[str, float] = {"n_queries": lo["n_queries"], "n_valid": lo["n_valid"], "tie_draws": int(draws)}
    gen = torch.Generator().manual_seed(int(seed))
    per_draw: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(int(draws)):
        perm = torch.randperm(gl.numel(), generator=gen)  # (G,) random gallery order
        r = category_metrics(scores[:, perm.to(scores.device)], ql, gl[perm], ties="stable", **kw)
        for m in metrics:
            per_draw[m].append(r[m])
    for m in metrics:
        v = np.asarray(per_draw[m], dtype=np.float64)
        out[m] = float(v.mean())
        out[f"{m}_se"] = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
        out[f"{m}_optimistic"] = hi[m]
        out[f"{m}_pessimistic"] = lo[m]
    return out


def integer_valued(scores: torch.Tensor) -> bool:
    """True for integer dtypes and for float matrices whose every entry is a whole number
    (e.g. ``-hamming.float()``): the scores for which a tie rule matters."""
    s = torch.as_tensor(scores)
    return not s.is_floating_point() or bool(torch.equal(s, torch.round(s)))


def fair_category_metrics(scores: torch.Tensor, query_labels, gallery_labels,
                          metrics: Sequence[str] = ("map_all_voc", "p@100"), largest: bool = True,
                          draws: int = DEFAULT_TIE_DRAWS, seed: int = 0) -> dict[str, float]:
    """:func:`tie_robust_metrics` for integer-valued scores (Hamming), plain
    :func:`~xmodal_lib.retrieval.metrics.category_metrics` (stable ties, rare in floats) otherwise."""
    if integer_valued(scores):
        return tie_robust_metrics(scores, query_labels, gallery_labels, metrics, largest, draws, seed)
    return category_metrics(scores, query_labels, gallery_labels, metrics, largest=largest)
