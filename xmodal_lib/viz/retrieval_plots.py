"""Retrieval figures and tables: PR curves, per-class AP, retrieval strips, results vs reported.

Numbers come from the metric engine (``xmodal_lib.retrieval.metrics``); this module only groups
and draws them. Reported numbers come from :mod:`xmodal_lib.methods.reported` and are placed beside ours
only where the setting and the metric convention match, in columns marked "(reported)".
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from xmodal_lib.methods import reported as rep
from xmodal_lib.retrieval import metrics as M
from xmodal_lib.retrieval.sanity import check_query_dependent
from xmodal_lib.viz.explain import to_display_image

CORRECT, WRONG, UNKNOWN = "#1a9850", "#d73027", "#999999"


# --------------------------------------------------------------------------- numbers
def pr_curve(scores: torch.Tensor, query_labels, gallery_labels, largest: bool = True,
             recall_levels: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Mean interpolated precision at ``recall_levels`` evenly spaced recalls (metric engine)."""
    lv, pr = M.precision_recall_curve(scores, query_labels, gallery_labels, recall_levels=recall_levels,
                                      largest=largest)
    return lv.numpy(), pr.numpy()


def per_class_ap(scores: torch.Tensor, query_labels: Sequence, gallery_labels: Sequence,
                 largest: bool = True, voc: bool = True) -> dict[str, float]:
    """Mean AP (VOC-interpolated by default) of the queries of each class, classes sorted by name."""
    ap = M.average_precision_per_query(scores, query_labels, gallery_labels, voc=voc, largest=largest).numpy()
    labels = np.asarray([str(x) for x in query_labels])
    out: dict[str, float] = {}
    for c in sorted(set(labels.tolist())):
        v = ap[labels == c]
        v = v[~np.isnan(v)]
        out[c] = float(v.mean()) if len(v) else float("nan")
    return out


