"""The one index every reader produces: photos and sketches with class, instance and split.

Real readers (Sketchy, SAKE lists, QMUL, CSV manifests) and the synthetic generator all
return an :class:`SBIRIndex`, so training, evaluation and notebooks never care where the
data came from.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from xmodal_lib.infra.errors import InputError


class DataError(InputError):
    """Bad dataset input: the message names the file or parameter and what was expected
    (an :class:`xmodal_lib.infra.errors.InputError`, hence a ``ValueError``; exit status 2 in the CLI)."""


class DataWarning(UserWarning):
    """A reader continued past something the user should know about (a counted, explicit note:
    duplicated rows dropped, which folder layout was detected); never a silent fix."""


def data_warning(message: str, notes: list[str] | None = None) -> None:
    """Emit ``message`` as a :class:`DataWarning` and append it to ``notes`` (an index's notes)."""
    if notes is not None:
        notes.append(message)
    warnings.warn(message, DataWarning, stacklevel=3)


@dataclass(frozen=True)
class Record:
    """One image of a dataset.

    Attributes:
        path: the file on disk; for stroke-pickle sketches ``<pickle path>#<key>``.
        modality: ``"photo"`` or ``"sketch"``.
        label: class name (``""`` for single-category fine-grained data).
        instance: id of the photo this image shows / the sketch was drawn from
            (``""`` when unknown, e.g. TU-Berlin).
        split: ``"train"`` or ``"test"``.
    """

    path: Path
    modality: str
    label: str
    instance: str
    split: str

    def __post_init__(self) -> None:
        if self.modality not in ("photo", "sketch"):
            raise DataError(f"Record {self.path}: modality must be 'photo' or 'sketch', got {self.modality!r}")
        if self.split not in ("train", "test"):
            raise DataError(f"Record {self.path}: split must be 'train' or 'test', got {self.split!r}")


@dataclass
class SBIRIndex:
    """A dataset as lists of records plus its class split.

    Attributes:
        name: human-readable name (``"sketchy_mini/zeroshot1"``).
        photos, sketches: all records.
        classes: every class name, sorted.
        unseen: zero-shot test classes (empty for fine-grained data). For a zero-shot index
            the records of unseen classes have ``split == "test"`` and the others ``"train"``.
        root: dataset root folder, for messages.
        notes: what the reader told the user while reading (each also a :class:`DataWarning`):
            detected layout, duplicated rows dropped, ...
    """

    name: str
    photos: list[Record]
    sketches: list[Record]
    classes: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)
    root: Path | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.classes:
            self.classes = sorted({r.label for r in (*self.photos, *self.sketches)})

    @property
    def seen(self) -> list[str]:
        """Classes available for training (all classes minus ``unseen``)."""
        u = set(self.unseen)
        return [c for c in self.classes if c not in u]

    def subset(self, split: str) -> "SBIRIndex":
        """Only the records of ``split`` (``"train"`` or ``"test"``)."""
        if split not in ("train", "test"):
            raise DataError(f"subset(split=...): expected 'train' or 'test', got {split!r}")
        return SBIRIndex(
            name=f"{self.name}[{split}]",
            photos=[r for r in self.photos if r.split == split],
            sketches=[r for r in self.sketches if r.split == split],
            classes=list(self.classes),
            unseen=list(self.unseen),
            root=self.root,
            notes=list(self.notes),
        )

    def of_classes(self, classes: Iterable[str]) -> "SBIRIndex":
        """Only the records whose label is in ``classes``."""
        keep = set(classes)
        missing = keep - set(self.classes)
        if missing:
            raise DataError(f"{self.name}: classes not in the index: {sorted(missing)[:10]}")
        return SBIRIndex(
            name=f"{self.name}[{len(keep)} classes]",
            photos=[r for r in self.photos if r.label in keep],
            sketches=[r for r in self.sketches if r.label in keep],
            classes=sorted(keep),
            unseen=[c for c in self.unseen if c in keep],
            root=self.root,
            notes=list(self.notes),
        )

    def counts(self) -> dict[str, int]:
        """Numbers of photos, sketches, classes and unseen classes."""
        return {
            "photos": len(self.photos),
            "sketches": len(self.sketches),
            "classes": len(self.classes),
            "unseen": len(self.unseen),
            "instances": len({r.instance for r in self.photos}),
        }

    def class_counts(self, modality: str = "photo") -> Counter:
        """Images per class for one modality."""
        recs = self.photos if modality == "photo" else self.sketches
        return Counter(r.label for r in recs)

    def label_ids(self) -> dict[str, int]:
        """Class name -> integer id (position in ``classes``)."""
        return {c: i for i, c in enumerate(self.classes)}
