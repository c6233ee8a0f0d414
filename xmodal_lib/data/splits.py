"""Official zero-shot class lists (SAKE format) shipped with the package.

``xmodal_lib/resources/splits/<Dataset>/<split>/cname_cid.txt`` holds the seen classes and
``cname_cid_zero.txt`` the unseen ones, one ``class name<space>id`` per line (names may contain
spaces, e.g. ``alarm clock 2``). Known splits:

========================  =============================
``Sketchy/zeroshot1``     25 unseen of 125 (SAKE / ZSE-SBIR split)
``Sketchy/zeroshot0``     21 unseen of 125 (Yelamarthi et al. split)
``TUBerlin/zeroshot``     30 unseen of 250
``QuickDraw/zeroshot``    30 unseen of 110
========================  =============================
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from xmodal_lib.data.index import DataError
from xmodal_lib.data.textio import decode_text, read_text

KNOWN_SPLITS: tuple[str, ...] = ("Sketchy/zeroshot1", "Sketchy/zeroshot0", "TUBerlin/zeroshot", "QuickDraw/zeroshot")


def parse_cname_cid(text: str, source: str) -> dict[str, int]:
    """Parse ``class name id`` lines into ``{name: id}``.

    Malformed lines, a class listed twice and an id given to two classes raise DataError
    ``source:line`` (a repeated id would otherwise silently merge two classes).
    """
    out: dict[str, int] = {}
    line_of: dict[str, int] = {}
    by_id: dict[int, tuple[str, int]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{source}:{n}: expected 'class_name id', got {line!r}")
        name, cid = parts[0], int(parts[1])
        if name in out:
            raise DataError(f"{source}:{n}: class {name!r} listed twice (first at line {line_of[name]})")
        if cid in by_id:
            raise DataError(f"{source}:{n}: class id {cid} of {name!r} is also the id of "
                            f"{by_id[cid][0]!r} (line {by_id[cid][1]}); expected one id per class")
        out[name], line_of[name], by_id[cid] = cid, n, (name, n)
    if not out:
        raise DataError(f"{source}: no classes listed")
    return out


def read_cname_cid(path: str | Path) -> dict[str, int]:
    """Read a ``cname_cid*.txt`` file from disk."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: class list not found (expected lines 'class_name id')")
    return parse_cname_cid(read_text(p), str(p))


def _resource_dir(split: str):
    if split not in KNOWN_SPLITS:
        raise DataError(f"unknown zero-shot split {split!r}; expected one of {list(KNOWN_SPLITS)}")
    return resources.files("xmodal_lib").joinpath("resources", "splits", *split.split("/"))


def packaged_split(split: str) -> tuple[list[str], list[str]]:
    """``(seen, unseen)`` class names of a packaged split such as ``"Sketchy/zeroshot1"``."""
    d = _resource_dir(split)
    src = packaged_split_source(split)
    seen = parse_cname_cid(decode_text(d.joinpath("cname_cid.txt").read_bytes(), f"{src}/cname_cid.txt"),
                           f"{src}/cname_cid.txt")
    unseen = parse_cname_cid(decode_text(d.joinpath("cname_cid_zero.txt").read_bytes(), f"{src}/cname_cid_zero.txt"),
                             f"{src}/cname_cid_zero.txt")
    return list(seen), list(unseen)


def packaged_split_source(split: str) -> str:
    """Where a packaged split's files live, for messages: ``xmodal_lib/resources/splits/<split>``."""
    return f"xmodal_lib/resources/splits/{split}"


def normalize_name(name: str) -> str:
    """Folder-name form of a class name: spaces -> underscores (``alarm clock`` -> ``alarm_clock``)."""
    return name.strip().replace(" ", "_")
