"""Shared plotting helpers: one style, ``save_fig`` into ``figures/``, curves and bar tables."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt

from xmodal_lib.infra.paths import figures_dir
from xmodal_lib.viz.layout import wrap_suptitle

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def setup_style() -> None:
    """The project's figure style (seaborn whitegrid, readable fonts, fixed palette)."""
    try:
        import seaborn as sns  # lazy: optional dependency, ImportError handled

        sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)
    except ImportError:  # seaborn is a core dependency; keep plots working without it anyway
        plt.style.use("default")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "savefig.bbox": "tight",
                         "axes.titlesize": 11, "axes.labelsize": 10})


def save_fig(fig: plt.Figure, name: str, out_dir: str | Path | None = None, close: bool = False) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` (or ``out_dir``) and return the path."""
    stem = name[:-4] if name.endswith(".png") else name
    if not _NAME.match(stem):
        raise ValueError(f"save_fig(name=...): use letters, digits, '_', '-', '.', got {name!r}")
    d = Path(out_dir) if out_dir is not None else figures_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{stem}.png"
    fig.savefig(path)
    if close:
        plt.close(fig)
    return path


def with_data(title: str, data_name: str | None) -> str:
    """``title`` with the name of the data appended (``"loss — sketchy_mini zeroshot1"``); unchanged
    without ``data_name``."""
    if not data_name:
        return title
    return f"{title} — {data_name}" if title else str(data_name)


#: smallest plot area (inches) of one panel of ``plot_curves(..., separate=True)``
PANEL_IN = (3.2, 2.6)


def plot_curves(history: Sequence[Mapping[str, Any]], keys: Iterable[str], x: str = "step",
                title: str = "", ax: plt.Axes | None = None, smooth: int = 1, ylabel: str | None = None,
                separate: bool = False, data_name: str | None = None) -> plt.Figure:
    """Line plot of ``keys`` from a list of log rows (e.g. ``TrainResult.history``).

    ``smooth`` > 1 draws a running mean over that many rows on top of the raw values (faint).
    ``ylabel`` defaults to "loss" when every key is a loss term, else the keys. ``separate`` draws
    one panel per key with its own y-scale (terms of very different size stay readable), up to
    three per row, each with a plot area of at least :data:`PANEL_IN` inches. ``data_name`` (e.g.
    ``"sketchy_mini zeroshot1"``, the data trained on) is appended to the title (the figure title
    with ``separate``); None keeps the title as given."""
    keys = list(keys)
    if separate and ax is None and len(keys) > 1:
        return _separate_curves(history, keys, x, with_data(title, data_name), smooth, ylabel)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
    else:
        fig = ax.figure
    for i, k in enumerate(keys):
        rows = [r for r in history if k in r and r[k] is not None]
        if not rows:
            raise ValueError(f"plot_curves: key {k!r} not in history (have {sorted(history[0]) if history else []})")
        xs = [r[x] for r in rows]
        ys = [r[k] for r in rows]
        color = PALETTE[i % len(PALETTE)]
        if smooth > 1 and len(ys) > smooth:
            import numpy as np  # lazy: only needed on this branch

            kern = np.ones(smooth) / smooth
            ax.plot(xs, ys, color=color, alpha=0.3)
            ax.plot(xs[smooth - 1:], np.convolve(ys, kern, mode="valid"), color=color,
                    label=f"{k} (running mean of {smooth})")
        else:
            ax.plot(xs, ys, color=color, label=k)
    lossy = all(("loss" in k or k in _LOSS_TERMS) for k in keys)
    ax.set_xlabel("optimiser step" if x == "step" else x)
    ax.set_ylabel(ylabel if ylabel is not None else ("loss" if lossy else ", ".join(keys)))
    ax.set_title(with_data(title, data_name))
    ax.legend(fontsize=9)
    return fig


def _separate_curves(history, keys: list[str], x: str, title: str, smooth: int, ylabel: str | None) -> plt.Figure:
    """One panel per key, up to three per row, every plot area at least :data:`PANEL_IN`; fonts >= 9 pt."""
    nrows = math.ceil(len(keys) / 3)
    ncols = math.ceil(len(keys) / nrows)  # 4 keys: 2 x 2, 5-6 keys: 2 x 3
    # plot area + room for tick labels, axis labels and the panel title (inches)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * (PANEL_IN[0] + 1.0), nrows * (PANEL_IN[1] + 0.9) + 0.6),
                             squeeze=False)
    for a, k in zip(axes.flat, keys):
        plot_curves(history, [k], x=x, title=k, ax=a, smooth=smooth, ylabel=ylabel)
    for a in list(axes.flat)[len(keys):]:
        a.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    if wrap_suptitle(fig):  # a long title (with the data name) on two lines, not past the figure's edges
        fig.tight_layout()
    return fig


#: history keys that are loss terms although their name does not say "loss"
_LOSS_TERMS = frozenset({"xaqc_photo", "xaqc_sketch", "dist", "angle", "triplet", "matching", "semantic", "attention_kl",
                         "attention", "hash", "quant", "balance", "xaqc", "rkd"})


def bar_table(table: Mapping[str, Mapping[str, float]], metrics: Sequence[str], title: str = "",
              chance: Mapping[str, float] | None = None, ax: plt.Axes | None = None,
              chance_label: str = "chance", ylabel: str = "score") -> plt.Figure:
    """Grouped bars: one group per metric, one bar per row of ``table`` ({row: {metric: value}}).

    ``chance`` draws a dashed line per metric at the chance level, named once in the legend.
    """
    import numpy as np  # lazy: keeps viz.plots free of numpy at import

    rows = list(table)
    if ax is None:
        # the legend beside the axes takes ~2.6 in; then ~0.55 in per bar, so value labels ("0.208")
        # and metric names never run into each other
        fig, ax = plt.subplots(figsize=(3.6 + 0.55 * len(rows) * len(metrics) + 0.3 * len(metrics), 3.8))
    else:
        fig = ax.figure
    width = 0.8 / max(1, len(rows))
    xs = np.arange(len(metrics))
    for i, r in enumerate(rows):
        vals = [float(table[r].get(m, float("nan"))) for m in metrics]
        bars = ax.bar(xs + i * width - 0.4 + width / 2, vals, width, label=r, color=PALETTE[i % len(PALETTE)])
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    if chance:
        labelled = False
        for j, m in enumerate(metrics):
            if m in chance:
                ax.hlines(chance[m], xs[j] - 0.45, xs[j] + 0.45, colors="k", linestyles="--", linewidth=1,
                          label=None if labelled else chance_label)
                labelled = True
    ax.set_xticks(xs, metrics)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # never over a bar
    fig.tight_layout()
    return fig


def markdown_table(table: Mapping[str, Mapping[str, Any]], columns: Sequence[str] | None = None,
                   fmt: str = "{:.4f}") -> str:
    """A Markdown table from ``{row: {column: value}}`` (floats formatted with ``fmt``)."""
    rows = list(table)
    cols = list(columns) if columns is not None else sorted({c for r in rows for c in table[r]})
    out = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = table[r].get(c, "")
            cells.append(fmt.format(v) if isinstance(v, float) else str(v))
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(out)
