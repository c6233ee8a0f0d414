"""CrossATNet data side: the zero-shot index, the seen-only guard, image preloading, training pairs.

Training pairs: item ``i`` is sketch ``i`` of the seen set with a photo of the SAME class drawn by
a seeded hash of ``(seed, epoch, i)`` (category-level pairs, as in ZS-SBIR; Sketchy's instance
pairing is not used), plus a horizontal flip of each image decided the same way.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from xmodal_lib.data import ImageLoader
from xmodal_lib.data.index import DataError, Record, SBIRIndex

if TYPE_CHECKING:  # pragma: no cover
    from xmodal_lib.methods.crossatnet.pipeline import CrossATNetRunConfig


def load_index(cfg: "CrossATNetRunConfig") -> SBIRIndex:
    """The zero-shot index of ``cfg.dataset`` (unseen-class records have split "test")."""
    from xmodal_lib.data import open_dataset  # lazy: read at call time: tests patch open_dataset

    if cfg.dataset != "synthetic" and cfg.data_root is None:
        raise ValueError(f"CrossATNetRunConfig.data_root is required for dataset={cfg.dataset!r}")
    idx = open_dataset(cfg.dataset, cfg.data_root, split=cfg.split)
    if not idx.unseen:
        raise DataError(f"{idx.name}: no unseen classes; CrossATNet needs a zero-shot split")
    return idx


def check_seen_only(records: Sequence[Record], unseen: Sequence[str], where: str = "training") -> None:
    """Raise :class:`DataError` if any record belongs to an unseen class or to the test split."""
    u = set(unseen)
    bad = [r for r in records if r.label in u or r.split != "train"]
    if bad:
        r = bad[0]
        raise DataError(f"{where}: {len(bad)} record(s) of unseen classes / test split, e.g. {r.path} "
                        f"(class {r.label!r}, split {r.split!r}); pass index.subset('train')")


def image_loaders(cfg: "CrossATNetRunConfig"):
    """``(sketch_loader, photo_loader)``: ImageNet-normalised, sketches cropped to their ink."""
    return (ImageLoader(cfg.model.img_size, normalize="imagenet", sketch_crop=True),
            ImageLoader(cfg.model.img_size, normalize="imagenet"))


def load_images(cfg: "CrossATNetRunConfig", index: SBIRIndex, progress: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
    """Preload ``{"train": (sketches, photos), "test": (sketches, photos)}`` once, in index order."""
    from xmodal_lib.data import preload  # lazy: read at call time: tests patch preload

    ls, lp = image_loaders(cfg)
    out = {}
    for split in ("train", "test"):
        sub = index.subset(split)
        out[split] = (preload(sub.sketches, ls, f"{split} sketches", progress),
                      preload(sub.photos, lp, f"{split} photos", progress))
    return out


def _u64(*key: int) -> int:
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "little")


class PairDataset(torch.utils.data.Dataset):
    """``dataset[i] -> (sketch [3,H,W], photo [3,H,W], class id)``, a pure function of (seed, epoch, i)."""

    def __init__(self, sketches: Tensor, sketch_labels: Tensor, photos: Tensor, photo_labels: Tensor,
                 seed: int = 0, augment: bool = True) -> None:
        missing = set(sketch_labels.tolist()) - set(photo_labels.tolist())
        if missing:
            raise DataError(f"PairDataset: classes {sorted(missing)[:10]} have sketches but no photos")
        self.sketches, self.sketch_labels = sketches, sketch_labels
        self.photos, self.photo_labels = photos, photo_labels
        self.by_class = {int(c): torch.nonzero(photo_labels == c).flatten() for c in photo_labels.unique()}
        self.seed, self.augment, self.epoch = seed, augment, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the pairing/augmentation stream of ``epoch`` (called by ``fit``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.sketch_labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        y = int(self.sketch_labels[i])
        h = _u64(self.seed, self.epoch, i)
        cand = self.by_class[y]
        p = self.photos[cand[h % len(cand)]]
        s = self.sketches[i]
        if self.augment:
            if (h >> 20) & 1:
                s = s.flip(-1)
            if (h >> 21) & 1:
                p = p.flip(-1)
        return s, p, torch.tensor(y)
