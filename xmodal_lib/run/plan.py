"""Planning an ``xmodal reproduce`` run: which notebooks, and the parameters each one gets.

Order of precedence: the notebook's ``parameters`` cell < ``notebooks/params/<profile>/<stem>.yaml``
< ``--profile-file`` < ``--data-root`` < ``-p``. Every value is type-checked against the notebook's
default and, for the notebooks of :data:`xmodal_lib.run.params.NOTEBOOKS`, bound to the method's config
(ranges included) before any notebook starts.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from xmodal_lib.run.params import NOTEBOOKS, bind, config_class, params_of_field, parse_value

NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_\-]+\.ipynb$")
PROFILES = ("smoke", "paper")


def discover_notebooks(nb_dir: Path, only: Iterable[str] | None = None) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks of ``nb_dir`` in numeric order.

    ``only`` selects by number (``"02"`` or ``"2"``) or by stem (``"02_distillation"``);
    a selector that matches nothing raises ``ValueError``.
    """
    nb_dir = Path(nb_dir)
    if not nb_dir.is_dir():
        raise ValueError(f"notebooks folder {nb_dir} does not exist")
    found = sorted(p for p in nb_dir.iterdir() if NOTEBOOK_RE.match(p.name))
    if only is None:
        return found
    wanted = [s.strip() for s in only if s.strip()]
    chosen: list[Path] = []
    for sel in wanted:
        code = sel.zfill(2) if sel.isdigit() else None
        hits = [p for p in found if (code is not None and p.name[:2] == code) or p.stem == sel]
        if not hits:
            have = ", ".join(p.stem for p in found) or "none"
            raise ValueError(f"--only {sel!r}: no notebook matches in {nb_dir} (have: {have})")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


def parameters_cell(nb: Any) -> tuple[int, Any]:
    """Index and cell of the single cell tagged ``parameters`` (ValueError otherwise)."""
    hits = [
        (i, c) for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(hits) != 1:
        raise ValueError(f"expected exactly one cell tagged 'parameters', found {len(hits)}")
    return hits[0]


def parse_parameters(source: str) -> dict[str, Any]:
    """Assignments of a parameters cell as a dict; only ``NAME = <literal>`` lines are allowed."""
    tree = ast.parse(source)
    out: dict[str, Any] = {}
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            raise ValueError(
                f"parameters cell line {node.lineno}: only 'NAME = <literal>' assignments are allowed"
            )
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as err:
            raise ValueError(
                f"parameters cell line {node.lineno}: {node.targets[0].id} is not a literal ({err})"
            ) from None
    return out


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Default parameters of a stored notebook (its ``parameters`` cell)."""
    import nbformat  # lazy: optional extra nbformat

    nb = nbformat.read(str(path), as_version=4)
    try:
        _, cell = parameters_cell(nb)
        return parse_parameters(cell.source)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from None


def load_yaml_params(path: Path) -> dict[str, Any]:
    """A flat ``KEY: value`` YAML file as a dict (empty file -> {})."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping KEY: value, got {type(data).__name__}")
    return data


def profile_params(profile: str, stem: str, nb_dir: Path) -> dict[str, Any]:
    """Parameters of ``notebooks/params/<profile>/<stem>.yaml`` ({} when the file is absent)."""
    f = Path(nb_dir) / "params" / profile / f"{stem}.yaml"
    return load_yaml_params(f) if f.is_file() else {}


