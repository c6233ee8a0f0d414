"""ZSE-SBIR training batches (methods_spec.md §3.6): the paper's per-item construction.

Item i draws 3 distinct groups (c0, c1, c2) — classes for category-level data, photo instances
for fine-grained data — then sk⁺ and ph⁺ from c0, sk⁻ another sketch of c0, ph⁻ from c2 (c1 is
unused, as in the official code). Every item is a deterministic function of (seed, epoch, i).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from xmodal_lib.data.index import DataError

__all__ = ["ZSEBatchDataset", "group_ids"]


def group_ids(keys: Sequence[str]) -> tuple[list[int], list[str]]:
    """String group keys -> (integer ids, sorted names)."""
    names = sorted(set(keys))
    pos = {n: i for i, n in enumerate(names)}
    return [pos[k] for k in keys], names


class ZSEBatchDataset(Dataset):
    """``ds[i] -> {"sk_pos", "sk_neg", "ph_pos", "ph_neg"}`` image tensors (3, H, W).

    Args:
        sketches, photos: preloaded images (N, 3, H, W).
        sketch_groups, photo_groups: group key (class or instance) of every image.
        n_items: items per epoch (the official ``datasetLen`` = 10 000).
        seed: base seed.
    """

    def __init__(self, sketches: Tensor, sketch_groups: Sequence[str], photos: Tensor,
                 photo_groups: Sequence[str], n_items: int, seed: int = 0) -> None:
        if len(sketch_groups) != sketches.shape[0] or len(photo_groups) != photos.shape[0]:
            raise DataError("ZSEBatchDataset: one group key per image expected")
        common = sorted(set(sketch_groups) & set(photo_groups))
        if len(common) < 3:
            raise DataError(f"ZSEBatchDataset: need >= 3 groups with both sketches and photos, got {len(common)}")
        self.sketches, self.photos = sketches, photos
        self.groups = common
        self.sk_of = {g: np.flatnonzero(np.array(sketch_groups) == g) for g in common}
        self.ph_of = {g: np.flatnonzero(np.array(photo_groups) == g) for g in common}
        self.n_items, self.seed, self.epoch = int(n_items), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_items

    def indices(self, i: int) -> tuple[int, int, int, int]:
        """(sk_pos, sk_neg, ph_pos, ph_neg) image indices of item i."""
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        c0, _c1, c2 = (self.groups[j] for j in rng.choice(len(self.groups), 3, replace=False))
        sks = self.sk_of[c0]
        a = int(rng.integers(len(sks)))
        # another sketch of c0 when there is one (fine-grained groups may hold a single sketch)
        b = int(rng.integers(len(sks) - 1)) if len(sks) > 1 else a
        if len(sks) > 1 and b >= a:
            b += 1
        ph_pos = int(self.ph_of[c0][rng.integers(len(self.ph_of[c0]))])
        ph_neg = int(self.ph_of[c2][rng.integers(len(self.ph_of[c2]))])
        return int(sks[a]), int(sks[b]), ph_pos, ph_neg

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        a, b, p, n = self.indices(i)
        return {"sk_pos": self.sketches[a], "sk_neg": self.sketches[b],
                "ph_pos": self.photos[p], "ph_neg": self.photos[n]}
