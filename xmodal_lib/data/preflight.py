"""Preflight: decode every image a run will use before the long work starts.

A corrupt or truncated file in the test split used to surface only at evaluation, after the
whole training. :func:`preflight` decodes every photo and sketch of the given indexes (train
AND test) once, checks that each sketch has ink, and raises ONE :class:`DataError` that counts
and names all bad files. Files already checked in this process (same path, size and mtime) are
skipped, so calling it again (ablations, several notebooks cells) costs a stat per file.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from tqdm.auto import tqdm

from xmodal_lib.data.index import DataError, Record, SBIRIndex

#: ``(path, size, mtime_ns)`` of files that decoded fine in this process.
_CHECKED: set[tuple[str, int, int]] = set()
#: Bad files named in the error message (the count is always complete).
MAX_NAMED: int = 5


def _stamp(r: Record) -> tuple[str, int, int] | None:
    file = str(r.path).split("#", 1)[0]  # stroke records: the pickle's stat (and the key in the path)
    try:
        st = os.stat(file)
    except OSError:
        return None
    return (str(r.path), st.st_size, st.st_mtime_ns)


def check_record(r: Record) -> str | None:
    """``None`` when ``r`` decodes (and a sketch has ink), else the reason (without the path)."""
    from xmodal_lib.data.transforms import (  # lazy: keeps data.preflight free of torch at import
        INK_THRESHOLD,
        MAX_PIXELS,
        ink_bbox,
        load_pil,
        to_white_background,
    )

    try:
        im = load_pil(r, MAX_PIXELS)
        if r.modality == "sketch" and ink_bbox(to_white_background(im, str(r.path)).convert("L")) is None:
            return f"blank sketch (no pixel darker than {INK_THRESHOLD})"
    except DataError as e:
        msg = str(e)
        for prefix in (f"{r.path}: ", f"{str(r.path).split('#', 1)[0]}: "):
            msg = msg[len(prefix):] if msg.startswith(prefix) else msg
        return msg
    return None


def preflight(indexes: SBIRIndex | Iterable[SBIRIndex], progress: bool = True,
              workers: int | None = None) -> int:
    """Decode-check every photo and sketch of ``indexes`` (all splits); return how many were checked.

    Raises:
        DataError: ``"preflight: K of N images of <names> cannot be decoded or used ..."`` naming up to
            :data:`MAX_NAMED` of them with modality, split and reason.
    """
    idxs = [indexes] if isinstance(indexes, SBIRIndex) else list(indexes)
    recs: dict[str, Record] = {}
    for idx in idxs:
        for r in (*idx.photos, *idx.sketches):
            recs.setdefault(str(r.path), r)
    todo, stamps = [], {}
    for key, r in recs.items():
        st = _stamp(r)
        if st is None or st not in _CHECKED:
            todo.append(r)
            stamps[key] = st
    workers = workers or min(8, os.cpu_count() or 1)
    bad: list[tuple[Record, str]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(check_record, todo)
        for r, why in tqdm(zip(todo, results), total=len(todo), desc="preflight: decode-check images",
                           disable=not progress, leave=False, mininterval=0.5):
            if why is None:
                st = stamps[str(r.path)]
                if st is not None:
                    _CHECKED.add(st)
            else:
                bad.append((r, why))
    if bad:
        names = ", ".join(i.name for i in idxs)
        listed = "; ".join(f"{r.path} ({r.modality}, {r.split}): {why}" for r, why in bad[:MAX_NAMED])
        more = f"; ... and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
        raise DataError(f"preflight: {len(bad)} of {len(recs)} images of {names} cannot be decoded or used "
                        f"(checked before training, train and test splits): {listed}{more}")
    return len(recs)
