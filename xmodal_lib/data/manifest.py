"""Reader for your own pairs: a CSV manifest.

Layout::

    pairs.csv        header: sketch_path,photo_path,class[,split]
                     one row per sketch; paths relative to the CSV's folder (or absolute);
                     photo_path may repeat (several sketches of one photo) or be empty
                     (a sketch without photo); sketch_path may be empty (a gallery-only photo).
                     split is "train" or "test" (default "train"; classes named in
                     ``unseen=`` become "test" when the column is absent).

The instance of a sketch is its photo path, so fine-grained pairs come for free.

The file is UTF-8 (a byte-order mark, as Excel writes it, is accepted). Checks, each a
DataError naming the file and line: an empty ``class``, a sketch in two rows that disagree
(photo, class or split), a photo under two classes/splits. An exact repeat of a row is dropped
with one counted :class:`~.index.DataWarning`.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

from xmodal_lib.data.index import DataError, Record, SBIRIndex, data_warning
from xmodal_lib.data.textio import read_text

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
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected header {','.join(REQUIRED)}[,split], "
                        f"found {cols}")
    has_split = "split" in cols
    first_row: dict[tuple[str, ...], int] = {}
    sketch_row: dict[str, tuple[tuple[str, str, str], int]] = {}
    photo_row: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for row in reader:
        n = reader.line_num
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        label, sk, ph = row["class"], row["sketch_path"], row["photo_path"]
        if not sk and not ph:
            raise DataError(f"{path}:{n}: row has neither sketch_path nor photo_path")
        if not label:
            raise DataError(f"{path}:{n}: empty 'class'; every row needs a class name "
                            "(for single-category data use one name, e.g. 'shoe')")
        split = (row.get("split") or "train") if has_split else ("test" if label in u else "train")
        if split not in ("train", "test"):
            raise DataError(f"{path}:{n}: split must be 'train' or 'test', got {split!r}")
        key = (sk, ph, label, split)
        if key in first_row:  # an exact repeat: dropped, counted below
            repeats.append((n, first_row[key]))
            continue
        first_row[key] = n
        if sk:
            prev = sketch_row.get(sk)
            if prev is not None:
                raise DataError(f"{path}:{n}: sketch {sk} listed with photo/class/split "
                                f"{ph or '-'}/{label!r}/{split} here and {prev[0][0] or '-'}/{prev[0][1]!r}/"
                                f"{prev[0][2]} at line {prev[1]}; expected one row per sketch")
            sketch_row[sk] = ((ph, label, split), n)
        files = {}
        for kind, rel in (("sketch", sk), ("photo", ph)):
            if rel:
                p = Path(rel) if Path(rel).is_absolute() else base / rel
                if check_files and not p.is_file():
                    raise DataError(f"{path}:{n}: {kind} file not on disk: {p}")
                files[kind] = p
        inst = ph
        if "photo" in files:
            prev_p = photos.get(ph)
            if prev_p is not None and (prev_p.label, prev_p.split) != (label, split):
                raise DataError(f"{path}:{n}: photo {ph} listed with class/split {label}/{split} here "
                                f"and {prev_p.label}/{prev_p.split} at line {photo_row[ph]}")
            photos[ph] = Record(files["photo"], "photo", label, inst, split)
            photo_row.setdefault(ph, n)
        if "sketch" in files:
            sketches.append(Record(files["sketch"], "sketch", label, inst, split))
    notes: list[str] = []
    if repeats:
        eg = ", ".join(f"line {n} repeats line {m}" for n, m in repeats[:3])
        data_warning(f"{path}: {len(repeats)} duplicated row(s) dropped ({eg})", notes)
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
                     classes=sorted(labels), unseen=unseen_out, root=base, notes=notes)
