"""Readable figures: titles that name the data, plain colour-bar labels, panels and fonts big enough,
labels that do not overlap, counts printed as integers, titles clear of colour bars."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from xmodal_lib.viz import crossatnet_plots as cp  # noqa: E402
from xmodal_lib.viz import explain_models as em  # noqa: E402
from xmodal_lib.viz import retrieval_plots as rp  # noqa: E402
from xmodal_lib.viz.explain import RELATIVE_ATTENTION_LABEL  # noqa: E402
from xmodal_lib.viz.layout import text_overlaps  # noqa: E402
from xmodal_lib.viz.plots import plot_curves  # noqa: E402
from xmodal_lib.viz.xmodalvit_plots import plot_xma_attention  # noqa: E402

HIST = [{"step": i, "loss": 1.0 / (i + 1), "xaqc_photo": 3 - i / 50, "xaqc_sketch": 2.5 - i / 60, "dist": 0.01 * i,
         "angle": 0.02 + 0.001 * i, "triplet": 0.3, "matching": 0.6} for i in range(40)]
DATA = "sketchy_mini zeroshot1"


def _texts(fig) -> list[Text]:
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _inches(fig, ax) -> tuple[float, float]:
    """Drawn width and height of a panel's plot area (aspect applied), in inches."""
    fig.canvas.draw()
    e = ax.get_window_extent(fig.canvas.get_renderer())
    return e.width / fig.dpi, e.height / fig.dpi


# ------------------------------------------------------------------ 1: the data in the title
def test_curve_titles_name_the_data_when_asked() -> None:
    assert plot_curves(HIST, ["loss"], title="teacher XAQC loss").axes[0].get_title() == "teacher XAQC loss"
    fig = plot_curves(HIST, ["loss"], title="teacher XAQC loss", data_name=DATA)  # 01_teacher_loss
    assert fig.axes[0].get_title() == f"teacher XAQC loss — {DATA}"
    fig, axes = plt.subplots(1, 2)  # 04_zse_training_curves: two calls on given axes
    plot_curves(HIST, ["loss", "triplet"], ax=axes[0], title="training losses", data_name=DATA)
    assert axes[0].get_title().endswith(f"— {DATA}")
    sep = plot_curves(HIST, ["loss", "dist"], title="losses", separate=True, data_name=DATA)
    assert DATA in " ".join(sep._suptitle.get_text().split()) and sep.axes[0].get_title() == "loss"
    plt.close("all")


# ------------------------------------------------------------------ 2: what the XMA colour bars show
def test_xma_attention_colour_bars_say_relative_to_uniform() -> None:
    g = torch.Generator().manual_seed(0)
    grids = {k: torch.softmax(3 * torch.randn(2, 16, generator=g), 1).view(2, 4, 4)
             for k in ("sketch_to_photo", "photo_to_sketch")}
    fig = plot_xma_attention(torch.rand(3, 32, 32), torch.rand(3, 32, 32), grids)
    bars = [a for a in fig.axes if hasattr(a, "_colorbar")]
    assert len(bars) == 4 and {b.get_ylabel() for b in bars} == {RELATIVE_ATTENTION_LABEL}
    assert "1 = uniform" in RELATIVE_ATTENTION_LABEL and "attention" in RELATIVE_ATTENTION_LABEL
    for b in bars:  # what is drawn: weight / (1 / cells), so the mean over the cells is exactly 1
        assert b._colorbar.mappable.get_array().mean() == pytest.approx(1.0, abs=1e-5)
    assert min(b.yaxis.label.get_fontsize() for b in bars) >= 8
    plt.close(fig)


# ------------------------------------------------------------------ 3: panels and fonts big enough
@pytest.mark.parametrize("keys", [["xaqc_photo", "xaqc_sketch"], ["xaqc_photo", "xaqc_sketch", "dist", "angle"],
                                  ["loss", "xaqc_photo", "xaqc_sketch", "dist", "angle"]])
