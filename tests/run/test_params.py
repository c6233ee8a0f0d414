"""The one binding of notebook parameters to method configs (xmodal_lib.run.params), and the rules it
enables: every notebook builds its config from every profile, setup cells stay short, and the
command lines read values alike."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import nbformat
import pytest
import yaml

from xmodal_lib.infra.paths import notebooks_dir
from xmodal_lib.run import params as P
from xmodal_lib.run.runner import NOTEBOOK_RE, notebook_parameters, parameters_cell, parse_override, plan_run

NB_DIR = notebooks_dir()
NOTEBOOKS = sorted(p for p in NB_DIR.glob("*.ipynb") if NOTEBOOK_RE.match(p.name))
PROFILES = sorted(p.name for p in (NB_DIR / "params").iterdir() if p.is_dir())


@dataclasses.dataclass
class _Cfg:
    lr: float = 1e-3
    epochs: int = 2
    name: str = "a"
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    root: str | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs: expected a positive integer, got {self.epochs}")


def test_bind_maps_upper_case_names_and_coerces() -> None:
    c = P.bind(_Cfg, {"LR": 3, "EPOCHS": 5, "SIZES": [4, 5], "ROOT": None, "FLAG": True})
    assert c == _Cfg(lr=3.0, epochs=5, sizes=(4, 5), root=None, flag=True)
    assert isinstance(c.lr, float) and isinstance(c.sizes, tuple)


@pytest.mark.parametrize("params, match", [
    ({"LRR": 1.0}, "LRR.*not parameters of _Cfg.*LR"),
    ({"LR": "1e10x"}, "LR: expected a number"),
    ({"EPOCHS": 2.5}, "EPOCHS: expected an integer"),
    ({"FLAG": 1}, "FLAG: expected true or false"),
    ({"SIZES": [1, "b"]}, r"SIZES\[1\]: expected an integer"),
    ({"NAME": 3}, "NAME: expected a string"),
    ({"EPOCHS": -1}, "epochs: expected a positive integer, got -1"),
    ({"PROFILE": "huge"}, "PROFILE.*expected one of .*paper.*smoke"),
])
def test_bind_refuses_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(P.ConfigError, match=match):
        P.bind(_Cfg, params, local=() if "PROFILE" not in params else ())


def test_notebook_config_ignores_imported_upper_case_names() -> None:
    import types as _t

    from xmodal_lib.methods.zse.pipeline import ZSEPipelineConfig

    ns = {"SEED": 3, "ZSESBIR": ZSEPipelineConfig, "NP": _t.ModuleType("np"), "T0": 1.5}
    with pytest.raises(P.ConfigError, match="T0"):  # a literal that is no field is still refused
        P.notebook_config("04_zse_sbir", ns)
    del ns["T0"]
    assert P.notebook_config("04_zse_sbir", ns).train.seed == 3


def test_parse_value_reads_python_floats_that_yaml_leaves_as_strings() -> None:
    assert P.parse_value("1e10") == 1e10 and isinstance(P.parse_value("1e10"), float)
    assert P.parse_value("1e-4") == 1e-4
    assert P.parse_value("3") == 3 and P.parse_value("true") is True and P.parse_value("null") is None
    assert P.parse_value("[1, 2]") == [1, 2] and P.parse_value("cosine") == "cosine"
    assert parse_override("02.TEACHER_LR=1e10") == ("02", "TEACHER_LR", 1e10)


def test_registry_covers_every_notebook() -> None:
    assert sorted(P.NOTEBOOKS) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_parameter_is_a_field_or_declared_local(path: Path) -> None:
    cls = P.config_class(path.stem)
    if cls is None:
        pytest.skip(f"{path.stem} builds no method config")
    names = {n.upper() for n in P.leaves(cls)}
    loose = set(notebook_parameters(path)) - names - set(P.NOTEBOOKS[path.stem].local)
    assert not loose, f"{path.name}: parameters that reach no config field and are not declared local: {loose}"
    stale = set(P.NOTEBOOKS[path.stem].local) - set(notebook_parameters(path))
    assert not stale, f"params.NOTEBOOKS[{path.stem!r}].local names no parameter of the notebook: {stale}"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_config_builds_from_every_profile(path: Path, profile: str) -> None:
    """defaults < params/<profile>/<stem>.yaml, bound as the notebook binds them (the paper-profile
    crash of notebooks 01/02, 'paper() got multiple values for argument dataset', lived here)."""
    cls = P.config_class(path.stem)
    if cls is None:
        pytest.skip(f"{path.stem} builds no method config")
    values = dict(notebook_parameters(path))
    f = NB_DIR / "params" / profile / f"{path.stem}.yaml"
    values.update(yaml.safe_load(f.read_text()) or {} if f.is_file() else {})
    if "PROFILE" in values:
        values["PROFILE"] = profile
    cfg = P.notebook_config(path.stem, values)
    assert isinstance(cfg, cls)
    flat = P.flat_params(cfg)
    for key, value in values.items():  # every value arrived under its own name (nested groups too)
        if key.lower() in flat and value is not None:
            got = flat[key.lower()]
            assert got == (tuple(value) if isinstance(value, list) else value), f"{key}: {got!r} != {value!r}"


@pytest.mark.parametrize("profile", PROFILES)
def test_runner_plans_every_profile(profile: str) -> None:
    plans = plan_run(NOTEBOOKS, profile, NB_DIR)
    assert [p.stem for p in plans] == [p.stem for p in NOTEBOOKS]


def test_runner_refuses_out_of_range_value_before_running() -> None:
    nb = [p for p in NOTEBOOKS if p.stem.startswith("01")]
    with pytest.raises(ValueError, match=r"TEACHER_EPOCHS \(.*\): expected a positive integer, got -1 \(TrainConfig.epochs\)"):
        plan_run(nb, "smoke", NB_DIR, overrides=["TEACHER_EPOCHS=-1"])
    with pytest.raises(ValueError, match=r"-p 99\.SEED: '99' is not one of the selected notebooks"):
        plan_run(nb, "smoke", NB_DIR, overrides=["99.SEED=1"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_code_cells_are_short_and_bind_through_params(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    idx, _ = parameters_cell(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and i != idx:
            n = len(cell.source.rstrip("\n").split("\n"))
            assert n <= 15, f"{path.name} cell {i}: {n} lines (code cells other than the parameters cell <= 15)"
    if P.config_class(path.stem) is not None:
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert f'notebook_config("{path.stem}", globals()' in code, f"{path.name} does not bind via notebook_config"


def test_train_cli_reads_values_like_reproduce(tmp_path: Path) -> None:
    from xmodal_lib.cli import _make_config, _parse_kv

    cfg = _make_config("xmodalvit-teacher", "smoke", None, _parse_kv(["teacher_lr=1e10", "SEED=3"], "-p"))
    assert cfg.teacher_train.lr == 1e10 and cfg.seed == 3
    with pytest.raises(P.ConfigError, match="TEACHER_LR: expected a number, got 'fast'"):
        _make_config("xmodalvit-teacher", "smoke", None, _parse_kv(["teacher_lr=fast"], "-p"))
    with pytest.raises(P.ConfigError, match="--dataset 'sketchy21'.*with --profile paper"):
        _make_config("zse", "smoke", "sketchy21", {})
    with pytest.raises(P.ConfigError, match="--dataset 'imagenet'"):
        _make_config("crossatnet", "paper", "imagenet", {})


@pytest.mark.parametrize("profile", ["smoke", "paper"])
@pytest.mark.parametrize("method", ["xmodalvit-teacher", "xmodalvit-students", "crossatnet", "zse"])
def test_train_presets_are_the_notebooks_profile_files(method: str, profile: str) -> None:
    """``xmodal train --profile P`` builds its notebook's config from params/P/<stem>.yaml: every
    value of the file arrives, under its own name (no code preset restates the profile)."""
    from xmodal_lib.cli import TRAIN_STEMS, _make_config

    stem = TRAIN_STEMS[method]
    values = yaml.safe_load((NB_DIR / "params" / profile / f"{stem}.yaml").read_text()) or {}
    flat = P.flat_params(_make_config(method, profile, None, {"seed": 4}))
    diff = {k: (v, flat[k.lower()]) for k, v in values.items()
            if k.lower() in flat and k != "SEED" and (tuple(v) if isinstance(v, list) else v) != flat[k.lower()]}
    assert not diff and flat["seed"] == 4, f"params/{profile}/{stem}.yaml vs xmodal train {method}: {diff}"


def test_paper_datasets_change_only_their_own_values() -> None:
    """Each paper dataset's table entry lands on the paper profile, the rest of the file unchanged."""
    from xmodal_lib.cli import TRAIN_STEMS, _make_config
    from xmodal_lib.methods.crossatnet import config as crossatnet_config
    from xmodal_lib.methods.xmodalvit import config as xmodalvit_config
    from xmodal_lib.methods.zse import pipeline as zse

    for method, table in (("xmodalvit-students", xmodalvit_config.PAPER_DATASETS),
                          ("crossatnet", crossatnet_config.PAPER_DATASETS), ("zse", zse.PAPER_DATASETS)):
        base = P.flat_params(P.preset(TRAIN_STEMS[method], "paper"))
        for name, over in table.items():
            flat = P.flat_params(_make_config(method, "paper", name, {}))
            want = {**base, **{k: tuple(v) if isinstance(v, list) else v for k, v in over.items()}}
            assert flat == want, f"{method} --dataset {name}"
    sketchy = P.flat_params(_make_config("xmodalvit-students", "paper", "sketchy", {}))
    assert (sketchy["teacher_queue"], sketchy["student_queue"], sketchy["epoch_unit"]) == (64, 64, "classes")


