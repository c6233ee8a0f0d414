"""Every reader on the real subsets of ../shared/data with the exact counts of its README."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import pytest
import torch
from PIL import Image

from xmodal_lib.data import ImageLoader, open_dataset, packaged_split

pytestmark = pytest.mark.shared_data


def test_sketchy_mini_all_and_zeroshot1(shared_path: Callable[..., Path]) -> None:
    root = shared_path("sketchy_mini")
    full = open_dataset("sketchy", root)
    assert (len(full.photos), len(full.sketches), len(full.classes), full.unseen) == (3125, 3125, 125, [])
    assert set(Counter(r.label for r in full.photos).values()) == {25}
    assert len({r.instance for r in full.sketches}) == 578
    photo_ids = {r.instance for r in full.photos}
    assert all(r.instance in photo_ids for r in full.sketches)
    z1 = open_dataset("sketchy", root, split="zeroshot1")
    assert len(z1.unseen) == 25 and sorted(z1.unseen) == sorted(packaged_split("Sketchy/zeroshot1")[1])
    te, tr = z1.subset("test"), z1.subset("train")
    assert (len(te.photos), len(te.sketches), len(tr.photos), len(tr.sketches)) == (625, 625, 2500, 2500)
    assert {r.label for r in te.sketches} == set(z1.unseen)


def test_sketchy_mini_zeroshot0(shared_path: Callable[..., Path]) -> None:
    z0 = open_dataset("sketchy", shared_path("sketchy_mini"), split="zeroshot0")
    assert len(z0.unseen) == 21 and set(z0.unseen) <= set(z0.classes)
    assert len(z0.subset("test").photos) == 21 * 25 and len(z0.subset("train").sketches) == 104 * 25


@pytest.mark.parametrize("cat,n_train,n_test", [("shoes", 304, 115), ("chairs", 200, 97)])
def test_qmul_v1(shared_path: Callable[..., Path], cat: str, n_train: int, n_test: int) -> None:
    idx = open_dataset("qmul_v1", shared_path("qmul_v1", cat))
    tr, te = idx.subset("train"), idx.subset("test")
    assert (len(tr.photos), len(tr.sketches), len(te.photos), len(te.sketches)) == (n_train, n_train, n_test, n_test)
    assert {r.instance for r in te.sketches} == {r.instance for r in te.photos}
    assert {int(r.instance) for r in tr.photos} == set(range(1, n_train + 1))


def test_qmul_v1_rgba_sketch_loads_on_white(shared_path: Callable[..., Path]) -> None:
    idx = open_dataset("qmul_v1", shared_path("qmul_v1", "shoes"), split="test")
    assert Image.open(idx.sketches[0].path).mode == "RGBA"
    x = ImageLoader(128).load(idx.sketches[0])
    assert x.shape == (3, 128, 128)
    corners = torch.stack([x[:, 0, 0], x[:, 0, -1], x[:, -1, 0], x[:, -1, -1]])
    assert torch.all(corners > 0.95)  # background composited on white, not black
    assert x.min() < 0.5  # the strokes survive


def test_chairv2_coordinate_pickle(shared_path: Callable[..., Path]) -> None:
    pkl = shared_path("chairv2_coordinates", "ChairV2_Coordinate")
    idx = open_dataset("qmul_v2_pickle", pkl.parent)
    assert len(idx.sketches) == 1275 and idx.photos == []  # photos are not shipped
    assert (len(idx.subset("train").sketches), len(idx.subset("test").sketches)) == (952, 323)
    ids = Counter(r.split for r in {(r.instance, r.split): r for r in idx.sketches}.values())
    assert len({r.instance for r in idx.sketches}) == 400 and ids == {"train": 300, "test": 100}
    x = ImageLoader(64, sketch_crop=True).load(idx.sketches[0])
    assert x.shape == (3, 64, 64) and x.min() < 0.5 and x.max() == 1.0


def test_sketchy_photo_and_sketch_load(shared_path: Callable[..., Path]) -> None:
    idx = open_dataset("sketchy", shared_path("sketchy_mini"), split="zeroshot1")
    ld = ImageLoader(32, normalize="imagenet", sketch_crop=True)
    p, s = ld.load(idx.photos[0]), ld.load(idx.sketches[0])
    assert p.shape == s.shape == (3, 32, 32) and p.dtype == torch.float32
    assert s.max() > 2.0  # white in ImageNet normalisation is > 2 in every channel
