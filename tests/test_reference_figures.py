"""benchmarks/reference_figures.py: the summary table takes every row from the runs' results."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("reference_figures", Path(__file__).parents[1] / "benchmarks" / "reference_figures.py")
ref = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(ref)


def test_summary_rows_come_from_the_results_with_chance_and_p() -> None:
    m = lambda a, b: {"map_all_voc": a, "p@100": b}  # noqa: E731
    r03 = {"ablations": {"full": m(0.2, 0.1), "no_gcn": m(0.3, 0.2)}, "zero_shot": {"hash64": m(0.15, 0.09),
           "hash16": m(0.1, 0.05), "real": m(0.2, 0.1)}, "chance": m(0.05, 0.04), "significance": {"p": 0.005}}
    r04 = {"zero_shot": {"metrics": {"ret": m(0.09, 0.06)}, "chance": m(0.055, 0.041)},
           "significance": {"ret": {"p": 0.01}}}
    rows = ref.summary_rows(r03, r04)
    assert list(rows)[:4] == ["CrossATNet full (03)", "CrossATNet no_gcn (03)", "CrossATNet hash16 Hamming (03)",
                              "CrossATNet hash64 Hamming (03)"]
    assert rows["CrossATNet full (03)"]["p (perm.)"] == 0.005 and math.isnan(rows["CrossATNet no_gcn (03)"]["p (perm.)"])
    assert rows["ZSE-SBIR ret (04)"] == {"map_all_voc": 0.09, "p@100": 0.06, "p (perm.)": 0.01}
    assert rows["chance, random scores (04)"]["map_all_voc"] == 0.055
    assert ref.summary_rows(None, None) == {}
