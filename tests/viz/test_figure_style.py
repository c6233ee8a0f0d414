"""One figure style: labelled axes, chance named in the legend, strips that explain their frames."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from xmodal_lib.viz import retrieval_plots as rp  # noqa: E402
from xmodal_lib.viz.plots import bar_table, plot_curves  # noqa: E402

HIST = [{"step": i, "loss": 1.0 / (i + 1), "dist": 0.01 * i, "acc": 0.1} for i in range(20)]


def test_curves_have_axis_labels_and_separate_panels() -> None:
    fig = plot_curves(HIST, ["loss", "dist"], smooth=3)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "loss" and ax.get_xlabel() == "optimiser step"
    assert plot_curves(HIST, ["acc"]).axes[0].get_ylabel() == "acc"
    sep = plot_curves(HIST, ["loss", "dist"], separate=True, title="t")
    assert [a.get_title() for a in sep.axes] == ["loss", "dist"]
    assert sep.axes[0].get_ylim() != sep.axes[1].get_ylim()  # each term on its own scale


def test_bar_table_names_chance_once_in_the_legend() -> None:
    fig = bar_table({"a": {"m": 0.3, "n": 0.2}, "b": {"m": 0.2, "n": 0.1}}, ["m", "n"], chance={"m": 0.1, "n": 0.05},
                    chance_label="chance (shuffled labels)")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels.count("chance (shuffled labels)") == 1 and "a" in labels and "b" in labels
    assert fig.axes[0].get_ylabel() == "score"


def test_strips_explain_frames_and_scores() -> None:
    g = torch.rand(6, 3, 16, 16)
    row = rp.strip_row(torch.rand(3, 16, 16), "a", g, ["a", "b"] * 3, [0, 1, 2], [-18.0, -19.0, -20.0])
    fig = rp.plot_retrieval_strips([row], score_label="-Hamming distance (64 bits)")
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert "same class as the query" in texts and "other class" in texts
    assert "-Hamming distance (64 bits)" in legend.get_title().get_text()


def test_pr_and_per_class_plots_draw_measured_chance_as_dashed_reference() -> None:
    q, g = ["a"] * 5 + ["b"] * 5, ["a"] * 10 + ["b"] * 20
    rnd = torch.rand(10, 30, generator=torch.Generator().manual_seed(0))
    pc = {"m": rp.per_class_ap(torch.rand(10, 30), q, g), "chance (random scores)": rp.per_class_ap(rnd, q, g)}
    fig = rp.plot_per_class_ap(pc)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "chance (random scores)" in labels and len(fig.axes[0].patches) == 2  # one bar per class, chance as ticks
    curves = {"m": rp.pr_curve(torch.rand(10, 30), q, g), "chance (random scores)": rp.pr_curve(rnd, q, g)}
    ax = rp.plot_pr_curves(curves).axes[0]
    (chance_line,) = [ln for ln in ax.lines if ln.get_label() == "chance (random scores)"]
    assert chance_line.get_linestyle() == "--"


def test_bar_table_gives_every_bar_room_for_its_value_label() -> None:
    for rows in (("ret", "rn_rerank"), ("full", "no_cross_attention", "no_gcn", "no_hashing")):
        table = {r: {"map_all_voc": 0.2, "p@100": 0.1} for r in rows}
        fig = bar_table(table, ["map_all_voc", "p@100"], chance={"map_all_voc": 0.05, "p@100": 0.04},
                        chance_label="chance (random scores, measured)")
        fig.canvas.draw()
        ax = fig.axes[0]
        ticks = [t.get_window_extent() for t in ax.get_xticklabels()]
        assert not ticks[0].overlaps(ticks[1]), rows  # metric names apart
        axes_inches = ax.get_position().width * fig.get_size_inches()[0]
        assert axes_inches / len(ax.patches) >= 0.4, rows  # inches of plot per bar, legend excluded
