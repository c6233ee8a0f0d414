"""Issue #15/#19, data side: bad or inconsistent input is never silent, never late, never unclear.

Each test builds a tiny dataset in ``tmp_path`` with one fault and checks what the user sees:
a :class:`DataError` naming the file (and line) and what was expected, or an explicit, counted
:class:`DataWarning` when the reader can continue without guessing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal_lib.data import DataError, ImageLoader, Record, open_dataset
from xmodal_lib.data.index import DataWarning, SBIRIndex

TX = "tx_000000000000"


def _sketch(path: Path, size: tuple[int, int] = (32, 32), box: tuple[int, int, int, int] = (8, 8, 20, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("L", size, 255)
    im.paste(0, box)
    im.save(path)
    return path


def _photo(path: Path, colour: tuple[int, int, int] = (200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)
    return path


def _sake(root: Path, classes_seen=("ant", "airplane"), classes_unseen=("dog",)) -> Path:
    """SAKE tree: one photo + one sketch per class; lists ``zs/{photo,sketch}_filelist_{train,zero}.txt``."""
    for c in (*classes_seen, *classes_unseen):
        _photo(root / "photo" / c / f"{c}1.jpg")
        _sketch(root / "sketch" / c / f"{c}1-1.png")
    zs = root / "zs"
    zs.mkdir()
    (zs / "cname_cid.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(classes_seen)))
    (zs / "cname_cid_zero.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(classes_unseen)))
    for m, ext, suf in (("photo", "jpg", ""), ("sketch", "png", "-1")):
        (zs / f"{m}_filelist_train.txt").write_text(
            "".join(f"{m}/{c}/{c}1{suf}.{ext} {i}\n" for i, c in enumerate(classes_seen)))
        (zs / f"{m}_filelist_zero.txt").write_text(
            "".join(f"{m}/{c}/{c}1{suf}.{ext} {i}\n" for i, c in enumerate(classes_unseen)))
    return root


def _manifest(root: Path, rows: list[str], header: str = "sketch_path,photo_path,class") -> Path:
    for c in ("cat", "dog"):
        _photo(root / "p" / f"{c}.jpg")
        _sketch(root / "s" / f"{c}-1.png")
        _sketch(root / "s" / f"{c}-2.png")
    f = root / "pairs.csv"
    f.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return f


# --------------------------------------------------------------------------------------- silent
def test_sake_label_id_disagrees_with_class_folder(tmp_path: Path) -> None:
    root = _sake(tmp_path / "ds")
    lst = root / "zs" / "photo_filelist_train.txt"
    lst.write_text("photo/ant/ant1.jpg 1\nphoto/airplane/airplane1.jpg 1\n")  # ant file labelled airplane
    with pytest.raises(DataError, match=r"photo_filelist_train.txt:1: .*'airplane'.*folder 'ant'"):
        open_dataset("sake", root, split="zs")


def test_sake_duplicated_row_is_dropped_with_a_counted_warning(tmp_path: Path) -> None:
    root = _sake(tmp_path / "ds")
    lst = root / "zs" / "sketch_filelist_train.txt"
    lst.write_text(lst.read_text() + "sketch/ant/ant1-1.png 0\n")
    with pytest.warns(DataWarning, match=r"sketch_filelist_train.txt: 1 duplicated row.*line 3 repeats line 1"):
        idx = open_dataset("sake", root, split="zs")
    assert [r.path.name for r in idx.sketches].count("ant1-1.png") == 1
    assert any("duplicated" in n for n in idx.notes)


def test_sake_same_sketch_under_two_classes(tmp_path: Path) -> None:
    root = _sake(tmp_path / "ds", classes_seen=("cat", "ant"))
    lst = root / "zs" / "sketch_filelist_train.txt"
    lst.write_text(lst.read_text() + "sketch/cat/cat1-1.png 1\n")  # cat's file again, as 'ant'
    with pytest.raises(DataError, match=r"sketch_filelist_train.txt:3: .*cat1-1.png listed as 'ant' here and as 'cat' at line 1"):
        open_dataset("sake", root, split="zs")
    # the same file in the seen (train) and unseen (zero) list
    root2 = _sake(tmp_path / "ds2", classes_seen=("cat", "ant"))
    z = root2 / "zs" / "sketch_filelist_zero.txt"
    z.write_text(z.read_text() + "sketch/cat/cat1-1.png 0\n")
    with pytest.raises(DataError, match=r"cat1-1.png.*listed in both"):
        open_dataset("sake", root2, split="zs")


def test_cname_cid_duplicated_id_or_name(tmp_path: Path) -> None:
    root = _sake(tmp_path / "ds")
    (root / "zs" / "cname_cid.txt").write_text("ant 0\nairplane 0\n")
    with pytest.raises(DataError, match=r"cname_cid.txt:2: class id 0 .*also.*line 1"):
        open_dataset("sake", root, split="zs")
    (root / "zs" / "cname_cid.txt").write_text("ant 0\nant 1\n")
    with pytest.raises(DataError, match=r"cname_cid.txt:2: class 'ant' listed twice"):
        open_dataset("sake", root, split="zs")


def test_manifest_duplicated_row_is_dropped_with_a_counted_warning(tmp_path: Path) -> None:
    f = _manifest(tmp_path, ["s/cat-1.png,p/cat.jpg,cat", "s/dog-1.png,p/dog.jpg,dog", "s/cat-1.png,p/cat.jpg,cat"])
    with pytest.warns(DataWarning, match=r"pairs.csv: 1 duplicated row.*line 4 repeats line 2"):
        idx = open_dataset("manifest", f)
    assert len(idx.sketches) == 2


def test_manifest_empty_class(tmp_path: Path) -> None:
    f = _manifest(tmp_path, ["s/cat-1.png,p/cat.jpg,cat", "s/dog-1.png,p/dog.jpg,"])
    with pytest.raises(DataError, match=r"pairs.csv:3: empty 'class'"):
        open_dataset("manifest", f)


def test_manifest_same_sketch_under_two_classes(tmp_path: Path) -> None:
    f = _manifest(tmp_path, ["s/cat-1.png,p/cat.jpg,cat", "s/cat-1.png,,dog", "s/dog-1.png,p/dog.jpg,dog"])
    with pytest.raises(DataError, match=r"pairs.csv:3: sketch s/cat-1.png .*'dog'.* here and .*'cat'.* at line 2"):
        open_dataset("manifest", f)


def test_dark_16bit_png_is_scaled_by_65535_not_its_own_max(tmp_path: Path) -> None:
    arr = np.full((32, 32), 4096, dtype=np.uint16)  # a dark 16-bit photo: 4096 / 65535 = 6 %
    p = tmp_path / "dark16.png"
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    x = ImageLoader(16).load(Record(p, "photo", "a", "", "train"))
    assert x.max().item() == pytest.approx(4096 / 65535, abs=2 / 255), "stretched to its own maximum"


# ----------------------------------------------------------------------------------------- late
def _corrupt_index(tmp_path: Path) -> SBIRIndex:
    """A zero-shot index whose test split holds one truncated photo."""
    recs_p, recs_s = [], []
    for i, c in enumerate(("a", "b", "c", "d")):
        split = "test" if c == "d" else "train"
        recs_p.append(Record(_photo(tmp_path / f"{c}.jpg"), "photo", c, c, split))
        recs_s.append(Record(_sketch(tmp_path / f"{c}-1.png"), "sketch", c, c, split))
    bad = tmp_path / "d.jpg"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated JPEG
    return SBIRIndex("faulty", recs_p, recs_s, unseen=["d"], root=tmp_path)


def test_preflight_decode_checks_train_and_test_before_training(tmp_path: Path) -> None:
    from xmodal_lib.data.preflight import preflight

    idx = _corrupt_index(tmp_path)
    with pytest.raises(DataError, match=r"preflight: 1 of 8 images .*cannot be decoded.*d\.jpg.*\(photo, test\)"):
        preflight(idx, progress=False)
    (tmp_path / "c-1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"2 of 8 images"):
        preflight(idx, progress=False)
    _sketch(tmp_path / "c-1.png", box=(0, 0, 0, 0))  # valid PNG, no ink: unusable as a sketch
    with pytest.raises(DataError, match=r"2 of 8 images .*c-1.png \(sketch, train\): blank sketch"):
        preflight(idx, progress=False)


def test_preflight_checks_each_file_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodal_lib.data import preflight as pf

    idx = _corrupt_index(tmp_path)
    _photo(tmp_path / "d.jpg")  # repaired
    calls: list[Path] = []
    real = pf.check_record
    monkeypatch.setattr(pf, "check_record", lambda r: calls.append(r.path) or real(r))
    assert pf.preflight(idx, progress=False) == 8 and len(calls) == 8
    assert pf.preflight([idx, idx.subset("test")], progress=False) == 8 and len(calls) == 8  # all cached
    _photo(tmp_path / "a.jpg", colour=(1, 2, 3))  # rewritten: checked again
    pf.preflight(idx, progress=False)
    assert calls[8:] == [tmp_path / "a.jpg"]


def test_preflight_runs_before_crossatnet_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodal_lib.methods.crossatnet import pipeline as cat

    def no_training(*a, **k):
        raise AssertionError("training started before the corrupt test image was found")

    monkeypatch.setattr(cat, "train", no_training)
    with pytest.raises(DataError, match=r"preflight: 1 of 8 images"):
        cat.run_variant(cat.CrossATNetRunConfig(), _corrupt_index(tmp_path), tmp_path / "run")


def test_preflight_runs_before_zse_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xmodal_lib.methods.zse import pipeline as zse

    def no_training(*a, **k):
        raise AssertionError("training started before the corrupt test image was found")

    monkeypatch.setattr(zse, "train_zse", no_training)
    with pytest.raises(DataError, match=r"preflight: 1 of 8 images"):
        zse.train_zero_shot(zse.ZSEPipelineConfig(), tmp_path / "run", index=_corrupt_index(tmp_path))


def test_preflight_runs_in_xmodalvit_load_data(tmp_path: Path) -> None:
    from xmodal_lib.methods.xmodalvit import pipeline as xv

    root = tmp_path / "qv2"
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            _photo(root / f"{split}B" / f"p{split}{i}.png")
            _sketch(root / f"{split}A" / f"p{split}{i}_1.png")
    (root / "testA" / "ptest1_1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cfg = xv.XModalViTConfig(dataset="qmul_v2", data_root=str(root))
    with pytest.raises(DataError, match=r"preflight: 1 of 10 images .*ptest1_1.png \(sketch, test\)"):
        xv.load_data(cfg, progress=False)


# -------------------------------------------------------------------------------------- unclear
def test_non_utf8_byte_names_file_and_line(tmp_path: Path) -> None:
    f = _manifest(tmp_path / "m", ["s/cat-1.png,p/cat.jpg,cat", "s/dog-1.png,p/dog.jpg,dog"])
    f.write_bytes(f.read_bytes().replace(b"dog,", b"d\xe9g,", 1).replace(b"p/dog.jpg,dog", b"p/dog.jpg,d\xe9g"))
    with pytest.raises(DataError, match=r"pairs.csv:3: not UTF-8 text \(byte 0xe9"):
        open_dataset("manifest", f)
    root = _sake(tmp_path / "ds")
    lst = root / "zs" / "photo_filelist_train.txt"
    lst.write_bytes(lst.read_bytes() + b"photo/ant/\xffnt.jpg 0\n")
    with pytest.raises(DataError, match=r"photo_filelist_train.txt:3: not UTF-8 text \(byte 0xff"):
        open_dataset("sake", root, split="zs")
    (root / "zs" / "cname_cid.txt").write_bytes(b"ant 0\nair\xa0plane 1\n")
    with pytest.raises(DataError, match=r"cname_cid.txt:2: not UTF-8"):
        open_dataset("sake", root, split="zs")


def test_csv_and_lists_with_byte_order_mark(tmp_path: Path) -> None:
    f = _manifest(tmp_path / "m", ["s/cat-1.png,p/cat.jpg,cat", "s/dog-1.png,p/dog.jpg,dog"])
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())  # as Excel writes "CSV UTF-8"
    assert open_dataset("manifest", f).counts()["sketches"] == 2
    root = _sake(tmp_path / "ds")
    for name in ("cname_cid.txt", "photo_filelist_train.txt"):
        p = root / "zs" / name
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    idx = open_dataset("sake", root, split="zs")
    assert idx.seen == ["airplane", "ant"] and len(idx.photos) == 3


# --------------------------------------------------------------------------------- real layouts
def _sketchy_flat(root: Path, classes=("cat", "dog")) -> Path:
    for c in classes:
        _photo(root / "photo" / c / f"{c}_1.jpg")
        _sketch(root / "sketch" / c / f"{c}_1-1.png")
    return root


def test_sketchy_without_tx_level_is_detected_and_noted(tmp_path: Path) -> None:
    root = _sketchy_flat(tmp_path / "sk")
    with pytest.warns(DataWarning, match=r"layout photo/<class>/ and sketch/<class>/ \(no tx_\* level\)"):
        idx = open_dataset("sketchy", str(root))  # what notebook 00/03/04 do with DATA_ROOT
    assert idx.counts()["classes"] == 2 and idx.sketches[0].instance == "cat_1"
    assert any("no tx_* level" in n for n in idx.notes)
    # the notebooks' path: DATA_ROOT -> CrossATNetRunConfig.data_root -> load_index
    from xmodal_lib.methods.crossatnet import pipeline as cat

    split = tmp_path / "split"
    split.mkdir()
    (split / "cname_cid.txt").write_text("cat 0\n")
    (split / "cname_cid_zero.txt").write_text("dog 0\n")
    with pytest.warns(DataWarning, match=r"no tx_\* level"):
        zs = cat.load_index(cat.CrossATNetRunConfig(dataset="sketchy", data_root=str(root), split=str(split)))
    assert zs.unseen == ["dog"] and zs.subset("test").counts()["photos"] == 1
    # an explicit tx that is not there names what was found
    with pytest.raises(DataError, match=r"no photo/tx_000000000001/.*found photo/<class>/ \(2 class folders"):
        open_dataset("sketchy", root, tx="tx_000000000001")


def test_sketchy_tx_level_missing_but_other_tx_present(tmp_path: Path) -> None:
    root = tmp_path / "sk"
    for c in ("cat", "dog"):
        _photo(root / "photo" / "tx_000000000010" / c / f"{c}_1.jpg")
        _sketch(root / "sketch" / "tx_000000000010" / c / f"{c}_1-1.png")
    with pytest.raises(DataError, match=r"found tx folders \['tx_000000000010'\] in .*photo; pass tx="):
        open_dataset("sketchy", root)
    assert open_dataset("sketchy", root, tx="tx_000000000010").counts()["photos"] == 2


def test_split_classes_not_on_disk_gives_count_and_split_file(tmp_path: Path) -> None:
    root = tmp_path / "sk"
    for c in ("cat", "dog"):
        _photo(root / "photo" / TX / c / f"{c}_1.jpg")
        _sketch(root / "sketch" / TX / c / f"{c}_1-1.png")
    with pytest.raises(DataError, match=r"123 of the 125 classes of split 'zeroshot1' \(.*Sketchy/zeroshot1/"
                                        r"cname_cid.txt.*\) not on disk.*2 class folders found"):
        open_dataset("sketchy", root, split="zeroshot1")
    split = tmp_path / "mysplit"
    split.mkdir()
    (split / "cname_cid.txt").write_text("cat 0\n")
    (split / "cname_cid_zero.txt").write_text("dog 0\nfox 1\n")
    with pytest.raises(DataError, match=r"1 of the 3 classes of split .*mysplit.*not on disk: \['fox'\]"):
        open_dataset("sketchy", root, split=str(split))


def test_non_square_photo_and_sketch_get_the_same_geometry(tmp_path: Path) -> None:
    """A 64 x 32 photo and its 64 x 32 sketch (ink along the whole border) end up in the same box."""
    ph = tmp_path / "p.png"
    im = Image.new("RGB", (64, 32), (255, 255, 255))
    im.paste((0, 0, 0), (0, 0, 64, 32))
    im.paste((255, 255, 255), (2, 2, 62, 30))
    im.save(ph)
    sk = tmp_path / "s.png"
    im.convert("L").save(sk)
    for crop in (False, True):
        loader = ImageLoader(32, sketch_crop=crop)
        xp = loader.load(Record(ph, "photo", "a", "p", "train"))[0] < 0.5  # dark pixels, (H, W)
        xs = loader.load(Record(sk, "sketch", "a", "p", "train"))[0] < 0.5
        rows_p, rows_s = xp.any(1).nonzero().flatten(), xs.any(1).nonzero().flatten()
        tol = 2 if crop else 0  # the ink crop keeps a 5 % margin around the sketch (1.6 px here)
        assert abs(rows_p.min() - rows_s.min()) <= tol and abs(rows_p.max() - rows_s.max()) <= tol, \
            f"sketch_crop={crop}: photo rows {rows_p.min()}..{rows_p.max()}, sketch rows {rows_s.min()}..{rows_s.max()}"
        assert rows_p.min() >= 6, "the photo was stretched to the square instead of padded"
    stretched = ImageLoader(32, fit="stretch").load(Record(ph, "photo", "a", "p", "train"))[0] < 0.5
    assert stretched.any(1).nonzero().min() == 0  # the old behaviour stays available


# ------------------------------------------------------------------------ embedded data cache
def test_synthetic_cache_tampered_is_regenerated_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All cached photos replaced by valid red squares: found on the next use, the cache is rewritten."""
    from xmodal_lib.data.synthetic import SyntheticConfig, default_root, open_synthetic

    monkeypatch.setenv("XMODAL_CACHE", str(tmp_path / "cache"))
    cfg = SyntheticConfig(n_photos_per_class=1, sketches_per_photo=1, image_size=32, fg_train=1, fg_test=1)
    idx = open_synthetic(cfg)
    assert default_root(cfg).is_relative_to(tmp_path)
    for r in idx.photos:
        Image.new("RGB", (32, 32), (255, 0, 0)).save(r.path, quality=90)
    with pytest.warns(DataWarning, match=rf"{len(idx.photos)} of \d+ files differ from its content manifest.*regenerated"):
        idx2 = open_synthetic(cfg)
    px = np.asarray(Image.open(idx2.photos[0].path).convert("RGB"), dtype=np.int32)
    assert not (np.abs(px - np.array([255, 0, 0])).max() < 30), "the red square is still there"
    # a folder given by the user (no config to regenerate from) is refused, not rewritten
    Image.new("RGB", (32, 32), (255, 0, 0)).save(idx2.photos[0].path, quality=90)
    with pytest.raises(DataError, match=r"1 of \d+ files differ from its content manifest"):
        open_synthetic(root=default_root(cfg))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored landscape with EXIF orientation 6 (rotate 90) is read upright."""
    from xmodal_lib.data import open_image

    p = tmp_path / "phone.jpg"
    im = Image.new("RGB", (64, 32), (255, 255, 255))
    im.paste((0, 0, 0), (0, 0, 16, 32))  # dark band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(p, exif=exif, quality=95)
    assert open_image(p).size == (32, 64)
    x = ImageLoader(32, fit="stretch").load(Record(p, "photo", "a", "", "train"))[0]  # (H, W)
    assert x[:8].mean() < 0.2 and x[-8:].mean() > 0.8  # orientation 6: the left band ends up on top
