"""Our paper-profile numbers next to the reported ones: difference, setting and convention per row."""
from __future__ import annotations

import pytest

from xmodal_lib.methods import reported as R


def test_rows_pair_exact_setting_and_metric_with_difference():
    ours = {"zse_ret": {"map_all_voc": 0.70, "p@100_minr": 0.80, "p@100": 0.80, "map_all": 0.5},
            "zse_rn": {"map_all_voc": 0.60}, "crossatnet": {"map_all_voc": 0.3}}
    rows = R.comparison(ours, "sketchy_ext_25", "15229 x 17101")
    got = {(r["method"], r["metric"]): r for r in rows}
    assert set(got) == {("zse_ret", "map_all_voc"), ("zse_ret", "p@100_minr"), ("zse_rn", "map_all_voc")}
    r = got[("zse_ret", "map_all_voc")]
    assert r["reported"] == pytest.approx(0.736) and r["difference"] == pytest.approx(0.70 - 0.736)
    assert "25 unseen" in r["setting"] and "VOC" in r["convention"] and r["ours_queries_x_gallery"] == "15229 x 17101"
    assert got[("zse_rn", "map_all_voc")]["reported_as"] == "Ours-RN [ZSE-SBIR]"
    md = R.comparison_markdown(rows)
    assert md.count("\n") == 4 and "-0.0360" in md and "Sketchy-Extended" in md


def test_sketchy21_uses_the_voc_map200_and_fg_rows():
    rows = R.comparison({"zse_ret": {"map@200_voc": 0.5, "map@200_strict": 0.4}}, "sketchy_ext_21")
    assert [r["metric"] for r in rows] == ["map@200_voc"] and rows[0]["reported"] == pytest.approx(0.504)
    fg = R.comparison({"xmodalvit": {"acc@1": 0.40, "acc@10": 0.9}}, "shoe_v2")
    assert {r["metric"]: round(r["difference"], 4) for r in fg} == {"acc@1": round(0.40 - 0.4505, 4),
                                                                   "acc@10": round(0.9 - 0.9023, 4)}


def test_no_setting_no_rows_and_bad_setting():
    assert R.comparison({"zse_ret": {"map_all_voc": 0.7}}, None) == []
    assert "nothing to compare" in R.comparison_markdown([])
    with pytest.raises(ValueError, match="setting"):
        R.comparison({}, "imagenet")
