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


def test_precision_at_min_k_r_beyond_the_largest_class_is_one_metric():
    import torch

    from xmodal_lib.retrieval.chance import uninformative_metrics
    from xmodal_lib.retrieval.metrics import category_metrics

    gallery = ["a"] * 12 + ["b"] * 30 + ["c"] * 30
    why = uninformative_metrics(("p@10_minr", "p@100_minr", "p@200_minr"), len(gallery), gallery)
    assert set(why) == {"p@200_minr"} and "R-precision, the same as p@100_minr" in why["p@200_minr"]
    scores = torch.rand(9, len(gallery), generator=torch.Generator().manual_seed(0))
    m = category_metrics(scores, ["a", "b", "c"] * 3, gallery, metrics=("p@100_minr", "p@200_minr"))
    assert m["p@100_minr"] == m["p@200_minr"]  # the repeat really repeats