@pytest.mark.parametrize("stem", ["01_fusion_teacher", "02_distillation"])
def test_xmodalvit_defaults_are_the_smoke_profile(stem: str) -> None:
    """XModalViTConfig's docstring says its defaults are the smoke profile's values: they are."""
    from xmodal_lib.methods.xmodalvit.pipeline import XModalViTConfig

    values = yaml.safe_load((NB_DIR / "params" / "smoke" / f"{stem}.yaml").read_text()) or {}
    flat = P.flat_params(XModalViTConfig())
    diff = {k: (v, flat[k.lower()]) for k, v in values.items() if k.lower() in flat and v != flat[k.lower()]}
    assert not diff, f"params/smoke/{stem}.yaml vs XModalViTConfig(): {diff}"


@dataclasses.dataclass
class _Enc:
    depth: int = 2
    name: str = "vit"


@dataclasses.dataclass
class _Run:
    teacher: _Enc = P.nested(_Enc, "teacher_")
    model: _Enc = P.nested(_Enc)
    lr: float = 1e-3


def test_nested_groups_bind_by_prefix_and_round_trip() -> None:
    assert sorted(P.leaves(_Run)) == ["depth", "lr", "name", "teacher_depth", "teacher_name"]
    c = P.bind(_Run, {"TEACHER_DEPTH": 5, "DEPTH": 3, "LR": 1})
    assert c == _Run(teacher=_Enc(depth=5), model=_Enc(depth=3), lr=1.0)
    assert P.to_dict(c) == {"teacher_depth": 5, "teacher_name": "vit", "depth": 3, "name": "vit", "lr": 1.0}
    assert P.from_dict(_Run, P.to_dict(c)) == c
    assert P.from_dict(_Run, {"teacher": {"depth": 5}, "model": {"depth": 3}, "lr": 1.0, "gone": 1}) == c
    with pytest.raises(P.ConfigError, match="TEACHER_DEPTH: expected an integer"):
        P.bind(_Run, {"TEACHER_DEPTH": "deep"})
    with pytest.raises(P.ConfigError, match="TEACHER_DEPT.*not parameters of _Run"):
        P.bind(_Run, {"TEACHER_DEPT": 1})
    d = P.override(c, teacher_depth=7)
    assert (d.teacher.depth, c.teacher.depth, d.model == c.model, d.model is c.model) == (7, 5, True, False)
    with pytest.raises(P.ConfigError, match="nope"):
        P.override(c, nope=1)


