"""The end-of-run summary: headline metrics only, the full record stays in results.json."""
from __future__ import annotations

from xmodal_lib.run.report import MAX_ROWS, headline_markdown, headline_rows, headline_text


def _results() -> dict:
    return {
        "03_crossatnet": {"config": {"lr": 0.001, "margin": 0.2}, "metrics": {"full": {"map_all_voc": 0.31, "p@100": 0.2},
                          "chance": {"map_all_voc": 0.05}}, "per_class_ap": {"cat": 0.9}, "steps": 40},
        "05_zero_shot_evaluation": {"metrics": {"zse_ret": {"map@200_voc": 0.4, "n_valid": 25}},
                                    "history": [{"loss": 1.0}], "flag": True},
        "02_distillation": {"test": {"students": {"acc@1": 0.1, "acc@10": 0.4, "p_value": 1e-5}}},
    }


def test_headline_rows_keep_metrics_and_drop_config_and_counts() -> None:
    rows, left = headline_rows(_results())
    keys = {(n, k) for n, k, _ in rows}
    assert ("03_crossatnet", "metrics.full.map_all_voc") in keys and ("03_crossatnet", "metrics.chance.map_all_voc") in keys
    assert ("05_zero_shot_evaluation", "metrics.zse_ret.map@200_voc") in keys
    assert ("02_distillation", "test.students.acc@10") in keys and ("02_distillation", "test.students.p_value") in keys
    assert not any(k.startswith(("config", "per_class_ap")) or k.endswith(("n_valid", "steps", "lr")) for _, k, _ in rows)
    assert left == 0


def test_headline_is_bounded_and_says_what_it_left_out() -> None:
    many = {"r": {"metrics": {f"m{i}": {"map_all_voc": i / 100} for i in range(MAX_ROWS + 7)}}}
    rows, left = headline_rows(many)
    assert len(rows) == MAX_ROWS and left == 7
    assert "7 more metric rows" in headline_markdown(many) and "7 more metric rows" in headline_text(many)
    assert "No headline metric" in headline_markdown({"x": {"config": {"a": 1}}})
