"""XModalViT data: fine-grained splits in memory, (photo, sketch A, sketch B) items, input transforms.

Split off :mod:`xmodal_lib.methods.xmodalvit.pipeline` (which re-exports every name here). Two input
transforms are **our additions** (the official code feeds [0, 1] images, unaugmented):

* :func:`standardize_images`: per-image mean/std standardisation. A sketch is ~90 % white
  background, so a randomly initialised ViT maps all sketches to almost the same [CLS] vector.
  Measured spread of the normalised [CLS] features at init (width 48, depth 2, 32 px, patch 8):
  QMUL Shoe-V1 sketches 0.016 -> 0.21 with standardisation, synthetic sketches ~0.045 -> ~0.12.
  Without it the triplet baseline on QMUL Shoe-V1 stayed exactly at chance (every sketch ranked
  the photos identically); with it, it learned.
* :func:`photo_views`: independent colour augmentation of the teacher's two photo views, so the
  teacher cannot identify an instance by its colours alone.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from xmodal_lib.data.index import DataError
from xmodal_lib.data.preflight import preflight
from xmodal_lib.data.transforms import ImageLoader

__all__ = ["FGTensors", "XModalData", "index_to_tensors", "load_data", "TripletPhotoSketchDataset",
           "standardize_images", "photo_views", "for_display"]


def standardize_images(x: Tensor, eps: float = 1e-3) -> Tensor:
    """Per-image standardisation of ``x [N,C,H,W]``: zero mean, unit std over (C, H, W) of each image.

    Idempotent (up to ``eps``), so applying it twice is harmless; a constant image maps to zeros.
    """
    if x.dim() != 4:
        raise ValueError(f"standardize_images: expected [N, C, H, W], got {tuple(x.shape)}")
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / std.clamp_min(eps)


def photo_views(photo: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One random colour view per photo of ``photo [B,3,H,W]`` (same shape): a random channel
    permutation, a random blend towards grey (weight ~ U(0,1)) and a random contrast gain
    ~ U(0.7, 1.3) around the image mean. Shape, texture and layout are kept; hue is not.

    Random numbers come from ``generator`` (default: the global CPU RNG, which the training loop
    checkpoints). Under DDP they are drawn for the GLOBAL batch and this rank keeps its rows, so a
    run on W ranks sees exactly the views of the single-process run on the same global batch.
    """
    from xmodal_lib.infra.distributed import rank, world_size  # lazy: read at call time: tests patch rank, world_size

    b, w, r = photo.shape[0], world_size(), rank()
    dev = photo.device

    def rand(*shape: int) -> Tensor:
        full = torch.rand(b * w, *shape, generator=generator)  # (W*B, ...) same stream on every rank
        return full[r * b:(r + 1) * b].to(dev)  # (B, ...) this rank's rows

    perm = torch.argsort(rand(3), dim=1)  # (B, 3): a random permutation per image
    x = torch.gather(photo, 1, perm[:, :, None, None].expand_as(photo))
    grey = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
    wt = rand(1, 1, 1)
    x = wt * grey + (1 - wt) * x
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (0.7 + 0.6 * rand(1, 1, 1))


def for_display(img: Tensor) -> Tensor:
    """``img [3,H,W]`` (any input normalisation) rescaled to [0, 1] per image, for plotting."""
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo).clamp_min(1e-6)


@dataclass
class FGTensors:
    """One fine-grained split in memory: photos, sketches and which photo each sketch shows."""

    photos: Tensor  # (P, 3, H, W)
    sketches: Tensor  # (S, 3, H, W)
    sketch_to_photo: Tensor  # (S,) long, index into photos
    photo_ids: list[str]

    def __post_init__(self) -> None:
        if self.sketch_to_photo.shape[0] != self.sketches.shape[0]:
            raise ValueError("FGTensors: one photo index per sketch expected")

    def sketches_of(self) -> list[list[int]]:
        """For each photo, the indices of its sketches."""
        out: list[list[int]] = [[] for _ in range(self.photos.shape[0])]
        for s, p in enumerate(self.sketch_to_photo.tolist()):
            out[p].append(s)
        return out

    def select_photos(self, keep: list[int]) -> "FGTensors":
        """Only the photos ``keep`` and their sketches (re-indexed)."""
        remap = {p: i for i, p in enumerate(keep)}
        sk = [s for s, p in enumerate(self.sketch_to_photo.tolist()) if p in remap]
        return FGTensors(self.photos[keep], self.sketches[sk],
                         torch.tensor([remap[int(self.sketch_to_photo[s])] for s in sk], dtype=torch.long),
                         [self.photo_ids[p] for p in keep])


@dataclass
class XModalData:
    """Train (minus val), val (held-out TRAIN photos) and test splits of one FG dataset."""

    train: FGTensors
    val: FGTensors
    test: FGTensors
    name: str


