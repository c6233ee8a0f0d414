"""Fixtures of the official-checkpoint tests: the authors' fixture files and small SAKE lists.

``official_dir`` is ``../shared/reference/official_checkpoints`` (or ``$XMODAL_SHARED_REFERENCE``
/official_checkpoints); tests skip with a reason naming both when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """The fixture checkpoints written by the unmodified official model classes."""
    from xmodal_lib.infra.paths import repo_root

    env = os.environ.get("XMODAL_SHARED_REFERENCE")
    root = Path(env) if env else repo_root().parent / "shared" / "reference"
    p = root / "official_checkpoints"
    if not p.is_dir():
        pytest.skip("official checkpoint fixtures ../shared/reference/official_checkpoints absent "
                    "(set XMODAL_SHARED_REFERENCE to the folder holding official_checkpoints/)")
    return p


def _paper_state_dict(tsv: Path) -> dict:
    import torch

    out = {}
    for line in tsv.read_text().splitlines():
        key, shape = line.split("\t")
        out[key] = torch.empty([int(s) for s in shape.split(",")] if shape else [], device="meta")
    return out


def _write_sake_lists(out: Path, root: Path, split_src: Path, unseen: list[str], n_photo: int,
                      n_sketch: int) -> Path:
    from xmodal_lib.data.splits import read_cname_cid

    split = out / "zeroshot1"
    split.mkdir(parents=True)
    for name in ("cname_cid.txt", "cname_cid_zero.txt"):
        (split / name).write_text((split_src / name).read_text())
    seen, zero = read_cname_cid(split / "cname_cid.txt"), read_cname_cid(split / "cname_cid_zero.txt")

    def lines(classes: list[str], ids: dict, n_p: int, n_s: int) -> tuple[str, str]:
        ph, sk = [], []
        for c in classes:
            for kind, n, acc in (("photo", n_p, ph), ("sketch", n_s, sk)):
                files = sorted((root / kind / "tx_000000000000" / c).iterdir())[:n]
                acc += [f"{f.relative_to(root)} {ids[c]}" for f in files]
        return "\n".join(ph) + "\n", "\n".join(sk) + "\n"

    a_seen = sorted(seen)[0]
    for part, classes, ids, n in (("train", [a_seen], seen, 1), ("zero", unseen, zero, None)):
        ph, sk = lines(classes, ids, n or n_photo, n or n_sketch)
        (split / f"photo_filelist_{part}.txt").write_text(ph)
        (split / f"sketch_filelist_{part}.txt").write_text(sk)
    return split


@pytest.fixture(scope="session")
def paper_state_dict():
    """``paper_state_dict(tsv)``: an official-layout state dict built from a key list
    (``key<TAB>shape`` lines), every tensor on the meta device (no memory)."""
    return _paper_state_dict


@pytest.fixture(scope="session")
def sake_lists():
    """``sake_lists(out, root, split_src, unseen, n_photo, n_sketch)``: SAKE-format ``zeroshot1``
    lists over a Sketchy-layout ``root`` (the first ``n_photo`` photos / ``n_sketch`` sketches of
    each class in ``unseen`` as test lists; one seen class as the train lists). Returns the folder."""
    return _write_sake_lists
