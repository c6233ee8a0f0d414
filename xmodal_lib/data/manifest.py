"""Reader for your own pairs: a CSV manifest.

Layout::

    pairs.csv        header: sketch_path,photo_path,class[,split]
                     one row per sketch; paths relative to the CSV's folder (or absolute);
                     photo_path may repeat (several sketches of one photo) or be empty
                     (a sketch without photo); sketch_path may be empty (a gallery-only photo).
                     split is "train" or "test" (default "train"; classes named in
                     ``unseen=`` become "test" when the column is absent).

The instance of a sketch is its photo path, so fine-grained pairs come for free.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from .index import DataError, Record, SBIRIndex

REQUIRED = ("sketch_path", "photo_path", "class")


def read_manifest(path: str | Path, unseen: Sequence[str] = (), check_files: bool = True) -> SBIRIndex:
    """Index the pairs of a CSV manifest (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest CSV not found")
    base = path.parent
    u = set(unseen)
    photos: dict[str, Record] = {}
    sketches: list[Record] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise DataError(f"{path}: missing columns {missing}; expected header {','.join(REQUIRED)}[,split]")
        has_split = "split" in cols
        for n, row in enumerate(reader, 2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            label, sk, ph = row["class"], row["sketch_path"], row["photo_path"]
            if not sk and not ph:
                raise DataError(f"{path}:{n}: row has neither sketch_path nor photo_path")
            split = (row.get("split") or "train") if has_split else ("test" if label in u else "train")
            if split not in ("train", "test"):
                raise DataError(f"{path}:{n}: split must be 'train' or 'test', got {split!r}")
            files = {}
            for key, rel in (("sketch", sk), ("photo", ph)):
                if rel:
                    p = Path(rel) if Path(rel).is_absolute() else base / rel
                    if check_files and not p.is_file():
                        raise DataError(f"{path}:{n}: {key} file not on disk: {p}")
                    files[key] = p
            inst = ph
            if "photo" in files:
                prev = photos.get(ph)
                if prev is not None and (prev.label, prev.split) != (label, split):
                    raise DataError(f"{path}:{n}: photo {ph} listed with class/split {label}/{split} "
                                    f"and {prev.label}/{prev.split}")
                photos[ph] = Record(files["photo"], "photo", label, inst, split)
            if "sketch" in files:
                sketches.append(Record(files["sketch"], "sketch", label, inst, split))
    if not photos and not sketches:
        raise DataError(f"{path}: manifest has no rows")
    labels = {r.label for r in (*photos.values(), *sketches)}
    if u or not has_split:
        unseen_out = sorted(u & labels)
    else:  # classes that occur only in test rows
        recs = [*photos.values(), *sketches]
        in_train = {r.label for r in recs if r.split == "train"}
        unseen_out = sorted({r.label for r in recs if r.split == "test"} - in_train)
    return SBIRIndex(name=f"manifest/{path.stem}", photos=list(photos.values()), sketches=sketches,
                     classes=sorted(labels), unseen=unseen_out, root=base)
