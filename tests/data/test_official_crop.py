"""ZSE-SBIR's released sketch crop (R+G+B <= 300, +-10 px, aspect-kept resize, white pad) as an option."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xmodal_lib.data.index import DataError, Record
from xmodal_lib.data.official_crop import OfficialZSELoader, official_sketch_crop


def _canvas(w: int = 100, h: int = 60) -> np.ndarray:
    return np.full((h, w, 3), 255, np.uint8)


def test_crop_box_margin_aspect_and_white_pad():
    a = _canvas()
    a[20:30, 30:50] = 0  # ink box x 30..49, y 20..29 -> with 10 px: x 20..59 (40), y 10..39 (30)
    out = np.asarray(official_sketch_crop(Image.fromarray(a), 40))
    assert out.shape == (40, 40, 3)
    # 40 x 30 crop at scale 1: 5 white rows above and below, the ink 10 px inside the box
    assert (out[:5] == 255).all() and (out[35:] == 255).all()
    dark = np.argwhere(out.sum(-1) <= 300)
    assert dark[:, 0].min() == 15 and dark[:, 0].max() == 24 and dark[:, 1].min() == 10 and dark[:, 1].max() == 29


def test_ink_threshold_is_rgb_sum_300_and_margin_clipped():
    a = _canvas()
    a[0:5, 0:5] = 100  # sum 300: ink, at the corner (margin clipped to the image)
    a[50:55, 90:95] = 101  # sum 303: not ink (our default grey < 200 crop would keep it)
    out = official_sketch_crop(Image.fromarray(a), 15)
    assert out.size == (15, 15)
    assert np.asarray(out)[:5, :5].mean() < 150  # the 15 x 15 crop (5 px ink + 10 px margin) fills it
    with pytest.raises(DataError, match="blank sketch"):
        official_sketch_crop(Image.fromarray(np.full((20, 20, 3), 101, np.uint8)), 16)


def test_loader_sketch_and_photo_geometry(tmp_path):
    a = _canvas()
    a[20:30, 30:50] = 0
    Image.fromarray(a).save(tmp_path / "s.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 100).astype(np.uint8), (60, 1))[..., None].repeat(3, -1)).save(tmp_path / "p.png")
    ld = OfficialZSELoader(32)
    sk = ld(Record(tmp_path / "s.png", "sketch", "c", "", "train"))
    ph = ld(Record(tmp_path / "p.png", "photo", "c", "", "train"))
    assert sk.shape == ph.shape == (3, 32, 32) and sk.dtype == torch.float32
    assert sk.max() == 1.0 and sk.min() == -1.0  # white pad and black ink in [-1, 1]
    # the photo is stretched (aspect not kept): no white padding rows, gradient spans the width
    assert ph[0, 0, 0] < -0.9 and ph[0, 0, -1] > 0.9 and ph[0, 0, 0] == ph[0, -1, 0]
    with pytest.raises(ValueError, match="size"):
        OfficialZSELoader(4)
