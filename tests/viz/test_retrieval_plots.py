"""Retrieval plots/tables and the reported-numbers data."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from xmodal_lib.methods import reported as rep
from xmodal_lib.retrieval import metrics as M
from xmodal_lib.viz import retrieval_plots as rp


def _toy():
    """Two classes; query 0 ranks its class first (AP 1), query 1 ranks it last."""
    gl = ["a", "a", "b", "b"]
    ql = ["a", "b"]
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0],
                           [0.9, 0.8, 0.1, 0.0]])
    return scores, ql, gl


def test_per_class_ap_groups_engine_ap():
    scores, ql, gl = _toy()
    pc = rp.per_class_ap(scores, ql, gl, voc=False)
    assert pc["a"] == pytest.approx(1.0)
    # query b: relevant at ranks 3, 4 -> AP = (1/3 + 2/4) / 2
    assert pc["b"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    ap = M.average_precision_per_query(scores, ql, gl, voc=True)
    assert rp.per_class_ap(scores, ql, gl)["b"] == pytest.approx(float(ap[1]))


def test_pr_curve_and_plot():
    scores, ql, gl = _toy()
    r, p = rp.pr_curve(scores, ql, gl, recall_levels=11)
    assert r.shape == p.shape == (11,)
    assert p[0] == pytest.approx((1.0 + 0.5) / 2)     # max precision at recall >= 0
    assert np.all(np.diff(p) <= 1e-12)                  # interpolated precision is non-increasing
    fig = rp.plot_pr_curves({"m1": (r, p), "m2": (r, p * 0.5)})
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)
    fig = rp.plot_per_class_ap({"m1": {"a": 1.0, "b": 0.4}, "m2": {"a": 0.5, "b": 0.2}})
    assert len(fig.axes[0].patches) == 4
    plt.close(fig)


def test_retrieval_strip_marks_correct_and_wrong():
    imgs = torch.rand(5, 3, 8, 8)
    row = rp.strip_row(torch.rand(3, 8, 8), "a", imgs, ["a", "b", "a", "b", "a"], [2, 1, 0], scores=[.9, .8, .7])
    assert row.correct == [True, False, True]
    fig = rp.plot_retrieval_strips([row, row])
    ax = fig.axes[2]   # row 0, second result (wrong)
    assert matplotlib.colors.to_hex(ax.spines["top"].get_edgecolor()) == rp.WRONG
    assert matplotlib.colors.to_hex(fig.axes[1].spines["top"].get_edgecolor()) == rp.CORRECT
    plt.close(fig)
    with pytest.raises(ValueError):
        rp.plot_retrieval_strips([])


def test_reported_data_matches_spec_and_is_marked():
    r = rep.reported_for("zse_ret", "sketchy_ext_25", "map_all_voc")
    assert r is not None and r.value == pytest.approx(0.736) and "reported" in r.label
    assert rep.reported_for("zse_rn", "quickdraw_ext_30", "p@200_minr").value == pytest.approx(0.216)
    assert rep.reported_for("xmodalvit", "shoe_v2", "acc@1").value == pytest.approx(0.4505)
    assert rep.reported_for("zse_ret", None, "map_all_voc") is None
    assert rep.reported(ours="crossatnet") == []          # no CrossATNet numbers are quoted
    assert all(r.metric in rep.CONVENTIONS and r.setting in rep.SETTINGS for r in rep.REPORTED)
    for r in rep.REPORTED:                                 # every metric name parses in the engine
        if r.metric.startswith(("map@", "p@")):
            M.parse_metric(r.metric)
    assert all(d["kind"] == "reported" for d in rep.as_records())
    with pytest.raises(ValueError, match="setting"):
        rep.reported(setting="nope")


def test_results_table_reported_only_where_setting_matches():
    ours = {"zse_ret": {"map_all_voc": 0.1, "p@100_minr": 0.2, "map_all": 0.05},
            "crossatnet": {"map_all_voc": 0.3, "p@100_minr": 0.4, "map_all": 0.2}}
    df = rp.results_table(ours, "sketchy_ext_25")
    assert "map_all_voc (reported)" in df.columns and "map_all (reported)" not in df.columns
    assert df.loc["zse_ret", "map_all_voc (reported)"] == pytest.approx(0.736)
    assert np.isnan(df.loc["crossatnet", "map_all_voc (reported)"])
    assert df.loc["crossatnet", "map_all_voc"] == pytest.approx(0.3)
    df2 = rp.results_table(ours, None)
    assert not any("reported" in c for c in df2.columns)
    assert "no published number" in df2.attrs["note"]
    fig = rp.table_figure(df, title="t")
    plt.close(fig)
    assert len(rp.reported_table("sketchy_ext_25")) == 17
