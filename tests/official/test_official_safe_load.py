"""Official .pth files are read without executing code: malicious pickles are refused."""
from __future__ import annotations

import io
import lzma
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from xmodal_lib.official import UntrustedPickleError, read_official
from xmodal_lib.official.safe_load import state_dict_of


class _RunsACommand:
    """Unpickling this would run ``touch <marker>`` (if the loader allowed ``os.system``)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _assert_refused(path, marker):
    with pytest.raises(UntrustedPickleError) as e:
        read_official(path)
    msg = str(e.value)
    assert "refused: untrusted pickle" in msg and str(path) in msg and "system" in msg
    assert "weights_only=False" not in msg and "weights_only" not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # torch's advice is not chained in
    assert not os.path.exists(marker), "the pickle's command ran"


@pytest.mark.parametrize("kind", ["torch_zip", "raw_pickle", "xz"])
def test_malicious_pickle_is_refused(tmp_path, kind):
    marker = str(tmp_path / "PWNED")
    payload = {"model": {"w": torch.ones(2)}, "epoch": 1, "x": _RunsACommand(marker)}
    path = tmp_path / "best_checkpoint.pth"
    if kind == "raw_pickle":  # a plain pickle, not torch's zip (no tensors: those need torch's own globals)
        path.write_bytes(pickle.dumps({"model": {"w": 1.0}, "x": _RunsACommand(marker)}, protocol=2))
    else:
        torch.save(payload, path)
    if kind == "xz":
        xz = tmp_path / "best_checkpoint.pth.xz"
        xz.write_bytes(lzma.compress(path.read_bytes()))
        path.unlink()
        path = xz
    _assert_refused(path, marker)


def test_cli_refuses_malicious_checkpoint(tmp_path, capsys):
    from xmodal_lib.cli import main

    marker = str(tmp_path / "PWNED")
    torch.save({"model": {"w": torch.ones(2)}, "x": _RunsACommand(marker)}, tmp_path / "evil.pth")
    assert main(["convert-official", "zse", str(tmp_path / "evil.pth"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "refused: untrusted pickle" in err and "weights_only" not in err
    assert not os.path.exists(marker) and not (tmp_path / "out.safetensors").exists()


def _numpy1_style(obj) -> bytes:
    """``torch.save(obj)`` with numpy 2's ``numpy._core`` global renamed to numpy 1.x's ``numpy.core``
    (the name the released ZSE-SBIR file, written under numpy 1.19, uses)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    src, out = zipfile.ZipFile(io.BytesIO(buf.getvalue())), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            dst.writestr(info.filename, data)
    return out.getvalue()


def test_numpy_scalars_of_both_numpy_generations_load(tmp_path):
    obj = {"model": {"w": torch.arange(3.0)}, "epoch": 7, "map_all": np.float64(0.25),
           "precision_100": np.nanmean(np.array([0.5, np.nan]))}
    torch.save(obj, tmp_path / "np2.pth")
    (tmp_path / "np1.pth").write_bytes(_numpy1_style(obj))
    for name in ("np1.pth", "np2.pth"):
        sd, extras = state_dict_of(read_official(tmp_path / name), name)
        assert torch.equal(sd["w"], torch.arange(3.0))
        assert extras == {"epoch": 7, "map_all": 0.25, "precision_100": 0.5}
        assert all(type(v) in (int, float) for v in extras.values())


def test_other_numpy_globals_stay_refused(tmp_path):
    """Only scalars/dtypes are allowed: a whole numpy array (``_reconstruct``) is refused."""
    torch.save({"model": {"w": torch.ones(1)}, "a": np.zeros(3)}, tmp_path / "arr.pth")
    with pytest.raises(UntrustedPickleError, match="refused: untrusted pickle"):
        read_official(tmp_path / "arr.pth")


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_official(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises((ValueError, UntrustedPickleError), match="junk.pth"):
        read_official(tmp_path / "junk.pth")
    (tmp_path / "junk.pth.xz").write_bytes(b"not xz")
    with pytest.raises(ValueError, match=r"junk\.pth\.xz: not a valid \.xz file"):
        read_official(tmp_path / "junk.pth.xz")
    with pytest.raises(ValueError, match="expected a state dict"):
        state_dict_of({"model": 3}, "x.pth")


def test_fixture_checkpoint_structure(official_dir):
    """The released structure: dict {model, epoch, map_all, precision_100}, CUDA-saved storages."""
    obj = read_official(official_dir / "zse_sbir" / "best_checkpoint.pth.xz")
    assert set(obj) == {"model", "epoch", "map_all", "precision_100"}
    assert isinstance(obj["map_all"], np.floating) and len(obj["model"]) == 90
    assert all(v.device.type == "cpu" for v in obj["model"].values())
