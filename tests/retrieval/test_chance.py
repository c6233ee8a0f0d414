"""Measured chance and the metrics a small gallery cannot inform."""
from __future__ import annotations

from xmodal_lib.retrieval.chance import chance_metrics


def _labels():
    # unequal class sizes: chance mAP is not 1 / n_classes
    g = ["a"] * 30 + ["b"] * 10 + ["c"] * 5
    q = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    return q, g


def test_chance_is_measured_not_one_over_classes():
    q, g = _labels()
    ch = chance_metrics(q, g, ("map_all", "p@10"), repeats=20, seed=0)
    expected_p10 = (10 * 30 / 45 + 10 * 10 / 45 + 10 * 5 / 45) / 30  # expected precision of a random top-10
    assert abs(ch["p@10"] - expected_p10) < 0.03
    assert abs(ch["map_all"] - 1 / 3) > 0.02  # class sizes differ, so 1/3 would be wrong


def test_uninformative_metrics_at_small_galleries():
    from xmodal_lib.retrieval.chance import uninformative_metrics

    why = uninformative_metrics(("map_all_voc", "p@100", "p@100_minr", "map@200_voc", "p@10"), n_gallery=72)
    assert set(why) == {"p@100", "map@200_voc"} and "any ranking" in why["p@100"]
    assert uninformative_metrics(("p@100", "map@200_voc"), n_gallery=625) == {}
