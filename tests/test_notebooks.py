"""Stored notebooks: stripped, kernel python3, one flat parameters cell, profiles that match;
and every notebook executes under the smoke profile (papermill --prepare-only, then nbval).

Notebooks are discovered by glob, so each new ``notebooks/NN_*.ipynb`` is covered as it lands.
The execution tests run in numeric order and share one artifacts folder, so 01 hands its
checkpoint to 02 exactly as in ``xmodal reproduce``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from xmodal_lib.infra.paths import notebooks_dir
from xmodal_lib.run.runner import NOTEBOOK_RE, parameters_cell, parse_parameters

NB_DIR = notebooks_dir()
NOTEBOOKS = sorted(p for p in NB_DIR.glob("*.ipynb") if NOTEBOOK_RE.match(p.name))
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
PROFILES = ("smoke", "paper")
ids = [p.stem for p in NOTEBOOKS]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def test_notebooks_exist() -> None:
    assert NOTEBOOKS, f"no NN_*.ipynb notebooks in {NB_DIR}"
    assert NOTEBOOKS[0].name == "00_data_tour.ipynb"
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_stripped_with_python3_kernel(path: Path) -> None:
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec") == KERNELSPEC, f"{path.name}: kernelspec {nb.metadata.get('kernelspec')}"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "keep_output" in cell.metadata.get("tags", []):
            continue
        assert not cell.get("outputs"), f"{path.name} cell {i} has stored outputs (strip them)"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_has_one_flat_parameters_cell(path: Path) -> None:
    nb = _read(path)
    idx, cell = parameters_cell(nb)  # raises unless exactly one
    assert cell.cell_type == "code"
    params = parse_parameters(cell.source)  # raises unless NAME = <literal> lines only
    assert params, f"{path.name}: empty parameters cell"
    assert all(k.isupper() for k in params), f"{path.name}: parameters are UPPER_CASE: {list(params)}"
    assert idx < len(nb.cells) - 1, f"{path.name}: nothing after the parameters cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_papermill_sees_every_parameter(path: Path) -> None:
    """papermill parses the cell line by line ('=' or quotes in a comment hide a parameter)."""
    import papermill as pm

    ours = parse_parameters(parameters_cell(_read(path))[1].source)
    theirs = pm.inspect_notebook(str(path))
    assert list(theirs) == list(ours), f"{path.name}: papermill sees {list(theirs)}, the cell has {list(ours)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
@pytest.mark.parametrize("profile", PROFILES)
def test_profile_keys_are_notebook_parameters(path: Path, profile: str) -> None:
    params = parse_parameters(parameters_cell(_read(path))[1].source)
    f = NB_DIR / "params" / profile / f"{path.stem}.yaml"
    if not f.is_file():
        pytest.skip(f"no params/{profile}/{path.stem}.yaml (the notebook's defaults apply)")
    values = yaml.safe_load(f.read_text()) or {}
    assert isinstance(values, dict), f"{f}: expected a flat mapping"
    unknown = set(values) - set(params)
    assert not unknown, f"{f.name} ({profile}): keys not in the parameters cell: {sorted(unknown)}"
    for k, v in values.items():
        assert not isinstance(v, dict), f"{f.name}: {k} must be a flat value"


@pytest.mark.parametrize("profile", PROFILES)
def test_no_orphan_profile_files(profile: str) -> None:
    d = NB_DIR / "params" / profile
    stems = {p.stem for p in NOTEBOOKS}
    orphans = [f.name for f in d.glob("*.yaml") if f.stem not in stems] if d.is_dir() else []
    assert not orphans, f"params/{profile}: files without a notebook: {orphans}"


# --------------------------------------------------------------------------- execution


@pytest.fixture(scope="session")
def nb_run_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One prepared-notebook folder and one shared artifacts folder for the whole session."""
    base = tmp_path_factory.mktemp("notebook_runs")
    dirs = {k: base / k for k in ("prepared", "artifacts", "figures")}
    for d in dirs.values():
        d.mkdir()
    return dirs


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_executes_in_smoke_profile(path: Path, nb_run_dirs: dict[str, Path]) -> None:
    import papermill as pm

    f = NB_DIR / "params" / "smoke" / f"{path.stem}.yaml"
    params = (yaml.safe_load(f.read_text()) or {}) if f.is_file() else {}
    defaults = parse_parameters(parameters_cell(_read(path))[1].source)
    if "PROFILE" in defaults:
        params["PROFILE"] = "smoke"
    prepared = nb_run_dirs["prepared"] / path.name
    pm.execute_notebook(str(path), str(prepared), parameters=params, prepare_only=True,
                        kernel_name="python3", progress_bar=False)
    env = dict(
        os.environ,
        XMODAL_ARTIFACTS=str(nb_run_dirs["artifacts"]),
        XMODAL_FIGURES=str(nb_run_dirs["figures"]),
        MPLBACKEND="Agg",
    )
    cmd = [
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q",
        "-p", "no:cacheprovider", "--rootdir", str(nb_run_dirs["prepared"]),
        "-o", "addopts=", str(prepared),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                          cwd=nb_run_dirs["prepared"])
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"{path.name} failed under nbval (smoke profile):\n{tail}"
    assert " passed" in proc.stdout, tail


@pytest.mark.slow
@pytest.mark.notebook
def test_every_smoke_figure_is_a_real_picture_in_the_run_folder(nb_run_dirs: dict[str, Path]) -> None:
    """Runs after the notebooks (file order): every PNG they wrote lies in the run's figures folder,
    opens, and is not blank (more than one colour)."""
    from PIL import Image

    figs = sorted(nb_run_dirs["figures"].glob("*.png"))
    if not any(p.name.startswith("06_") for p in figs):
        pytest.skip("the notebook execution tests did not all run in this session (e.g. -k selection)")
    for p in figs:
        with Image.open(p) as im:
            im.load()
            assert im.width >= 100 and im.height >= 100, f"{p.name}: {im.size}"
            lo, hi = im.convert("L").getextrema()
            assert hi - lo > 20, f"{p.name}: blank figure (grey levels {lo}..{hi})"
    stems = {p.name[:2] for p in figs}
    assert {"00", "01", "02", "03", "04", "05", "06"} <= stems, f"notebooks without a figure: {sorted(stems)}"
