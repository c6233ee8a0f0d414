"""One training loop for every method: seeded, resumable, checkpointed without pickle.

``fit`` drives a model with a method-specific ``step_fn(model, batch) -> {"loss": ..., ...}``.
Resume is exact on CPU: the data order is a pure function of ``(seed, epoch)``, datasets are
deterministic in ``(index, epoch)``, and the checkpoint holds model, optimiser, extra state
(e.g. a contrastive queue) and every RNG state. A run killed at any point and restarted with
``resume=True`` ends with the same weights as an uninterrupted run.

Scale-out: under ``torchrun`` (see :mod:`xmodal_lib.infra.distributed`) the same ``fit`` runs on every
rank. ``TrainConfig.batch_size`` is the GLOBAL batch: rank r takes the r-th contiguous slice of
each global batch of the ``(seed, epoch)`` order, so the global batch of step t on N ranks is the
single-process batch of step t and losses that gather it (``distributed.gather_cat``) see it in
single-process order. The whole step (``step_fn``) runs inside DistributedDataParallel's forward,
which averages gradients over ranks. Checkpoints, ``metrics.jsonl`` and the progress bar are rank
0's; every rank resumes from the same checkpoint. Every rank is seeded alike, so random ops draw
the same numbers on every rank (identical random negative mining on the gathered batch; dropout
masks repeat across ranks). BatchNorm normalises with per-rank batch statistics unless
``sync_batchnorm=True`` (CUDA only); buffers are re-broadcast from rank 0 before validation and
saving so all ranks hold the same model.
"""
from __future__ import annotations

