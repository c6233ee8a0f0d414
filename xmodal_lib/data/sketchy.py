"""Reader for the original Sketchy release (folder per class).

Expected layout (the ``256x256/`` level is optional)::

    <root>/[256x256/]
      photo/tx_000000000000/<class>/<photo_id>.jpg
      sketch/tx_000000000000/<class>/<photo_id>-<k>.png     sketch k drawn from <photo_id>

``tx_000000000000`` is the un-augmented variant; another ``tx_*`` folder can be chosen with
``tx=``. Many public subsets ship without the ``tx_*`` level (``photo/<class>/``,
``sketch/<class>/``): with the default ``tx=None`` that layout is detected and read, with a
:class:`~.index.DataWarning` (and a line in ``index.notes``) saying which layout was found.

With ``split="zeroshot1"`` (25 unseen classes, SAKE/ZSE-SBIR) or ``"zeroshot0"`` (21 unseen) the packaged class lists mark the unseen classes: their records get split
``"test"`` and all others ``"train"``; every listed class must be on disk. Without a split all
records are ``"train"`` and ``unseen`` is empty. ``split`` may also be a folder holding
``cname_cid.txt`` / ``cname_cid_zero.txt``.
"""
from __future__ import annotations

import os
from pathlib import Path

from xmodal_lib.data.index import DataError, Record, SBIRIndex, data_warning
from xmodal_lib.data.splits import normalize_name, packaged_split, packaged_split_source, read_cname_cid

PHOTO_EXT = (".jpg", ".jpeg", ".png")
SKETCH_EXT = (".png", ".jpg", ".jpeg", ".svg")
TX_DEFAULT = "tx_000000000000"


def _subdirs(d: Path) -> list[str]:
    return sorted(e.name for e in d.iterdir() if e.is_dir()) if d.is_dir() else []


def _resolve(root: Path, tx: str | None) -> tuple[Path, Path, str]:
    """``(photo dir, sketch dir, layout)``; ``tx=None`` detects the layout (see module docstring)."""
    tx = tx or None  # "" (the old spelling of "no tx level") detects too
    found = []
    for base in (root, root / "256x256"):
        ph, sk = base / "photo", base / "sketch"
        if not (ph.is_dir() and sk.is_dir()):
            continue
        pre = "" if base == root else "256x256/"
        want = tx or TX_DEFAULT
        if (ph / want).is_dir() and (sk / want).is_dir():
            return ph / want, sk / want, f"{pre}photo/{want}/<class>/"
        txs = [d for d in _subdirs(ph) if d.startswith("tx_")]
        classes = [d for d in _subdirs(ph) if not d.startswith("tx_")]
        if txs:
            found.append(f"found tx folders {txs} in {ph}; pass tx= one of them")
        elif classes and tx is None:
            return ph, sk, f"{pre}photo/<class>/ and {pre}sketch/<class>/ (no tx_* level)"
        elif classes:
            found.append(f"found {pre}photo/<class>/ ({len(classes)} class folders, no tx_* level; "
                         "leave tx unset to read it)")
    where = "; ".join(found) or f"found neither photo/ and sketch/ nor 256x256/photo/ in {root}"
    raise DataError(f"{root}: no photo/{tx or TX_DEFAULT}/<class>/ and sketch/{tx or TX_DEFAULT}/<class>/ "
                    f"(optionally under 256x256/): {where}")


def _files(d: Path, exts: tuple[str, ...]) -> list[str]:
    with os.scandir(d) as it:
        return sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(exts)
                      and not e.name.lower().endswith(".svg"))


def _split_lists(split: str) -> tuple[list[str], list[str], str]:
    """``(seen, unseen, source)`` of a split name or folder; ``source`` names the files, for messages."""
    p = Path(split)
    if p.is_dir():
        seen, unseen = read_cname_cid(p / "cname_cid.txt"), read_cname_cid(p / "cname_cid_zero.txt")
        return list(seen), list(unseen), f"{p / 'cname_cid.txt'} + cname_cid_zero.txt"
    name = split if "/" in split else f"Sketchy/{split}"
    seen_l, unseen_l = packaged_split(name)
    return seen_l, unseen_l, f"{packaged_split_source(name)}/cname_cid.txt + cname_cid_zero.txt"


def _check_split(ph_dir: Path, classes: list[str], split: str) -> list[str]:
    """The unseen classes of ``split``; DataError when its classes and the class folders differ."""
    seen_l, unseen_l, src = _split_lists(split)
    listed = {normalize_name(c) for c in seen_l + unseen_l}
    missing = sorted(listed - set(classes))
    if missing:
        raise DataError(f"{ph_dir}: {len(missing)} of the {len(listed)} classes of split {split!r} ({src}) "
                        f"not on disk: {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
                        f"{len(classes)} class folders found")
    extra = sorted(set(classes) - listed)
    if extra:
        raise DataError(f"{ph_dir}: {len(extra)} of the {len(classes)} class folders are not in split "
                        f"{split!r} ({src}): {extra[:10]}{' ...' if len(extra) > 10 else ''}")
    return sorted(normalize_name(c) for c in unseen_l)


def read_sketchy(root: str | Path, split: str | None = None, tx: str | None = None) -> SBIRIndex:
    """Index a Sketchy folder tree (see module docstring); ``split`` picks the zero-shot split.

    ``tx=None`` detects the layout (``tx_000000000000`` or no tx level) and notes which one it
    read; a named ``tx`` must exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: Sketchy root not found")
    ph_dir, sk_dir, layout = _resolve(root, tx)
    notes: list[str] = []
    if "no tx_* level" in layout:
        data_warning(f"{root}: read the Sketchy layout {layout}", notes)
    classes = sorted(d.name for d in ph_dir.iterdir() if d.is_dir())
    sk_classes = sorted(d.name for d in sk_dir.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{ph_dir}: no class folders")
    if classes != sk_classes:
        diff = sorted(set(classes) ^ set(sk_classes))
        raise DataError(f"{root}: photo and sketch class folders differ: {diff[:10]}")
    unseen = _check_split(ph_dir, classes, split) if split is not None else []
    u = set(unseen)
    photos, sketches = [], []
    for c in classes:
        s = "test" if c in u else "train"
        pf, sf = _files(ph_dir / c, PHOTO_EXT), _files(sk_dir / c, SKETCH_EXT)
        if not pf:
            raise DataError(f"{ph_dir / c}: class folder has no photos")
        if not sf:
            raise DataError(f"{sk_dir / c}: class folder has no sketches")
        photos += [Record(ph_dir / c / f, "photo", c, Path(f).stem, s) for f in pf]
        sketches += [Record(sk_dir / c / f, "sketch", c, Path(f).stem.rsplit("-", 1)[0], s) for f in sf]
    name = f"{root.name}/{Path(split).name if split else 'all'}"
    return SBIRIndex(name=name, photos=photos, sketches=sketches, classes=classes, unseen=unseen, root=root,
                     notes=notes)
