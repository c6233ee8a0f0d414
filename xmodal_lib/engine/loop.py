"""The body of :func:`xmodal_lib.engine.train.fit`, in its parts: setup, one step, checkpoint, validation.

A :class:`FitRun` holds everything one call of ``fit`` works on (model, optimiser, scheduler, data
order, counters). :func:`setup` builds it (device, precision, DDP checks, optimiser, data, resume),
:func:`train_step` runs one optimiser step and logs it, :func:`save_checkpoint` writes the exact
resume state, :func:`validate` runs ``val_fn`` at epoch ends, and :func:`run` loops over epochs.
The semantics are documented on ``fit`` and in the :mod:`xmodal_lib.engine.train` module docstring.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from xmodal_lib.engine.loader import EpochSampler, make_loader, to_device
from xmodal_lib.engine.train import (
    FitOptions,
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
    _check_all_used,
    _lr_lambda,
    _make_optimizer,
    _prepare_checkpoint_dir,
    _restore,
    _rng_state,
    list_checkpoints,
    seed_everything,
)
from xmodal_lib.infra import distributed as D
from xmodal_lib.infra.checkpoint import optimizer_to_flat, save_tensors
from xmodal_lib.infra.devices import resolve_device

__all__ = ["FitRun", "setup", "train_step", "save_checkpoint", "validate", "run"]


@dataclass
class FitRun:
    """The state of one ``fit`` call."""

    cfg: TrainConfig
    model: nn.Module
    runner: Callable[[Any], dict[str, Tensor]]
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: torch.dtype
    use_amp: bool
    dataset: Dataset
    sampler: EpochSampler
    loader: Any
    trainable: list[nn.Parameter]
    state_modules: dict[str, nn.Module]
    out_dir: Path
    main: bool
    desc: str
    steps_per_epoch: int
    total: int
    meta_base: dict[str, Any]
    result: TrainResult
    step: int = 0
    epoch: int = 0
    start_in_epoch: int = 0
    check_unused: bool = False
    timings: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def log_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"


def _device_and_precision(cfg: TrainConfig) -> tuple[torch.device, torch.dtype, bool, torch.amp.GradScaler]:
    device = resolve_device(cfg.device)
    if cfg.precision in ("bf16", "fp16") and device.type != "cuda":
        raise ValueError(f"TrainConfig.precision={cfg.precision!r} needs a CUDA device; use 'auto' or 'fp32' on CPU")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision, torch.bfloat16)
    use_amp = device.type == "cuda" and cfg.precision != "fp32"
    return device, amp, use_amp, torch.amp.GradScaler("cuda", enabled=use_amp and amp is torch.float16)


def _check_world(cfg: TrainConfig, device: torch.device, model: nn.Module, world: int) -> nn.Module:
    """DDP preconditions (global batch divisible, backend vs device, SyncBatchNorm) -> the model to train."""
    if cfg.batch_size % world:
        raise ValueError(f"TrainConfig.batch_size={cfg.batch_size} is the GLOBAL batch and must be divisible by "
                         f"the number of processes ({world})")
    if D.is_distributed():
        if D.dist.get_backend() == "nccl" and device.type != "cuda":
            raise ValueError(f"fit: the process group uses NCCL but TrainConfig.device={cfg.device!r} is not CUDA")
        if cfg.sync_batchnorm and device.type != "cuda":
            raise ValueError("TrainConfig.sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel)")
        if cfg.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _data(cfg: TrainConfig, dataset: Dataset, collate_fn: Callable | None, device: torch.device,
          world: int) -> tuple[int, EpochSampler, Any]:
    """Steps per epoch, the seeded epoch sampler and the loader of this rank's slice."""
    n = len(dataset)
    steps_per_epoch = n // cfg.batch_size if cfg.drop_last else math.ceil(n / cfg.batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"fit: dataset has {n} items, fewer than batch_size={cfg.batch_size} with drop_last")
    if world > 1 and not cfg.drop_last and n % cfg.batch_size:
        raise ValueError(f"fit under DDP: {n} items leave a partial global batch of {n % cfg.batch_size} that "
                         f"cannot be split evenly over {world} ranks; use drop_last=True")
    sampler = EpochSampler(n, cfg.seed, batch_size=cfg.batch_size, drop_last=cfg.drop_last,
                           rank=D.rank(), world_size=world)
    pin = device.type == "cuda" if cfg.pin_memory is None else (cfg.pin_memory and torch.cuda.is_available())
    loader = make_loader(dataset, sampler, cfg.batch_size // world, collate_fn=collate_fn, drop_last=cfg.drop_last,
                         num_workers=cfg.num_workers, pin_memory=pin, prefetch_factor=cfg.prefetch_factor,
                         persistent_workers=cfg.persistent_workers, seed=cfg.seed)
    return steps_per_epoch, sampler, loader


