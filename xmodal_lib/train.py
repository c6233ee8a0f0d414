"""One training loop for every method: seeded, resumable, checkpointed without pickle.

``fit`` drives a model with a method-specific ``step_fn(model, batch) -> {"loss": ..., ...}``.
Resume is exact on CPU: the data order is a pure function of ``(seed, epoch)``, datasets are
deterministic in ``(index, epoch)``, and the checkpoint holds model, optimiser, extra state
(e.g. a contrastive queue) and every RNG state. A run killed at any point and restarted with
``resume=True`` ends with the same weights as an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from .checkpoint import load_tensors, optimizer_from_flat, optimizer_to_flat, save_tensors


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept and named in the message."""


@dataclass
class TrainConfig:
    """Optimisation settings shared by every method (fields are notebook parameters).

    ``schedule``: ``"constant"``, ``"cosine"`` (over all steps, after warm-up) or
    ``"exponential"`` (``lr * gamma ** epoch``, as XModalViT's students). ``precision="auto"``
    means bf16 autocast on CUDA and fp32 on CPU. ``ckpt_every`` counts optimiser steps.
    """

    epochs: int = 1
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
    seed: int = 0
    device: str = "auto"
    ckpt_every: int = 50
    keep_last: int = 2
    drop_last: bool = True
    num_workers: int = 0
    val_every_epochs: int = 1

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"TrainConfig.optimizer: expected 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine", "exponential"):
            raise ValueError(f"TrainConfig.schedule: expected 'constant', 'cosine' or 'exponential', got {self.schedule!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"TrainConfig.precision: expected 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"TrainConfig: batch_size and epochs must be >= 1, got {self.batch_size}, {self.epochs}")


@dataclass
class TrainResult:
    """What :func:`fit` returns: per-step history, validation rows, last checkpoint, timing."""

    history: list[dict[str, float]] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: Path | None = None
    steps: int = 0
    wall_time: float = 0.0


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move tensors inside nested tuples/lists/dicts to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class EpochSampler(Sampler[int]):
    """Index order as a pure function of ``(seed, epoch)``; can start mid-epoch for resume."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start`` indices."""
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """The full index order of the current epoch."""
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return self.n - self.start


