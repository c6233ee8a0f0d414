"""Trained models handed from one notebook (or command) to the next: one file layout for all.

An artifact ``<stem>`` is :func:`xmodal_lib.infra.checkpoint.save_weights`' pair ``<stem>.safetensors``
(the state dict) + ``<stem>.json``, whose ``"config"`` is always the same mapping:

* ``"params"``: the run config as its notebook parameters (:func:`xmodal_lib.run.params.to_dict`,
  lower case), rebuilt by :func:`xmodal_lib.run.params.from_dict`;
* ``"config_class"``: ``module:Class`` of that config (checked on load);
* ``"info"``: what else the reader needs, e.g. the zero-shot ``dataset`` / ``split`` a model trained
  in notebook 05 saw (XModalViT's own config names its fine-grained data instead).

Loading never executes code (safetensors + JSON) and is strict: a missing, unexpected or wrongly
shaped tensor, or a config of another class, raises :class:`~xmodal_lib.infra.errors.CheckpointError`
naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from torch import nn

from xmodal_lib.infra.checkpoint import load_weights, read_config, save_weights
from xmodal_lib.infra.errors import CheckpointError
from xmodal_lib.run.params import from_dict, to_dict

__all__ = ["save_model", "stored_config", "stored_params", "stored_info", "load_model", "exists"]


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def save_model(model: nn.Module, path: str | Path, cfg: Any, **info: Any) -> Path:
    """Write ``model``'s weights and its run config ``cfg`` (+ ``info``) atomically to ``path``."""
    return save_weights(model, path, config={"config_class": _class_name(type(cfg)), "params": to_dict(cfg),
                                             "info": info})


def exists(path: str | Path) -> bool:
    """Both files of the artifact ``path`` are there (the JSON is written last: then it is complete)."""
    p = Path(path)
    return p.with_name(p.name + ".safetensors").is_file() and p.with_name(p.name + ".json").is_file()


def _layout_problem(meta: dict[str, Any]) -> str | None:
    if not isinstance(meta.get("params"), dict) or "config_class" not in meta:
        return (f"written by an older version: expected 'config_class' and 'params' in its JSON config "
                f"(written by xmodal_lib.run.artifacts.save_model), found {sorted(meta)}")
    return None


def _class_problem(meta: dict[str, Any], cls: type) -> str | None:
    if meta["config_class"] != _class_name(cls):
        return f"holds a {meta['config_class']} config, expected {_class_name(cls)}"
    return None


def _stored(path: str | Path, what: str = "artifact") -> dict[str, Any]:
    meta = read_config(path, what)
    problem = _layout_problem(meta)
    if problem is not None:
        raise CheckpointError(f"{what} {path}: {problem}")
    return meta


def unusable(path: str | Path, cls: type, what: str = "artifact") -> str | None:
    """Why the complete artifact ``path`` cannot be read back as ``cls`` (written by an older layout
    or from another config class; the reasons :func:`stored_config` refuses it with), or None when it
    can. A damaged JSON still raises CheckpointError (``what`` names the file there)."""
    meta = read_config(path, what)
    return _layout_problem(meta) or _class_problem(meta, cls)


def stored_info(path: str | Path) -> dict[str, Any]:
    """The ``info`` mapping saved with the artifact (empty when none was given)."""
    return dict(_stored(path).get("info") or {})


def stored_params(path: str | Path) -> dict[str, Any]:
    """The run config saved with the artifact as its parameters (lower-case names), unbound."""
    return dict(_stored(path)["params"])


def stored_config(path: str | Path, cls: type, what: str = "artifact", **over: Any) -> Any:
    """The run config saved with the artifact, as ``cls`` (refused if it was saved from another
    class), with ``over`` (parameter names, e.g. ``pretrained=False``: the weights come from the file).
    ``what`` names the file in errors (e.g. ``"teacher config"``)."""
    meta = _stored(path, what)
    problem = _class_problem(meta, cls)
    if problem is not None:
        raise CheckpointError(f"{what} {path}: {problem}")
    return from_dict(cls, meta["params"], **over)


def load_model(path: str | Path, cls: type, build: Callable[[Any], nn.Module], what: str = "artifact",
               **over: Any) -> tuple[nn.Module, Any]:
    """``(model, cfg)``: the config via :func:`stored_config`, the model from ``build(cfg)``, the
    weights loaded strictly; the model is returned in eval mode."""
    cfg = stored_config(path, cls, what, **over)
    model = build(cfg)
    load_weights(model, path, strict=True)
    return model.eval(), cfg
