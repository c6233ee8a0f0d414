"""viz.layout: titles clear of colour bars, colour bars as tall as their images, footers, labels apart."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from xmodal_lib.viz import explain as ex
from xmodal_lib.viz.explain import heatmap_colorbar
from xmodal_lib.viz.layout import add_footer, clear_titles, place_labels, text_overlaps

TITLES = {"A": "sketch [Ret] attention", "B": "photo [Ret] attention",
          "C": "6 token matches (12 asked; only 6 kept ink tokens): sketch ink patch -> most similar photo token",
          "D": "patch replacement (ink patches -> matched photo patches)"}


def _overlaps(fig) -> list[tuple[str, str]]:
    """(title, colour-bar label) pairs whose boxes overlap."""
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


def _zse_like(colorbar):
    """The layout of the ZSE-SBIR pair figure (viz.explain_models.zse_pair_figure): colour bars
    beside panels whose titles are wider than the panels, one added after tight_layout."""
    fig, axes = plt.subplot_mosaic("ABCCD", figsize=(11, 2.6))
    for k, ax in axes.items():
        ax.imshow(np.random.default_rng(0).random((8, 16 if k == "C" else 8)))
        ax.set_title(TITLES[k], fontsize=8)
    colorbar(fig, axes["C"], "token cosine (line colour)")
    fig.suptitle("ZSE-SBIR: Ret cosine 0.768, RN score 0.354", fontsize=9)
    fig.tight_layout()
    colorbar(fig, [axes["A"], axes["B"]], "[Ret] attention (min-max per map)")
    return fig, axes


def _plain_colorbar(fig, ax, label):
    sm = matplotlib.cm.ScalarMappable(cmap="viridis")
    fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02).set_label(label, fontsize=7)


def test_titles_do_not_overlap_colour_bars_after_clear_titles() -> None:
    fig, axes = _zse_like(_plain_colorbar)
    assert _overlaps(fig), "the fixture should start with an overlap"
    clear_titles(fig)
    assert not _overlaps(fig)
    assert "\n" in axes["C"].title.get_text()  # wrapped to its panel's width
    plt.close(fig)


def test_heatmap_colorbar_spans_its_images_and_clears_titles_by_itself() -> None:
    """Notebook 06's 06_zse_correspondences cell: two correspondence panels, each titled wider than
    its image and then given a colour bar, no layout call afterwards. The bars used to span the
    whole slot and run into the titles."""
    sk = np.ones((32, 32, 3), np.float32)
    sk[4:28, 15] = 0.0
    ph = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    matches = [(i, (3 * i) % 16, 0.5 + 0.02 * i) for i in range(8)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.2))
    for ax, name in zip(axes, ("correct (airplane)", "wrong (wine_bottle)")):
        lo, hi = ex.draw_correspondences(ax, sk, ph, matches, 4)
        ax.set_title(f"{name}, RN score 0.568: ink patch -> most similar photo token", fontsize=9)
        heatmap_colorbar(fig, ax, "viridis", "token cosine (line colour)", lo, hi, (f"{lo:.2f}", f"{hi:.2f}"))
    assert text_overlaps(fig) == []
    r = fig.canvas.get_renderer()
    bars = [a for a in fig.axes if hasattr(a, "_colorbar")]
    for bar, ax in zip(bars, axes):
        b, img = bar.get_window_extent(r), ax.get_window_extent(r)
        assert abs(b.y1 - img.y1) < 1.5 and abs(b.y0 - img.y0) < 1.5  # the drawn image's height, no more
        assert ax.title.get_window_extent(r).x1 <= img.x1 + 0.5  # the title wrapped to the image
    plt.close(fig)


def test_text_overlaps_finds_a_title_over_a_neighbour() -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(4, 2))
    for ax in (a, b):
        ax.set_xticks([])
        ax.set_yticks([])
    a.set_title("a title much wider than its own panel, running over the next one")
    b.set_title("the next title")
    assert text_overlaps(fig) == [("title 'a title much wider than its own panel, running over the next one'",
                                   "title 'the next title'")]
    plt.close(fig)


def test_add_footer_puts_the_text_below_every_panel() -> None:
    fig, axes = plt.subplots(1, 3, figsize=(6, 2))
    for ax in axes:
        ax.imshow(np.zeros((4, 4)))
        ax.set_xlabel("x label")
    fig.suptitle("suptitle")
    fig.tight_layout()
    h = fig.get_size_inches()[1]
    t = add_footer(fig, "rank 1: cat (correct)", fontsize=9)
    assert fig.get_size_inches()[1] > h and fig.texts[-1] is t
    assert text_overlaps(fig) == []
    r = fig.canvas.get_renderer()
    assert t.get_window_extent(r).y1 <= min(ax.get_tightbbox(r).y0 for ax in axes)
    assert t.get_window_extent(r).y0 >= 0  # inside the figure
    plt.close(fig)


def test_place_labels_keeps_labels_apart_and_off_the_points() -> None:
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(0, 0.05, (30, 2)), rng.normal(3, 1.0, (30, 2))])
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(xy[:, 0], xy[:, 1])
    ax.set_xlim(-1, 6)
    ax.set_ylim(-1, 6)
    placed = place_labels(ax, xy, [f"class_{i}" for i in range(len(xy))], fontsize=7)
    assert 10 < len(placed) < len(xy)  # the tight cluster cannot hold 30 names
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [matplotlib.text.Text.get_window_extent(a, r) for a in placed]
    for i, b in enumerate(boxes):
        assert not any(b.overlaps(o) for o in boxes[i + 1:])
        assert not any(b.contains(*p) for p in ax.transData.transform(xy))
    assert text_overlaps(fig) == []
    plt.close(fig)


@pytest.mark.parametrize("n", [1, 3])
def test_wrap_title_fits_the_panel(n: int) -> None:
    from xmodal_lib.viz.layout import wrap_title

    fig, axes = plt.subplots(1, n, figsize=(2.0 * n, 2), squeeze=False)
    ax = axes[0, 0]
    ax.set_title("a long title " * 6)
    assert wrap_title(ax)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    assert ax.title.get_window_extent(r).width <= ax.get_window_extent(r).width + 0.5
    plt.close(fig)
