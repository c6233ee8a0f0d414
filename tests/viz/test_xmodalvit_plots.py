"""XModalViT teacher validation figure: an honest title and the measured chance in the legend."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from xmodal_lib.methods.xmodalvit.data import FGTensors  # noqa: E402
from xmodal_lib.retrieval.chance import fg_chance_metrics  # noqa: E402
from xmodal_lib.viz.xmodalvit_plots import plot_teacher_val  # noqa: E402


def test_fg_chance_is_measured_close_to_k_over_gallery() -> None:
    ch = fg_chance_metrics(list(range(40)) * 5, 40, ks=(1, 10), repeats=50, seed=0)
    assert abs(ch["acc@1"] - 1 / 40) < 0.015 and abs(ch["acc@10"] - 10 / 40) < 0.04
    assert ch != fg_chance_metrics(list(range(40)) * 5, 40, ks=(1, 10), repeats=50, seed=1)  # random, seeded


def test_teacher_val_plot_names_chance_and_held_out_train_pairs() -> None:
    n = 12
    split = FGTensors(photos=torch.rand(n, 3, 8, 8), sketches=torch.rand(n, 3, 8, 8),
                      sketch_to_photo=torch.arange(n), photo_ids=[str(i) for i in range(n)])
    rows = [{"step": s, "val_acc@1": 0.1 * i, "val_acc@10": 0.2 + 0.1 * i} for i, s in enumerate((10, 20, 30))]
    ax = plot_teacher_val(rows, split, "qmul_v1/shoes").axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    chance = [lb for lb in labels if lb.startswith("chance")]
    assert [lb.split(",")[0] for lb in chance] == ["chance acc@1", "chance acc@10"] and "teacher acc@10" in labels
    chance10 = [ln for ln in ax.lines if ln.get_label().startswith("chance acc@10")][0].get_ydata()[0]
    assert 0.6 < chance10 < 1.0  # 10 of 12 photos: chance is high, and the plot shows it
    assert "qmul_v1/shoes" in ax.get_title() and "held out from training" in ax.get_title()
    assert ax.get_ylabel().startswith("acc@K") and ax.get_xlabel() == "optimiser step"
