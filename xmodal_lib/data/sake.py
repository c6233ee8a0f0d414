"""Reader for SAKE-format file lists (Sketchy-Extended, TU-Berlin-Extended, QuickDraw-Extended).

Expected layout (``split_dir`` defaults to the single sub-folder holding ``cname_cid.txt``)::

    <root>/
      <any image folders>               e.g. photo/tx_000000000000/<class>/..., sketch/...
      <split_dir>/                      e.g. zeroshot1/
        cname_cid.txt                   seen classes:   ``class name id``
        cname_cid_zero.txt              unseen classes: ``class name id``
        *photo*_filelist_train.txt      ``relative/path label`` (label = id in cname_cid.txt)
        *sketch*_filelist_train.txt
        *photo*_filelist_zero.txt       (label = id in cname_cid_zero.txt)
        *sketch*_filelist_zero.txt
                                        (QuickDraw-Extended: sketch_zero.txt, all_photo_zero.txt,
                                        i.e. *_<part>.txt, read when no *_filelist_<part>.txt exists)

A list is a sketch list when its name contains ``sketch`` or starts with ``png`` (TU-Berlin's
``png_ready_filelist``); a photo list when it contains ``photo`` or ``image``. Paths are
relative to ``root`` (or to ``split_dir``). Records of ``train`` lists get split ``"train"``,
those of ``zero`` lists ``"test"``; the unseen classes are those of ``cname_cid_zero.txt``.
Instance ids are set when a sketch file name ``<photo stem>-<k>`` matches a listed photo.

Consistency checks (each a DataError naming list and line): a file whose class folder names
another class than its label id; a file listed under two labels or in two lists. An exact
repeat of a row is dropped with one counted :class:`~.index.DataWarning` per list. Lists are
UTF-8 (a byte-order mark is accepted).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from xmodal_lib.data.index import DataError, Record, SBIRIndex, data_warning
from xmodal_lib.data.splits import read_cname_cid
from xmodal_lib.data.textio import read_text


def _find_split_dir(root: Path) -> Path:
    if (root / "cname_cid.txt").is_file():
        return root
    cands = sorted(p.parent for p in root.glob("*/cname_cid.txt"))
    if len(cands) != 1:
        raise DataError(f"{root}: expected exactly one sub-folder with cname_cid.txt (pass split_dir=...), "
                        f"found {[c.name for c in cands]}")
    return cands[0]


def _modality(name: str) -> str | None:
    n = name.lower()
    if "sketch" in n or n.startswith("png"):
        return "sketch"
    if "photo" in n or "image" in n:
        return "photo"
    return None


def _find_lists(split_dir: Path) -> dict[tuple[str, str], Path]:
    found: dict[tuple[str, str], list[Path]] = {}
    for part in ("train", "zero"):
        # SAKE names *_filelist_<part>.txt; QuickDraw-Extended ships sketch_zero.txt / all_photo_zero.txt
        lists = sorted(split_dir.glob(f"*_filelist_{part}.txt")) or [
            f for f in sorted(split_dir.glob(f"*_{part}.txt")) if not f.name.startswith("cname_cid")]
        for f in lists:
            m = _modality(f.name)
            if m is None:
                raise DataError(f"{f}: cannot tell whether this list holds photos or sketches "
                                "(expected 'photo'/'image' or 'sketch'/'png' in its name)")
            found.setdefault((m, part), []).append(f)
    out = {}
    for m in ("photo", "sketch"):
        for part in ("train", "zero"):
            fs = found.get((m, part), [])
            if len(fs) != 1:
                raise DataError(f"{split_dir}: expected one {m} list '*_filelist_{part}.txt', found "
                                f"{[f.name for f in fs]}")
            out[(m, part)] = fs[0]
    return out


def _class_key(name: str) -> str:
    """Loose form of a class name for comparing with folder names (``Alarm clock`` ~ ``alarm_clock``)."""
    return re.sub(r"[\s_\-]+", "", name.lower())


class _ListCheck:
    """Consistency of the rows of all lists of one split folder: label vs class folder, repeats."""

    def __init__(self, class_names: Iterable[str]) -> None:
        keys: dict[str, list[str]] = {}
        for c in class_names:
            keys.setdefault(_class_key(c), []).append(c)
        self.folder_class = {k: v[0] for k, v in keys.items() if len(v) == 1}
        self.first: dict[Path, tuple[str, Path, int]] = {}  # file -> (label, list, line) of its first row
        self.dropped: dict[Path, list[tuple[int, int]]] = {}  # list -> [(line, first line)] of exact repeats
        self.notes: list[str] = []

    def row(self, lst: Path, n: int, p: Path, label: str) -> bool:
        """Check one row; False for an exact repeat (dropped, counted), DataError for a conflict."""
        prev = self.first.get(p)
        if prev is None:
            folder = self.folder_class.get(_class_key(p.parent.name))
            if folder is not None and _class_key(folder) != _class_key(label):
                raise DataError(f"{lst}:{n}: {p.name} is labelled {label!r} but lies in the class folder "
                                f"{p.parent.name!r}; check the label ids against the cname_cid file")
            self.first[p] = (label, lst, n)
            return True
        plabel, plst, pn = prev
        if plst != lst:
            raise DataError(f"{lst}:{n}: {p} is listed in both {plst.name} (line {pn}) and {lst.name}; "
                            "expected each file in one list")
        if plabel != label:
            raise DataError(f"{lst}:{n}: {p} listed as {label!r} here and as {plabel!r} at line {pn}; "
                            "expected one class per file")
        self.dropped.setdefault(lst, []).append((n, pn))
        return False

    def report(self) -> None:
        """One counted :class:`DataWarning` per list with dropped repeats."""
        for lst, rows in self.dropped.items():
            eg = ", ".join(f"line {n} repeats line {pn}" for n, pn in rows[:3])
            data_warning(f"{lst}: {len(rows)} duplicated row(s) dropped ({eg})", self.notes)


def _read_list(path: Path, id2name: dict[int, str], root: Path, split_dir: Path,
               check_files: bool, check: _ListCheck) -> list[tuple[Path, str]]:
    rows = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}:{n}: expected 'relative/path label', got {line!r}")
        rel, lab = parts[0], int(parts[1])
        if lab not in id2name:
            raise DataError(f"{path}:{n}: label {lab} is not a class id of the matching cname_cid file")
        p = root / rel
        if check_files and not p.is_file():
            alt = split_dir / rel
            if not alt.is_file():
                raise DataError(f"{path}:{n}: listed file not on disk: {p}")
            p = alt
        if check.row(path, n, p, id2name[lab]):
            rows.append((p, id2name[lab]))
    return rows


def read_sake(root: str | Path, split_dir: str | Path | None = None, check_files: bool = True,
              name: str | None = None) -> SBIRIndex:
    """Index a dataset described by SAKE-format lists (see module docstring for the layout).

    Args:
        root: dataset root the list paths are relative to.
        split_dir: folder with ``cname_cid*.txt`` and the lists; a name relative to ``root``
            (``"zeroshot1"``) or a path. Default: the single sub-folder holding ``cname_cid.txt``.
        check_files: verify every listed file exists (a missing one raises DataError).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found")
    if split_dir is None:
        sd = _find_split_dir(root)
    else:
        sd = Path(split_dir)
        if not sd.is_absolute() and not sd.is_dir():
            sd = root / sd
    if not sd.is_dir():
        raise DataError(f"{sd}: split folder not found")
    seen = read_cname_cid(sd / "cname_cid.txt")
    unseen = read_cname_cid(sd / "cname_cid_zero.txt")
    both = set(seen) & set(unseen)
    if both:
        raise DataError(f"{sd}: classes listed both as seen and unseen: {sorted(both)[:10]}")
    lists = _find_lists(sd)
    recs: dict[str, list[Record]] = {"photo": [], "sketch": []}
    check = _ListCheck([*seen, *unseen])
    for (mod, part), f in lists.items():
        id2name = {v: k for k, v in (seen if part == "train" else unseen).items()}
        split = "train" if part == "train" else "test"
        for p, label in _read_list(f, id2name, root, sd, check_files, check):
            recs[mod].append(Record(p, mod, label, "", split))
    check.report()
    photo_ids = {(r.label, r.path.stem) for r in recs["photo"]}
    photos = [Record(r.path, "photo", r.label, r.path.stem, r.split) for r in recs["photo"]]
    sketches = []
    for r in recs["sketch"]:
        stem = r.path.stem.rsplit("-", 1)[0]
        inst = stem if (r.label, stem) in photo_ids else ""
        sketches.append(Record(r.path, "sketch", r.label, inst, r.split))
    return SBIRIndex(name=name or f"{root.name}/{sd.name}", photos=photos, sketches=sketches,
                     classes=sorted(set(seen) | set(unseen)), unseen=sorted(unseen), root=root,
                     notes=check.notes)
