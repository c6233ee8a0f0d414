"""Closing statements follow the numbers."""
from __future__ import annotations

from xmodal_lib.viz.verdicts import compare_verdict, explorer_verdict, ratio_to_chance, zse_verdict


def test_zse_verdict_reads_the_numbers() -> None:
    zs = {"metrics": {"ret": {"map_all_voc": 0.30}, "rn": {"map_all_voc": 0.25}},
          "val": [{"step": 10, "val_map_all_voc": 0.4}, {"step": 20, "val_map_all_voc": 0.5},
                  {"step": 30, "val_map_all_voc": 0.35}],
          "history": [{"score_pos": 0.5, "score_neg": 0.49}] * 60}
    text = "\n".join(zse_verdict(zs, {"map_all_voc": 0.235}, "map_all_voc"))
    assert "does not hold" in text and "fell from 0.400 to 0.350" in text and "validation 2 of 3" in text
    assert "does not yet separate" in text and "1.28x the measured chance" in text
    zs["metrics"]["rn"]["map_all_voc"] = 0.4
    zs["history"] = [{"score_pos": 0.9, "score_neg": 0.1}] * 60
    text = "\n".join(zse_verdict(zs, {"map_all_voc": 0.235}, "map_all_voc"))
    assert "holds" in text and "separates" in text and "does not" not in text
    assert "at the measured chance" in ratio_to_chance(0.236, 0.235)


def _t(obs: float, p: float, chance: float = 0.24) -> dict:
    return {"metric": "map_all_voc", "observed": obs, "chance": chance, "p": p}


def test_compare_verdict_names_the_winner_and_the_runs_at_chance() -> None:
    text = "\n".join(compare_verdict({"zse_ret": _t(0.37, 0.005), "zse_rn": _t(0.25, 0.3),
                                      "crossatnet": _t(0.63, 0.005)}))
    assert "Best map_all_voc: `crossatnet` (0.630, +0.260 over `zse_ret`)." in text
    assert "Above chance: 2 of 3 runs; not above: `zse_rn`." in text
    assert "`zse_rn` map_all_voc: 0.250 (at the measured chance 0.240), p = 0.3 (not distinguishable" in text
    text = "\n".join(compare_verdict({"a": _t(0.30, 0.005), "b": _t(0.28, 0.001)}))
    assert "(all)" in text and "`a` (0.300, +0.020 over `b`)." in text
    text = "\n".join(compare_verdict({"a": _t(0.25, 0.2)}))
    assert "not above chance: no method works" in text


def test_explorer_verdict_flags_a_query_independent_method() -> None:
    ok = {"n_queries": 6, "k": 8, "distinct": 6, "query_dependent": True, "cross_overlap": 0.1, "random_overlap": 0.11}
    bad = {**ok, "distinct": 1, "query_dependent": False, "cross_overlap": 1.0}
    text = "\n".join(explorer_verdict({"zse": ok, "xmodalvit": bad}))
    assert "`zse`: 6 distinct top-8 lists for 6 queries, so its ranking depends on the query" in text
    assert "share 10% of their top-8 (random lists: 11%)" in text
    assert "Query-independent: `xmodalvit`" in text
    assert "Every explorer panel is query-dependent." in "\n".join(explorer_verdict({"zse": ok}))


def test_zse_pair_verdict_follows_the_scores() -> None:
    from xmodal_lib.viz.verdicts import zse_pair_verdict

    assert "scores the correct photo higher (0.800 vs 0.200)" in zse_pair_verdict("cat", 1, 3, 0.8, 0.2)
    text = zse_pair_verdict("cat", 4, 1, 0.1, 0.3)
    assert "rank 4" in text and "does NOT score the correct photo higher (0.100 vs 0.300)" in text
