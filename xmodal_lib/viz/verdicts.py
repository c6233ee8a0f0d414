"""Closing statements of the notebooks, computed from their own numbers (never a fixed sentence)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["ratio_to_chance", "zse_verdict", "compare_verdict", "explorer_verdict", "zse_pair_verdict"]


def ratio_to_chance(value: float, chance: float) -> str:
    """``"0.31 (1.3x the measured chance 0.24)"``, or ``"at chance"`` wording within 5 %."""
    if chance <= 0:
        return f"{value:.3f}"
    r = value / chance
    if abs(r - 1) < 0.05:
        return f"{value:.3f} (at the measured chance {chance:.3f})"
    return f"{value:.3f} ({r:.2f}x the measured chance {chance:.3f})"


def _mean_tail(rows: Sequence[Mapping[str, Any]], key: str, tail: int) -> float | None:
    vals = [float(r[key]) for r in rows if r.get(key) is not None][-tail:]
    return sum(vals) / len(vals) if vals else None


def zse_verdict(zs: Mapping[str, Any], chance: Mapping[str, float], metric: str, tail: int = 50) -> list[str]:
    """Markdown bullets on a ZSE-SBIR run (``zse.run_zero_shot`` output): each mode against the
    measured chance, RN vs ret (the paper's claim), the validation trend, and whether the relation
    network separates positive from negative pairs at the end of training."""
    out = []
    metrics = zs["metrics"]
    for mode, row in metrics.items():
        if metric in row:
            out.append(f"- `{mode}` {metric}: {ratio_to_chance(float(row[metric]), float(chance[metric]))}.")
    if "rn" in metrics and "ret" in metrics:
        d = float(metrics["rn"][metric]) - float(metrics["ret"][metric])
        out.append(f"- RN vs ret: {d:+.3f} {metric}; the paper's claim (RN >= ret) "
                   f"{'holds' if d >= 0 else 'does not hold'} here.")
    val = [r for r in zs.get("val") or [] if any(k.startswith("val_") for k in r)]
    if len(val) >= 2:
        key = next(k for k in val[0] if k.startswith("val_"))
        first, last = float(val[0][key]), float(val[-1][key])
        best = max(range(len(val)), key=lambda i: float(val[i][key]))
        trend = "fell" if last < first else "rose"
        out.append(f"- Validation {key[4:]} (held-out seen classes) {trend} from {first:.3f} to {last:.3f}; "
                   f"the kept weights are from validation {best + 1} of {len(val)} ({float(val[best][key]):.3f}).")
    pos, neg = _mean_tail(zs.get("history") or [], "score_pos", tail), _mean_tail(zs.get("history") or [], "score_neg", tail)
    if pos is not None and neg is not None:
        sep = "separates" if pos - neg > 0.05 else "does not yet separate"
        out.append(f"- Relation scores over the last {tail} steps: positives {pos:.3f}, negatives {neg:.3f}; "
                   f"the RN {sep} matching from non-matching pairs (targets 0.99 / 0.01).")
    return out


def compare_verdict(tests: Mapping[str, Mapping[str, float]], alpha: float = 0.01) -> list[str]:
    """Markdown bullets on notebook 05: every run's main number against its measured chance
    (``tests``: run name -> :func:`~xmodal_lib.retrieval.sanity.label_permutation_test` result),
    which runs are above chance at ``p < alpha``, and which run wins."""
    if not tests:
        return ["- No run was evaluated."]
    metric = next(iter(tests.values()))["metric"]
    out = [f"- `{name}` {metric}: {ratio_to_chance(float(t['observed']), float(t['chance']))}, "
           f"p = {float(t['p']):.3g} ({'above chance' if float(t['p']) < alpha else 'not distinguishable from chance'}"
           f" at p < {alpha:g})." for name, t in tests.items()]
    above = [n for n, t in tests.items() if float(t["p"]) < alpha]
    below = [n for n in tests if n not in above]
    out.append(f"- Above chance: {len(above)} of {len(tests)} runs"
               + (f"; not above: {', '.join(f'`{n}`' for n in below)}." if below else " (all)."))
    ranked = sorted(tests, key=lambda n: float(tests[n]["observed"]), reverse=True)
    best = ranked[0]
    margin = f", {float(tests[best]['observed']) - float(tests[ranked[1]]['observed']):+.3f} over `{ranked[1]}`" \
        if len(ranked) > 1 else ""
    out.append(f"- Best {metric}: `{best}` ({float(tests[best]['observed']):.3f}{margin})"
               + ("." if best in above else ", but it is not above chance: no method works on this split."))
    return out


def explorer_verdict(checks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown bullets on notebook 06's explorer: per method, whether different queries get
    different top-k lists (``checks``: method -> :func:`~xmodal_lib.retrieval.sanity.query_dependence`
    result) and how much the lists of queries of different classes overlap against random lists."""
    out = []
    for method, c in checks.items():
        state = "depends on the query" if c["query_dependent"] else "does NOT depend on the query (collapsed model)"
        out.append(f"- `{method}`: {c['distinct']} distinct top-{c['k']} lists for {c['n_queries']} queries, "
                   f"so its ranking {state}; queries of different classes share {c['cross_overlap']:.0%} of their "
                   f"top-{c['k']} (random lists: {c['random_overlap']:.0%}).")
    bad = [m for m, c in checks.items() if not c["query_dependent"]]
    out.append("- Every explorer panel is query-dependent." if not bad else
               f"- Query-independent: {', '.join(f'`{m}`' for m in bad)}; its panels show the same photos for any sketch.")
    return out


def zse_pair_verdict(query_class: str, rank_correct: int, rank_wrong: int, rn_correct: float,
                     rn_wrong: float) -> str:
    """One bullet on notebook 06's ZSE-SBIR example: where the query's best same-class photo ranks,
    and whether the relation network scores it above the best other-class photo."""
    prefers = "scores the correct photo higher" if rn_correct > rn_wrong else "does NOT score the correct photo higher"
    return (f"- ZSE-SBIR, query of class `{query_class}`: its best same-class photo is at [Ret] rank {rank_correct}, "
            f"the best other-class photo at rank {rank_wrong}; the relation network {prefers} "
            f"({rn_correct:.3f} vs {rn_wrong:.3f}).")
