"""In-memory tensors and a small torch Dataset over index records."""
from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from xmodal_lib.data.index import DataError, Record
from xmodal_lib.data.transforms import ImageLoader


def preload(records: Sequence[Record], loader: ImageLoader, desc: str = "load",
            progress: bool = True) -> torch.Tensor:
    """Decode every record once into a ``Tensor[N, 3, H, W]`` (float32), with a tqdm bar.

    Errors are raised here, in the main process, with the file named (never inside a worker).
    """
    if len(records) == 0:
        return torch.zeros(0, 3, loader.size, loader.size)
    out = torch.empty(len(records), 3, loader.size, loader.size)  # (N, 3, H, W)
    for i, r in enumerate(tqdm(records, desc=desc, disable=not progress, leave=False)):
        out[i] = loader.load(r)
    return out


class ImageDataset(Dataset):
    """``dataset[i] -> (image FloatTensor[3, H, W], class id)``, deterministic in ``i``.

    With an augmenting loader the augmentation seed is ``seed + i + len * epoch`` so that
    ``set_epoch`` (called by the training loop) changes it reproducibly.
    """

    def __init__(self, records: Sequence[Record], loader: ImageLoader,
                 label_ids: dict[str, int], seed: int = 0) -> None:
        missing = sorted({r.label for r in records} - set(label_ids))
        if missing:
            raise DataError(f"ImageDataset: labels without an id: {missing[:10]}")
        self.records, self.loader, self.label_ids = list(records), loader, label_ids
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        r = self.records[i]
        seed = self.seed + i + len(self.records) * self.epoch
        return self.loader.load(r, seed=seed), self.label_ids[r.label]