def setup(model: nn.Module, step_fn: Callable[[nn.Module, Any], dict[str, Tensor]], dataset: Dataset,
          cfg: TrainConfig, out_dir: str | Path, *, collate_fn: Callable | None = None,
          params: Iterable[nn.Parameter] | None = None, state_modules: dict[str, nn.Module] | None = None,
          resume: bool = False, config: dict[str, Any] | None = None, desc: str = "train",
          options: FitOptions | None = None) -> FitRun:
    """Everything before the first step: checkpoint folder, device, model, optimiser, data, resume."""
    options = options or FitOptions()
    cfg = options.apply(cfg)
    out_dir = Path(out_dir)
    world, main = D.world_size(), D.is_main_process()
    if main:
        _prepare_checkpoint_dir(out_dir / "checkpoints")
    device, amp, use_amp, scaler = _device_and_precision(cfg)
    model = _check_world(cfg, device, model, world)
    state_modules = state_modules or {}
    if cfg.seed is None:
        raise ValueError("fit: TrainConfig.seed is None; a run config fills it in (e.g. XModalViTConfig.loop())")
    seed_everything(cfg.seed)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    for m in state_modules.values():
        m.to(device)
    trainable = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = _make_optimizer(cfg, trainable)
    steps_per_epoch, sampler, loader = _data(cfg, dataset, collate_fn, device, world)
    total = cfg.max_steps if cfg.epochs is None else cfg.epochs * steps_per_epoch  # epochs=None: max_steps decides
    total = total if cfg.max_steps is None else min(total, cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total, steps_per_epoch))
    run_ = FitRun(cfg=cfg, model=model, runner=None, opt=opt, sched=sched, scaler=scaler, device=device, amp=amp,
                  use_amp=use_amp, dataset=dataset, sampler=sampler, loader=loader, trainable=trainable,
                  state_modules=state_modules, out_dir=out_dir, main=main, desc=desc,
                  steps_per_epoch=steps_per_epoch, total=total,
                  meta_base={"train_config": asdict(cfg), "config": config or {}}, result=TrainResult(world_size=world),
                  check_unused=D.is_distributed() and not cfg.find_unused_parameters)
    if resume:
        restored = _restore(model, state_modules, opt, sched, cfg, config or {}, device, out_dir,
                            options.allow_changed_setup)
        if restored is not None:
            run_.result.last_checkpoint, meta = restored
            run_.step, run_.epoch, run_.start_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
            run_.result.history, run_.result.val = meta["history"], meta["val"]
    run_.runner = D.wrap_step(model, step_fn, device, trainable, find_unused_parameters=cfg.find_unused_parameters,
                              compile=cfg.compile)
    if main:
        with open(run_.log_path, "w") as f:  # rewritten from the (restored) history: no duplicate rows after resume
            for row in run_.result.history:
                f.write(json.dumps({"kind": "train", **row}) + "\n")
            for row in run_.result.val:
                f.write(json.dumps({"kind": "val", **row}) + "\n")
    return run_


def save_checkpoint(r: FitRun, batch_in_epoch: int, epoch: int) -> Path:
    """Write ``step_<step>`` (weights, state modules, optimiser, scheduler, RNGs, history) on rank 0,
    keep the newest ``keep_last``, and hold every rank until it is complete."""
    D.broadcast_buffers(r.model)
    path = r.ckpt_dir / f"step_{r.step:08d}"
    if r.main:
        tensors = {f"model.{k}": v for k, v in r.model.state_dict().items()}
        for name, m in r.state_modules.items():
            tensors.update({f"state.{name}.{k}": v for k, v in m.state_dict().items()})
        opt_t, opt_meta = optimizer_to_flat(r.opt)
        rng_t, rng_meta = _rng_state(r.device)
        tensors.update(opt_t)
        tensors.update(rng_t)
        meta = {**r.meta_base, "step": r.step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "optimizer": opt_meta, "scheduler": r.sched.state_dict(), "rng": rng_meta,
                "history": r.result.history, "val": r.result.val}
        path = save_tensors(path, tensors, meta)
        for old in list_checkpoints(r.out_dir)[:-max(1, r.cfg.keep_last)]:
            for suffix in (".json", ".safetensors"):
                old.with_name(old.name + suffix).unlink(missing_ok=True)
    D.barrier()  # nobody runs ahead (or resumes) before the checkpoint is complete
    r.result.last_checkpoint = path
    return path