def parse_override(text: str) -> tuple[str | None, str, Any]:
    """``KEY=VALUE`` or ``NN.KEY=VALUE`` -> (notebook code or None, KEY, typed value).

    VALUE is typed with ``yaml.safe_load`` (``3`` -> int, ``1e-4`` -> float, ``true`` -> bool);
    ``None``/``null`` give None.
    """
    if "=" not in text:
        raise ValueError(f"-p {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    scope = None
    if "." in key:
        scope, key = key.split(".", 1)
    if not key.isidentifier():
        raise ValueError(f"-p {text!r}: {key!r} is not a parameter name")
    if raw.strip() in ("None", "none", "null", "~", ""):
        return scope, key, None
    return scope, key, parse_value(raw)  # the one value reader of every command line


def _check_type(nb: str, key: str, default: Any, value: Any, origin: str) -> Any:
    """Coerce int -> float where the default is float; reject values of another type."""
    if default is None or value is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
        if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
            return value
        raise ValueError(
            f"{origin}: parameter {key} of {nb} expects {type(default).__name__} "
            f"(default {default!r}), got {value!r}"
        )
    return value


PATH_KEYS = ("_ROOT", "_DIR", "_PATH", "_FILE")


def _abs_path(key: str, value: Any) -> Any:
    """Make a relative path given on the command line absolute (kernels run in ``notebooks/``).

    Applies to string values of ``*_ROOT``/``*_DIR``/``*_PATH``/``*_FILE`` and ``PRETRAINED``
    parameters that name an existing file or folder relative to the caller's cwd.
    """
    if not isinstance(value, str) or not (key.endswith(PATH_KEYS) or key == "PRETRAINED"):
        return value
    p = Path(value).expanduser()
    return str(p.resolve()) if not p.is_absolute() and p.exists() else value


def check_notebook_params(stem: str, params: Mapping[str, Any]) -> None:
    """Bind ``params`` to the notebook's method config (:mod:`xmodal_lib.run.params`): a wrong type or an
    out-of-range value is refused now, naming the notebook and the parameter, not minutes into the run.
    Notebooks outside the registry (e.g. a user's own) are not checked beyond their parameters cell."""
    if stem not in NOTEBOOKS:
        return
    cls = config_class(stem)
    if cls is not None:
        bind(cls, params, local=NOTEBOOKS[stem].local, source=f"notebook {stem}")


@dataclass
class NotebookPlan:
    """One notebook to run with the parameters injected into it."""

    path: Path
    defaults: dict[str, Any]
    injected: dict[str, Any]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def effective(self) -> dict[str, Any]:
        return {**self.defaults, **self.injected}


def _targets(stem: str, key: str, defaults: Mapping[str, Any]) -> list[str]:
    """The parameters of notebook ``stem`` that ``key`` sets: itself when declared, else the one per
    training loop of that field (``DEVICE`` -> ``TEACHER_DEVICE`` ... in XModalViT's notebooks)."""
    if key in defaults:
        return [key]
    cls = config_class(stem) if stem in NOTEBOOKS else None  # a notebook of another folder: its own names only
    if cls is None:
        return []
    return [n.upper() for n in params_of_field(cls, key.lower()) if n.upper() in defaults]


def plan_run(
    notebooks: list[Path],
    profile: str,
    nb_dir: Path,
    overrides: Iterable[str] = (),
    profile_file: Path | None = None,
    data_root: str | None = None,
) -> list[NotebookPlan]:
    """Resolve the parameters of every notebook: defaults < profile < profile file < --data-root < -p.

    A profile file is either flat (``KEY: value`` for every notebook that declares KEY) or
    nested per notebook (``02_distillation: {STUDENT_EPOCHS: 3}`` or ``"02": {...}``). A flat or
    ``-p`` key that names a training-loop field reaches every loop of a notebook that has it once
    per loop (``-p DEVICE=cpu``: ``TEACHER_DEVICE``, ``STUDENT_DEVICE``, ``BASELINE_DEVICE`` of 01/02,
    :func:`_targets`). Unknown keys raise ``ValueError`` naming the file or option, so a typo never
    silently does nothing.
    """
    parsed = [parse_override(o) for o in overrides]
    custom = load_yaml_params(Path(profile_file)) if profile_file else {}
    plans: list[NotebookPlan] = []
    used: set[str] = set()
    for nb in notebooks:
        defaults = notebook_parameters(nb)
        injected: dict[str, Any] = {}
        prof = profile_params(profile, nb.stem, nb_dir)
        for key, value in prof.items():
            if key not in defaults:
                raise ValueError(
                    f"params/{profile}/{nb.stem}.yaml: {key} is not a parameter of {nb.name} "
                    f"(parameters: {', '.join(defaults)})"
                )
            injected[key] = _check_type(nb.name, key, defaults[key], value, f"params/{profile}/{nb.stem}.yaml")
        if "PROFILE" in defaults:
            injected["PROFILE"] = profile
        for key, value in custom.items():
            if isinstance(value, dict):
                if key in (nb.stem, nb.name[:2]):
                    for k2, v2 in value.items():
                        if k2 not in defaults:
                            raise ValueError(f"{profile_file}: {k2} is not a parameter of {nb.name}")
                        v2 = _abs_path(k2, v2)
                        injected[k2] = _check_type(nb.name, k2, defaults[k2], v2, str(profile_file))
                    used.add(f"file:{key}")
            else:
                for name in _targets(nb.stem, key, defaults):
                    injected[name] = _check_type(nb.name, name, defaults[name], _abs_path(key, value), str(profile_file))
                    used.add(f"file:{key}")
        if data_root is not None and "DATA_ROOT" in defaults:
            root = Path(data_root).expanduser()
            if not root.exists():
                raise ValueError(f"--data-root {data_root}: no such file or folder")
            injected["DATA_ROOT"] = str(root.resolve())
        for scope, key, value in parsed:
            if scope is not None and scope not in (nb.stem, nb.name[:2], nb.name[:2].lstrip("0") or "0"):
                continue
            for name in _targets(nb.stem, key, defaults):
                injected[name] = _check_type(nb.name, name, defaults[name], _abs_path(key, value), f"-p {key}")
                used.add(f"p:{scope}:{key}")
        plans.append(NotebookPlan(path=nb, defaults=defaults, injected=injected))
    for scope, key, _ in parsed:
        if f"p:{scope}:{key}" not in used:
            names = ", ".join(p.path.name for p in plans)
            if scope is not None and not any(scope in (p.stem, p.path.name[:2], p.path.name[:2].lstrip("0") or "0")
                                             for p in plans):
                raise ValueError(f"-p {scope}.{key}: {scope!r} is not one of the selected notebooks ({names})")
            where = f"notebook {scope}" if scope is not None else f"no selected notebook ({names})"
            raise ValueError(f"-p {key}: {where} has no parameter {key}")
    for key, value in custom.items():
        if f"file:{key}" not in used:
            raise ValueError(f"{profile_file}: {key!r} matches no parameter or notebook of this run")
    for plan in plans:  # the configs' own checks (types, ranges) before any notebook starts
        check_notebook_params(plan.stem, plan.effective)
    return plans
