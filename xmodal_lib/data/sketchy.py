"""Reader for the original Sketchy release (folder per class).

Expected layout (the ``256x256/`` level is optional)::

    <root>/[256x256/]
      photo/tx_000000000000/<class>/<photo_id>.jpg
      sketch/tx_000000000000/<class>/<photo_id>-<k>.png     sketch k drawn from <photo_id>

``tx_000000000000`` is the un-augmented variant; another ``tx_*`` folder can be chosen with
``tx=``. With ``split="zeroshot1"`` (25 unseen classes, SAKE/ZSE-SBIR) or ``"zeroshot0"``
(21 unseen) the packaged class lists mark the unseen classes: their records get split
``"test"`` and all others ``"train"``; every listed class must be on disk. Without a split all
records are ``"train"`` and ``unseen`` is empty. ``split`` may also be a folder holding
``cname_cid.txt`` / ``cname_cid_zero.txt``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .index import DataError, Record, SBIRIndex
from .splits import normalize_name, packaged_split, read_cname_cid

PHOTO_EXT = (".jpg", ".jpeg", ".png")
SKETCH_EXT = (".png", ".jpg", ".jpeg", ".svg")


def _resolve(root: Path, tx: str) -> tuple[Path, Path]:
    for base in (root, root / "256x256"):
        ph, sk = base / "photo" / tx, base / "sketch" / tx
        if ph.is_dir() and sk.is_dir():
            return ph, sk
    raise DataError(f"{root}: expected photo/{tx}/<class>/ and sketch/{tx}/<class>/ "
                    "(optionally under 256x256/)")


def _files(d: Path, exts: tuple[str, ...]) -> list[str]:
    with os.scandir(d) as it:
        return sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(exts)
                      and not e.name.lower().endswith(".svg"))


def _split_lists(split: str) -> tuple[list[str], list[str]]:
    p = Path(split)
    if p.is_dir():
        return list(read_cname_cid(p / "cname_cid.txt")), list(read_cname_cid(p / "cname_cid_zero.txt"))
    name = split if "/" in split else f"Sketchy/{split}"
    return packaged_split(name)


def read_sketchy(root: str | Path, split: str | None = None, tx: str = "tx_000000000000") -> SBIRIndex:
    """Index a Sketchy folder tree (see module docstring); ``split`` picks the zero-shot split."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: Sketchy root not found")
    ph_dir, sk_dir = _resolve(root, tx)
    classes = sorted(d.name for d in ph_dir.iterdir() if d.is_dir())
    sk_classes = sorted(d.name for d in sk_dir.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{ph_dir}: no class folders")
    if classes != sk_classes:
        diff = sorted(set(classes) ^ set(sk_classes))
        raise DataError(f"{root}: photo and sketch class folders differ: {diff[:10]}")
    unseen: list[str] = []
    if split is not None:
        seen_l, unseen_l = _split_lists(split)
        listed = {normalize_name(c) for c in seen_l + unseen_l}
        missing = sorted(listed - set(classes))
        if missing:
            raise DataError(f"{ph_dir}: classes of split {split!r} not on disk: {missing[:10]}")
        extra = sorted(set(classes) - listed)
        if extra:
            raise DataError(f"{ph_dir}: class folders not in split {split!r}: {extra[:10]}")
        unseen = sorted(normalize_name(c) for c in unseen_l)
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
    return SBIRIndex(name=name, photos=photos, sketches=sketches, classes=classes, unseen=unseen, root=root)
