"""What a run tells its user at the end: the headline metrics of every notebook, not every key.

The full record stays in ``results.json``; the console and ``results.md`` show the status table
and, per result, the retrieval metrics (mAP, P@K, acc@K, their chance values and p-values) found
in it, at most :data:`MAX_ROWS` rows.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

__all__ = ["HEADLINE", "MAX_ROWS", "headline_rows", "headline_markdown", "headline_text"]

# metric names of xmodal_lib.retrieval.metrics (and their chance / significance companions)
HEADLINE = re.compile(r"(^|[._])(map[_@][a-z0-9_@]*|p@\d+[a-z_]*|acc@\d+|chance[a-z_@0-9]*|p_value[a-z_]*)$")
MAX_ROWS = 40
_SKIP = re.compile(r"(^|\.)(config|per_class_ap|history|curve|timing|figures|reported|classes|sources|env)(\.|$)")


def _walk(d: Any, prefix: str = ""):
    if isinstance(d, Mapping):
        for k, v in d.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, d


def headline_rows(results: Mapping[str, Any], max_rows: int = MAX_ROWS) -> tuple[list[tuple[str, str, float]], int]:
    """``([(result, key path, value)], n_left_out)``: numeric leaves whose last key is a metric."""
    rows: list[tuple[str, str, float]] = []
    for name, res in results.items():
        for key, value in _walk(res):
            if _SKIP.search(key) or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if HEADLINE.search(key.lower()):
                rows.append((name, key, float(value)))
    return rows[:max_rows], max(0, len(rows) - max_rows)


def headline_markdown(results: Mapping[str, Any]) -> str:
    """The headline rows as a Markdown table (``results.md``)."""
    rows, left = headline_rows(results)
    if not rows:
        return "_No headline metric in the results (the full record is `results.json`)._\n"
    lines = ["| result | metric | value |", "|---|---|---|"]
    lines += [f"| {n} | `{k}` | {v:.4g} |" for n, k, v in rows]
    if left:
        lines.append(f"| … | {left} more metric rows | see `results.json` |")
    return "\n".join(lines) + "\n"


def headline_text(results: Mapping[str, Any]) -> str:
    """The headline rows as plain text for the console."""
    rows, left = headline_rows(results)
    if not rows:
        return "no headline metric in the results (full record: results.json)"
    w1 = max(len(n) for n, _, _ in rows)
    w2 = max(len(k) for _, k, _ in rows)
    out = [f"{'result':<{w1}}  {'metric':<{w2}}  value", "-" * (w1 + w2 + 10)]
    out += [f"{n:<{w1}}  {k:<{w2}}  {v:.4g}" for n, k, v in rows]
    if left:
        out.append(f"... {left} more metric rows in results.json")
    return "\n".join(out)