def train_step(r: FitRun, batch: Any, t_data: float) -> dict[str, Any]:
    """One optimiser step on ``batch`` (already on the device); returns the logged row."""
    t_step = time.perf_counter()
    with torch.autocast(device_type=r.device.type, dtype=r.amp, enabled=r.use_amp):
        out = r.runner(batch)
    loss = out["loss"]
    logged = D.mean_scalars(out, r.device)
    if not math.isfinite(logged["loss"]):
        raise NonFiniteLossError(
            f"{r.desc}: non-finite loss ({logged['loss']}) at step {r.step}, epoch {r.epoch}; "
            f"last good checkpoint: {r.result.last_checkpoint}. Try a lower lr or grad_clip."
        )
    r.opt.zero_grad(set_to_none=True)
    r.scaler.scale(loss).backward()
    if r.check_unused:
        _check_all_used(r.model, r.trainable)
        r.check_unused = False
    if r.cfg.grad_clip:
        r.scaler.unscale_(r.opt)
        torch.nn.utils.clip_grad_norm_(r.trainable, r.cfg.grad_clip)
    r.scaler.step(r.opt)  # = opt.step() unless fp16
    r.scaler.update()
    r.sched.step()
    if r.cfg.profile_timing and r.device.type == "cuda":
        torch.cuda.synchronize(r.device)
    r.timings.append(((t_step - t_data) * 1e3, (time.perf_counter() - t_step) * 1e3))
    r.step += 1
    row = {"step": r.step, "epoch": r.epoch, "lr": r.opt.param_groups[0]["lr"], **logged,
           "data_ms": r.timings[-1][0], "step_ms": r.timings[-1][1]}
    r.result.history.append(row)
    return row


def validate(r: FitRun, val_fn: Callable[[nn.Module], dict[str, float]], log: TextIO) -> None:
    """``val_fn`` in eval mode on identical weights on every rank; rank 0's row is kept everywhere."""
    D.broadcast_buffers(r.model)
    r.model.eval()
    with torch.no_grad():
        vrow = {"step": r.step, "epoch": r.epoch, **{k: float(v) for k, v in val_fn(r.model).items()}}
    vrow = D.broadcast_object(vrow)  # rank 0's numbers on every rank
    r.result.val.append(vrow)
    log.write(json.dumps({"kind": "val", **vrow}) + "\n")
    r.model.train()


def _epoch(r: FitRun, log: TextIO, bar: Any) -> int:
    """Steps of the current epoch from ``start_in_epoch`` until it ends or ``total`` is reached;
    returns the batch index reached (checkpoints every ``ckpt_every`` steps inside the epoch)."""
    if hasattr(r.dataset, "set_epoch"):
        r.dataset.set_epoch(r.epoch)
    r.sampler.set_epoch(r.epoch, r.start_in_epoch * r.cfg.batch_size)
    r.model.train()
    b = r.start_in_epoch
    t_data = time.perf_counter()
    for batch in r.loader:
        if r.step >= r.total:
            break
        row = train_step(r, to_device(batch, r.device, r.cfg.channels_last), t_data)
        b += 1
        log.write(json.dumps({"kind": "train", **row}) + "\n")
        bar.set_postfix(loss=f"{row['loss']:.4f}", epoch=r.epoch, refresh=False)
        bar.update(1)
        if r.cfg.ckpt_every is not None and r.step % r.cfg.ckpt_every == 0 and b < r.steps_per_epoch:
            log.flush()
            save_checkpoint(r, b, r.epoch)
        t_data = time.perf_counter()
    return b


def run(r: FitRun, val_fn: Callable[[nn.Module], dict[str, float]] | None = None,
        progress: bool = True) -> TrainResult:
    """Epochs until ``total`` steps: validation and a checkpoint at every epoch end, a checkpoint
    where ``max_steps`` stops mid-epoch; returns the result with timings."""
    t0 = time.perf_counter()
    # mininterval + postfix without refresh: at most ~2 redraws per second. A redraw per step floods a
    # notebook's iopub channel (a widget message each), and nbval then loses the cell's final message.
    bar = tqdm(total=r.total, initial=r.step, desc=r.desc, disable=not (progress and r.main), leave=False,
               mininterval=0.5)
    log = open(r.log_path, "a") if r.main else open(os.devnull, "w")
    try:
        while r.step < r.total:
            b = _epoch(r, log, bar)
            if b >= r.steps_per_epoch:  # the epoch finished
                if val_fn is not None and (r.epoch + 1) % r.cfg.val_every_epochs == 0:
                    validate(r, val_fn, log)
                r.epoch, r.start_in_epoch = r.epoch + 1, 0
                log.flush()
                save_checkpoint(r, 0, r.epoch)
            else:  # stopped by max_steps mid-epoch
                log.flush()
                save_checkpoint(r, b, r.epoch)
                break
    finally:
        bar.close()
        log.close()
    r.model.eval()
    res = r.result
    res.steps, res.wall_time = r.step, time.perf_counter() - t0
    rest = r.timings[1:] or r.timings  # the first step carries loader start-up and compilation
    if rest:
        res.data_ms = sum(t[0] for t in rest) / len(rest)
        res.step_ms = sum(t[1] for t in rest) / len(rest)
    return res