# --------------------------------------------------------------------------- plots
def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "Precision-recall",
                   ax=None):
    """One line per method from ``{name: (recall_levels, precision)}``; returns the figure."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.retrieval_plots free of matplotlib at import

    fig, ax = (plt.subplots(figsize=(4.5, 3.6)) if ax is None else (ax.figure, ax))
    for name, (r, p) in curves.items():
        if name.startswith("chance"):  # measured on random scores: dashed black, no markers
            ax.plot(np.asarray(r), np.asarray(p), "k--", lw=1, label=name)
        else:
            ax.plot(np.asarray(r), np.asarray(p), marker="o", ms=3, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("interpolated precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_per_class_ap(per_class: Mapping[str, Mapping[str, float]], title: str = "Per-class AP",
                      max_classes: int = 30, ax=None):
    """Horizontal grouped bars: one row per class (best mean AP over methods on top), one bar per
    method. Entries named ``chance...`` (measured on random scores) are drawn as dashed ticks per
    class. The figure grows with the number of classes so the 9 pt class names never overlap; with
    more than ``max_classes`` classes the best and the worst ``max_classes // 2`` are shown and the
    title says so."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.retrieval_plots free of matplotlib at import

    chance = {k: v for k, v in per_class.items() if k.startswith("chance")}  # drawn as ticks, not bars
    methods = [m for m in per_class if m not in chance]
    if not methods:
        raise ValueError("per_class: expected at least one method")
    classes = sorted({c for d in per_class.values() for c in d})
    mean = {c: np.nanmean([per_class[m].get(c, np.nan) for m in methods]) for c in classes}
    classes = sorted(classes, key=lambda c: (-np.nan_to_num(mean[c], nan=-1.0), c))
    if len(classes) > max_classes:
        half = max(1, max_classes // 2)
        title = f"{title}\n(best {half} and worst {half} of {len(classes)} classes by mean AP)"
        classes = classes[:half] + classes[-half:]
    row_in = max(0.24, 0.055 * len(methods) + 0.08)  # inches per class: its bars and a 9 pt name
    fig, ax = (plt.subplots(figsize=(7.5, 1.3 + row_in * len(classes))) if ax is None else (ax.figure, ax))
    y = np.arange(len(classes))
    h = 0.8 / len(methods)
    for k, m in enumerate(methods):
        ax.barh(y + (k - (len(methods) - 1) / 2) * h, [per_class[m].get(c, np.nan) for c in classes], h, label=m)
    for name, d in chance.items():
        ax.vlines([d.get(c, np.nan) for c in classes], y - 0.42, y + 0.42, colors="k", linestyles="--", lw=1,
                  label=name)
    ax.set_yticks(y, classes, fontsize=9)
    ax.set_ylim(len(classes) - 0.5, -0.5)  # best class on top
    ax.set_xlabel("AP")
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # never over a bar
    fig.tight_layout()
    return fig


@dataclass
class StripRow:
    """One query and its ranked results; ``correct[i]`` marks result i (True / False / None = unknown)."""

    query: torch.Tensor | np.ndarray
    results: Sequence[torch.Tensor | np.ndarray]
    correct: Sequence[bool | None]
    query_label: str = ""
    result_labels: Sequence[str] | None = None
    scores: Sequence[float] | None = None
    title: str = ""
    indices: Sequence[int] | None = None  # gallery indices of ``results`` (for the query-dependence check)


def strip_row(query, query_label: str, gallery_images: torch.Tensor, gallery_labels: Sequence[str],
              indices: Sequence[int], scores: Sequence[float] | None = None, title: str = "",
              correct: Sequence[bool | None] | None = None) -> StripRow:
    """Build a :class:`StripRow` from gallery indices; correct = same label unless ``correct`` is given."""
    idx = [int(i) for i in indices]
    labels = [str(gallery_labels[i]) for i in idx]
    ok = [lab == str(query_label) for lab in labels] if correct is None else \
        [None if c is None else bool(c) for c in correct]
    return StripRow(query, [gallery_images[i] for i in idx], ok, str(query_label), labels,
                    None if scores is None else [float(s) for s in scores], title, idx)


def _frame(ax, colour: str, width: float = 4.0) -> None:
    for side in ax.spines.values():
        side.set_edgecolor(colour)
        side.set_linewidth(width)
        side.set_visible(True)


def plot_retrieval_strips(rows: Sequence[StripRow], title: str = "", cell: float = 1.15,
                          score_label: str = "score"):
    """Each row: the query sketch, then its top-k photos framed green (correct), red (wrong) or grey.

    Above each photo: rank, class and (when given) its score, named by ``score_label`` in the legend
    (e.g. "cosine similarity", "-Hamming distance (64 bits)", "RN relation score"). ``cell`` is the
    width of one column in inches; the fonts grow with it (6 pt at the default 1.15 in), and the
    figure height leaves every row ``cell`` inches of image besides its titles."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.retrieval_plots free of matplotlib at import
    from matplotlib.patches import Patch  # lazy: keeps viz.retrieval_plots free of matplotlib at import

    if not rows:
        raise ValueError("rows: expected at least one query")
    if all(r.indices is not None for r in rows):  # warns when every query shows the same photos
        check_query_dependent([r.indices for r in rows], where=f"retrieval strips {title!r}".strip())
    k = max(len(r.results) for r in rows)
    fs = max(6.0, round(6.0 * cell / 1.15, 1))  # result titles; query, legend and suptitle one step larger
    legend_in = (2.6 * (fs + 1) + 8) / 72  # two legend lines and their margins
    height = len(rows) * (cell + (2.6 * fs + 6) / 72) + legend_in + (0.45 if title else 0.1)
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(cell * (k + 1), height), squeeze=False)
    for r, row in enumerate(rows):
        ax = axes[r, 0]
        ax.imshow(to_display_image(row.query))
        ax.set_title(row.title or f"query: {row.query_label}", fontsize=fs + 1)
        _frame(ax, "black", 1.5)
        for c in range(k):
            ax = axes[r, c + 1]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row.results):
                ax.axis("off")
                continue
            ax.imshow(to_display_image(row.results[c]))
            _frame(ax, UNKNOWN if row.correct[c] is None else (CORRECT if row.correct[c] else WRONG))
            txt = f"{c + 1}"
            if row.result_labels is not None:
                txt += f" {row.result_labels[c]}"
            if row.scores is not None:
                txt += f"\n{row.scores[c]:.3f}"
            ax.set_title(txt, fontsize=fs)
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
    handles = [Patch(facecolor="white", edgecolor=CORRECT, linewidth=3, label="same class as the query"),
               Patch(facecolor="white", edgecolor=WRONG, linewidth=3, label="other class")]
    if any(c is None for row in rows for c in row.correct):
        handles.append(Patch(facecolor="white", edgecolor=UNKNOWN, linewidth=3, label="not judged"))
    caption = "rank, class" + (f", {score_label} (higher = ranked first)" if any(r.scores is not None for r in rows) else "")
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=fs + 1, frameon=False,
               title=f"above each photo: {caption}", title_fontsize=fs + 1)
    if title:
        fig.suptitle(title, fontsize=max(10.0, fs + 2))
    fig.tight_layout(rect=(0, legend_in / height, 1, 1))
    return fig


# --------------------------------------------------------------------------- tables
def results_table(ours: Mapping[str, Mapping[str, float]], setting: str | None,
                  metrics: Sequence[str] | None = None):
    """Our numbers (rows = our methods) with a ``"<metric> (reported)"`` column beside each metric
    for which a published counterpart exists in exactly this ``setting``.

    ``ours`` = ``{method_key: {metric: value}}`` with method keys as in :mod:`xmodal_lib.methods.reported`
    (``zse_ret``, ``zse_rn``, ``crossatnet``, ``xmodalvit`` ...). Returns a pandas DataFrame
    (index = method). With ``setting=None`` (e.g. synthetic data) no reported column appears.
    """
    import pandas as pd  # lazy: optional extra pandas

    if metrics is None:
        metrics = sorted({m for d in ours.values() for m in d if m not in ("n_queries", "n_valid")})
    data: dict[str, list] = {}
    for metric in metrics:
        data[metric] = [ours[m].get(metric, np.nan) for m in ours]
        rep_vals = [rep.reported_for(m, setting, metric) for m in ours]
        if any(r is not None for r in rep_vals):
            data[f"{metric} (reported)"] = [r.value if r is not None else np.nan for r in rep_vals]
    df = pd.DataFrame(data, index=list(ours))
    df.index.name = "method"
    df.attrs["setting"] = setting
    df.attrs["note"] = ("'(reported)' columns are published numbers (xmodal_lib.methods.reported), not measured here"
                        if any(c.endswith("(reported)") for c in df.columns)
                        else f"no published number exists for setting {setting!r}: nothing reported is shown")
    return df


def reported_table(setting: str, metrics: Sequence[str] | None = None):
    """All published rows for one setting (paper, method x metric), every cell a reported number."""
    import pandas as pd  # lazy: optional extra pandas

    rows = rep.reported(setting=setting)
    if metrics is not None:
        rows = [r for r in rows if r.metric in metrics]
    df = pd.DataFrame([{"method": r.label, "metric": r.metric, "value": r.value} for r in rows])
    if df.empty:
        return df
    return df.pivot_table(index="method", columns="metric", values="value", sort=False)


_COUNT = re.compile(r"^(n|n_.*|num_.*|.*_count|count|steps|epochs)$")


def _is_count(name, values) -> bool:
    """An integer column, or a column named like a count (``n_valid``, ``n_queries`` ...) whose
    values are all whole numbers (NaN aside)."""
    v = np.asarray(values)
    if np.issubdtype(v.dtype, np.integer):
        return True
    if not np.issubdtype(v.dtype, np.floating) or not _COUNT.match(str(name)):
        return False
    finite = v[np.isfinite(v)]
    return bool(len(finite)) and bool(np.all(finite == np.round(finite)))


def table_figure(df, title: str = "", fmt: str = "{:.3f}", max_col_chars: int = 22):
    """Render a DataFrame as a matplotlib table figure (for ``save_fig``); NaN shows as '–', and
    count columns (integers, or whole numbers under a count name like ``n_valid``) as integers."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.retrieval_plots free of matplotlib at import

    counts = [_is_count(c, df[c].to_numpy()) for c in df.columns]

    def cell(v, count: bool) -> str:
        if isinstance(v, (float, np.floating)) and np.isnan(v):
            return "–"
        if count and isinstance(v, (int, float, np.integer, np.floating)):
            return str(int(round(float(v))))
        return fmt.format(v) if isinstance(v, (float, np.floating)) else str(v)

    cells = [[cell(v, c) for v, c in zip(row, counts)] for row in df.itertuples(index=False)]
    cols = [str(c)[:max_col_chars] for c in df.columns]
    fig, ax = plt.subplots(figsize=(min(2.5 + 1.6 * len(cols), 26), 1.0 + 0.45 * (len(df) + 1)))
    ax.axis("off")
    t = ax.table(cellText=cells, rowLabels=[str(i) for i in df.index], colLabels=cols, loc="center",
                 cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(10)
    t.scale(1.0, 1.5)
    for (r, c), tc in t.get_celld().items():
        if r == 0 and c >= 0 and str(df.columns[c]).endswith("(reported)"):
            tc.set_facecolor("#eeeeee")
            tc.get_text().set_style("italic")
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig
