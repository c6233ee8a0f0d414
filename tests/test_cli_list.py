"""`xmodal list --profile paper` shows only the values the profile changes from the notebook defaults."""
from __future__ import annotations

from xmodal_lib.cli import main


def test_list_paper_shows_only_changed_values(capsys):
    assert main(["list", "--profile", "paper"]) == 0
    lines = capsys.readouterr().out.splitlines()
    params = [ln for ln in lines if ln.startswith("    ") and " = " in ln]
    assert params and all("  -> " in ln and ln.endswith("(paper)") for ln in params)
    for ln in params:  # the shown value differs from the default
        default, new = ln.split(" = ", 1)[1].split("  -> ")
        assert default != new.removesuffix(" (paper)")
    assert any(ln.strip().startswith("VAL_FRACTION = 0.15  -> 0.0") for ln in params)
    assert not any(ln.strip().startswith("SEED =") for ln in params)  # 0 in both
    assert any("more as the notebook's defaults" in ln for ln in lines)


def test_list_all_shows_every_parameter(capsys):
    assert main(["list", "--profile", "paper", "--all"]) == 0
    out = capsys.readouterr().out
    assert "    SEED = 0\n" in out and "VAL_FRACTION = 0.15  -> 0.0 (paper)" in out
