"""Bad input gives a DataError naming the file and what was expected."""
from __future__ import annotations

import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal_lib.data import DataError, ImageLoader, Record, open_dataset, open_image
from xmodal_lib.data.transforms import MAX_PIXELS


def _sketch(path: Path, ink: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("L", (32, 32), 255)
    if ink:
        im.paste(0, (8, 8, 20, 12))
    im.save(path)
    return path


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
    return path


def _sake(root: Path) -> Path:
    for c in ("cat", "dog"):
        _photo(root / "photo" / c / f"{c}1.jpg")
        _sketch(root / "sketch" / c / f"{c}1-1.png")
    zs = root / "zs"
    zs.mkdir()
    (zs / "cname_cid.txt").write_text("cat 0\n")
    (zs / "cname_cid_zero.txt").write_text("dog 0\n")
    for m, ext, suf in (("photo", "jpg", ""), ("sketch", "png", "-1")):
        (zs / f"{m}_filelist_train.txt").write_text(f"{m}/cat/cat1{suf}.{ext} 0\n")
        (zs / f"{m}_filelist_zero.txt").write_text(f"{m}/dog/dog1{suf}.{ext} 0\n")
    return root


@pytest.mark.parametrize("kind", ["sketchy", "sake", "qmul_v1", "qmul_v2", "qmul_v2_pickle", "manifest"])
def test_missing_root(tmp_path: Path, kind: str) -> None:
    with pytest.raises(DataError, match="nowhere"):
        open_dataset(kind, tmp_path / "nowhere")


def test_real_kind_needs_root_and_kind_is_checked() -> None:
    with pytest.raises(DataError, match="root is required"):
        open_dataset("sketchy")
    with pytest.raises(ValueError, match="expected one of"):
        open_dataset("imagenet", "x")


def test_sake_good_then_missing_split_file_and_listed_file(tmp_path: Path) -> None:
    root = _sake(tmp_path / "ds")
    idx = open_dataset("sake", root, split="zs")
    assert idx.counts()["photos"] == 2 and idx.unseen == ["dog"] and idx.sketches[0].instance == "cat1"
    (root / "sketch" / "dog" / "dog1-1.png").unlink()
    with pytest.raises(DataError, match=r"sketch_filelist_zero.txt:1: listed file not on disk"):
        open_dataset("sake", root, split="zs")
    (root / "zs" / "cname_cid_zero.txt").unlink()
    with pytest.raises(DataError, match=r"cname_cid_zero.txt: class list not found"):
        open_dataset("sake", root, split="zs")


def test_sake_bad_label_and_line(tmp_path: Path) -> None:
    root = _sake(tmp_path / "ds")
    (root / "zs" / "photo_filelist_train.txt").write_text("photo/cat/cat1.jpg 5\n")
    with pytest.raises(DataError, match="photo_filelist_train.txt:1: label 5"):
        open_dataset("sake", root, split="zs")
    (root / "zs" / "photo_filelist_train.txt").write_text("just-a-path\n")
    with pytest.raises(DataError, match="expected 'relative/path label'"):
        open_dataset("sake", root, split="zs")


def test_sketchy_listed_class_not_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "sk"
    for c in ("cat", "dog"):
        _photo(root / "photo" / "tx_000000000000" / c / f"{c}_1.jpg")
        _sketch(root / "sketch" / "tx_000000000000" / c / f"{c}_1-1.png")
    split = tmp_path / "split"
    split.mkdir()
    (split / "cname_cid.txt").write_text("cat 0\n")
    (split / "cname_cid_zero.txt").write_text("dog 0\nhot dog 1\n")
    with pytest.raises(DataError, match=r"not on disk: \['hot_dog'\]"):
        open_dataset("sketchy", root, split=str(split))
    with pytest.raises(DataError, match=r"123 of the 125 classes of split 'zeroshot1' \(.*\) not on disk"):
        open_dataset("sketchy", root, split="zeroshot1")  # the packaged 125-class list
    assert open_dataset("sketchy", root).counts()["classes"] == 2


def test_qmul_sketch_without_photo(tmp_path: Path) -> None:
    for split in ("train", "test"):
        _photo(tmp_path / f"{split}B" / "p1.png")
        _sketch(tmp_path / f"{split}A" / "p1_1.png")
    assert len(open_dataset("qmul_v2", tmp_path).sketches) == 2
    _sketch(tmp_path / "testA" / "p9_1.png")
    with pytest.raises(DataError, match=r"p9_1.png: no matching photo"):
        open_dataset("qmul_v2", tmp_path)
    _sketch(tmp_path / "v1" / "train" / "sketches" / "3.png")
    (tmp_path / "v1" / "train" / "images").mkdir()
    with pytest.raises(DataError, match="3.png: no matching photo"):
        open_dataset("qmul_v1", tmp_path / "v1")


@pytest.mark.parametrize("content,msg", [
    ([1, 2], "expected a non-empty dict"),
    ({"train/a_1": np.zeros((4, 3))}, "unexpected key"),
    ({"/train/a_1": np.zeros((4, 2))}, r"shape \(n>=2, 3\)"),
    ({"/train/a_1": "strokes"}, "expected a numpy array"),
    ({"/train/a_1": np.full((4, 3), np.nan)}, "NaN"),
    ({"/train/a_1": np.zeros((4, 3)), "/test/a_2": np.zeros((4, 3))}, "both train and test"),
])
def test_stroke_pickle_unexpected_contents(tmp_path: Path, content: object, msg: str) -> None:
    (tmp_path / "ShoeV2_Coordinate").write_bytes(pickle.dumps(content))
    with pytest.raises(DataError, match=msg):
        open_dataset("qmul_v2_pickle", tmp_path)


def test_stroke_pickle_with_photos(tmp_path: Path) -> None:
    arr = np.array([[10, 10, 0], [200, 200, 1], [10, 200, 0], [200, 10, 1]], float)
    (tmp_path / "ShoeV2_Coordinate").write_bytes(pickle.dumps({"/train/s-1_1": arr, "/test/s_2_x": arr}))
    (tmp_path / "photo").mkdir()
    _photo(tmp_path / "photo" / "s-1.png")
    with pytest.raises(DataError, match=r"photo s_2\.\* listed"):
        open_dataset("qmul_v2_pickle", tmp_path)
    _photo(tmp_path / "photo" / "s_2.png")
    idx = open_dataset("qmul_v2_pickle", tmp_path)
    assert [r.instance for r in idx.photos] == ["s-1", "s_2"] and len(idx.sketches) == 2


def test_corrupt_and_truncated_images(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    good = _photo(tmp_path / "good.jpg")
    trunc = tmp_path / "trunc.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(trunc)
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    ld = ImageLoader(16)
    assert ld.load(Record(good, "photo", "x", "", "train")).shape == (3, 16, 16)
    for p in (bad, trunc):
        with pytest.raises(DataError, match=rf"{p.name}: cannot decode image"):
            ld.load(Record(p, "photo", "x", "", "train"))
    with pytest.raises(DataError, match="image file not found"):
        ld.load(Record(tmp_path / "gone.png", "sketch", "x", "", "train"))


def test_blank_sketch(tmp_path: Path) -> None:
    p = _sketch(tmp_path / "blank.png", ink=False)
    for crop in (False, True):
        with pytest.raises(DataError, match="blank.png: blank sketch"):
            ImageLoader(16, sketch_crop=crop).load(Record(p, "sketch", "x", "", "train"))
    # a white photo is fine: the blank check is for sketches only
    assert ImageLoader(16).load(Record(p, "photo", "x", "", "train")).min() == 1.0


def _png_header_only(path: Path, w: int, h: int) -> Path:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb(tmp_path: Path) -> None:
    bomb = _png_header_only(tmp_path / "bomb.png", 60_000, 60_000)  # 3.6 gigapixels claimed
    assert 60_000 ** 2 > MAX_PIXELS
    with pytest.raises(DataError, match="bomb.png: image too large.*decompression bomb"):  # PIL's own limit
        ImageLoader(16).load(Record(bomb, "photo", "x", "", "train"))
    big = _png_header_only(tmp_path / "big.png", 10_000, 5_000)  # over our limit, under PIL's
    assert 10_000 * 5_000 > MAX_PIXELS
    with pytest.raises(DataError, match="big.png: image is 10000x5000.*decompression bomb"):
        ImageLoader(16).load(Record(big, "sketch", "x", "", "train"))
    small = _photo(tmp_path / "ok.png")
    with pytest.raises(DataError, match="more than the limit 100"):
        open_image(small, max_pixels=100)


def test_manifest(tmp_path: Path) -> None:
    _photo(tmp_path / "p" / "a.jpg")
    _photo(tmp_path / "p" / "b.jpg")
    for n in ("a1", "a2", "b1"):
        _sketch(tmp_path / "s" / f"{n}.png")
    csv = tmp_path / "pairs.csv"
    csv.write_text("sketch_path,photo_path,class,split\ns/a1.png,p/a.jpg,cup,train\n"
                   "s/a2.png,p/a.jpg,cup,train\ns/b1.png,p/b.jpg,mug,test\n")
    idx = open_dataset("manifest", csv)
    assert idx.counts() == {"photos": 2, "sketches": 3, "classes": 2, "unseen": 1, "instances": 2}
    assert {r.instance for r in idx.sketches} == {"p/a.jpg", "p/b.jpg"} and idx.unseen == ["mug"]
    csv.write_text("sketch_path,photo_path,class,split\ns/a1.png,p/a.jpg,cup,val\n")
    with pytest.raises(DataError, match=r"pairs.csv:2: split must be"):
        open_dataset("manifest", csv)
    csv.write_text("sketch_path,photo_path,class\ns/zz.png,p/a.jpg,cup\n")
    with pytest.raises(DataError, match=r"pairs.csv:2: sketch file not on disk"):
        open_dataset("manifest", csv)
    csv.write_text("sketch,photo,label\ns/a1.png,p/a.jpg,cup\n")
    with pytest.raises(DataError, match="missing columns"):
        open_dataset("manifest", csv)


def test_sake_tuberlin_style_list_names(tmp_path: Path) -> None:
    root = _sake(tmp_path / "ds")
    zs = root / "zs"
    for part in ("train", "zero"):
        (zs / f"sketch_filelist_{part}.txt").rename(zs / f"png_ready_filelist_{part}.txt")
        (zs / f"photo_filelist_{part}.txt").rename(zs / f"ImageResized_ready_filelist_{part}.txt")
    idx = open_dataset("sake", root, split="zs")
    assert [r.path.name for r in idx.sketches] == ["cat1-1.png", "dog1-1.png"]
    (zs / "png_ready_filelist_zero.txt").rename(zs / "mystery_filelist_zero.txt")
    with pytest.raises(DataError, match="mystery_filelist_zero.txt: cannot tell"):
        open_dataset("sake", root, split="zs")


def test_open_dataset_split_arguments(tiny_root: Path) -> None:
    tr = open_dataset("synthetic", root=tiny_root, split="train")
    assert tr.photos and all(r.split == "train" and r.label not in tr.unseen for r in tr.photos)
    with pytest.raises(ValueError, match="split='zeroshot1'"):
        open_dataset("synthetic", root=tiny_root, split="zeroshot1")
    with pytest.raises(ValueError, match="expected None, 'train' or 'test'"):
        open_dataset("qmul_v1", tiny_root, split="zeroshot1")
