"""Paper-layout fixtures (the real releases' folder layouts, drawn by the generator) read by our readers."""
from __future__ import annotations

import pickle

import pytest

from xmodal_lib.data import open_dataset
from xmodal_lib.data.paper_layouts import write_all
from xmodal_lib.data.splits import packaged_split
from xmodal_lib.data.transforms import ImageLoader


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("paper_layouts"), size=32)


def test_qmul_v2_folders_and_pairs(layouts):
    for key in ("shoev2", "chairv2"):
        root = layouts[key]
        assert {p.name for p in root.iterdir()} == {"trainA", "trainB", "testA", "testB"}
        assert all(p.stem.isdigit() for p in (root / "trainB").iterdir())  # Shoe ids parse as int
        idx = open_dataset("qmul_v2", root=root)
        tr, te = idx.subset("train"), idx.subset("test")
        assert (len(tr.photos), len(tr.sketches), len(te.photos), len(te.sketches)) == (4, 8, 3, 6)
        assert {s.instance for s in tr.sketches} == {p.instance for p in tr.photos}


def test_qmul_v2_coordinate_pickle_with_photos(layouts):
    root = layouts["shoev2_pickle"]
    pkl = root / "ShoeV2_Coordinate"
    with open(pkl, "rb") as f:
        keys = sorted(pickle.load(f))  # test-only: our own file
    assert keys[0].startswith("/test/") and keys[-1].startswith("/train/") and keys[-1].endswith("_2")
    idx = open_dataset("qmul_v2_pickle", root=root)
    assert len(idx.photos) == 7 and len(idx.sketches) == 14
    img = ImageLoader(32, sketch_crop=True).load(idx.sketches[0])  # strokes render to ink on white
    assert img.shape == (3, 32, 32) and img.min() < 0.5 < img.max()


@pytest.mark.parametrize("key,split,n_unseen,packaged", [
    ("sketchy_ext", "zeroshot1", 25, "Sketchy/zeroshot1"), ("sketchy_ext", "zeroshot0", 21, "Sketchy/zeroshot0"),
    ("tuberlin_ext", "zeroshot", 30, "TUBerlin/zeroshot"), ("quickdraw_ext", "zeroshot", 30, "QuickDraw/zeroshot")])
def test_sake_lists_with_the_standard_zero_shot_splits(layouts, key, split, n_unseen, packaged):
    root = layouts[key]
    idx = open_dataset("sake", root=root, split=split)
    seen, unseen = packaged_split(packaged)
    assert sorted(idx.unseen) == sorted(unseen) and len(idx.unseen) == n_unseen
    assert sorted(idx.classes) == sorted([*seen, *unseen])
    test = idx.subset("test")
    assert {r.label for r in test.photos} == set(unseen) == {r.label for r in test.sketches}
    assert not {r.label for r in idx.subset("train").photos} & set(unseen)


def test_release_specific_names(layouts):
    sk = layouts["sketchy_ext"]
    assert (sk / "zeroshot1" / "all_photo_filelist_zero.txt").is_file()
    assert (sk / "zeroshot0" / "sketch_tx_000000000000_ready_filelist_train.txt").is_file()
    assert any((sk / "EXTEND_image_sketchy_ready").rglob("ext_*.jpg"))
    idx = open_dataset("sake", root=sk, split="zeroshot1")
    paired = [r for r in idx.sketches if r.instance]
    assert len(paired) == len(idx.sketches)  # <photo id>-<k>.png pairs with tx_*_ready/<photo id>.jpg
    tu = layouts["tuberlin_ext"]
    assert (tu / "png_ready" / "bottle opener").is_dir() and (tu / "zeroshot" / "png_ready_filelist_zero.txt").is_file()
    assert any((tu / "ImageResized_ready").rglob("*.JPEG"))
    qd = layouts["quickdraw_ext"]
    assert (qd / "zeroshot" / "sketch_zero.txt").is_file() and (qd / "zeroshot" / "all_photo_zero.txt").is_file()
    assert any((qd / "images").rglob("image_*.jpg"))


def test_original_sketchy_tree(layouts):
    idx = open_dataset("sketchy", root=layouts["sketchy"], split="zeroshot1")
    assert len(idx.classes) == 125 and len(idx.unseen) == 25
    assert len(idx.photos) == 125 and len(idx.sketches) == 250
    assert {s.instance for s in idx.sketches} == {p.instance for p in idx.photos}
