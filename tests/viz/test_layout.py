"""viz.layout.clear_titles: panel titles end up clear of the colour bars added after tight_layout."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from xmodal_lib.viz.explain import heatmap_colorbar
from xmodal_lib.viz.layout import clear_titles


def _overlaps(fig) -> list[tuple[str, str]]:
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    bars = [a for a in fig.axes if hasattr(a, "_colorbar")]
    out = []
    for ax in fig.axes:
        if ax in bars or not ax.title.get_text():
            continue
        t = ax.title.get_window_extent(r)
        out += [(ax.title.get_text(), b.get_ylabel()) for b in bars if t.overlaps(b.get_tightbbox(r))]
    return out


def test_titles_do_not_overlap_colour_bars_after_clear_titles() -> None:
    """The layout of the ZSE-SBIR pair figure (viz.explain_models.zse_pair_figure): colour bars
    added after tight_layout beside panels whose titles are wider than the panels."""
    fig, axes = plt.subplot_mosaic("ABCCD", figsize=(11, 2.6))
    titles = {"A": "sketch [Ret] attention", "B": "photo [Ret] attention",
              "C": "6 token matches (12 asked; only 6 kept ink tokens): sketch ink patch -> most similar photo token",
              "D": "patch replacement (ink patches -> matched photo patches)"}
    for k, ax in axes.items():
        ax.imshow(np.random.default_rng(0).random((8, 8)))
        ax.set_title(titles[k], fontsize=8)
    heatmap_colorbar(fig, axes["C"], cmap="viridis", label="token cosine (line colour)")
    fig.suptitle("ZSE-SBIR: Ret cosine 0.768, RN score 0.354", fontsize=9)
    fig.tight_layout()
    heatmap_colorbar(fig, [axes["A"], axes["B"]], label="[Ret] attention (min-max per map)")
    assert _overlaps(fig), "the fixture should start with an overlap"
    clear_titles(fig)
    assert not _overlaps(fig)
    assert "\n" in axes["C"].title.get_text()  # wrapped to its panel's width
    plt.close(fig)
