"""Content manifest of a generated data folder: every file's size and hash, checked on use.

The embedded synthetic benchmark is a cache; a cache whose images were replaced (even by valid
images, e.g. red squares) must not be read as if it were the benchmark. :func:`build_manifest`
records ``{relative path: [size, blake2b-128 hex]}`` when the folder is written;
:func:`differing_files` compares the folder with it. The check hashes every file once per
process and afterwards only re-stats them (size + mtime), so repeated use costs a directory walk.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: ``(root, manifest digest) -> stat signature`` of folders verified in this process.
_VERIFIED: dict[tuple[str, str], tuple] = {}


def _walk(root: Path, parts: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        base = root / part
        if base.is_dir():
            for dirpath, _dirs, files in os.walk(base):
                out += [Path(dirpath) / f for f in files]
    return sorted(out)


def _hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_manifest(root: Path, parts: tuple[str, ...]) -> dict[str, list]:
    """``{posix relative path: [size, hash]}`` of every file under ``root/<part>`` for ``parts``."""
    return {p.relative_to(root).as_posix(): [p.stat().st_size, _hash(p)] for p in _walk(root, parts)}


def _signature(files: list[Path]) -> tuple:
    sig = []
    for p in files:
        try:
            st = p.stat()
        except OSError:
            return ()
        sig.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(sig)


def differing_files(root: Path, manifest: dict[str, list], parts: tuple[str, ...]) -> list[str]:
    """Relative paths that are missing, extra, or differ in size or hash from ``manifest`` (sorted)."""
    files = _walk(root, parts)
    key = (str(root.resolve()), hashlib.blake2b(repr(sorted(manifest.items())).encode(), digest_size=16).hexdigest())
    sig = _signature(files)
    if sig and _VERIFIED.get(key) == sig:
        return []
    on_disk = {p.relative_to(root).as_posix(): p for p in files}
    bad = sorted(set(manifest) ^ set(on_disk))
    for rel in sorted(set(manifest) & set(on_disk)):
        size, digest = manifest[rel]
        p = on_disk[rel]
        if p.stat().st_size != size or _hash(p) != digest:
            bad.append(rel)
    if not bad and sig:
        _VERIFIED[key] = sig
    return sorted(bad)