def index_to_tensors(index, loader, progress: bool = True) -> FGTensors:
    """Preload an instance-level :class:`SBIRIndex` split; sketches pair with photos by (label, instance)."""
    from xmodal_lib.data.datasets import preload  # lazy: read at call time: tests patch preload

    key = {(r.label, r.instance): i for i, r in enumerate(index.photos)}
    s2p = []
    for r in index.sketches:
        if (r.label, r.instance) not in key:
            raise DataError(f"{r.path}: sketch of instance {r.instance!r} has no photo in {index.name}")
        s2p.append(key[(r.label, r.instance)])
    return FGTensors(preload(index.photos, loader, desc=f"{index.name} photos", progress=progress),
                     preload(index.sketches, loader, desc=f"{index.name} sketches", progress=progress),
                     torch.tensor(s2p, dtype=torch.long), [f"{r.label}/{r.instance}" for r in index.photos])


def load_data(cfg: Any, progress: bool = True) -> XModalData:
    """Open ``cfg.dataset`` (synthetic data are generated on demand with ``cfg.synth_fg_*``), preload
    at ``cfg.image_size`` with ``cfg.input_norm`` (the official code uses none), standardise every
    image if ``cfg.standardize_inputs``, split val photos off the train split (``cfg.val_fraction``)."""
    from xmodal_lib.data import open_dataset  # lazy: read at call time: tests patch open_dataset

    kw: dict[str, Any] = {}
    if cfg.dataset == "synthetic_fg":
        kw = dict(fg_categories=("shoe",), fg_train=cfg.synth_fg_train, fg_test=cfg.synth_fg_test,
                  fg_plain=cfg.synth_fg_plain)
    index = open_dataset(cfg.dataset, root=cfg.data_root, **kw)
    preflight(index, progress=progress)  # every file decodes, test split included, or one error naming all
    loader = ImageLoader(cfg.image_size, normalize=cfg.input_norm, sketch_crop=False)
    train = index_to_tensors(index.subset("train"), loader, progress)
    test = index_to_tensors(index.subset("test"), loader, progress)
    if cfg.standardize_inputs:
        for s in (train, test):
            s.photos, s.sketches = standardize_images(s.photos), standardize_images(s.sketches)
    if train.photos.shape[0] == 0 or test.photos.shape[0] == 0:
        raise DataError(f"{index.name}: needs train and test photos, "
                        f"got {train.photos.shape[0]} / {test.photos.shape[0]}")
    with_sk = [p for p, s in enumerate(train.sketches_of()) if s]
    rng = random.Random(cfg.seed)
    rng.shuffle(with_sk)
    n_val = int(round(cfg.val_fraction * len(with_sk)))
    val_ids, tr_ids = sorted(with_sk[:n_val]), sorted(with_sk[n_val:])
    return XModalData(train.select_photos(tr_ids), train.select_photos(val_ids), test, index.name)


EPOCH_UNITS = ("photos", "classes")


class TripletPhotoSketchDataset(Dataset):
    """``ds[i] -> (photo, sketch A, sketch B)`` for the i-th photo having a sketch.

    A and B are two different sketches of the photo (the same one twice if it has only one), drawn
    deterministically from ``(seed, epoch, i)`` so a resumed run sees the same items.

    ``epoch_unit="classes"`` is the official Sketchy epoch (methods_spec §1.7): item i is a random
    photo of class i (class = ``photo_ids`` before ``/``), so one epoch is one photo per class. The
    official loader keeps the last partial batch (125 classes / 16 = 8 iterations, the last of 13);
    the shared loop drops partial batches, so the epoch is padded to a multiple of ``batch_size``
    with classes drawn again at random (8 full batches): "20,000 epochs" = the official 160,000 steps.
    """

    def __init__(self, data: FGTensors, seed: int = 0, epoch_unit: str = "photos", batch_size: int = 1):
        if epoch_unit not in EPOCH_UNITS:
            raise ValueError(f"epoch_unit: expected one of {EPOCH_UNITS}, got {epoch_unit!r}")
        self.data, self.seed, self.epoch, self.unit = data, int(seed), 0, epoch_unit
        sk = data.sketches_of()
        self.items = [(p, s) for p, s in enumerate(sk) if s]
        if not self.items:
            raise ValueError("TripletPhotoSketchDataset: no photo has a sketch")
        by_class: dict[str, list[int]] = {}
        for j, (p, _) in enumerate(self.items):
            by_class.setdefault(data.photo_ids[p].split("/")[0], []).append(j)
        self.classes = [by_class[c] for c in sorted(by_class)]  # item indices per class
        b = max(1, int(batch_size))
        self.n_class_items = -(-len(self.classes) // b) * b  # classes rounded up to whole batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items) if self.unit == "photos" else self.n_class_items

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 1_000_003 + i)
        if self.unit == "classes":
            c = i if i < len(self.classes) else rng.randrange(len(self.classes))
            i = rng.choice(self.classes[c])
        p, sks = self.items[i]
        a, b = rng.sample(sks, 2) if len(sks) >= 2 else (sks[0], sks[0])
        return self.data.photos[p], self.data.sketches[a], self.data.sketches[b]
