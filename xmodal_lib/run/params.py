"""One way to bind notebook parameters to a method's config.

A notebook parameter is the upper-case name of a config field: one name from the notebook's
``parameters`` cell, through the profile YAML and ``-p`` overrides, to the dataclass field. A run
config nests its model config and its training loop's ``TrainConfig`` (:func:`nested`); a nested
field is the parameter ``PREFIX + FIELD`` (upper case), where the prefix is declared with the group:
``""`` for ZSE-SBIR's and CrossATNet's ``model`` and ``train`` (``DIM`` -> ``cfg.model.dim``, ``LR``
-> ``cfg.train.lr``), ``"teacher_"`` / ``"student_"`` / ``"baseline_"`` for XModalViT's encoders and
loops (``TEACHER_DEPTH`` -> ``cfg.teacher.depth``, ``TEACHER_LR`` -> ``cfg.teacher_train.lr``). :func:`leaves` lists that one-to-one map and refuses a name that two fields
would share; :func:`flat_params` / :func:`from_dict` go back and forth between a config and its
parameters (``to_dict`` artifacts are stored by parameter name). :func:`bind` is the only place where that happens; the
notebooks (:func:`notebook_config`), ``xmodal train`` and ``xmodal reproduce`` (at plan time, before
anything runs) all call it, so an unknown key, a wrong type or an out-of-range value is refused in
the same words everywhere, naming the parameter and what was expected.

Parameters that steer the notebook itself rather than the method (``N_STRIPS``, ``INTERACTIVE`` …)
are listed per notebook in :data:`NOTEBOOKS` (``local``); anything else that is not a field is an error.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Mapping

import yaml

from xmodal_lib.infra.errors import ConfigError  # one error class for bad input (exit status 2)
from xmodal_lib.infra.paths import notebooks_dir

__all__ = ["ConfigError", "NotebookSpec", "NOTEBOOKS", "bind", "notebook_config", "preset", "config_class",
           "parse_value", "nested", "leaves", "params_of_field", "build", "flat_params", "to_dict", "from_dict", "override"]


@dataclass(frozen=True)
class NotebookSpec:
    """Which config a notebook builds (``module:Class``) and which of its parameters are its own."""

    config: str | None
    local: tuple[str, ...] = ()


_XV = "xmodal_lib.methods.xmodalvit.config:XModalViTConfig"
_CMP = "xmodal_lib.methods.compare:CompareConfig"
NOTEBOOKS: dict[str, NotebookSpec] = {
    "00_data_tour": NotebookSpec(None),
    "01_fusion_teacher": NotebookSpec(_XV, ("PAPER_DATASET",)),
    "02_distillation": NotebookSpec(_XV, ("PAPER_DATASET", "OFFICIAL_CHECKPOINT")),
    "03_crossatnet_zero_shot": NotebookSpec("xmodal_lib.methods.crossatnet.config:CrossATNetRunConfig",
                                            ("PROFILE", "RUN_ABLATIONS", "N_ATTENTION_EXAMPLES")),
    "04_zse_sbir": NotebookSpec("xmodal_lib.methods.zse.config:ZSEPipelineConfig",
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
        raise ConfigError(f"notebook {stem!r}: not in xmodal_lib.run.params.NOTEBOOKS; expected one of {sorted(NOTEBOOKS)}")
    if spec.config is None:
        return None
    module, _, name = spec.config.partition(":")
    return getattr(importlib.import_module(module), name)


def parse_value(text: str) -> Any:
    """A ``-p KEY=VALUE`` value: YAML (``3``, ``true``, ``None``, ``[1, 2]``), and numbers YAML 1.1
    reads as strings (``1e10``, ``1e-4``) as floats, so every command line reads values alike."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def profiles() -> list[str]:
    """The profile names: the folders of ``notebooks/params/``."""
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


def nested(cls: type, prefix: str = "", **defaults: Any) -> Any:
    """A run-config field holding the config ``cls``; its fields are the parameters ``prefix + field``
    (upper case), e.g. ``model: ZSEConfig = nested(ZSEConfig)``. ``defaults`` replace ``cls``'s own
    defaults for this group (a method's training recipe: ``train: TrainConfig = nested(TrainConfig,
    lr=1e-3, optimizer="adamw")``); a parameter given by a notebook or profile replaces them in turn."""
    return dataclasses.field(default_factory=lambda: cls(**defaults),
                             metadata={"prefix": prefix, "defaults": dict(defaults)})


