"""Tiny datasets in the exact folder layouts of the real releases, drawn by the synthetic generator.

CI has no real data, so the paper profile is exercised on these: same folder names, file-name
patterns, list names and class lists as the releases (methods_spec.md §1.7, §3.8), a handful of
small images per class. Every image is a pure function of ``(seed, class, index)``
(:func:`xmodal_lib.data.synthetic.draw_instance`); a real class name is drawn as one of the
generator's shape families (chosen from its name), so classes that share a family differ only by
instance — these fixtures test layouts and protocols, not accuracy.

=====================  ==============================================================================
writer                 layout (``<root>/<Name>/...``)
=====================  ==============================================================================
:func:`write_qmul_v2`  ``ShoeV2|ChairV2/{train,test}B/<id>.png`` photos, ``{train,test}A/<id>_<k>.png``
:func:`write_qmul_v2_pickle`  ``ShoeV2/ShoeV2_Coordinate`` stroke pickle ``{"/train/<id>_<k>": (n, 3)}``
                       + ``ShoeV2/photo/<id>.png``
:func:`write_sake`     Sketchy-Extended (``256x256/photo/tx_000000000000_ready``, ``EXTEND_image_sketchy_ready``,
                       ``256x256/sketch/tx_000000000000_ready``; lists ``zeroshot1``/``zeroshot0``),
                       TU-Berlin-Extended (``png_ready``, ``ImageResized_ready``; ``zeroshot``),
                       QuickDraw-Extended (``sketches``, ``images``; ``zeroshot``, lists ``sketch_zero.txt``)
:func:`write_sketchy`  original Sketchy ``256x256/{photo,sketch}/tx_000000000000/<class>/``
=====================  ==============================================================================

SAKE lists carry the packaged class lists (``xmodal_lib/resources/splits``) and ids. Where a
release ships no training list (ZSE-SBIR has none for QuickDraw, and no TU-Berlin photo list),
one is written under the same naming pattern so the fixture can also be trained on.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from xmodal_lib.data.splits import packaged_split
from xmodal_lib.data.synthetic import SHAPES, SyntheticConfig, draw_instance
from xmodal_lib.data.synthetic_render import _resample, apply, sample_pose

__all__ = ["write_qmul_v2", "write_qmul_v2_pickle", "write_sake", "write_sketchy", "SAKE_DATASETS",
           "write_all"]

_FAMILIES = tuple(sorted(SHAPES))
#: dataset -> (packaged split, list folder names)
SAKE_DATASETS = {"Sketchy": ("Sketchy/zeroshot1", "Sketchy/zeroshot0"), "TUBerlin": ("TUBerlin/zeroshot",),
                 "QuickDraw": ("QuickDraw/zeroshot",)}


def _code(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little")


def _family(cls: str) -> str:
    return cls if cls in SHAPES else _FAMILIES[_code(cls) % len(_FAMILIES)]


def _ink(sketch):
    """Black strokes on white like the releases' sketches (the generator's are grey, anti-aliased;
    ZSE-SBIR's crop needs R+G+B <= 300 somewhere)."""
    return sketch.point(lambda v: 0 if v < 200 else 255)


def _draw(cfg: SyntheticConfig, cls: str, i: int, stream: int = 0):
    """(photo, sketches) of instance i of a (possibly real) class name; sketches in black ink."""
    photo, sketches = draw_instance(cfg, _family(cls), (_code(cls) % 10_000) * 1000 + i, stream)
    return photo, [_ink(s) for s in sketches]


def _cfg(size: int, sketches: int, seed: int, fg: bool = False) -> SyntheticConfig:
    return SyntheticConfig(seed=seed, image_size=size, sketches_per_photo=max(1, sketches), fg_plain=fg)


# ---------------------------------------------------------------------------------------------- QMUL
def _qmul_ids(name: str, split: str, n: int) -> list[str]:
    base = 2429245009 if "Shoe" in name else 1000
    off = 0 if split == "train" else 500_000
    return [str(base + off + 7 * i) for i in range(n)]  # Shoe ids are ints in the official code


def write_qmul_v2(root: str | Path, name: str = "ShoeV2", n_train: int = 4, n_test: int = 3,
                  sketches_per_photo: int = 2, size: int = 64, seed: int = 0) -> Path:
    """``<root>/<name>/`` in the pix2pix folder layout of the XModalViT code; returns that folder."""
    out = Path(root) / name
    cls = "shoe" if "Shoe" in name else "chair"
    cfg = _cfg(size, sketches_per_photo, seed, fg=True)
    for split, n, stream in (("train", n_train, 1), ("test", n_test, 2)):
        (out / f"{split}A").mkdir(parents=True, exist_ok=True)
        (out / f"{split}B").mkdir(parents=True, exist_ok=True)
        for i, pid in enumerate(_qmul_ids(name, split, n)):
            photo, sketches = draw_instance(cfg, cls, i, stream)
            photo.save(out / f"{split}B" / f"{pid}.png")
            for k, sk in enumerate(sketches, 1):
                _ink(sk).save(out / f"{split}A" / f"{pid}_{k}.png")
    return out