import json
import math
import random
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from xmodal_lib.engine.loader import EpochItems, EpochSampler, make_loader, to_device  # noqa: F401 (re-exported)
from xmodal_lib.engine.resume import apply_new_rates, choose_checkpoint, clean_checkpoint_dir, read_training_checkpoint
from xmodal_lib.infra import distributed as D
from xmodal_lib.infra.checkpoint import ensure_writable_dir, optimizer_from_flat
from xmodal_lib.infra.errors import CheckpointError, InputError, ResumeMismatchError


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept and named in the message."""


SCHEDULES = ("constant", "cosine", "official", "exponential")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OFFICIAL_SCHEDULER_EVERY = 10  # XModalViT train_teacher.py steps its CosineAnnealingLR every 10 iterations


@dataclass
class TrainConfig:
    """Optimisation settings shared by every method (fields are notebook parameters).

    ``schedule``: ``"constant"``, ``"cosine"`` (to zero over all steps, after warm-up),
    ``"official"`` (XModalViT's released teacher schedule: a cosine with T_max = all steps that is
    only stepped every 10 iterations, so the rate ends at ~97.6 % of its start) or
    ``"exponential"`` (``lr * gamma ** epoch``, as XModalViT's students). ``precision``: ``"auto"``
    = bf16 autocast on CUDA and fp32 on CPU; ``"fp32"`` (the official training); ``"bf16"``;
    ``"fp16"`` (CUDA autocast with a gradient scaler, whose state is not checkpointed).
    ``weight_decay`` reaches matrices and embeddings only: biases and norm gains/shifts are exempt
    (:func:`param_groups`, nanoGPT's rule; the official XModalViT and ZSE-SBIR code decays every parameter).
    ``ckpt_every`` counts optimiser steps (None: checkpoints only at epoch ends and where the run stops).

    ``batch_size`` is the GLOBAL batch; under DDP with W ranks each rank loads ``batch_size / W``
    (must divide). Loader: ``num_workers`` processes, ``pin_memory`` (None = on when training on
    CUDA), ``prefetch_factor`` batches per worker ahead, ``persistent_workers`` (the epoch reaches
    workers with every index, so resume stays exact). ``compile`` wraps the step in
    ``torch.compile``; ``channels_last`` moves the model and 4-D inputs to channels-last (CNNs).
    ``sync_batchnorm`` (DDP on CUDA) uses global batch statistics; ``find_unused_parameters`` is
    DDP's flag for models where a step leaves some trainable parameters unused.
    ``profile_timing`` synchronises CUDA after every step so ``step_ms`` is exact (slower).
    """

    epochs: int | None = 1        # None: max_steps alone sets the length (then required)
    max_steps: int | None = None
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    schedule: str = "constant"
    gamma: float = 0.99999
    warmup_steps: int = 0
    precision: str = "auto"
    grad_clip: float | None = None
    seed: int | None = 0  # None: the run config fills it in (XModalViT's loops: its SEED)
    device: str = "auto"
    ckpt_every: int | None = 50
    keep_last: int = 2
    drop_last: bool = True
    num_workers: int = 0
    val_every_epochs: int = 1
    pin_memory: bool | None = None
    prefetch_factor: int | None = None
    persistent_workers: bool = False
    compile: bool = False
    channels_last: bool = False
    sync_batchnorm: bool = False
    find_unused_parameters: bool = False
    profile_timing: bool = False

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"TrainConfig.seed: expected None or >= 0, got {self.seed}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"TrainConfig.optimizer: expected 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.epochs is None and self.max_steps is None:
            raise ValueError("TrainConfig.epochs=None (max_steps sets the length) needs max_steps, got None")
        for name in ("batch_size", "epochs", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainConfig.{name}: expected a positive integer, got {value}")
        if self.ckpt_every is not None and self.ckpt_every < 1:
            raise ValueError(f"TrainConfig.ckpt_every: expected None (epoch ends only) or >= 1, got {self.ckpt_every}")
        if self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers: expected >= 0, got {self.num_workers}")
        if self.prefetch_factor is not None and self.prefetch_factor < 1:
            raise ValueError(f"TrainConfig.prefetch_factor: expected None or >= 1, got {self.prefetch_factor}")


LOOP_FIELDS = ("num_workers", "pin_memory", "prefetch_factor", "persistent_workers", "compile", "channels_last",
               "sync_batchnorm", "find_unused_parameters", "profile_timing", "precision", "ckpt_every", "keep_last")


@dataclass(frozen=True)
class FitOptions:
    """How a training run is carried out, beside what it trains (the CLI's ``--loop KEY=VALUE`` and
    ``--resume-changed``), passed explicitly from the caller through the pipeline to :func:`fit`.

    ``loop``: :data:`LOOP_FIELDS` of the :class:`TrainConfig` a pipeline builds, replaced at run time
    (loader workers, compile, DDP flags, checkpoint cadence); ``allow_changed_setup``: resume even when
    the setup changed (a warning names the fields; the new ``lr``/``weight_decay`` apply)."""

    loop: dict[str, Any] = field(default_factory=dict)
    allow_changed_setup: bool = False

    def __post_init__(self) -> None:
        bad = sorted(set(self.loop) - set(LOOP_FIELDS))
        if bad:
            raise ValueError(f"--loop {bad}: not training-loop fields; expected some of {list(LOOP_FIELDS)}")

    def apply(self, cfg: "TrainConfig") -> "TrainConfig":
        """``cfg`` with the loop fields replaced (validated by TrainConfig's own checks)."""
        return replace(cfg, **self.loop) if self.loop else cfg


@dataclass
class TrainResult:
    """What :func:`fit` returns: per-step history, validation rows, last checkpoint, timing.

    ``data_ms`` / ``step_ms``: mean milliseconds per step (this process, rank 0's view, steps of
    this call after its first) spent waiting for the batch (loader + host-to-device copy) and in
    forward + backward + update. ``world_size``: number of ranks.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: Path | None = None
    steps: int = 0
    wall_time: float = 0.0
    data_ms: float = 0.0
    step_ms: float = 0.0
    world_size: int = 1


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _lr_lambda(cfg: TrainConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        if cfg.schedule == "official":  # cosine over T_max = all steps, advanced once every 10 steps
            t = ((step - cfg.warmup_steps) // OFFICIAL_SCHEDULER_EVERY) / max(1, total_steps - cfg.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        if cfg.schedule == "exponential":
            return cfg.gamma ** (step // max(1, steps_per_epoch))
        return 1.0

    return f


def param_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser groups as nanoGPT's ``configure_optimizers``: matrices and embeddings (``ndim >= 2``)
    decay by ``weight_decay``; biases and norm gains/shifts (``ndim < 2``) get ``weight_decay = 0``.

    A deliberate difference from the official XModalViT and ZSE-SBIR code, which decays every parameter
    (CrossATNet has no released code).
    Each group carries ``no_decay`` so a later change of ``weight_decay`` leaves the exempt group at 0;
    empty groups are left out (order kept: decayed first)."""
    decay = [p for p in params if p.ndim >= 2]
    exempt = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay, "no_decay": False},
              {"params": exempt, "weight_decay": 0.0, "no_decay": True}]
    return [g for g in groups if g["params"]]


def _make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if not params:
        raise ValueError("fit: no trainable parameters (all requires_grad=False?)")
    groups = param_groups(params, cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)


def _rng_state(device: torch.device) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":  # the training device's generator (every rank's is in the same state)
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": _to_jsonable(random.getstate())}
    return tensors, meta


def _to_jsonable(x: Any) -> Any:
    return [_to_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def _set_rng_state(tensors: dict[str, Tensor], meta: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if device.type == "cuda":
        if "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
        elif f"rng.cuda.{device.index or 0}" in tensors:  # older checkpoints: one state per device
            torch.cuda.set_rng_state(tensors[f"rng.cuda.{device.index or 0}"], device)
    name, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_to_tuple(meta["python"]))


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete training checkpoints in ``out_dir/checkpoints``, oldest first (by step)."""
    d = Path(out_dir) / "checkpoints"
    if not d.is_dir():
        return []
    stems = [p.with_suffix("") for p in d.glob("step_*.json")]
    return sorted((s for s in stems if s.with_name(s.name + ".safetensors").is_file()), key=lambda s: s.name)


def _prepare_checkpoint_dir(ckpt_dir: Path) -> None:
    """Create ``ckpt_dir``, prove it writable (``OutputError`` before any step) and remove what a killed
    checkpoint write left there, with a warning per file."""
    ensure_writable_dir(ckpt_dir, "checkpoint folder")
    for p in clean_checkpoint_dir(ckpt_dir):
        warnings.warn(f"fit: removed {p.name} from {ckpt_dir}, left by an interrupted checkpoint write",
                      stacklevel=3)


def _restore(model: nn.Module, state_modules: dict[str, nn.Module], opt: torch.optim.Optimizer, sched: Any,
             cfg: TrainConfig, config: dict[str, Any], device: torch.device, out_dir: Path,
             allow_changed: bool) -> tuple[Path, dict[str, Any]] | None:
    """Load the checkpoint to resume from into model, state modules, optimiser, scheduler and RNGs.

    Rank 0 chooses and checks it (:func:`xmodal_lib.engine.resume.choose_checkpoint`); its choice, or its
    error, reaches every rank, so no rank waits for a peer that gave up. Returns (stem, meta) or None."""
    picked, err = None, None
    if D.is_main_process():
        try:
            picked = choose_checkpoint(list_checkpoints(out_dir), model, state_modules, asdict(cfg), config,
                                       allow_changed)
        except InputError as e:
            err = e
    chosen, failure = D.broadcast_object((str(picked[0]) if picked else None,
                                          (type(err).__name__, str(err)) if err else None))
    if err is not None:
        raise err
    if failure is not None:
        raise (ResumeMismatchError if failure[0] == "ResumeMismatchError" else CheckpointError)(failure[1])
    if chosen is None:
        return None
    tensors, meta = picked[1:] if picked else read_training_checkpoint(Path(chosen))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, m in state_modules.items():
        pre = f"state.{name}."
        m.load_state_dict({k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)})
    try:
        optimizer_from_flat(opt, tensors, meta["optimizer"])
        sched.load_state_dict(meta["scheduler"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{chosen}: optimiser/scheduler state does not fit this optimiser "
                              f"({cfg.optimizer}, {len(opt.param_groups)} group(s)): {e}") from None
    if allow_changed:
        apply_new_rates(opt, sched, cfg.lr, cfg.weight_decay)
    _set_rng_state(tensors, meta["rng"], device)
    return Path(chosen), meta


def _check_all_used(model: nn.Module, trainable: list[nn.Parameter]) -> None:
    """Under DDP without ``find_unused_parameters`` a parameter left out of the loss stalls gradient
    synchronisation (DDP fails at the next step with a generic message): name them after step 1."""
    ids = {id(p) for p in trainable}
    unused = [n for n, p in model.named_parameters() if id(p) in ids and p.grad is None]
    if unused:
        shown = ", ".join(unused[:8]) + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        raise ValueError(f"fit under DDP: {len(unused)} trainable parameters got no gradient in the first step "
                         f"({shown}); freeze them or set TrainConfig.find_unused_parameters=True "
                         f"(CLI: --loop find_unused_parameters=true)")


def fit(
    model: nn.Module,
    step_fn: Callable[[nn.Module, Any], dict[str, Tensor]],
    dataset: Dataset,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    collate_fn: Callable | None = None,
    params: Iterable[nn.Parameter] | None = None,
    val_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    state_modules: dict[str, nn.Module] | None = None,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    desc: str = "train",
    progress: bool = True,
    options: FitOptions | None = None,
) -> TrainResult:
    """Train ``model`` with ``step_fn`` over ``dataset`` and return the history.

    One code path for one process and for every rank under ``torchrun`` (module docstring).

    Args:
        step_fn: ``(model, batch_on_device) -> dict`` with a scalar ``"loss"`` to minimise and any
            other scalars to log. It receives the plain model; losses mixing samples gather the
            global batch with :func:`xmodal_lib.infra.distributed.gather_cat`.
        params: parameters to optimise (default: every ``requires_grad`` parameter of ``model``).
        val_fn: called in eval mode every ``cfg.val_every_epochs`` epochs; use held-out TRAIN data.
            Under DDP every rank runs it on identical weights; rank 0's row is kept everywhere.
        state_modules: extra modules whose ``state_dict`` (e.g. a queue buffer) goes into checkpoints;
            they must stay identical on every rank (XAQC enqueues the gathered keys).
        resume: continue from the newest complete checkpoint in ``out_dir/checkpoints`` (under DDP,
            rank 0's newest; ``out_dir`` must be on a filesystem every rank can read). An unreadable
            newest checkpoint is skipped (warning naming it); a stored setup (``cfg`` and ``config``)
            that differs from this call's raises ``ResumeMismatchError`` naming the fields
            (:mod:`xmodal_lib.engine.resume`).
        config: the method's config, stored in every checkpoint's JSON.
        options: :class:`FitOptions` (run-time loop fields, resuming a changed setup); default none.

    The checkpoint folder is created and proven writable before anything else happens, and stale
    temp files or half-written checkpoints of a killed run are removed from it.
    """
    from xmodal_lib.engine.loop import run, setup  # lazy: import cycle (engine.loop imports engine.train)

    r = setup(model, step_fn, dataset, cfg, out_dir, collate_fn=collate_fn, params=params,
              state_modules=state_modules, resume=resume, config=config, desc=desc, options=options)
    return run(r, val_fn, progress)


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``out_dir/metrics.jsonl`` (train and val), for plotting curves."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
