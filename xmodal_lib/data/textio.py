"""Reading the text files of a dataset (class lists, file lists, CSV manifests) the same way.

Every text file is UTF-8; a byte-order mark (as Excel and Notepad write it) is dropped; a byte
that is not UTF-8 becomes a :class:`DataError` naming the file, the line and the byte, instead of
a bare ``UnicodeDecodeError``.
"""
from __future__ import annotations

from pathlib import Path

from xmodal_lib.data.index import DataError


def decode_text(data: bytes, source: str) -> str:
    """``data`` decoded as UTF-8 (a leading BOM dropped); bad bytes -> DataError ``source:line``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{source}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at column {col}); "
                        "save the file as UTF-8") from None


def read_text(path: str | Path) -> str:
    """The whole of a UTF-8 text file (see :func:`decode_text`); a missing file -> DataError."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: cannot read text file: {e.strerror or e}") from None
    return decode_text(data, str(p))
