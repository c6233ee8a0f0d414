"""Smoke test: the metrics benchmark runs end to end in --quick mode and its engine matches the reference."""
from __future__ import annotations

import json
import subprocess
import sys

from xmodal_lib.infra.paths import repo_root


def test_bench_metrics_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(repo_root() / "benchmarks" / "bench_metrics.py"), "--quick",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(out.read_text())
    assert res["values_match"] is True
    assert res["comparison"]["max_abs_diff"] <= 1e-9 and res["comparison"]["fg_ranks_equal"]
    assert res["engine"]["seconds"] > 0 and res["numpy_reference"]["seconds"] > 0
    assert res["quickdraw"]["metrics"]["n_queries"] == res["setting"]["qd_q"]
    assert 0.0 < res["quickdraw"]["metrics"]["map_all_voc"] < 1.0
    assert "speed ratio" in proc.stdout
