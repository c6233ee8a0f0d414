"""The embedded synthetic benchmark: determinism, declared structure, cache, learnability."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmodal_lib.data import open_dataset
from xmodal_lib.data.synthetic import CLASSES, UNSEEN, SyntheticConfig, draw_instance, generate, is_complete


def _digest(root: Path, images_only: bool = False) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "done.json"
            and (not images_only or p.suffix in (".png", ".jpg"))}


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path, tiny_root: Path) -> None:
    cfg = SyntheticConfig(seed=0, n_photos_per_class=1, sketches_per_photo=2, image_size=48,
                          classes=("cup", "house", "shoe", "chair"), unseen=("cup",), fg_train=2, fg_test=1)
    a = _digest(generate(cfg, root=tmp_path / "a"))
    b = _digest(generate(cfg, root=tmp_path / "b"))
    assert a == b and len(a) > 10
    c = _digest(generate(SyntheticConfig(**{**cfg.to_dict(), "seed": 1}), root=tmp_path / "c"), True)
    a = _digest(tmp_path / "a", True)
    assert c.keys() == a.keys() and len(a) == 4 * 3 + 2 * 3 * 3
    assert all(a[k] != c[k] for k in a)  # every image changes with the seed (split lists do not)


def test_draw_instance_is_pure(tiny_cfg: SyntheticConfig) -> None:
    cfg = tiny_cfg
    p1, s1 = draw_instance(cfg, "bicycle", 3)
    p2, s2 = draw_instance(cfg, "bicycle", 3)
    assert np.array_equal(np.asarray(p1), np.asarray(p2))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(s1, s2))
    # the two sketches of one photo differ (own jitter/deformation), photo and sketch differ in mode
    assert not np.array_equal(np.asarray(s1[0]), np.asarray(s1[1]))
    assert p1.mode == "RGB" and s1[0].mode == "L" and p1.size == (64, 64)


def test_declared_category_structure(tiny_root: Path, tiny_cfg: SyntheticConfig) -> None:
    idx = open_dataset("synthetic", root=tiny_root)
    assert len(CLASSES) == 24 and idx.classes == sorted(CLASSES)
    assert sorted(idx.unseen) == sorted(UNSEEN) and len(idx.unseen) / len(idx.classes) == 0.25
    assert idx.counts()["photos"] == 24 * 3 and idx.counts()["sketches"] == 24 * 3 * 2
    per_photo = Counter(r.instance for r in idx.sketches)
    assert set(per_photo) == {r.instance for r in idx.photos} and min(per_photo.values()) >= 2
    for r in (*idx.photos, *idx.sketches):
        assert r.split == ("test" if r.label in UNSEEN else "train")
    test = idx.subset("test")
    assert {r.label for r in test.photos} == set(UNSEEN) and len(test.photos) == 6 * 3
    # the same files read through the Sketchy folder reader with the generated split lists
    sk = open_dataset("sketchy", tiny_root / "category", split=str(tiny_root / "category" / "zeroshot"))
    assert sk.counts() == idx.counts() and sorted(sk.unseen) == sorted(UNSEEN)


def test_declared_fine_grained_structure(tiny_root: Path) -> None:
    for cat in ("shoe", "chair"):
        fg = open_dataset("synthetic_fg", root=tiny_root, category=cat)
        tr, te = fg.subset("train"), fg.subset("test")
        assert (len(tr.photos), len(te.photos), len(tr.sketches), len(te.sketches)) == (10, 5, 20, 10)
        for part in (tr, te):
            ids = {r.instance for r in part.photos}
            assert all(r.instance in ids for r in part.sketches)
    with pytest.raises(Exception, match="not generated"):
        open_dataset("synthetic_fg", root=tiny_root, category="cup")


def test_cache_reused_and_keyed_by_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODAL_CACHE", str(tmp_path))
    cfg = SyntheticConfig(n_photos_per_class=1, image_size=32, classes=("cup", "star"), unseen=("star",),
                          fg_categories=("cup",), fg_train=1, fg_test=1)
    root = generate(cfg)
    assert root.parent == tmp_path / "synthetic" and is_complete(root, cfg)
    stamp = (root / "done.json").stat().st_mtime_ns
    assert generate(cfg) == root and (root / "done.json").stat().st_mtime_ns == stamp
    other = generate(SyntheticConfig(**{**cfg.to_dict(), "image_size": 40}))
    assert other != root and Image.open(next(other.rglob("*.jpg"))).size == (40, 40)
    (root / "done.json").unlink()  # incomplete cache -> regenerated
    assert generate(cfg) == root and json.loads((root / "done.json").read_text())["config"] == cfg.to_dict()
    assert not list(tmp_path.joinpath("synthetic").glob(".*tmp*"))


def test_generate_refuses_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(Exception, match="refusing to overwrite"):
        generate(SyntheticConfig(n_photos_per_class=1, classes=("cup",), unseen=(), fg_categories=()), root=tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown classes"):
        SyntheticConfig(classes=("cup", "dragon"))
    with pytest.raises(ValueError, match="unseen"):
        SyntheticConfig(classes=("cup", "star"), unseen=("tree",))
    assert SyntheticConfig.paper().n_photos_per_class > SyntheticConfig.smoke().n_photos_per_class


def _feat(path: Path) -> np.ndarray:
    im = Image.open(path).convert("L").resize((16, 16), Image.BOX)
    x = 255.0 - np.asarray(im, dtype=np.float64).ravel()
    return x / (np.linalg.norm(x) + 1e-9)


@pytest.mark.parametrize("category", ["shoe", "chair"])
def test_instances_are_recognisable_but_not_identical(tiny_root: Path, category: str) -> None:
    """Nearest other sketch (16 px ink map) is a sketch of the same photo well above chance."""
    fg = open_dataset("synthetic_fg", root=tiny_root, category=category)
    recs = fg.sketches  # 15 photos x 2 sketches
    f = np.stack([_feat(r.path) for r in recs])
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.argmax(1)
    acc = np.mean([recs[i].instance == recs[j].instance for i, j in enumerate(nn)])
    assert acc > 3 * (1 / (len(recs) - 1))  # chance is 1/29
    assert sim[np.isfinite(sim)].max() < 0.999  # two sketches are never pixel-identical


def test_sketches_carry_class_information(tiny_root: Path) -> None:
    idx = open_dataset("synthetic", root=tiny_root)
    f = np.stack([_feat(r.path) for r in idx.sketches])
    labels = np.array([r.label for r in idx.sketches])
    inst = np.array([r.instance for r in idx.sketches])
    sim = f @ f.T
    sim[inst[:, None] == inst[None, :]] = -np.inf  # exclude the sketch itself and its sibling
    acc = np.mean(labels[sim.argmax(1)] == labels)
    assert acc > 3 / 24


def test_fg_plain_product_photos_only_change_fine_grained_photos() -> None:
    base = SyntheticConfig(n_photos_per_class=1, image_size=32, classes=("shoe", "cup"), unseen=("cup",),
                           fg_categories=("shoe",), fg_train=2, fg_test=1)
    plain = SyntheticConfig(**{**base.to_dict(), "fg_plain": True})
    same = lambda a, b: np.array_equal(np.asarray(a), np.asarray(b))  # noqa: E731
    p0, s0 = draw_instance(base, "shoe", 0, stream=0)  # category-level part: untouched
    p1, s1 = draw_instance(plain, "shoe", 0, stream=0)
    assert same(p0, p1) and all(same(a, b) for a, b in zip(s0, s1))
    for stream in (1, 2):
        (sp, ss), (pp, ps) = draw_instance(base, "shoe", 0, stream), draw_instance(plain, "shoe", 0, stream)
        assert all(same(a, b) for a, b in zip(ss, ps))  # sketches do not depend on the photo style
        assert not same(sp, pp)
        border = lambda im: np.concatenate([np.asarray(im)[:2].reshape(-1, 3), np.asarray(im)[-2:].reshape(-1, 3)])  # noqa: E731
        assert border(pp).mean() > 200 and border(pp).std() < 15  # near-white, uniform background
