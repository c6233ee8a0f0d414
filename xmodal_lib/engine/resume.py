"""Choosing the checkpoint a resumed :func:`xmodal_lib.engine.train.fit` continues from, and refusing bad ones.

* Stale files of a killed writer (``.step_*.tmp`` temp files, a write probe, safetensors' ``.tmpXXXXXX``, a
  ``.safetensors`` whose JSON was never written, a JSON whose tensors were pruned) are removed when
  training starts.
* The newest complete checkpoint is used; one that cannot be read (damaged file, a JSON without
  the training state) is skipped with a warning naming it, and the previous one is tried.
* The stored setup (``TrainConfig`` and the method's config) is compared with the current one;
  a difference (e.g. ``batch_size`` or ``lr``) raises :class:`~xmodal_lib.infra.errors.ResumeMismatchError`
  naming the fields, unless the caller allows it explicitly (``FitOptions(allow_changed_setup=True)``, CLI
  ``--resume-changed``), in which case a warning names them and the new ``lr``/``weight_decay``
  take effect. Fields that do not change the numbers (loader, checkpoint cadence, device, ...)
  are not compared (:data:`RUNTIME_FIELDS`), nor the run's length unless the schedule is cosine
  (:data:`LENGTH_FIELDS`: more epochs of a constant schedule extend the run).
* Model and state-module weights are checked key by key and shape by shape before loading, so a
  checkpoint of another model is refused with the file and the keys, not torch's ``size mismatch``.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal_lib.infra.atomic_io import _json_default, remove_stale_temps
from xmodal_lib.infra.checkpoint import check_state_dict, load_tensors, read_json
from xmodal_lib.infra.errors import CheckpointError, ResumeMismatchError

#: TrainConfig fields that may change between a run and its resume (they do not change the numbers).
RUNTIME_FIELDS = frozenset({"num_workers", "pin_memory", "prefetch_factor", "persistent_workers", "compile",
                            "channels_last", "find_unused_parameters", "profile_timing", "ckpt_every",
                            "keep_last", "device"})
#: Length of the run: compared only under a cosine schedule (the only one that depends on the total);
#: otherwise a resume with more epochs or steps extends the run.
LENGTH_FIELDS = frozenset({"epochs", "max_steps"})
#: Keys of the method config that are not compared: where it runs, how it is evaluated, and run
#: lengths (``teacher_max_steps``, ``student_epochs``...; the TrainConfig they become is compared
#: under the rule above, so stopping with ``max_steps`` and resuming to the end stays possible).
_CONFIG_IGNORED = frozenset({"device"}) | RUNTIME_FIELDS
_CONFIG_IGNORED_PREFIX = ("eval_",)
_CONFIG_IGNORED_SUFFIX = ("epochs", "steps")
#: What a training checkpoint's JSON must hold.
REQUIRED_META = ("train_config", "step", "epoch", "batch_in_epoch", "optimizer", "scheduler", "rng",
                 "history", "val")


def clean_checkpoint_dir(ckpt_dir: Path) -> list[Path]:
    """Remove what a killed writer left in ``ckpt_dir``: temp files and half-written or half-pruned
    checkpoints (a ``step_*.safetensors`` without its JSON or the reverse). Returns the removed paths."""
    # ours (.step_*.tmp, the write probe's ..write-probe.*.tmp) and safetensors' own .tmpXXXXXX
    removed = remove_stale_temps(ckpt_dir, ".*.tmp") + remove_stale_temps(ckpt_dir, ".tmp*")
    for p in sorted(ckpt_dir.glob("step_*.safetensors")) + sorted(ckpt_dir.glob("step_*.json")):
        other = p.with_suffix(".json" if p.suffix == ".safetensors" else ".safetensors")
        if not other.exists():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, sort_keys=True, default=_json_default))


def _flat(d: dict[str, Any], pre: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (a method config stored as ``{"zse": {...}}``: ``zse.lr``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{pre}{k}.") if isinstance(v, dict) else {f"{pre}{k}": v})
    return out


def _config_key_ignored(key: str) -> bool:
    """A method-config key that is not compared: a runtime field, also as a training loop's parameter
    (``device``, ``teacher_device``, ``student_num_workers``), an evaluation field or a run length."""
    name = key.rsplit(".", 1)[-1]
    return (any(name == f or name.endswith("_" + f) for f in _CONFIG_IGNORED)
            or name.startswith(_CONFIG_IGNORED_PREFIX) or name.endswith(_CONFIG_IGNORED_SUFFIX))


def setup_differences(meta: dict[str, Any], train_config: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """``"<field>: <stored> in the checkpoint, <current> now"`` for every compared field that differs
    (fields present on one side only are skipped: checkpoints of older versions stay resumable)."""
    diffs = []
    now_t, now_c = _jsonable(train_config), _flat(_jsonable(config))
    skip_t = RUNTIME_FIELDS | (LENGTH_FIELDS if now_t.get("schedule") != "cosine" else frozenset())
    for prefix, stored, now in (("", meta.get("train_config") or {}, now_t),
                                ("config.", _flat(meta.get("config") or {}), now_c)):
        for key in sorted(set(stored) & set(now)):
            if (key in skip_t) if not prefix else _config_key_ignored(key):
                continue
            if stored[key] != now[key]:
                diffs.append(f"{prefix}{key}: {stored[key]!r} in the checkpoint, {now[key]!r} now")
    return diffs


def read_training_checkpoint(stem: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors and JSON of a training checkpoint; :class:`CheckpointError` when unreadable or incomplete."""
    tensors, meta = load_tensors(stem, device="cpu")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{stem}.json: expected a JSON object, found {type(meta).__name__}")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing or "rng.torch" not in tensors:
        raise CheckpointError(f"{stem}.json: not a training checkpoint; missing {missing or ['rng.torch tensor']} "
                              f"(expected the keys {list(REQUIRED_META)})")
    return tensors, meta


