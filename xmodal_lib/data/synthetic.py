"""The embedded synthetic SBIR benchmark: deterministic, seeded, written in real layouts.

24 classes of drawable objects (:data:`CLASSES`), each a parametric shape family; 6 of them
(:data:`UNSEEN`, 25 %) form the zero-shot test split. Every photo is an instance with its own
shape parameters, pose and colours; each has ``sketches_per_photo`` sketches that keep the
instance's geometry but are drawn with jitter, dropped strokes and their own deformation.

Written under ``root`` (default ``paths.cache_dir()/synthetic/<config hash>/``)::

    category/                               Sketchy + SAKE layout (read by read_sake / read_sketchy)
      photo/tx_000000000000/<class>/<class>_<nnnn>.jpg
      sketch/tx_000000000000/<class>/<class>_<nnnn>-<k>.png
      zeroshot/cname_cid.txt                seen classes, ``name id``
      zeroshot/cname_cid_zero.txt           unseen classes
      zeroshot/{photo,sketch}_filelist_{train,zero}.txt   lines ``relative/path label``
    fg/<category>/                          QMUL Shoe-V2/Chair-V2 folder layout (read_qmul_v2)
      trainA/<photo>_<k>.png  trainB/<photo>.png  testA/...  testB/...
    done.json                               the config and the content manifest (size + hash of
                                            every file), written last (cache marker)

Generation happens in a temporary sibling folder that is renamed into place, so a crash
never leaves a half-written cache that looks complete. Every use checks the files against the
content manifest (hashes once per process, then sizes and mtimes only): a cache that differs is
regenerated with a counted :class:`~.index.DataWarning`, or refused when only ``root`` is given.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from xmodal_lib.data.cache_manifest import build_manifest, differing_files
from xmodal_lib.data.index import DataError, SBIRIndex, data_warning
from xmodal_lib.data.synthetic_render import render_photo, render_sketch, sample_pose
from xmodal_lib.data.synthetic_shapes import SHAPES
from xmodal_lib.infra.paths import cache_dir

#: Bump when the drawing code changes so old caches are not reused.
GENERATOR_VERSION = 3
#: All classes (sorted) and the fixed zero-shot split (6 of 24 = 25 % unseen).
CLASSES: tuple[str, ...] = tuple(sorted(SHAPES))
UNSEEN: tuple[str, ...] = ("chair", "clock", "kite", "mushroom", "sailboat", "umbrella")
TX = "tx_000000000000"
#: Sub-folders covered by the content manifest.
CONTENT: tuple[str, ...] = ("category", "fg")


@dataclass
class SyntheticConfig:
    """Parameters of the synthetic benchmark (these are notebook parameters).

    Attributes:
        seed: master seed; everything is a deterministic function of the config.
        n_photos_per_class: photos (instances) per class in the category-level part.
        sketches_per_photo: sketches drawn from each photo (>= 2).
        image_size: side of the written images in pixels.
        classes: class names used (subset of :data:`CLASSES`; empty = all).
        unseen: zero-shot test classes (must be among ``classes``).
        fg_categories: classes written as QMUL-style fine-grained folders.
        fg_train, fg_test: photos per fine-grained category and split.
        drop_prob: probability that a non-essential stroke is missing from a sketch.
        jitter, deform: strength of the sketch hand jitter and per-sketch deformation.
        fg_pose: pose variation of the fine-grained photos relative to the category-level ones
            (product-photo style: small, so the pose does not give the instance away).
        fg_plain: fine-grained photos as product shots (uniform near-white background, no clutter),
            like QMUL Shoe/Chair; False keeps the cluttered scene photos of the category-level part.
    """

    seed: int = 0
    n_photos_per_class: int = 12
    sketches_per_photo: int = 2
    image_size: int = 96
    classes: tuple[str, ...] = ()
    unseen: tuple[str, ...] = UNSEEN
    fg_categories: tuple[str, ...] = ("shoe", "chair")
    fg_train: int = 60
    fg_test: int = 30
    drop_prob: float = 0.15
    jitter: float = 1.0
    deform: float = 1.0
    fg_pose: float = 0.2
    fg_plain: bool = False

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes) or CLASSES
        self.unseen, self.fg_categories = tuple(self.unseen), tuple(self.fg_categories)
        bad = [c for c in (*self.classes, *self.fg_categories) if c not in SHAPES]
        if bad:
            raise ValueError(f"SyntheticConfig: unknown classes {bad}; known: {list(CLASSES)}")
        if not set(self.unseen) <= set(self.classes):
            raise ValueError(f"SyntheticConfig.unseen must be among classes, got {self.unseen}")
        if self.sketches_per_photo < 1 or self.n_photos_per_class < 1 or self.image_size < 16:
            raise ValueError("SyntheticConfig: need sketches_per_photo >= 1, n_photos_per_class >= 1, "
                             f"image_size >= 16; got {self.sketches_per_photo}, {self.n_photos_per_class}, "
                             f"{self.image_size}")
        if self.fg_train < 0 or self.fg_test < 0:
            raise ValueError("SyntheticConfig: fg_train and fg_test must be >= 0")

    @classmethod
    def smoke(cls, seed: int = 0) -> "SyntheticConfig":
        """CI size: 24 classes x 12 photos x 2 sketches + 2 x (60 + 30) fine-grained photos, 96 px."""
        return cls(seed=seed)

    @classmethod
    def paper(cls, seed: int = 0) -> "SyntheticConfig":
        """Larger benchmark for GPU runs: 100 photos per class, 3 sketches, 128 px, 300 + 100 FG."""
        return cls(seed=seed, n_photos_per_class=100, sketches_per_photo=3, image_size=128,
                   fg_train=300, fg_test=100)

    def to_dict(self) -> dict:
        """JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def key(self) -> str:
        """Hash of the config and generator version: the cache folder name."""
        blob = json.dumps({"v": GENERATOR_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _class_code(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little")


def draw_instance(cfg: SyntheticConfig, cls: str, index: int,
                  stream: int = 0) -> tuple[Image.Image, list[Image.Image]]:
    """``(photo, [sketches])`` PIL images of instance ``index`` of ``cls``; pure function of the args.

    ``stream`` separates the category-level part (0) from the fine-grained folders (1 = train, 2 = test).
    """
    inst = (cfg.seed, _class_code(cls), stream, index)
    parts = SHAPES[cls](_rng(*inst, 0))
    pose = sample_pose(_rng(*inst, 1), 1.0 if stream == 0 else cfg.fg_pose)
    photo = render_photo(parts, pose, cfg.image_size, _rng(*inst, 2), plain=cfg.fg_plain and stream != 0)
    sketches = [render_sketch(parts, pose, cfg.image_size, _rng(*inst, 3, k), cfg.drop_prob, cfg.jitter,
                              cfg.deform) for k in range(cfg.sketches_per_photo)]
    return photo, sketches


def _write_category(cfg: SyntheticConfig, out: Path) -> None:
    seen = [c for c in cfg.classes if c not in cfg.unseen]
    unseen = [c for c in cfg.classes if c in cfg.unseen]
    lists: dict[str, list[str]] = {f"{m}_filelist_{s}": [] for m in ("photo", "sketch") for s in ("train", "zero")}
    for cls in cfg.classes:
        zero = cls in cfg.unseen
        label = unseen.index(cls) if zero else seen.index(cls)
        s = "zero" if zero else "train"
        for m in ("photo", "sketch"):
            (out / m / TX / cls).mkdir(parents=True, exist_ok=True)
        for i in range(cfg.n_photos_per_class):
            photo, sketches = draw_instance(cfg, cls, i)
            pid = f"{cls}_{i:04d}"
            rel = f"photo/{TX}/{cls}/{pid}.jpg"
            photo.save(out / rel, quality=90)
            lists[f"photo_filelist_{s}"].append(f"{rel} {label}")
            for k, sk in enumerate(sketches, 1):
                rel = f"sketch/{TX}/{cls}/{pid}-{k}.png"
                sk.save(out / rel)
                lists[f"sketch_filelist_{s}"].append(f"{rel} {label}")
    zs = out / "zeroshot"
    zs.mkdir(parents=True, exist_ok=True)
    (zs / "cname_cid.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(seen)))
    (zs / "cname_cid_zero.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(unseen)))
    for name, lines in lists.items():
        (zs / f"{name}.txt").write_text("".join(line + "\n" for line in lines))


def _write_fg(cfg: SyntheticConfig, out: Path) -> None:
    for cls in cfg.fg_categories:
        for split, n, stream in (("train", cfg.fg_train, 1), ("test", cfg.fg_test, 2)):
            a, b = out / cls / f"{split}A", out / cls / f"{split}B"
            a.mkdir(parents=True, exist_ok=True)
            b.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                photo, sketches = draw_instance(cfg, cls, i, stream)
                pid = f"{cls}{split[:2]}{i:04d}"
                photo.save(b / f"{pid}.png")
                for k, sk in enumerate(sketches, 1):
                    sk.save(a / f"{pid}_{k}.png")


def default_root(cfg: SyntheticConfig) -> Path:
    """Cache folder of ``cfg``: ``paths.cache_dir()/synthetic/<cfg.key()>``."""
    return cache_dir() / "synthetic" / cfg.key()


def is_complete(root: Path, cfg: SyntheticConfig) -> bool:
    """True when ``root/done.json`` exists, records exactly ``cfg`` and carries a content manifest."""
    info = _done(root)
    return info is not None and info.get("config") == cfg.to_dict() and isinstance(info.get("files"), dict)


def _done(root: Path) -> dict | None:
    try:
        info = json.loads((root / "done.json").read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def tampered_files(root: Path) -> tuple[list[str], int]:
    """``(files that differ from the content manifest, number of files in it)``; all of ``root``'s
    files count as differing when it has no readable manifest."""
    info = _done(root) or {}
    files = info.get("files")
    if not isinstance(files, dict):
        return ["done.json (no content manifest)"], 0
    return differing_files(root, files, CONTENT), len(files)


def _tamper_message(root: Path, bad: list[str], n: int) -> str:
    eg = ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
    return f"synthetic benchmark {root}: {len(bad)} of {n} files differ from its content manifest ({eg})"


def generate(cfg: SyntheticConfig | None = None, root: str | Path | None = None, force: bool = False) -> Path:
    """Write the benchmark for ``cfg`` (default :meth:`SyntheticConfig.smoke`) and return its root.

    Reuses an existing complete folder unless ``force``; otherwise renders into a temporary
    sibling and renames it into place (the ``done.json`` marker is written last).
    """
    cfg = cfg or SyntheticConfig.smoke()
    owned = root is None  # the cache folder is ours to rewrite; a user folder only if generated
    root = Path(root) if root is not None else default_root(cfg)
    if not force and is_complete(root, cfg):
        bad, n = tampered_files(root)
        if not bad:
            return root
        data_warning(_tamper_message(root, bad, n) + "; regenerated")
        force = True
    if not owned and root.is_dir() and any(root.iterdir()) and not (root / "done.json").is_file():
        raise DataError(f"{root}: folder exists and is not a generated synthetic benchmark "
                        "(no done.json); refusing to overwrite it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    _write_category(cfg, tmp / "category")
    _write_fg(cfg, tmp / "fg")
    info = {"config": cfg.to_dict(), "generator_version": GENERATOR_VERSION,
            "seconds": round(time.perf_counter() - t0, 3), "files": build_manifest(tmp, CONTENT)}
    (tmp / "done.json").write_text(json.dumps(info, indent=1))
    if root.exists():
        if not force and is_complete(root, cfg):  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        shutil.rmtree(root)
    try:
        os.replace(tmp, root)
    except OSError as e:
        if is_complete(root, cfg):
            shutil.rmtree(tmp, ignore_errors=True)
            return root
        raise DataError(f"{root}: could not move the generated benchmark into place: {e}") from None
    return root


def _config_of(root: Path) -> SyntheticConfig | None:
    try:
        d = json.loads((root / "done.json").read_text())["config"]
        return SyntheticConfig(**d)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_generated(root: Path) -> None:
    """DataError unless ``root`` is a generated benchmark whose files match its content manifest."""
    if not (root / "done.json").is_file():
        raise DataError(f"{root}: not a generated synthetic benchmark (done.json missing)")
    bad, n = tampered_files(root)
    if bad:
        raise DataError(_tamper_message(root, bad, n) + "; regenerate it with "
                        "generate(config, root, force=True)")


def open_synthetic(cfg: SyntheticConfig | None = None, root: str | Path | None = None) -> SBIRIndex:
    """Category-level zero-shot index: unseen classes are split 'test'.

    With ``cfg`` the benchmark is generated (or reused) at ``root`` (default: the cache); with
    only ``root`` an existing generated folder is read.
    """
    from xmodal_lib.data.sake import read_sake  # lazy: import cycle (xmodal_lib.data.sake imports xmodal_lib.data.synthetic)
    if root is None or cfg is not None:
        root = generate(cfg, root)
    root = Path(root)
    check_generated(root)
    idx = read_sake(root / "category", split_dir=root / "category" / "zeroshot")
    idx.name = "synthetic"
    return idx


def open_synthetic_fg(cfg: SyntheticConfig | None = None, root: str | Path | None = None,
                      category: str | None = None) -> SBIRIndex:
    """Instance-level index of one fine-grained category (QMUL-V2 folder layout)."""
    from xmodal_lib.data.qmul import read_qmul_v2  # lazy: import cycle (xmodal_lib.data.qmul imports xmodal_lib.data.synthetic)
    if root is None or cfg is not None:
        cfg = cfg or SyntheticConfig.smoke()
        root = generate(cfg, root)
    root = Path(root)
    check_generated(root)
    cfg = cfg or _config_of(root)
    cats = cfg.fg_categories if cfg is not None else tuple(sorted(p.name for p in (root / "fg").iterdir()))
    category = category or cats[0]
    if category not in cats:
        raise DataError(f"{root}: fine-grained category {category!r} not generated; available: {list(cats)}")
    idx = read_qmul_v2(root / "fg" / category, label=category)
    idx.name = f"synthetic_fg/{category}"
    return idx
