"""Preprocessing: RGBA on white, ink crop, normalisation, strokes, preload and datasets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmodal_lib.data import ImageDataset, ImageLoader, Record, open_dataset, preload, preprocess_sketch_image
from xmodal_lib.data.strokes import render_strokes, split_strokes


def _rec(p: Path, modality: str = "sketch") -> Record:
    return Record(p, modality, "x", "", "train")


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (40, 40), (0, 0, 0, 0))  # transparent *black* background
    im.paste((0, 0, 0, 255), (10, 18, 30, 22))
    p = tmp_path / "rgba.png"
    im.save(p)
    x = ImageLoader(40).load(_rec(p))
    assert torch.allclose(x[:, 0, 0], torch.ones(3)) and x[:, 20, 20].max() < 0.05
    assert not (np.asarray(im.convert("L")) > 0).any()  # a plain grayscale conversion would be all black
    la = tmp_path / "la.png"
    im.convert("LA").save(la)
    assert ImageLoader(40).load(_rec(la))[:, 0, 0].min() == 1.0
    pal = tmp_path / "p.png"
    im.convert("P").save(pal)  # palette with transparency
    assert ImageLoader(40, sketch_crop=True).load(_rec(pal)).shape == (3, 40, 40)


def test_ink_crop_keeps_aspect_and_pads_white(tmp_path: Path) -> None:
    im = Image.new("L", (100, 100), 255)
    im.paste(0, (5, 5, 45, 25))  # 40 x 20 ink box in a corner
    sq = preprocess_sketch_image(im, crop=True, margin=0.0)
    assert sq.size == (40, 40)
    a = np.asarray(sq)
    assert (a[:10] == 255).all() and (a[30:] == 255).all() and (a[10:30] == 0).all()
    p = tmp_path / "corner.png"
    im.save(p)
    x = ImageLoader(32, sketch_crop=True).load(_rec(p))
    y = ImageLoader(32, sketch_crop=False).load(_rec(p))
    assert (x < 0.5).float().mean() > 0.4 and (y < 0.5).float().mean() < 0.1


def test_normalisations_and_modes(tmp_path: Path) -> None:
    p = tmp_path / "g16.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(p)
    for norm, lo, hi in (("none", 0.0, 1.0), ("half", -1.0, 1.0), ("imagenet", -2.2, 2.7)):
        x = ImageLoader(16, normalize=norm).load(_rec(p, "photo"))
        assert x.min() >= lo - 1e-5 and x.max() <= hi + 1e-5
    with pytest.raises(ValueError, match="normalize"):
        ImageLoader(16, normalize="zscore")


def test_strokes_render() -> None:
    arr = np.array([[0, 0, 0], [255, 255, 1], [0, 255, 0], [128, 128, 0], [255, 0, 1]], float)
    assert [len(s) for s in split_strokes(arr)] == [2, 3]
    im = np.asarray(render_strokes(arr, size=64))
    assert im[32, 32] == 0 and im[48, 16] == 0 and im[10, 40] == 255 and im[40, 10] == 255


def test_augment_deterministic_by_seed_and_epoch(tiny_root: Path) -> None:
    idx = open_dataset("synthetic", root=tiny_root)
    recs = idx.sketches[:4]
    ds = ImageDataset(recs, ImageLoader(32, augment=True), idx.label_ids(), seed=3)
    a0, lab = ds[1]
    assert torch.equal(a0, ds[1][0]) and lab == idx.label_ids()[recs[1].label]
    ds.set_epoch(1)
    assert not torch.equal(a0, ds[1][0])
    with pytest.raises(Exception, match="labels without an id"):
        ImageDataset(recs, ImageLoader(32), {})


def test_preload_matches_single_loads(tiny_root: Path) -> None:
    idx = open_dataset("synthetic_fg", root=tiny_root, category="chair", split="test")
    ld = ImageLoader(32, normalize="half", sketch_crop=True)
    x = preload(idx.sketches + idx.photos, ld, progress=False)
    assert x.shape == (len(idx.sketches) + len(idx.photos), 3, 32, 32)
    assert torch.equal(x[0], ld.load(idx.sketches[0]))
    assert preload([], ld).shape == (0, 3, 32, 32)