def _check_weights(stem: Path, tensors: dict[str, Tensor], model: nn.Module,
                   state_modules: dict[str, nn.Module]) -> None:
    check_state_dict(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, f"{stem}.safetensors")
    for name, m in state_modules.items():
        pre = f"state.{name}."
        check_state_dict(m, {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)},
                         f"{stem}.safetensors (state module {name!r})")


def choose_checkpoint(stems: list[Path], model: nn.Module, state_modules: dict[str, nn.Module],
                      train_config: dict[str, Any], config: dict[str, Any],
                      allow_changed_setup: bool = False) -> tuple[Path, dict[str, Tensor], dict[str, Any]] | None:
    """The newest readable checkpoint of ``stems`` (oldest first) that fits ``model`` and the setup.

    Unreadable ones are skipped with a warning naming them; a changed setup raises
    :class:`ResumeMismatchError` (a warning with ``allow_changed_setup``); weights of another
    shape raise :class:`CheckpointError`. ``None`` when ``stems`` is empty. If every checkpoint is
    unreadable, a :class:`CheckpointError` lists them (nothing is silently restarted).
    """
    skipped: list[str] = []
    for stem in reversed(stems):
        try:
            tensors, meta = read_training_checkpoint(stem)
        except CheckpointError as e:
            skipped.append(str(e))
            warnings.warn(f"resume: skipping unreadable checkpoint {stem} ({e}); trying the previous one",
                          stacklevel=3)
            continue
        diffs = setup_differences(meta, train_config, config)
        if diffs and not allow_changed_setup:
            raise ResumeMismatchError(
                f"resume from {stem}: the setup changed ({'; '.join(diffs)}); resume with the stored "
                f"settings, use a new output folder, or allow it explicitly (fit(options=FitOptions(allow_changed_setup=True)), "
                f"CLI --resume-changed)")
        if diffs:
            warnings.warn(f"resume from {stem} with a changed setup (allowed): {'; '.join(diffs)}", stacklevel=3)
        _check_weights(stem, tensors, model, state_modules)
        return stem, tensors, meta
    if skipped:
        raise CheckpointError(f"resume: no readable checkpoint among {len(skipped)}: " + " | ".join(skipped))
    return None


def precheck(out_dir: str | Path, config: dict[str, Any]) -> None:
    """Before any data is read: :class:`ResumeMismatchError` when the newest readable checkpoint in
    ``out_dir/checkpoints`` stored a method config that differs from ``config`` (the fields named).

    Cheap (JSON only) and safe on every rank; a folder without a readable checkpoint passes (``fit``
    then decides: fallback, fresh start or error), and the TrainConfig is compared again in ``fit``."""
    d = Path(out_dir) / "checkpoints"
    stems = sorted(p.with_suffix("") for p in d.glob("step_*.json")) if d.is_dir() else []
    for stem in reversed(stems):
        try:
            meta = read_json(stem.with_name(stem.name + ".json"))
        except CheckpointError:
            continue
        if isinstance(meta, dict) and isinstance(meta.get("config"), dict):
            diffs = setup_differences({"config": meta["config"]}, {}, config)
            if diffs:
                raise ResumeMismatchError(
                    f"--resume from {stem}: the setup changed ({'; '.join(diffs)}); resume with the stored "
                    f"settings, use a new --out, or allow it explicitly with --resume-changed")
            return


def apply_new_rates(opt: torch.optim.Optimizer, sched: Any, lr: float, weight_decay: float) -> None:
    """After restoring optimiser and scheduler state under an allowed setup change, make ``lr`` and
    ``weight_decay`` of the current config take effect (the scheduler's factor is kept)."""
    sched.base_lrs = [lr for _ in opt.param_groups]
    factor = sched.lr_lambdas[0](sched.last_epoch) if hasattr(sched, "lr_lambdas") else 1.0
    for g in opt.param_groups:
        g["initial_lr"], g["lr"] = lr, lr * factor
        g["weight_decay"] = 0.0 if g.get("no_decay") else weight_decay  # biases/norms stay exempt
    sched._last_lr = [g["lr"] for g in opt.param_groups]
