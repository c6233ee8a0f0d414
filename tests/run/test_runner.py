"""The reproduce runner: notebook selection, parameter resolution, manifest, failures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from xmodal_lib.run import runner

REQUIRED_MANIFEST = {
    "git", "packages", "python", "platform", "device", "profile", "seeds",
    "notebooks", "total_wall_s", "status", "created_utc", "kernel",
}


def _nb(path: Path, params: str, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, *[nbformat.v4.new_code_cell(c) for c in cells]]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def nbdir(tmp_path: Path) -> Path:
    d = tmp_path / "nbs"
    d.mkdir()
    _nb(d / "00_first.ipynb", "SEED = 0\nEPOCHS = 1\nLR = 0.001\nDATA_ROOT = None\nPROFILE = 'smoke'")
    _nb(d / "01_second.ipynb", "SEED = 1\nNAME = 'x'")
    _nb(d / "notes.ipynb", "A = 1")  # not numbered: never run
    (d / "params" / "smoke").mkdir(parents=True)
    (d / "params" / "smoke" / "00_first.yaml").write_text("EPOCHS: 2\n")
    return d


def test_discover_orders_and_selects(nbdir: Path) -> None:
    assert [p.name for p in runner.discover_notebooks(nbdir)] == ["00_first.ipynb", "01_second.ipynb"]
    assert [p.name for p in runner.discover_notebooks(nbdir, ["1"])] == ["01_second.ipynb"]
    assert [p.name for p in runner.discover_notebooks(nbdir, ["01", "00_first"])] == [
        "00_first.ipynb", "01_second.ipynb"]
    with pytest.raises(ValueError, match="'07'"):
        runner.discover_notebooks(nbdir, ["07"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("EPOCHS=3", (None, "EPOCHS", 3)),
        ("LR=1e-4", (None, "LR", 1e-4)),
        ("LR=0.5", (None, "LR", 0.5)),
        ("FLAG=true", (None, "FLAG", True)),
        ("DATA_ROOT=None", (None, "DATA_ROOT", None)),
        ("NAME=sketchy", (None, "NAME", "sketchy")),
        ("KS=[1, 5]", (None, "KS", [1, 5])),
        ("02.EPOCHS=4", ("02", "EPOCHS", 4)),
        ("PRETRAINED=w/vit.safetensors", (None, "PRETRAINED", "w/vit.safetensors")),
    ],
)
def test_parse_override_types(text: str, expected: tuple) -> None:
    assert runner.parse_override(text) == expected


def test_parse_override_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        runner.parse_override("EPOCHS")
    with pytest.raises(ValueError, match="not a parameter name"):
        runner.parse_override("1X=2")


def test_parameters_cell_must_be_flat_literals() -> None:
    assert runner.parse_parameters("A = 1\nB = 'x'  # note\nC = None\nD = [1, 2]\nE = -0.5") == {
        "A": 1, "B": "x", "C": None, "D": [1, 2], "E": -0.5}
    for bad in ("A = 1 + B", "import os", "A, B = 1, 2", "A = f(1)", "A: int = 1"):
        with pytest.raises(ValueError, match="line 1"):
            runner.parse_parameters(bad)


def test_plan_layers_profile_file_data_root_and_overrides(
    nbdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbs = runner.discover_notebooks(nbdir)
    custom = tmp_path / "custom.yaml"
    custom.write_text("SEED: 5\n'01':\n  NAME: y\n")
    (tmp_path / "data" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # relative roots are the caller's, made absolute for the kernel
    plans = runner.plan_run(nbs, "smoke", nbdir, ["LR=1", "00.SEED=7"], custom, data_root="data/x")
    first, second = plans
    root = str((tmp_path / "data" / "x").resolve())
    assert first.injected == {"EPOCHS": 2, "PROFILE": "smoke", "SEED": 7, "DATA_ROOT": root, "LR": 1.0}
    assert isinstance(first.injected["LR"], float)
    assert second.injected == {"SEED": 5, "NAME": "y"}
    assert second.effective == {"SEED": 5, "NAME": "y"}


def test_plan_rejects_unknown_and_mistyped_parameters(nbdir: Path, tmp_path: Path) -> None:
    nbs = runner.discover_notebooks(nbdir)
    with pytest.raises(ValueError, match="--data-root"):
        runner.plan_run(nbs, "smoke", nbdir, data_root=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="-p EPOCSH"):
        runner.plan_run(nbs, "smoke", nbdir, ["EPOCSH=3"])
    with pytest.raises(ValueError, match="EPOCHS of 00_first.ipynb expects int"):
        runner.plan_run(nbs, "smoke", nbdir, ["EPOCHS=many"])
    (nbdir / "params" / "smoke" / "01_second.yaml").write_text("EPOCHS: 3\n")
    with pytest.raises(ValueError, match="01_second.yaml: EPOCHS is not a parameter"):
        runner.plan_run(nbs, "smoke", nbdir)


def test_results_markdown_flattens_nested_results() -> None:
    md = runner.results_markdown({"05_eval": {"synthetic": {"map_all_voc": 0.123456}, "n": 3}})
    assert "| 05_eval | synthetic.map_all_voc | 0.1235 |" in md
    assert "| 05_eval | n | 3 |" in md
    assert "No notebook wrote results" in runner.results_markdown({})


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "xmodal"
    return [str(script)] if script.exists() else [sys.executable, "-m", "xmodal_lib"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, XMODAL_RUNS=str(tmp_path / "runs"), MPLBACKEND="Agg")
    env.pop("XMODAL_ARTIFACTS", None)
    return env


@pytest.mark.slow
def test_failing_notebook_stops_run_and_names_cell(nbdir: Path, tmp_path: Path) -> None:
    """00 writes a result through $XMODAL_ARTIFACTS, 01 fails in its 3rd cell, 02 never runs."""
    (nbdir / "01_second.ipynb").unlink()
    _nb(nbdir / "01_boom.ipynb", "X = 1", "y = X * 2", "1 / (X - X)", "print('unreachable')")
    _nb(nbdir / "02_never.ipynb", "X = 1", "print('never')")
    writer = (
        "from xmodal_lib.run.results import write_results\n"
        "from xmodal_lib.infra.paths import runs_dir\n"
        "write_results('first', {'epochs': EPOCHS, 'seed': SEED, 'lr': LR, 'runs': str(runs_dir())})"
    )
    nb = nbformat.read(str(nbdir / "00_first.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(writer))
    nbformat.write(nb, str(nbdir / "00_first.ipynb"))

    cmd = [*_cli(), "reproduce", "--notebooks-dir", str(nbdir), "--no-progress", "-p", "SEED=3"]
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "01_boom.ipynb" in proc.stderr and "cell 2" in proc.stderr, proc.stderr
    assert "ZeroDivisionError" in proc.stderr

    (run,) = (tmp_path / "runs").iterdir()
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "failed"
    status = {n["name"]: n for n in man["notebooks"]}
    assert status["00_first.ipynb"]["status"] == "ok"
    err = status["01_boom.ipynb"]["error"]
    assert status["01_boom.ipynb"]["status"] == "failed"
    assert (err["cell_index"], err["ename"]) == (2, "ZeroDivisionError")
    assert status["02_never.ipynb"]["status"] == "pending"
    assert not (run / "02_never.ipynb").exists()
    # the kernel saw the run's artifacts folder and the typed, layered parameters
    assert json.loads((run / "results.json").read_text()) == {
        "first": {"epochs": 2, "seed": 3, "lr": 0.001, "runs": str(run / "train")}}
    assert (run / "artifacts" / "results" / "first.json").is_file()
    assert man["seeds"]["00_first"] == {"SEED": 3}
    report = (run / "results.md").read_text()
    assert "status **failed**" in report and "| 01_boom.ipynb | failed |" in report and "| 02_never.ipynb | pending |" in report


@pytest.mark.slow
@pytest.mark.notebook
def test_reproduce_only_00_writes_manifest_and_results(tmp_path: Path, repo: Path) -> None:
    cmd = [*_cli(), "reproduce", "--only", "00", "--profile", "smoke", "--no-progress"]
    env = _env(tmp_path)
    env["XMODAL_FIGURES"] = str(tmp_path / "figures")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    man = json.loads((run / "manifest.json").read_text())
    assert REQUIRED_MANIFEST <= set(man)
    assert man["status"] == "ok" and man["profile"] == "smoke"
    assert man["git"]["commit"] is None or len(man["git"]["commit"]) == 40
    assert man["packages"]["torch"] and man["packages"]["numpy"]
    assert man["device"]["type"] in ("cpu", "cuda")
    (nb,) = man["notebooks"]
    assert nb["name"] == "00_data_tour.ipynb" and nb["status"] == "ok" and nb["wall_s"] > 0
    assert nb["injected"]["PROFILE"] == "smoke" and nb["parameters"]["INTERACTIVE"] is False
    assert man["seeds"]["00_data_tour"] == {"SEED": 0}
    executed = nbformat.read(str(run / "00_data_tour.ipynb"), as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    results = json.loads((run / "results.json").read_text())
    counts = results["00_data_tour"]["synthetic"]
    assert counts["photos"] > 0 and counts["sketches"] >= 2 * counts["photos"]
    assert counts["unseen"] > 0
    report = (run / "results.md").read_text()
    assert "status **ok**" in report
    assert "| 00_data_tour.ipynb | ok |" in report and "Headline metrics" in report
    assert len(report.splitlines()) < 60, "results.md lists every key again (the full record is results.json)"
    # the run keeps its own figures (listed in the manifest); the XMODAL_FIGURES of the caller is untouched
    figs = sorted(f.name for f in (run / "figures").glob("00_*.png"))
    assert figs and set(figs) <= set(man["figures"])
    assert not any((tmp_path / "figures").glob("*.png"))
    assert "00_data_tour.ipynb" in proc.stdout and "total" in proc.stdout


def test_cli_list_and_bad_selection(nbdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xmodal_lib.cli import main

    assert main(["list", "--notebooks-dir", str(nbdir)]) == 0
    out = capsys.readouterr().out
    assert "00_first.ipynb" in out and "EPOCHS = 1  -> 2 (smoke)" in out and "notes.ipynb" not in out
    assert main(["reproduce", "--notebooks-dir", str(nbdir), "--only", "09"]) == 2
    assert "no notebook matches" in capsys.readouterr().err
    assert main(["reproduce", "--notebooks-dir", str(nbdir), "-p", "EPOCHS=x"]) == 2
    assert "expects int" in capsys.readouterr().err