def test_separate_loss_panels_are_big_with_readable_fonts(keys: list[str]) -> None:
    fig = plot_curves(HIST, keys, smooth=5, separate=True,  # 02_distillation_losses
                      title=f"distillation losses, students XAQC + XMRD (one panel per term) — {DATA}")
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == len(keys)
    for ax in panels:
        w, h = _inches(fig, ax)
        assert w >= 3.2 and h >= 2.6, (ax.get_title(), w, h)
    assert min(t.get_fontsize() for t in _texts(fig)) >= 9
    assert text_overlaps(fig) == []
    assert fig._suptitle.get_window_extent().width <= fig.bbox.width  # wrapped, not past the edges
    plt.close(fig)


def test_hamming_panels_are_big_with_readable_fonts() -> None:
    rows = {"real": {"map_all_voc": 0.208, "score_seconds": 0.0011, "bytes_per_item": 512.0}}
    for b in (16, 32, 64, 128):
        rows[f"hash{b}"] = {"map_all_voc": 0.1 + b / 1000, "score_seconds": b / 300, "bytes_per_item": b / 8}
    fig = cp.plot_hash_tradeoff(rows, chance={"map_all_voc": 0.055}, title="on sketchy_mini")  # 03_hamming_vs_real
    for ax in fig.axes:
        w, h = _inches(fig, ax)
        assert w >= 3.2 and h >= 2.6, (ax.get_title(), w, h)
    assert min(t.get_fontsize() for t in _texts(fig)) >= 9
    assert text_overlaps(fig) == []
    plt.close(fig)


# ------------------------------------------------------------------ 4: class-graph names apart
def test_class_graph_names_do_not_overlap() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(60, 16, generator=g)
    feats[::2] = feats[0] + 0.05 * feats[::2]  # half of the classes in one tight cluster
    names = [f"class_{i:02d}" for i in range(60)]
    adj = (torch.rand(48, 48, generator=g) > 0.9).float()
    fig = cp.plot_class_graph(names[:48], feats[:48], adj, extra_names=names[48:], extra_features=feats[48:],
                              title="Unseen classes (stars) against the seen-class graph")  # 03_class_graph_unseen
    ax = fig.axes[0]
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text() in names]
    boxes = [Text.get_window_extent(t, r) for t in labels]
    for i, b in enumerate(boxes):
        assert not any(b.overlaps(o) for o in boxes[i + 1:]), labels[i].get_text()
    assert min(t.get_fontsize() for t in labels) >= 7
    assert {t.get_text() for t in labels} >= set(names[48:])  # every unseen class named here
    assert f"names shown for {len(labels)} of 60 classes" in ax.get_title()  # says that some are left out
    assert text_overlaps(fig) == []
    plt.close(fig)


# ------------------------------------------------------------------ 5: per-class AP names readable
def test_per_class_ap_class_names_are_readable() -> None:
    rng = np.random.default_rng(0)

    def table(n: int) -> dict:
        classes = [f"class_{i:02d}" for i in range(n)]
        out = {m: {c: float(rng.random()) for c in classes} for m in ("zse_ret", "zse_rn", "crossatnet")}
        return {**out, "chance (random scores)": {c: 0.05 for c in classes}}

    fig = rp.plot_per_class_ap(table(25), title="per-class AP (unseen classes)")  # 05_per_class_ap
    ax = fig.axes[0]
    ticks = [t for t in ax.get_yticklabels() if t.get_text()]
    assert len(ticks) == 25 and min(t.get_fontsize() for t in ticks) >= 8
    assert text_overlaps(fig) == []  # tick labels apart, legend off the bars
    taller = rp.plot_per_class_ap(table(28))
    assert taller.get_size_inches()[1] > fig.get_size_inches()[1]  # the height grows with the classes
    many = rp.plot_per_class_ap(table(50), max_classes=30)
    assert len([t for t in many.axes[0].get_yticklabels() if t.get_text()]) == 30
    assert "best 15 and worst 15 of 50 classes" in many.axes[0].get_title()
    plt.close("all")


