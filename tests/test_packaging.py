"""Packaging: one dependency source, an environment.yml that agrees, README commands = CI,
every module importable, no machine-specific absolute paths."""
from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import yaml

import xmodal_lib
from xmodal_lib.infra.paths import repo_root

ROOT = repo_root()
tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python >= 3.11")


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(readme: str) -> list[str]:
    """Shell lines of the README's fenced bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip()]


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"\b(torch|torchvision)==([0-9][0-9a-z.+]*)", text))


def test_environment_yml_is_python_pip_and_pyproject_extras(pyproject: dict, readme: str) -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    deps = env["dependencies"]
    plain = [d for d in deps if isinstance(d, str)]
    pips = [d for d in deps if isinstance(d, dict)]
    assert sorted(p.split("=")[0] for p in plain) == ["pip", "python"], plain
    assert any(p.startswith("python=3.11") for p in plain)
    assert len(pips) == 1 and list(pips[0]) == ["pip"]
    extras = set(pyproject["project"]["optional-dependencies"])
    editable, pinned = [], []
    for line in pips[0]["pip"]:
        m = re.fullmatch(r'-e\s+"?\.\[([a-z,]+)\]"?', line)
        if m:
            editable.append(line)
            assert set(m.group(1).split(",")) <= extras, f"environment.yml extra not in pyproject: {line}"
        else:
            pinned.append(line)
    assert len(editable) == 1, "environment.yml installs the package once, editable, with extras"
    # nothing but the torch pins is listed outside pyproject
    assert {p.split("==")[0] for p in pinned} <= {"torch", "torchvision"}, pinned
    env_pins = _pins("\n".join(pinned))
    assert env_pins == _pins(readme.split("## Open the notebooks")[0]), "torch pins differ from the README"


def test_torch_pins_satisfy_pyproject(pyproject: dict, readme: str) -> None:
    from packaging.requirements import Requirement

    reqs = {Requirement(r).name: Requirement(r) for r in pyproject["project"]["dependencies"]}
    pins = _pins(readme)
    assert pins == {"torch": "2.14.1", "torchvision": "0.29.1"}
    for name, version in pins.items():
        assert version in reqs[name].specifier, f"{name}=={version} outside pyproject's {reqs[name]}"


def test_every_extra_is_known_and_console_script_points_to_cli(pyproject: dict) -> None:
    extras = pyproject["project"]["optional-dependencies"]
    for name, reqs in extras.items():
        for r in reqs:
            m = re.fullmatch(r"xmodal\[([a-z,]+)\]", r)
            if m:
                assert set(m.group(1).split(",")) <= set(extras), f"extra {name}: {r}"
    for needed in ("jupyterlab", "papermill", "nbval", "ipywidgets", "timm", "tqdm", "safetensors"):
        every = " ".join(pyproject["project"]["dependencies"] + [r for v in extras.values() for r in v])
        assert needed in every, f"{needed} is not declared in pyproject.toml"
    assert pyproject["project"]["scripts"]["xmodal"] == "xmodal_lib.cli:main"


def test_readme_has_the_two_commands_and_ci_runs_the_test_one(readme: str) -> None:
    cmds = _commands(readme)
    main = [c for c in cmds if "xmodal reproduce --profile smoke" in c and "pip install" in c]
    test = [c for c in cmds if c.endswith("-m pytest") and "pip install" in c]
    assert len(main) == 1 and len(test) == 1, (main, test)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci
    assert test[0] in ci.splitlines(), ".ci/run must run the README's test command verbatim"


def test_cli_entry_point_answers() -> None:
    from xmodal_lib.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def _modules() -> list[str]:
    names = ["xmodal_lib"]
    for info in pkgutil.walk_packages(xmodal_lib.__path__, prefix="xmodal_lib."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


FORBIDDEN = ("/home/", "/work/", "C:\\", "/Users/")


def _scanned() -> list[Path]:
    files = [p for p in (ROOT / "xmodal_lib").rglob("*") if p.suffix in (".py", ".yaml", ".yml", ".txt", ".json")]
    nb = ROOT / "notebooks"
    files += [p for p in nb.rglob("*") if p.suffix in (".ipynb", ".py", ".yaml", ".yml")]
    return sorted(p for p in files if ".ipynb_checkpoints" not in p.parts)


def test_no_absolute_paths_in_library_or_notebooks() -> None:
    files = _scanned()
    assert any(p.suffix == ".ipynb" for p in files) and any(p.suffix == ".py" for p in files)
    bad = []
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        for token in FORBIDDEN:
            if token in text:
                line = next(i for i, ln in enumerate(text.splitlines(), 1) if token in ln)
                bad.append(f"{p.relative_to(ROOT)}:{line} contains {token!r}")
    assert not bad, "machine-specific absolute paths:\n" + "\n".join(bad)