def _strokes(cls: str, index: int, stream: int, k: int, seed: int, frame: float = 256.0) -> np.ndarray:
    """``(n, 3)`` float array x, y (pixels of a ``frame`` canvas), pen-end: the generator's parts."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _code(cls), stream, index, k]))
    parts = SHAPES[cls](rng)
    pose = sample_pose(rng, 0.2)
    rows = []
    for part in parts:
        if not part.essential and rng.random() < 0.15:
            continue
        q = apply(pose, _resample(part.pts, part.closed, 0.05) + rng.normal(0, 0.004, (1, 2)))
        xy = (q + 1.0) * 0.5 * frame  # unit square [-1, 1] -> pixels
        pen = np.zeros((len(xy), 1))
        pen[-1, 0] = 1.0
        rows.append(np.concatenate([xy, pen], 1))
    return np.concatenate(rows).astype(np.float64)


def write_qmul_v2_pickle(root: str | Path, name: str = "ShoeV2", n_train: int = 4, n_test: int = 3,
                         sketches_per_photo: int = 2, size: int = 64, seed: int = 0) -> Path:
    """``<root>/<name>/<name>_Coordinate`` (stroke pickle, Bhunia et al. layout) + ``photo/``."""
    out = Path(root) / name
    (out / "photo").mkdir(parents=True, exist_ok=True)
    cls = "shoe" if "Shoe" in name else "chair"
    cfg = _cfg(size, 1, seed, fg=True)
    data: dict[str, np.ndarray] = {}
    for split, n, stream in (("train", n_train, 1), ("test", n_test, 2)):
        for i, pid in enumerate(_qmul_ids(name, split, n)):
            draw_instance(cfg, cls, i, stream)[0].save(out / "photo" / f"{pid}.png")
            for k in range(1, sketches_per_photo + 1):
                data[f"/{split}/{pid}_{k}"] = _strokes(cls, i, stream, k, seed)
    with open(out / f"{name}_Coordinate", "wb") as f:
        pickle.dump(data, f, protocol=4)  # plain dict of float arrays: our restricted unpickler reads it
    return out


# ---------------------------------------------------------------------------------------------- SAKE
def _classes(split: str) -> tuple[list[str], list[str]]:
    seen, unseen = packaged_split(split)
    return list(seen), list(unseen)


def _write_lists(folder: Path, seen: list[str], unseen: list[str], lists: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cname_cid.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(seen)))
    (folder / "cname_cid_zero.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(unseen)))
    for fname, rows in lists.items():
        (folder / fname).write_text("".join(r + "\n" for r in rows))


def _sketchy_ext(out: Path, cfg: SyntheticConfig, photos_per_class: int) -> dict[str, list[tuple[str, str]]]:
    """Write Sketchy-Extended images; returns class -> [(rel path, modality)]."""
    files: dict[str, list[tuple[str, str]]] = {}
    all_cls = sorted({c for s in SAKE_DATASETS["Sketchy"] for part in _classes(s) for c in part})
    for cls in all_cls:
        rows = files.setdefault(cls, [])
        for i in range(photos_per_class):
            photo, sketches = _draw(cfg, cls, i)
            if i == 0 or photos_per_class == 1:  # an original photo with its sketches
                pid = f"n{_code(cls) % 10**8:08d}_{i + 1}"
                rel = f"256x256/photo/tx_000000000000_ready/{cls}/{pid}.jpg"
                for k, sk in enumerate(sketches, 1):
                    srel = f"256x256/sketch/tx_000000000000_ready/{cls}/{pid}-{k}.png"
                    (out / srel).parent.mkdir(parents=True, exist_ok=True)
                    sk.save(out / srel)
                    rows.append((srel, "sketch"))
            else:  # extension photos (no sketches)
                rel = f"EXTEND_image_sketchy_ready/{cls}/ext_{i}.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            photo.save(out / rel, quality=90)
            rows.append((rel, "photo"))
    return files


def _flat_dataset(out: Path, dataset: str, cfg: SyntheticConfig, photos_per_class: int,
                  sketches_per_class: int) -> dict[str, list[tuple[str, str]]]:
    """TU-Berlin / QuickDraw: sketches are not drawn from the photos (category-level only)."""
    sk_dir, ph_dir, ext = (("png_ready", "ImageResized_ready", "JPEG") if dataset == "TUBerlin"
                           else ("sketches", "images", "jpg"))
    seen, unseen = _classes(SAKE_DATASETS[dataset][0])
    files: dict[str, list[tuple[str, str]]] = {}
    for cls in seen + unseen:
        rows = files.setdefault(cls, [])
        (out / sk_dir / cls).mkdir(parents=True, exist_ok=True)
        (out / ph_dir / cls).mkdir(parents=True, exist_ok=True)
        for i in range(max(photos_per_class, sketches_per_class)):
            photo, sketches = _draw(cfg, cls, i)
            if i < photos_per_class:
                name = f"{cls}_{i + 1}.{ext}" if dataset == "TUBerlin" else f"image_{i + 1:05d}.{ext}"
                photo.convert("RGB").save(out / ph_dir / cls / name, format="JPEG", quality=90)
                rows.append((f"{ph_dir}/{cls}/{name}", "photo"))
            if i < sketches_per_class:
                name = f"{_code(cls) % 9000 + i}.png" if dataset == "TUBerlin" else f"{5 * 10**15 + _code(cls) * 97 + i}.png"
                sketches[0].save(out / sk_dir / cls / name)
                rows.append((f"{sk_dir}/{cls}/{name}", "sketch"))
    return files


_LIST_NAMES = {  # dataset -> (photo list, sketch list) with {part} = train | zero, as released
    "Sketchy": ("all_photo_filelist_{part}.txt", "sketch_tx_000000000000_ready_filelist_{part}.txt"),
    "TUBerlin": ("ImageResized_ready_filelist_{part}.txt", "png_ready_filelist_{part}.txt"),
    "QuickDraw": ("all_photo_{part}.txt", "sketch_{part}.txt"),
}


def write_sake(root: str | Path, dataset: str = "Sketchy", photos_per_class: int = 2,
               sketches_per_class: int = 2, size: int = 64, seed: int = 0) -> Path:
    """``<root>/<dataset>/`` (Sketchy | TUBerlin | QuickDraw) with the images and every released
    zero-shot list folder of that dataset (Sketchy: ``zeroshot1`` and ``zeroshot0``); returns it.
    Sketchy writes one original photo per class (with ``sketches_per_class`` sketches drawn from
    it) plus ``photos_per_class - 1`` extension photos."""
    if dataset not in SAKE_DATASETS:
        raise ValueError(f"write_sake(dataset=...): expected one of {list(SAKE_DATASETS)}, got {dataset!r}")
    out = Path(root) / dataset
    cfg = _cfg(size, sketches_per_class if dataset == "Sketchy" else 1, seed)
    files = (_sketchy_ext(out, cfg, photos_per_class) if dataset == "Sketchy"
             else _flat_dataset(out, dataset, cfg, photos_per_class, sketches_per_class))
    ph_name, sk_name = _LIST_NAMES[dataset]
    for split in SAKE_DATASETS[dataset]:
        seen, unseen = _classes(split)
        lists: dict[str, list[str]] = {}
        for part, classes in (("train", seen), ("zero", unseen)):
            for mod, pattern in (("photo", ph_name), ("sketch", sk_name)):
                lists[pattern.format(part=part)] = [f"{rel} {cid}" for cid, c in enumerate(classes)
                                                    for rel, m in files[c] if m == mod]
        _write_lists(out / split.split("/")[1], seen, unseen, lists)
    return out


# ------------------------------------------------------------------------------------ Sketchy original
def write_sketchy(root: str | Path, photos_per_class: int = 1, sketches_per_photo: int = 2, size: int = 64,
                  seed: int = 0) -> Path:
    """Original Sketchy ``<root>/Sketchy/256x256/{photo,sketch}/tx_000000000000/<class>/`` with all
    125 classes (sketch ``<photo id>-<k>.png`` drawn from photo ``<photo id>.jpg``); returns
    ``<root>/Sketchy`` (the reader takes it, or its ``256x256`` folder)."""
    out = Path(root) / "Sketchy"
    cfg = _cfg(size, sketches_per_photo, seed)
    all_cls = sorted({c for s in SAKE_DATASETS["Sketchy"] for part in _classes(s) for c in part})
    for cls in all_cls:
        ph = out / "256x256" / "photo" / "tx_000000000000" / cls
        sk = out / "256x256" / "sketch" / "tx_000000000000" / cls
        ph.mkdir(parents=True, exist_ok=True)
        sk.mkdir(parents=True, exist_ok=True)
        for i in range(photos_per_class):
            photo, sketches = _draw(cfg, cls, i)
            pid = f"n{_code(cls) % 10**8:08d}_{i + 1}"
            photo.save(ph / f"{pid}.jpg", quality=90)
            for k, s in enumerate(sketches, 1):
                s.save(sk / f"{pid}-{k}.png")
    return out


def write_all(root: str | Path, size: int = 48, seed: int = 0) -> dict[str, Path]:
    """Every layout under ``root``: keys shoev2, chairv2, shoev2_pickle, sketchy_ext, tuberlin_ext,
    quickdraw_ext, sketchy (the paths the readers take)."""
    root = Path(root)
    return {
        "shoev2": write_qmul_v2(root / "qmul", "ShoeV2", size=size, seed=seed),
        "chairv2": write_qmul_v2(root / "qmul", "ChairV2", size=size, seed=seed),
        "shoev2_pickle": write_qmul_v2_pickle(root / "qmul_pickle", "ShoeV2", size=size, seed=seed),
        "sketchy_ext": write_sake(root / "sake", "Sketchy", size=size, seed=seed),
        "tuberlin_ext": write_sake(root / "sake", "TUBerlin", size=size, seed=seed),
        "quickdraw_ext": write_sake(root / "sake", "QuickDraw", size=size, seed=seed),
        "sketchy": write_sketchy(root / "orig", size=size, seed=seed),
    }