@dataclasses.dataclass
class _Loop:
    steps: int = 1
    opt: str = "adam"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"_Loop.steps: expected a positive integer, got {self.steps}")


@dataclasses.dataclass
class _Staged:
    train: _Loop = P.nested(_Loop, opt="adamw")  # the method's loop defaults
    teacher_train: _Loop = P.nested(_Loop, "teacher_", steps=9)


def test_group_defaults_survive_a_partial_bind_and_errors_name_the_parameter() -> None:
    assert _Staged() == _Staged(train=_Loop(opt="adamw"), teacher_train=_Loop(steps=9))
    c = P.bind(_Staged, {"STEPS": 4, "TEACHER_OPT": "sgd"})
    assert (c.train.steps, c.train.opt, c.teacher_train.steps, c.teacher_train.opt) == (4, "adamw", 9, "sgd")
    assert P.from_dict(_Staged, P.to_dict(c)) == c
    assert P.params_of_field(_Staged, "steps") == ["steps", "teacher_steps"]
    with pytest.raises(P.ConfigError, match=r"^TEACHER_STEPS: expected a positive integer, got 0 \(_Loop.steps\)$"):
        P.bind(_Staged, {"TEACHER_STEPS": 0})
    with pytest.raises(P.ConfigError, match=r"^STEPS: expected a positive integer"):
        P.bind(_Staged, {"STEPS": -1})


