"""Data order and loading for :func:`xmodal_lib.engine.train.fit`: the ``(seed, epoch)`` permutation, its
per-rank shards under DDP, the epoch carried with every index, and the DataLoader options.

Rank r of W takes the r-th contiguous slice of every global batch, so concatenating the ranks'
batches in rank order (``distributed.gather_cat``) gives the single-process batch of that step.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["to_device", "EpochSampler", "EpochItems", "make_loader"]


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors inside nested tuples/lists/dicts to ``device`` (4-D ones channels-last if asked)."""
    if isinstance(batch, Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


class EpochSampler(Sampler[tuple[int, int]]):
    """Index order as a pure function of ``(seed, epoch)``; can start mid-epoch for resume.

    Yields ``(epoch, index)`` keys (see :class:`EpochItems`). With ``world_size`` W > 1, rank r
    yields the r-th of W equal contiguous slices of every global batch of ``batch_size`` items;
    with ``drop_last`` an incomplete last global batch is skipped on every rank.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, batch_size: int = 1, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"EpochSampler: batch_size={batch_size} is not divisible by world_size={world_size}")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.batch_size, self.drop_last, self.rank, self.world = batch_size, drop_last, rank, world_size
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

    def _indices(self) -> list[int]:
        rest = self.order()[self.start:]
        if self.drop_last:
            rest = rest[:len(rest) - len(rest) % self.batch_size]
        if self.world == 1:
            return rest
        b = self.batch_size // self.world  # per-rank slice of each global batch
        return [i for g in range(0, len(rest), self.batch_size)
                for i in rest[g + self.rank * b:g + (self.rank + 1) * b]]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self._indices()])

    def __len__(self) -> int:
        return len(self._indices())


class EpochItems(Dataset):
    """``items[(epoch, i)] = dataset[i]`` after ``dataset.set_epoch(epoch)``: the epoch travels with
    every index, so loader workers (persistent or not) always draw the right epoch's items."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.epoch = dataset, None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, i = key
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        return self.dataset[i]


def make_loader(dataset: Dataset, sampler: EpochSampler, batch_size: int, *, collate_fn: Callable | None = None,
                drop_last: bool = True, num_workers: int = 0, pin_memory: bool = False,
                prefetch_factor: int | None = None, persistent_workers: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader over :class:`EpochItems` of ``dataset`` in ``sampler``'s order (``batch_size`` per rank);
    ``prefetch_factor`` and ``persistent_workers`` apply only with ``num_workers > 0``."""
    kw: dict[str, Any] = {}
    if num_workers > 0:
        kw = dict(persistent_workers=persistent_workers, prefetch_factor=prefetch_factor or 2)
    return DataLoader(EpochItems(dataset), batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      collate_fn=collate_fn, num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed), **kw)