# ------------------------------------------------------------------ 6: counts as integers
def test_results_table_prints_counts_as_integers() -> None:
    ours = {"zse_ret": {"map_all_voc": 0.1, "acc@1": 1.0, "n_valid": 144.0},
            "chance (random scores)": {"map_all_voc": 0.05, "acc@1": 0.0}}
    df = rp.results_table(ours, None, metrics=["map_all_voc", "acc@1", "n_valid"])
    assert df["n_valid"].dtype.kind == "f"  # NaN for chance: pandas keeps the column float
    fig = rp.table_figure(df, title="t")  # 05_results_table
    cells = fig.axes[0].tables[0].get_celld()
    col = list(df.columns).index("n_valid")
    assert cells[(1, col)].get_text().get_text() == "144"
    assert cells[(2, col)].get_text().get_text() == "–"
    assert cells[(1, 0)].get_text().get_text() == "0.100"
    assert cells[(1, 1)].get_text().get_text() == "1.000"  # a whole-valued metric stays a metric
    plt.close(fig)


# ------------------------------------------------------------------ 7: titles clear of colour bars
def _zse_explanation(kept: int = 9) -> em.Explanation:
    g = torch.Generator().manual_seed(0)
    pos = torch.arange(16)[:kept]
    return em.Explanation("zse", (4, 4), 0.5, photo_attn=[torch.rand(2, 16, generator=g)],
                          sketch_attn=[torch.rand(2, kept, generator=g)], photo_attn_pos=[torch.arange(16)],
                          sketch_attn_pos=[pos], sketch_tokens=torch.randn(kept, 8, generator=g),
                          photo_tokens=torch.randn(16, 8, generator=g), sketch_kept=pos, photo_kept=torch.arange(16),
                          rn_score=0.3)


def _sketch() -> torch.Tensor:
    x = torch.ones(3, 32, 32)
    x[:, 4:28, 10] = -1.0
    x[:, 12, 3:29] = -1.0
    return x


def test_zse_pair_figure_titles_clear_of_colour_bars() -> None:
    fig = em.zse_pair_figure(_sketch(), torch.rand(3, 32, 32) * 2 - 1, _zse_explanation(), 12, 0.02, norm="half",
                             title="token selection r=0.7: 9 of 16 sketch tokens kept")  # 06_zse_token_selection
    assert text_overlaps(fig) == []
    images = [ax for ax in fig.axes if ax.images and not hasattr(ax, "_colorbar")]
    assert len(images) == 4 and min(min(_inches(fig, ax)) for ax in images) >= 1.6  # explorer panels too
    plt.close(fig)


def test_xmodal_and_crossatnet_pair_figures_keep_text_apart() -> None:
    g = torch.Generator().manual_seed(1)
    e = em.Explanation("xmodalvit", (4, 4), 0.1, photo_attn=[torch.rand(3, 16, generator=g) for _ in range(2)],
                       sketch_attn=[torch.rand(3, 16, generator=g) for _ in range(2)],
                       photo_to_sketch_cls=[torch.full((3,), 0.05), torch.full((3,), 0.05)])
    fig = em.xmodal_pair_figure(_sketch(), torch.rand(3, 32, 32), e)  # 06_xmodalvit_xma_attention
    assert text_overlaps(fig) == []
    c = em.Explanation("crossatnet", (4, 4), 0.0, photo_attn=[torch.rand(1, 16, generator=g)], sketch_attn=[],
                       guided_attn=torch.rand(1, 16, generator=g))
    fig2 = em.crossatnet_pair_figure(_sketch(), torch.rand(3, 32, 32), c)  # 06_crossatnet_attention
    assert text_overlaps(fig2) == []
    for f in (fig, fig2):  # the pair figures' images are explorer panels too: >= 1.6 in
        for ax in f.axes:
            if ax.images and not hasattr(ax, "_colorbar"):
                assert min(_inches(f, ax)) >= 1.6, (ax.get_title(), _inches(f, ax))
    plt.close("all")