def test_unknown_name_among_many_gets_the_likely_ones() -> None:
    from xmodal_lib.methods.xmodalvit.config import XModalViTConfig

    with pytest.raises(P.ConfigError, match=r"BATCH_SIZE.*did you mean .*STUDENT_BATCH_SIZE, TEACHER_BATCH_SIZE\?"
                                            r" \(all \d+: xmodal_lib.run.params.leaves\(XModalViTConfig\)\)"):
        P.bind(XModalViTConfig, {"BATCH_SIZE": 8})


def test_two_fields_under_one_parameter_name_are_refused() -> None:
    @dataclasses.dataclass
    class Clash:
        model: _Enc = P.nested(_Enc)
        depth: int = 1

    with pytest.raises(P.ConfigError, match="DEPTH would name two fields"):
        P.bind(Clash, {})


@pytest.mark.parametrize("profile", ["smoke", "paper", "cpu"])
def test_preset_reads_the_profile_yaml(profile):
    from xmodal_lib.infra.paths import notebooks_dir
    from xmodal_lib.run.params import preset
    from xmodal_lib.run.plan import load_yaml_params

    cfg = preset("04_zse_sbir", profile, seed=7)
    yml = load_yaml_params(notebooks_dir() / "params" / profile / "04_zse_sbir.yaml")
    assert cfg.train.seed == 7
    assert cfg.model.dim == yml["DIM"] and cfg.model.patch_embed == yml.get("PATCH_EMBED", cfg.model.patch_embed)
    with pytest.raises(P.ConfigError, match="not_a_field.*and overrides"):
        preset("04_zse_sbir", profile, not_a_field=1)


def test_reproduce_p_of_a_loop_field_reaches_every_loop_of_01_02() -> None:
    nbs = [p for p in NOTEBOOKS if p.stem[:2] in ("01", "02", "03")]
    plans = {p.stem[:2]: p.effective for p in plan_run(nbs, "smoke", NB_DIR, overrides=["DEVICE=cpu", "02.LR=0.002"])}
    assert plans["01"]["TEACHER_DEVICE"] == "cpu" and plans["03"]["DEVICE"] == "cpu"
    assert (plans["02"]["TEACHER_DEVICE"], plans["02"]["STUDENT_DEVICE"], plans["02"]["BASELINE_DEVICE"]) == ("cpu",) * 3
    assert (plans["02"]["TEACHER_LR"], plans["02"]["STUDENT_LR"], plans["02"]["BASELINE_LR"]) == (0.002,) * 3
    assert plans["01"]["TEACHER_LR"] != 0.002  # scoped to 02
