"""Closing statements follow the numbers."""
from __future__ import annotations

from xmodal_lib.viz.verdicts import ratio_to_chance, zse_verdict


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
