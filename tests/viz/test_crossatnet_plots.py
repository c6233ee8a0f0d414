"""CrossATNet figures: attention maps carry a colorbar on a shared, labelled scale."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from xmodal_lib.viz.crossatnet_plots import plot_attention  # noqa: E402
from xmodal_lib.viz.explain import RELATIVE_ATTENTION_LABEL  # noqa: E402


def test_attention_maps_have_colorbars_on_one_scale_per_row() -> None:
    g = torch.Generator().manual_seed(0)
    sk, ph = torch.randn(2, 3, 32, 32, generator=g), torch.randn(2, 3, 32, 32, generator=g)
    guided = torch.softmax(torch.randn(2, 16, generator=g), 1).view(2, 4, 4)
    own = torch.softmax(3 * torch.randn(2, 16, generator=g), 1).view(2, 4, 4)
    fig = plot_attention(sk, ph, guided, own)
    bars = [ax for ax in fig.axes if ax.get_ylabel() == RELATIVE_ATTENTION_LABEL]
    assert len(bars) == 4, [ax.get_ylabel() for ax in fig.axes]
    for r in range(2):  # both maps of a row share vmax = the larger peak, in multiples of uniform
        ims = [a.images[-1] for a in fig.axes[: 8][r * 4: r * 4 + 4] if len(a.images) == 2]
        assert len(ims) == 2
        vmax = {im.get_clim()[1] for im in ims}
        assert len(vmax) == 1
        peak = max(float(guided[r].max()), float(own[r].max())) * 16
        assert abs(vmax.pop() - peak) < 0.2 * peak  # bilinear upsampling can only lower the peak


def test_attention_agreement_measures_sign_and_reference() -> None:
    from xmodal_lib.viz.crossatnet_plots import (
        attention_agreement,
        hash_tradeoff_summary,
    )

    g = torch.softmax(torch.randn(3, 16, generator=torch.Generator().manual_seed(1)), 1).view(3, 4, 4)
    same = attention_agreement(g, g)
    assert all(abs(r - 1) < 1e-9 for r in same["pearson"]) and max(same["kl"]) < 1e-9 and "agree" in same["summary"]
    inverse = torch.softmax(-torch.log(g.flatten(1)), 1).view(3, 4, 4)
    anti = attention_agreement(g, inverse)
    assert max(anti["pearson"]) < 0 and "anti-correlated" in anti["summary"] and "no closer" in anti["summary"]
    rows = {"real": {"map_all_voc": 0.3, "score_seconds": 0.001, "bytes_per_item": 256.0},
            "hash64": {"map_all_voc": 0.25, "score_seconds": 0.02, "bytes_per_item": 8.0}}
    s = hash_tradeoff_summary(rows)
    assert "20.0x the real time" in s and "32x less memory" in s


def test_hash_tradeoff_panels_label_units_and_draw_measured_chance() -> None:
    from xmodal_lib.viz.crossatnet_plots import plot_hash_tradeoff

    rows = {"real": {"map_all_voc": 0.3, "score_seconds": 0.001, "bytes_per_item": 512.0},
            "hash64": {"map_all_voc": 0.25, "score_seconds": 0.02, "bytes_per_item": 8.0}}
    fig = plot_hash_tradeoff(rows, chance={"map_all_voc": 0.04}, title="on data X")
    acc, secs, mem = fig.axes[:3]
    assert fig.get_size_inches()[1] >= 4.5  # panels tall enough to read
    assert secs.get_yscale() == "log" and "seconds" in secs.get_ylabel() and "bytes" in mem.get_ylabel()
    labels = [t.get_text() for t in acc.get_legend().get_texts()]
    assert labels == ["chance, random scores (0.040)"]
    assert fig._suptitle.get_text() == "on data X"
