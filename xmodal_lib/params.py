"""One way to bind notebook parameters to a method's config.

A notebook parameter is the upper-case name of a config field (``TEACHER_LR`` -> ``teacher_lr``,
``DIM`` -> ``dim``): one name from the notebook's ``parameters`` cell, through the profile YAML and
``-p`` overrides, to the dataclass field. :func:`bind` is the only place where that happens; the
notebooks (:func:`notebook_config`), ``xmodal train`` and ``xmodal reproduce`` (at plan time, before
anything runs) all call it, so an unknown key, a wrong type or an out-of-range value is refused in
the same words everywhere, naming the parameter and what was expected.

Parameters that steer the notebook itself rather than the method (``N_STRIPS``, ``INTERACTIVE`` …)
are listed per notebook in :data:`NOTEBOOKS` (``local``); anything else that is not a field is an error.
"""
from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigError  # one error class for bad input (exit status 2)

__all__ = ["ConfigError", "NotebookSpec", "NOTEBOOKS", "bind", "notebook_config", "preset", "config_class",
           "parse_value"]


@dataclass(frozen=True)
class NotebookSpec:
    """Which config a notebook builds (``module:Class``) and which of its parameters are its own."""

    config: str | None
    local: tuple[str, ...] = ()


_XV = "xmodal_lib.pipelines.xmodalvit:XModalViTConfig"
_CMP = "xmodal_lib.pipelines.compare:CompareConfig"
NOTEBOOKS: dict[str, NotebookSpec] = {
    "00_data_tour": NotebookSpec(None),
    "01_fusion_teacher": NotebookSpec(_XV, ("PAPER_DATASET",)),
    "02_distillation": NotebookSpec(_XV, ("PAPER_DATASET", "OFFICIAL_CHECKPOINT")),
    "03_crossatnet_zero_shot": NotebookSpec("xmodal_lib.pipelines.crossatnet:CrossATNetRunConfig",
                                            ("PROFILE", "RUN_ABLATIONS", "N_ATTENTION_EXAMPLES")),
    "04_zse_sbir": NotebookSpec("xmodal_lib.pipelines.zse:ZSEPipelineConfig",
                                ("TS_KEEP_RATE", "CROSS_KIND", "CROSS_ROOT", "CROSS_SPLIT", "CROSS_MODES",
                                 "OFFICIAL_CHECKPOINT")),
    "05_zero_shot_evaluation": NotebookSpec(_CMP, ("N_STRIPS", "TOP_K")),
    "06_explainability": NotebookSpec(_CMP, ("QUERY", "TOP_N", "INK_THRESHOLD", "KEEP_RATE_DEMO", "K",
                                             "INTERACTIVE")),
}


def config_class(stem: str) -> type | None:
    """The config dataclass notebook ``stem`` builds (None for a notebook without one)."""
    spec = NOTEBOOKS.get(stem)
    if spec is None:
        raise ConfigError(f"notebook {stem!r}: not in xmodal_lib.params.NOTEBOOKS; expected one of {sorted(NOTEBOOKS)}")
    if spec.config is None:
        return None
    module, _, name = spec.config.partition(":")
    return getattr(importlib.import_module(module), name)


def parse_value(text: str) -> Any:
    """A ``-p KEY=VALUE`` value: YAML (``3``, ``true``, ``None``, ``[1, 2]``), and numbers YAML 1.1
    reads as strings (``1e10``, ``1e-4``) as floats, so every command line reads values alike."""
    import yaml

    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def profiles() -> list[str]:
    """The profile names: the folders of ``notebooks/params/``."""
    from .paths import notebooks_dir

    root = notebooks_dir() / "params"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _check_profile(value: Any, where: str) -> None:
    known = profiles()
    if known and value not in known:
        raise ConfigError(f"PROFILE{where}: expected one of {', '.join(known)} (folders of notebooks/params/), "
                          f"got {value!r}")


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (ints widen to floats, lists become tuples)."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(name, option, value)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{name}: expected {' or '.join(_describe(a) for a in args)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(f"{name}[{i}]", item, v) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def bind(cls: type, params: Mapping[str, Any], *, local: tuple[str, ...] | set[str] = (),
         source: str = "") -> Any:
    """``cls(**fields)`` from ``params`` keyed by upper-case field names (lower-case accepted too).

    Keys in ``local`` are skipped (the notebook's own parameters); any other key that is not a field
    of ``cls`` is refused, values are type-checked against the field annotations, and the config's
    own ``__post_init__`` range checks run here. ``source`` names where the values came from."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    where = f" ({source})" if source else ""
    skip = {k.upper() for k in local}
    kwargs: dict[str, Any] = {}
    unknown = []
    for key, value in params.items():
        if key.upper() == "PROFILE":
            _check_profile(value, where)
        if key.upper() in skip:
            continue
        field = key.lower()
        if field not in names:
            unknown.append(key)
            continue
        kwargs[field] = _coerce(key.upper(), hints[field], value)
    if unknown:
        raise ConfigError(f"{', '.join(sorted(unknown))}{where}: not parameters of {cls.__name__}; expected some "
                          f"of {', '.join(sorted(n.upper() for n in names))}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{cls.__name__}{where}: {err}") from None


def notebook_config(stem: str, namespace: Mapping[str, Any], **explicit: Any) -> Any:
    """The config of notebook ``stem`` from its parameters (``globals()`` of the kernel: every
    upper-case name). ``explicit`` fields (lower-case) replace a parameter after it was resolved,
    e.g. a default data folder. Call it before the notebook defines upper-case names of its own."""
    cls = config_class(stem)
    if cls is None:
        raise ConfigError(f"notebook {stem!r} has no method config")
    params = {k: v for k, v in namespace.items()  # parameters are literals: skip imported classes, modules
              if k.isupper() and not k.startswith("_") and not callable(v) and not isinstance(v, types.ModuleType)}
    params.update({k.upper(): v for k, v in explicit.items()})
    return bind(cls, params, local=NOTEBOOKS[stem].local, source=f"notebook {stem}")


def preset(stem: str, profile: str, **over: Any) -> Any:
    """The config notebook ``stem`` builds under ``profile``: its YAML file
    ``notebooks/params/<profile>/<stem>.yaml`` bound by :func:`bind`, then ``over`` (lower-case
    field names, bound the same way). The profiles are data: this is the one place a preset is read,
    so a code path that needs e.g. notebook 04's smoke model uses the same values the notebook does."""
    from .paths import notebooks_dir
    from .run_plan import load_yaml_params

    cls = config_class(stem)
    if cls is None:
        raise ConfigError(f"notebook {stem!r} has no method config")
    _check_profile(profile, f" (preset of {stem})")
    path = notebooks_dir() / "params" / profile / f"{stem}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such profile file; expected notebooks/params/{profile}/{stem}.yaml")
    params = load_yaml_params(path)
    params.update({k.upper(): v for k, v in over.items()})
    return bind(cls, params, local=NOTEBOOKS[stem].local, source=str(path.relative_to(notebooks_dir().parent)))
