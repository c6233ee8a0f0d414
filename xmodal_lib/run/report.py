"""What a run tells its user at the end: the headline metrics of every notebook, not every key.

The full record stays in ``results.json``; the console and ``results.md`` show the status table
and, per result, the retrieval metrics (mAP, P@K, acc@K, their chance values and p-values) found
in it, at most :data:`MAX_ROWS` rows.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from xmodal_lib.run.runner import NotebookRecord

__all__ = ["HEADLINE", "MAX_ROWS", "headline_rows", "headline_markdown", "headline_text", "collect_results",
           "results_markdown", "run_report", "summary_table"]

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


# --------------------------------------------------------------------------- the run's record


def collect_results(artifacts: Path) -> dict[str, Any]:
    """Every ``<artifacts>/results/*.json`` merged into one dict keyed by result name."""
    out: dict[str, Any] = {}
    rdir = Path(artifacts) / "results"
    if rdir.is_dir():
        for f in sorted(rdir.glob("*.json")):
            try:
                out[f.stem] = json.loads(f.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                out[f.stem] = {"error": f"unreadable JSON: {err}"}
    return out


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        rows: list[tuple[str, Any]] = []
        for k, v in d.items():
            rows.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return rows
    return [(prefix, d)]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"[{len(v)} values]"
    return str(v).replace("|", "\\|").replace("\n", " ")


def results_markdown(results: Mapping[str, Any]) -> str:
    """Results as a Markdown table with one row per (result, key)."""
    if not results:
        return "_No notebook wrote results (`<artifacts>/results/*.json`)._\n"
    lines = ["| result | key | value |", "|---|---|---|"]
    for name, res in results.items():
        for key, value in _flatten(res):
            lines.append(f"| {name} | {key} | {_fmt(value)} |")
    return "\n".join(lines) + "\n"


def run_report(manifest: Mapping[str, Any], records: list[NotebookRecord], results: Mapping[str, Any]) -> str:
    """``results.md``: the run's setting, a notebook table and the results table."""
    git = manifest.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    dev = manifest.get("device") or {}
    lines = [
        f"# xmodal run {manifest.get('xmodal_run')}",
        "",
        f"profile `{manifest.get('profile')}`, commit `{commit}`, device {dev.get('type')} "
        f"({dev.get('name')}), python {manifest.get('python')}, "
        f"torch {(manifest.get('packages') or {}).get('torch')}, status **{manifest.get('status')}**",
        "",
        "| notebook | status | wall time (s) | parameters set |",
        "|---|---|---|---|",
    ]
    for r in records:
        shown = ", ".join(f"{k}={v!r}" for k, v in r.injected.items()) or "defaults"
        wall = f"{r.wall_s:.1f}" if r.wall_s is not None else "-"
        lines.append(f"| {r.name} | {r.status} | {wall} | {_fmt(shown)} |")
    lines += ["", "## Headline metrics", "", headline_markdown(results),
              "The full record of every notebook is `results.json`; the figures are in `figures/`."]
    return "\n".join(lines)


def summary_table(records: list[NotebookRecord], total_s: float | None) -> str:
    """Plain-text table: notebook, status, wall time."""
    w = max([len(r.name) for r in records] + [8])
    lines = [f"{'notebook':<{w}}  {'status':<8}  {'wall':>8}", "-" * (w + 20)]
    for r in records:
        wall = f"{r.wall_s:.1f} s" if r.wall_s is not None else "-"
        lines.append(f"{r.name:<{w}}  {r.status:<8}  {wall:>8}")
    lines.append(f"{'total':<{w}}  {'':<8}  {(total_s or 0):>6.1f} s")
    return "\n".join(lines)
