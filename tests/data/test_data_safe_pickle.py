"""The restricted unpickler: plain data and numpy arrays pass, anything else is refused unexecuted."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from xmodal_lib.data import DataError, open_dataset, safe_load
from xmodal_lib.data.safe_pickle import safe_loads


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("proto", [2, 3, 4, 5])
def test_plain_data_and_arrays_pass(tmp_path: Path, proto: int) -> None:
    obj = {"/train/a_1": np.arange(12, dtype=np.float64).reshape(4, 3), "n": [1, 2.5, None, True],
           "t": (b"x", "y", frozenset({1})), "s": {3}, "f": np.float32(1.5), "i": np.int64(7)}
    p = tmp_path / "ok.pkl"
    p.write_bytes(pickle.dumps(obj, protocol=proto))
    out = safe_load(p)
    assert np.array_equal(out["/train/a_1"], obj["/train/a_1"]) and out["n"] == obj["n"]
    assert out["t"] == obj["t"] and out["f"] == 1.5 and out["i"] == 7


def test_malicious_pickle_refused_without_executing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"/train/x_1": _Evil(marker)}))
    with pytest.raises(DataError) as e:
        safe_load(p)
    assert str(p) in str(e.value) and "system" in str(e.value) and "not allowed" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(Path("/etc/passwd")),                        # harmless class, still not allowed
    b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1q\x00\x85q\x01Rq\x02.",  # builtins.eval
    b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlibq\x00\x86R.",  # non-latin1 codec
])
def test_other_globals_refused(payload: bytes) -> None:
    with pytest.raises(DataError, match="src.pkl"):
        safe_loads(payload, source="src.pkl")


def test_garbage_and_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a readable pickle"):
        safe_loads(b"\x80\x04garbage", source="g.pkl")
    with pytest.raises(DataError, match="not found"):
        safe_load(tmp_path / "nope.pkl")


def test_malicious_stroke_pickle_through_reader(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "ShoeV2_Coordinate").write_bytes(pickle.dumps({"/train/a_1": _Evil(marker)}))
    with pytest.raises(DataError, match="ShoeV2_Coordinate"):
        open_dataset("qmul_v2_pickle", tmp_path)
    assert not marker.exists()