def _lr_lambda(cfg: TrainConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
        if cfg.schedule == "exponential":
            return cfg.gamma ** (step // max(1, steps_per_epoch))
        return 1.0

    return f


def _make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if not params:
        raise ValueError("fit: no trainable parameters (all requires_grad=False?)")
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=0.9)


def _rng_state() -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": _to_jsonable(random.getstate())}
    return tensors, meta


def _to_jsonable(x: Any) -> Any:
    return [_to_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def _set_rng_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
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
) -> TrainResult:
    """Train ``model`` with ``step_fn`` over ``dataset`` and return the history.

    Args:
        step_fn: ``(model, batch_on_device) -> dict`` with a scalar ``"loss"`` to minimise and any
            other scalars to log.
        params: parameters to optimise (default: every ``requires_grad`` parameter of ``model``).
        val_fn: called in eval mode every ``cfg.val_every_epochs`` epochs; use held-out TRAIN data.
        state_modules: extra modules whose ``state_dict`` (e.g. a queue buffer) goes into checkpoints.
        resume: continue from the newest complete checkpoint in ``out_dir/checkpoints``.
        config: the method's config, stored in every checkpoint's JSON.
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    use_bf16 = device.type == "cuda" and cfg.precision in ("auto", "bf16")
    if cfg.precision == "bf16" and device.type != "cuda":
        raise ValueError("TrainConfig.precision='bf16' needs a CUDA device; use 'auto' or 'fp32' on CPU")
    state_modules = state_modules or {}
    seed_everything(cfg.seed)
    model.to(device)
    for m in state_modules.values():
        m.to(device)
    trainable = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = _make_optimizer(cfg, trainable)

    n = len(dataset)
    steps_per_epoch = n // cfg.batch_size if cfg.drop_last else math.ceil(n / cfg.batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"fit: dataset has {n} items, fewer than batch_size={cfg.batch_size} with drop_last")
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, total, steps_per_epoch))
    sampler = EpochSampler(n, cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=cfg.drop_last,
                        collate_fn=collate_fn, num_workers=cfg.num_workers,
                        generator=torch.Generator().manual_seed(cfg.seed))
    result = TrainResult()
    step, epoch, start_in_epoch = 0, 0, 0
    meta_base = {"train_config": asdict(cfg), "config": config or {}}

    if resume:
        ckpts = list_checkpoints(out_dir)
        if ckpts:
            tensors, meta = load_tensors(ckpts[-1], device="cpu")
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            for name, m in state_modules.items():
                pre = f"state.{name}."
                m.load_state_dict({k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)})
            optimizer_from_flat(opt, tensors, meta["optimizer"])
            sched.load_state_dict(meta["scheduler"])
            _set_rng_state(tensors, meta["rng"])
            step, epoch, start_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
            result.history, result.val = meta["history"], meta["val"]
            result.last_checkpoint = ckpts[-1]

    log_path = out_dir / "metrics.jsonl"
    with open(log_path, "w") as f:  # rewritten from the (restored) history: no duplicate rows after resume
        for row in result.history:
            f.write(json.dumps({"kind": "train", **row}) + "\n")
        for row in result.val:
            f.write(json.dumps({"kind": "val", **row}) + "\n")

    def save(batch_in_epoch: int, ep: int) -> Path:
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        for name, m in state_modules.items():
            tensors.update({f"state.{name}.{k}": v for k, v in m.state_dict().items()})
        opt_t, opt_meta = optimizer_to_flat(opt)
        rng_t, rng_meta = _rng_state()
        tensors.update(opt_t)
        tensors.update(rng_t)
        meta = {**meta_base, "step": step, "epoch": ep, "batch_in_epoch": batch_in_epoch,
                "optimizer": opt_meta, "scheduler": sched.state_dict(), "rng": rng_meta,
                "history": result.history, "val": result.val}
        path = save_tensors(ckpt_dir / f"step_{step:08d}", tensors, meta)
        for old in list_checkpoints(out_dir)[:-max(1, cfg.keep_last)]:
            for suffix in (".json", ".safetensors"):
                old.with_name(old.name + suffix).unlink(missing_ok=True)
        result.last_checkpoint = path
        return path

    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc=desc, disable=not progress, leave=False)
    log = open(log_path, "a")
    try:
        while step < total:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            sampler.set_epoch(epoch, start_in_epoch * cfg.batch_size)
            model.train()
            b = start_in_epoch
            for batch in loader:
                if step >= total:
                    break
                batch = to_device(batch, device)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    out = step_fn(model, batch)
                loss = out["loss"]
                if not torch.isfinite(loss.detach()).all():
                    raise NonFiniteLossError(
                        f"{desc}: non-finite loss ({loss.item()}) at step {step}, epoch {epoch}; "
                        f"last good checkpoint: {result.last_checkpoint}. Try a lower lr or grad_clip."
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                opt.step()
                sched.step()
                step += 1
                b += 1
                row = {"step": step, "epoch": epoch, "lr": opt.param_groups[0]["lr"]}
                row.update({k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in out.items()})
                result.history.append(row)
                log.write(json.dumps({"kind": "train", **row}) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}", epoch=epoch)
                if step % cfg.ckpt_every == 0 and b < steps_per_epoch:
                    log.flush()
                    save(b, epoch)
            finished_epoch = b >= steps_per_epoch
            if finished_epoch:
                if val_fn is not None and (epoch + 1) % cfg.val_every_epochs == 0:
                    model.eval()
                    with torch.no_grad():
                        vrow = {"step": step, "epoch": epoch, **{k: float(v) for k, v in val_fn(model).items()}}
                    result.val.append(vrow)
                    log.write(json.dumps({"kind": "val", **vrow}) + "\n")
                    model.train()
                epoch, start_in_epoch = epoch + 1, 0
                log.flush()
                save(0, epoch)
            else:  # stopped by max_steps mid-epoch
                log.flush()
                save(b, epoch)
                break
    finally:
        bar.close()
        log.close()
    model.eval()
    result.steps = step
    result.wall_time = time.perf_counter() - t0
    return result


def read_log(out_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of ``out_dir/metrics.jsonl`` (train and val), for plotting curves."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