def _is_group(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def leaves(cls: type) -> dict[str, tuple[tuple[str, ...], Any]]:
    """Parameter name (lower case) -> (field path, annotation) of every leaf field of ``cls``, nested
    configs flattened by their prefix (:func:`nested`; default ``"<field>_"``). Two fields that would
    answer to one parameter are refused (ConfigError): the map must stay one-to-one."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[tuple[str, ...], Any]] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if _is_group(tp):
            prefix = f.metadata.get("prefix", f"{f.name}_")
            items = [(prefix + name, ((f.name, *path), t)) for name, (path, t) in leaves(tp).items()]
        else:
            items = [(f.name, ((f.name,), tp))]
        for name, leaf in items:
            if name in out:
                raise ConfigError(f"{cls.__name__}: parameter {name.upper()} would name two fields "
                                  f"({'.'.join(out[name][0])} and {'.'.join(leaf[0])}); parameter names must be unique")
            out[name] = leaf
    return out


def params_of_field(cls: type, field: str) -> list[str]:
    """The parameter names (lower case) of every leaf called ``field`` in ``cls``'s groups: where a
    setting lives once per training loop, e.g. ``"device"`` -> ``["device"]`` for ZSE-SBIR and
    ``["baseline_device", "student_device", "teacher_device"]`` for XModalViT (``xmodal train`` on one
    device, ``override(cfg, **dict.fromkeys(params_of_field(type(cfg), "device"), "cuda"))``)."""
    return sorted(name for name, (path, _) in leaves(cls).items() if path[-1] == field)


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """``tree[path[0]][path[1]]... = value`` (sub-trees made on the way): a leaf's place in its groups."""
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _build(cls: type, tree: Mapping[str, Any], where: str, prefix: str | None = None) -> Any:
    """``cls(**tree)`` with every nested group built first from its sub-tree (defaults elsewhere). A
    group's error that starts with ``Class.field:`` is told by its parameter (``TEACHER_EPOCHS:``)."""
    hints = typing.get_type_hints(cls)
    kwargs = dict(tree)
    for f in dataclasses.fields(cls):
        if f.init and _is_group(hints[f.name]):  # the group's own defaults (nested(**defaults)), then the tree's
            sub = (prefix or "") + f.metadata.get("prefix", f"{f.name}_")
            kwargs[f.name] = _build(hints[f.name], {**f.metadata.get("defaults", {}), **tree.get(f.name, {})}, where, sub)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        msg = str(err)
        head, sep, rest = msg.partition(": ")
        if prefix is not None and sep and head.startswith(f"{cls.__name__}.") and head[len(cls.__name__) + 1:].isidentifier():
            raise ConfigError(f"{(prefix + head[len(cls.__name__) + 1:]).upper()}{where}: {rest} ({head})") from None
        raise ConfigError(f"{cls.__name__}{where}: {msg}") from None


def _suggest(unknown: list[str], table: Mapping[str, Any], owner: str) -> str:
    """The expected names: all of them when few, else the likely ones (a loop's ``BATCH_SIZE`` ->
    ``TEACHER_BATCH_SIZE`` ..., close spellings) and how to list the rest."""
    names = sorted(table)
    if len(names) <= 40:
        return f"expected some of {', '.join(n.upper() for n in names)}"
    near: list[str] = []
    for key in unknown:
        k = key.lower()
        near += [n for n in names if n.endswith("_" + k)] + difflib.get_close_matches(k, names, n=3, cutoff=0.75)
    near = list(dict.fromkeys(near))
    hint = f"did you mean {', '.join(n.upper() for n in near)}? " if near else ""
    return f"{hint}(all {len(names)}: xmodal_lib.run.params.leaves({owner}))"


def bind(cls: type, params: Mapping[str, Any], *, local: tuple[str, ...] | set[str] = (),
         source: str = "") -> Any:
    """``cls`` from ``params`` keyed by parameter names (upper case; lower case accepted too).

    Keys in ``local`` are skipped (the notebook's own parameters); any other key that is not a
    parameter of ``cls`` (:func:`leaves`) is refused, values are type-checked against the field
    annotations, and the configs' own ``__post_init__`` range checks run here (nested ones first).
    ``source`` names where the values came from."""
    table = leaves(cls)
    where = f" ({source})" if source else ""
    skip = {k.upper() for k in local}
    tree: dict[str, Any] = {}
    unknown = []
    for key, value in params.items():
        if key.upper() == "PROFILE":
            _check_profile(value, where)
        if key.upper() in skip:
            continue
        if key.lower() not in table:
            unknown.append(key)
            continue
        path, tp = table[key.lower()]
        _put(tree, path, _coerce(key.upper(), tp, value))
    if unknown:
        raise ConfigError(f"{', '.join(sorted(unknown))}{where}: not parameters of {cls.__name__}; "
                          f"{_suggest(unknown, table, cls.__name__)}")
    return _build(cls, tree, where)


def build(cls: type, **params: Any) -> Any:
    """``cls`` from its defaults and ``params`` by parameter name (lower case), bound and checked as
    :func:`bind` does: code's way to a config (``build(ZSEPipelineConfig, dim=32)``); a profile's is
    :func:`preset`."""
    return bind(cls, params)


def flat_params(cfg: Any) -> dict[str, Any]:
    """``cfg``'s values by parameter name (lower case), nested groups flattened: what :func:`bind`
    takes back (``bind(type(cfg), flat_params(cfg)) == cfg``)."""
    out = {}
    for name, (path, _) in leaves(type(cfg)).items():
        value = cfg
        for part in path:
            value = getattr(value, part)
        out[name] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-able :func:`flat_params` (tuples as lists, paths as strings): the stored form of a config."""
    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else (str(v) if isinstance(v, PurePath) else v)
    return {k: plain(v) for k, v in flat_params(cfg).items()}


def _flatten_stored(cls: type, stored: Mapping[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    groups = {f.name: f for f in dataclasses.fields(cls) if _is_group(hints[f.name])}
    flat: dict[str, Any] = {}
    for key, value in stored.items():
        group = groups.get(key)
        if group is not None and isinstance(value, Mapping):  # a nested layout: {"model": {"dim": 48}}
            prefix = group.metadata.get("prefix", f"{key}_")
            flat.update({prefix + k: v for k, v in _flatten_stored(hints[key], value).items()})
        else:
            flat[key.lower()] = value
    return flat


def from_dict(cls: type, stored: Mapping[str, Any], **over: Any) -> Any:
    """``cls`` from a stored :func:`to_dict` (parameter names; a nested group given as a dict under
    its field name is read too), then ``over``. A key naming a field that now lives in several groups
    (an older XModalViT's ``batch_size``, ``device``, ``precision``) goes to each of them; other keys that
    are no parameter of ``cls`` (fields of an older version) are dropped; values are bound and checked as :func:`bind` does."""
    table = leaves(cls)
    raw = _flatten_stored(cls, stored)
    flat = {k: v for k, v in raw.items() if k in table}
    for key, value in raw.items():  # a field that now lives once per loop (XModalViT's old flat batch_size)
        if key not in table:
            flat.update({n: value for n in params_of_field(cls, key) if n not in raw})
    flat.update({k.lower(): v for k, v in over.items()})
    return bind(cls, flat, source=f"stored {cls.__name__}")


def override(cfg: Any, **changes: Any) -> Any:
    """A copy of ``cfg`` with ``changes`` keyed by parameter name (lower case), every nested group
    copied too; unknown names are refused and ``__post_init__`` checks run again."""
    table = leaves(type(cfg))
    bad = sorted(k for k in changes if k.lower() not in table)
    if bad:
        raise ConfigError(f"{', '.join(bad)}: not parameters of {type(cfg).__name__}")
    tree: dict[str, Any] = {}
    for key, value in changes.items():
        _put(tree, table[key.lower()][0], value)

    def apply(obj: Any, sub: Mapping[str, Any]) -> Any:
        groups = {f.name: apply(getattr(obj, f.name), sub.get(f.name, {}))
                  for f in dataclasses.fields(obj) if f.init and dataclasses.is_dataclass(getattr(obj, f.name))}
        return dataclasses.replace(obj, **{**sub, **groups})
    return apply(cfg, tree)


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
    from xmodal_lib.run.plan import load_yaml_params  # lazy: import cycle (xmodal_lib.run.plan imports xmodal_lib.run.params)

    cls = config_class(stem)
    if cls is None:
        raise ConfigError(f"notebook {stem!r} has no method config")
    _check_profile(profile, f" (preset of {stem})")
    path = notebooks_dir() / "params" / profile / f"{stem}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such profile file; expected notebooks/params/{profile}/{stem}.yaml")
    params = {**load_yaml_params(path), **over}  # ``over`` as given, so an error names the key as typed
    source = str(path.relative_to(notebooks_dir().parent)) + (" and overrides" if over else "")
    return bind(cls, params, local=NOTEBOOKS[stem].local, source=source)
