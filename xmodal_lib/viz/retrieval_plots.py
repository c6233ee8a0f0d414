"""Retrieval figures and tables: PR curves, per-class AP, retrieval strips, results vs reported.

Numbers come from the metric engine (``xmodal_lib.retrieval.metrics``); this module only groups
and draws them. Reported numbers come from :mod:`xmodal_lib.methods.reported` and are placed beside ours
only where the setting and the metric convention match, in columns marked "(reported)".
"""
from __future__ import annotations

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
    """Grouped bars: classes on x, one bar per method. Classes ordered by mean AP over methods.
    Entries named ``chance...`` (measured on random scores) are drawn as dashed ticks per class."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.retrieval_plots free of matplotlib at import

    chance = {k: v for k, v in per_class.items() if k.startswith("chance")}  # drawn as ticks, not bars
    methods = [m for m in per_class if m not in chance]
    if not methods:
        raise ValueError("per_class: expected at least one method")
    classes = sorted({c for d in per_class.values() for c in d})
    mean = {c: np.nanmean([per_class[m].get(c, np.nan) for m in methods]) for c in classes}
    classes = sorted(classes, key=lambda c: -mean[c])[:max_classes]
    fig, ax = (plt.subplots(figsize=(max(5.0, 0.35 * len(classes) * max(1, len(methods)) + 1.5), 3.6))
               if ax is None else (ax.figure, ax))
    x = np.arange(len(classes))
    w = 0.8 / len(methods)
    for k, m in enumerate(methods):
        ax.bar(x + (k - (len(methods) - 1) / 2) * w, [per_class[m].get(c, np.nan) for c in classes], w, label=m)
    for name, d in chance.items():
        ax.hlines([d.get(c, np.nan) for c in classes], x - 0.42, x + 0.42, colors="k", linestyles="--", lw=1,
                  label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("AP")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
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
    (e.g. "cosine similarity", "-Hamming distance (64 bits)", "RN relation score")."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.retrieval_plots free of matplotlib at import
    from matplotlib.patches import Patch  # lazy: keeps viz.retrieval_plots free of matplotlib at import

    if not rows:
        raise ValueError("rows: expected at least one query")
    if all(r.indices is not None for r in rows):  # warns when every query shows the same photos
        check_query_dependent([r.indices for r in rows], where=f"retrieval strips {title!r}".strip())
    k = max(len(r.results) for r in rows)
    fig, axes = plt.subplots(len(rows), k + 1, figsize=(cell * (k + 1), cell * 1.25 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        ax = axes[r, 0]
        ax.imshow(to_display_image(row.query))
        ax.set_title(row.title or f"query: {row.query_label}", fontsize=7)
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
            ax.set_title(txt, fontsize=6)
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
    handles = [Patch(facecolor="white", edgecolor=CORRECT, linewidth=3, label="same class as the query"),
               Patch(facecolor="white", edgecolor=WRONG, linewidth=3, label="other class")]
    if any(c is None for row in rows for c in row.correct):
        handles.append(Patch(facecolor="white", edgecolor=UNKNOWN, linewidth=3, label="not judged"))
    caption = "rank, class" + (f", {score_label} (higher = ranked first)" if any(r.scores is not None for r in rows) else "")
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False,
               title=f"above each photo: {caption}", title_fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if len(rows) > 1 else 0.16, 1, 1))
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


def table_figure(df, title: str = "", fmt: str = "{:.3f}", max_col_chars: int = 22):
    """Render a DataFrame as a matplotlib table figure (for ``save_fig``); NaN shows as '–'."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.retrieval_plots free of matplotlib at import

    cells = [[("–" if (isinstance(v, float) and np.isnan(v)) else (fmt.format(v) if isinstance(v, (float, np.floating))
               else str(v))) for v in row] for row in df.itertuples(index=False)]
    cols = [str(c)[:max_col_chars] for c in df.columns]
    fig, ax = plt.subplots(figsize=(min(2.5 + 1.6 * len(cols), 26), 1.0 + 0.45 * (len(df) + 1)))
    ax.axis("off")
    t = ax.table(cellText=cells, rowLabels=[str(i) for i in df.index], colLabels=cols, loc="center",
                 cellLoc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(10)
    t.scale(1.0, 1.5)
    for (r, c), cell in t.get_celld().items():
        if r == 0 and c >= 0 and str(df.columns[c]).endswith("(reported)"):
            cell.set_facecolor("#eeeeee")
            cell.get_text().set_style("italic")
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig
