"""Readers for the QMUL fine-grained datasets (Shoe/Chair V1 and V2).

Fine-grained indexes pair sketches with photos through ``Record.instance`` (the photo id);
``label`` is the category name passed in (``""`` by default) and ``unseen`` is empty.
"""
from __future__ import annotations

import re
from pathlib import Path

from xmodal_lib.data.index import DataError, Record, SBIRIndex
from xmodal_lib.data.safe_pickle import safe_load
from xmodal_lib.data.strokes import validate_strokes

IMG_EXT = (".png", ".jpg", ".jpeg")


def _images(d: Path) -> dict[str, Path]:
    if not d.is_dir():
        raise DataError(f"{d}: folder not found")
    return {p.stem: p for p in sorted(d.iterdir()) if p.is_file() and p.suffix.lower() in IMG_EXT}


def read_qmul_v1(root: str | Path, label: str = "") -> SBIRIndex:
    """Shoe-V1 / Chair-V1: sketch ``N`` drawn from photo ``N``.

    Layout::

        <root>/train/images/N.jpg    <root>/train/sketches/N.png
        <root>/test/images/N.jpg     <root>/test/sketches/N.png
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: QMUL-V1 root not found")
    photos, sketches = [], []
    for split in ("train", "test"):
        ims, sks = _images(root / split / "images"), _images(root / split / "sketches")
        if not sks:
            raise DataError(f"{root / split / 'sketches'}: no sketches")
        for stem in sorted(sks):
            if stem not in ims:
                raise DataError(f"{sks[stem]}: no matching photo {root / split / 'images' / stem}.*")
        photos += [Record(p, "photo", label, s, split) for s, p in ims.items()]
        sketches += [Record(p, "sketch", label, s, split) for s, p in sks.items()]
    return SBIRIndex(name=f"qmul_v1/{root.name}", photos=photos, sketches=sketches,
                     classes=[label], root=root)


def read_qmul_v2(root: str | Path, label: str = "", sketch_suffix: str = "A",
                 photo_suffix: str = "B") -> SBIRIndex:
    """Shoe-V2 / Chair-V2 folder pairs: sketches ``<photo>_<k>.png`` drawn from ``<photo>.*``.

    Layout::

        <root>/trainA/<photo>_<k>.png    <root>/trainB/<photo>.png
        <root>/testA/<photo>_<k>.png     <root>/testB/<photo>.png
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: QMUL-V2 root not found")
    photos, sketches = [], []
    for split in ("train", "test"):
        sks = _images(root / f"{split}{sketch_suffix}")
        ims = _images(root / f"{split}{photo_suffix}")
        if not sks:
            raise DataError(f"{root / (split + sketch_suffix)}: no sketches")
        for stem, p in sks.items():
            pid = stem.rsplit("_", 1)[0]
            if pid not in ims:
                raise DataError(f"{p}: no matching photo {root / (split + photo_suffix) / pid}.*")
            sketches.append(Record(p, "sketch", label, pid, split))
        photos += [Record(p, "photo", label, s, split) for s, p in ims.items()]
    return SBIRIndex(name=f"qmul_v2/{root.name}", photos=photos, sketches=sketches,
                     classes=[label], root=root)


_KEY = re.compile(r"^/(train|test)/(.+)_([^_/]+)$")


def read_qmul_v2_pickle(root: str | Path, label: str = "", photo_dir: str | Path | None = None) -> SBIRIndex:
    """Shoe-V2 / Chair-V2 stroke-coordinate pickle, photos optional.

    Layout::

        <root>/<Name>V2_Coordinate      pickle: {"/<split>/<photo>_<k>": float array (n, 3) x, y, pen-end}
        <root>/photo/<photo>.png         optional; without it the index has sketches only

    ``root`` may also be the pickle file itself. The pickle is read with the restricted
    unpickler and every array validated here. Sketch records have path ``<pickle>#<key>``
    (rendered by :class:`~xmodal_lib.data.transforms.ImageLoader`).
    """
    root = Path(root)
    if root.is_file():
        pkl, base = root, root.parent
    elif root.is_dir():
        cands = sorted(root.glob("*V2_Coordinate"))
        if len(cands) != 1:
            raise DataError(f"{root}: expected one '<Name>V2_Coordinate' pickle, found {[c.name for c in cands]}")
        pkl, base = cands[0], root
    else:
        raise DataError(f"{root}: QMUL-V2 coordinate pickle or folder not found")
    data = safe_load(pkl)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{pkl}: expected a non-empty dict '/<split>/<photo>_<k>' -> (n, 3) array, "
                        f"got {type(data).__name__}")
    sketches, pids = [], {}
    for key in sorted(data):
        m = _KEY.match(key) if isinstance(key, str) else None
        if m is None:
            raise DataError(f"{pkl}: unexpected key {key!r} (expected '/train/<photo>_<k>' or '/test/<photo>_<k>')")
        validate_strokes(data[key], f"{pkl}#{key}")
        split, pid = m.group(1), m.group(2)
        if pids.setdefault(pid, split) != split:
            raise DataError(f"{pkl}: photo {pid!r} has sketches in both train and test")
        sketches.append(Record(Path(f"{pkl}#{key}"), "sketch", label, pid, split))
    pdir = Path(photo_dir) if photo_dir is not None else base / "photo"
    photos = []
    if pdir.is_dir():
        ims = _images(pdir)
        for pid, split in sorted(pids.items()):
            if pid not in ims:
                raise DataError(f"{pdir}: photo {pid}.* listed in {pkl.name} not on disk")
            photos.append(Record(ims[pid], "photo", label, pid, split))
    elif photo_dir is not None:
        raise DataError(f"{pdir}: photo folder not found")
    return SBIRIndex(name=f"qmul_v2_pickle/{pkl.name}", photos=photos, sketches=sketches,
                     classes=[label], root=base)
