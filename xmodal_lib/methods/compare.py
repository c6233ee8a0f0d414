"""All methods side by side on ONE zero-shot split (notebooks 05 and 06).

For each method a :class:`MethodRun` holds the model, the test images in that method's own
preprocessing and the query x gallery score matrix over the SAME records (unseen-class sketches
against unseen-class photos), so one metric engine call per method gives comparable numbers.

Models come from ``artifacts_dir()`` when an earlier notebook saved them for the same dataset
(``zse_zero_shot``, ``crossatnet_zero_shot``: :mod:`xmodal_lib.run.artifacts` files); otherwise it is trained here
with the method's own pipeline functions, on the seen classes only, with the values of its
notebook (02/03/04) under ``profile`` (``params.preset``: the profile YAML) and this run's steps.
XModalViT is a fine-grained method: its zero-shot run here trains the fusion teacher and the
students on instance pairs (sketch i drawn from photo i) of the SEEN classes, and is tested
category-level on the unseen classes (our adaptation; the paper reports only fine-grained numbers).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from xmodal_lib.data.index import DataError, SBIRIndex
from xmodal_lib.data.transforms import ImageLoader
from xmodal_lib.infra.checkpoint import load_weights
from xmodal_lib.infra.paths import artifacts_dir, shared_data_dir
from xmodal_lib.layers.hybrid import PATCH_EMBEDS
from xmodal_lib.methods import reported
from xmodal_lib.methods.crossatnet import pipeline as C
from xmodal_lib.methods.xmodalvit import pipeline as X
from xmodal_lib.methods.xmodalvit.config import PAPER_DATASETS
from xmodal_lib.methods.xmodalvit.data import standardize_images
from xmodal_lib.methods.zse import pipeline as Z
from xmodal_lib.methods.zse.evaluate import build_cache, scores_ret, scores_rn
from xmodal_lib.methods.zse.model import ZSESBIR
from xmodal_lib.retrieval.codes import hamming_distance, pack_bits
from xmodal_lib.retrieval.ties import fair_category_metrics
from xmodal_lib.viz.explain import denormalize
from xmodal_lib.viz.explorer import ExplorerGallery

#: every metric convention of the engine shown in notebook 05 (see xmodal_lib.retrieval.metrics)
ALL_METRICS = ("map_all_voc", "map_all", "map@200_voc", "map@200_strict", "map@200_lenient",
               "p@100", "p@100_minr", "p@200", "p@200_minr")


@dataclass
class CompareConfig:
    """Parameters of notebook 05/06 (flat fields = notebook parameters)."""

    profile: str = "smoke"           # folder of notebooks/params/: the 02/03/04 presets of the models trained here
    dataset: str = "synthetic"       # open_dataset kind: "synthetic" | "sketchy" | "sake"
    data_root: str | None = None
    split: str | None = None         # "zeroshot1" (25 unseen), "zeroshot0" (21) ...
    setting: str | None = None       # key of xmodal_lib.methods.reported.SETTINGS when the split is a paper's
    methods: tuple[str, ...] = ("zse", "crossatnet", "xmodalvit")
    seed: int = 0
    device: str = "cpu"
    use_artifacts: bool = True
    zse_steps: int = 60
    zse_rn: bool = True              # exhaustive RN scores too (every sketch x photo pair)
    crossatnet_steps: int = 60
    xmodal_teacher_steps: int = 40
    xmodal_student_steps: int = 40
    xmodal_patch_embed: str | None = None  # XModalViT tokens: None = notebook 02's | "pixels" | "hybrid_lite0" ...
    xmodal_image_size: int | None = None   # XModalViT input size: None = notebook 02's (hybrid: a multiple of 16)
    xmodal_lr: float | None = None         # XModalViT teacher and student learning rate: None = notebook 02's
    max_test_sketches: int | None = None  # subsample queries (every n-th) to bound CPU time
    scale_file: str | None = None  # YAML with notebook sections (01/02, 03, 04): their fields applied to models trained here

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        from xmodal_lib.run.params import profiles  # lazy: upward import (methods -> run)

        if profiles() and self.profile not in profiles():
            raise ValueError(f"CompareConfig.profile: expected one of {profiles()}, got {self.profile!r}")
        if self.setting is not None and self.setting not in reported.SETTINGS:
            raise ValueError(f"SETTING: expected None or one of {sorted(reported.SETTINGS)}, got {self.setting!r}")
        bad = [m for m in self.methods if m not in ("zse", "crossatnet", "xmodalvit")]
        if bad:
            raise ValueError(f"CompareConfig.methods: unknown {bad}; expected zse, crossatnet, xmodalvit")
        for n in ("zse_steps", "crossatnet_steps", "xmodal_teacher_steps", "xmodal_student_steps"):
            if int(getattr(self, n)) < 1:
                raise ValueError(f"CompareConfig.{n}: expected >= 1, got {getattr(self, n)}")

        if self.xmodal_patch_embed is not None and self.xmodal_patch_embed not in PATCH_EMBEDS:
            raise ValueError(f"XMODAL_PATCH_EMBED: expected None or one of {PATCH_EMBEDS}, got {self.xmodal_patch_embed!r}")
        if self.xmodal_lr is not None and not self.xmodal_lr > 0:
            raise ValueError(f"XMODAL_LR: expected None or a positive number, got {self.xmodal_lr}")
        hybrid = (self.xmodal_patch_embed or "pixels") != "pixels"
        if self.xmodal_image_size is not None and (self.xmodal_image_size < 1 or hybrid and self.xmodal_image_size % 16):
            raise ValueError(f"XMODAL_IMAGE_SIZE: expected None or a positive integer (a multiple of 16 with hybrid "
                             f"tokens, the CNN's stride), got {self.xmodal_image_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = list(self.methods)
        return d


@dataclass
class MethodRun:
    """One method on the shared test split."""

    name: str                     # result key, e.g. "zse_ret"
    method: str                   # "zse" | "crossatnet" | "xmodalvit" (explainer family)
    model: Any                    # has encode_sketch / encode_photo
    explain_model: Any            # model the explanation figures use (XModalViT: the teacher)
    sketches: Tensor              # (Q, 3, H, W) test queries in this method's preprocessing
    photos: Tensor                # (G, 3, H, W) test gallery
    scores: Tensor                # (Q, G), larger = more similar
    source: str                   # where the model came from
    largest: bool = True
    sketch_loader: Any = None     # this method's ImageLoader for sketches (drawings use it too)
    norm: str | None = None       # the loaders' normalisation ("none" | "half" | "imagenet")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def score_name(self) -> str:
        """What ``scores`` holds, in words (figure legends, e.g. the retrieval strips)."""
        if self.name.startswith("crossatnet_hash"):
            return f"-Hamming distance ({self.name.removeprefix('crossatnet_hash')} bits)"
        return {"zse_ret": "cosine of the [Ret] tokens", "zse_rn": "relation-network score",
                "crossatnet": "cosine similarity", "xmodalvit": "dot product of student embeddings"}.get(
                    self.name, "similarity score")

    def show(self, x: Tensor):
        """Display image(s) in [0, 1] of model inputs ``x`` ((3, H, W) or (N, 3, H, W))."""
        return denormalize(x, self.norm) if x.ndim == 3 else [denormalize(i, self.norm) for i in x]


def default_data_root(dataset: str, data_root: str | None) -> str | None:
    """``data_root``, or ``../shared/data/sketchy_mini`` for ``dataset="sketchy"`` when it exists."""
    if data_root is not None or dataset != "sketchy":
        return data_root

    root = shared_data_dir()
    if root is None or not (root / "sketchy_mini").is_dir():
        raise ValueError("DATA_ROOT: required for dataset 'sketchy' (../shared/data/sketchy_mini is absent)")
    return str(root / "sketchy_mini")


def load_index(cfg: CompareConfig) -> SBIRIndex:
    """The zero-shot index (synthetic generated on demand)."""
    from xmodal_lib.data import open_dataset  # lazy: read at call time: tests patch open_dataset

    if cfg.dataset != "synthetic" and cfg.data_root is None:
        raise ValueError(f"CompareConfig.data_root is required for dataset={cfg.dataset!r}")
    idx = open_dataset(cfg.dataset, cfg.data_root, split=cfg.split) if cfg.dataset != "synthetic" \
        else open_dataset("synthetic")
    if not idx.unseen:
        raise DataError(f"{idx.name}: no unseen classes; a zero-shot split is needed")
    return idx


def test_index(cfg: CompareConfig, index: SBIRIndex) -> SBIRIndex:
    """Unseen-class records; with ``max_test_sketches`` every n-th sketch is kept (photos all)."""
    test = index.of_classes(index.unseen)
    if cfg.max_test_sketches and len(test.sketches) > cfg.max_test_sketches:
        step = -(-len(test.sketches) // cfg.max_test_sketches)
        test = SBIRIndex(test.name, test.photos, test.sketches[::step], test.classes, test.unseen, test.root)
    return test


def _artifacts() -> Path:
    return artifacts_dir()


def _artifact(name: str, cfg: CompareConfig, cls: type) -> Path | None:
    """``artifacts_dir()/<name>`` if it exists, holds a ``cls`` config of this version and was trained
    on ``cfg.dataset`` / ``cfg.split`` (the artifact's ``info``, else its config's own dataset fields:
    :mod:`xmodal_lib.run.artifacts`). One of an older version is said and trained anew."""
    from xmodal_lib.run.artifacts import exists, stored_info, stored_params, unusable  # lazy: upward import (methods -> run)

    p = _artifacts() / name
    if not cfg.use_artifacts or not exists(p):
        return None
    why = unusable(p, cls)
    if why is not None:
        print(f"artifact {p}: {why}; training this method here instead")
        return None
    seen = {**stored_params(p), **stored_info(p)}
    return p if (seen.get("dataset", "synthetic"), seen.get("split")) == (cfg.dataset, cfg.split) else None


def _method_config(stem: str, cfg: CompareConfig, **over: Any) -> Any:
    """Notebook ``stem``'s config under ``cfg.profile`` (:func:`xmodal_lib.run.params.preset`: its
    profile YAML, the values that notebook itself runs with), then the parameters of
    ``cfg.scale_file``'s section for it (upper-case names, e.g. ``DIM``; for 02 the 01 section
    first: how a CI run shrinks the models trained here to the scale of its notebooks 01-04), then
    ``over`` (this run's seed, device, data and step budget). One :func:`~xmodal_lib.run.params.bind`:
    every value is type- and range-checked, a key that is no parameter of ``stem`` is refused."""
    from xmodal_lib.run.params import preset  # lazy: upward import (methods -> run)
    from xmodal_lib.run.plan import load_yaml_params  # lazy: upward import (methods -> run)

    scale: dict[str, Any] = {}
    if cfg.scale_file:
        data = load_yaml_params(Path(cfg.scale_file))
        for sec in (("01_fusion_teacher", stem) if stem == "02_distillation" else (stem,)):
            scale.update({k.lower(): v for k, v in (data.get(sec) or data.get(sec[:2]) or {}).items()})
    return preset(stem, cfg.profile, **{**scale, **over})


# --------------------------------------------------------------------------- ZSE-SBIR
def run_zse(cfg: CompareConfig, index: SBIRIndex, test: SBIRIndex, out_dir: Path) -> list[MethodRun]:
    """ZSE-SBIR: [Ret] cosine ("Ours-Ret") and, with ``zse_rn``, exhaustive RN scores ("Ours-RN")."""
    from xmodal_lib.run.artifacts import load_model, save_model  # lazy: upward import (methods -> run)

    art = _artifact("zse_zero_shot", cfg, Z.ZSEPipelineConfig)
    if art is not None:
        model, zc = load_model(art, Z.ZSEPipelineConfig, lambda c: ZSESBIR(c.model), pretrained=False)
        source = f"artifact {art.name}"
    else:
        zc = _method_config("04_zse_sbir", cfg, seed=cfg.seed, device=cfg.device, max_steps=cfg.zse_steps,
                            epochs=None, val_classes=0, dataset=cfg.dataset, data_root=cfg.data_root,
                            split=cfg.split)  # epochs=None: ZSE_STEPS alone sets the length
        t = time.perf_counter()
        model, res = Z.train_zse(zc, index.subset("train"), out_dir / "zse", desc="zse (05)")
        source = f"trained here: {res.steps} steps on seen classes ({time.perf_counter() - t:.0f} s)"
        save_model(model, _artifacts() / "zse_zero_shot", zc)
    dev = torch.device("cpu") if cfg.device == "cpu" else next(model.parameters()).device
    model.to(dev).eval()
    sk, ph = Z.load_images(test.sketches, zc, "sketch"), Z.load_images(test.photos, zc, "photo")
    sc, pc = build_cache(model, sk, "sketch", zc.eval_batch), build_cache(model, ph, "photo", zc.eval_batch)
    sl = ImageLoader(zc.model.img_size, normalize="half", sketch_crop=True)  # = methods.zse.pipeline.load_images
    runs = [MethodRun("zse_ret", "zse", model, model, sk, ph, scores_ret(sc, pc).float().cpu(), source,
                      sketch_loader=sl, norm="half")]
    if cfg.zse_rn:
        runs.append(MethodRun("zse_rn", "zse", model, model, sk, ph,
                              scores_rn(model, sc, pc, zc.block_q, zc.block_g).float().cpu(), source,
                              sketch_loader=sl, norm="half"))
    return runs


# --------------------------------------------------------------------------- CrossATNet
def run_crossatnet(cfg: CompareConfig, index: SBIRIndex, test: SBIRIndex, out_dir: Path) -> list[MethodRun]:
    """CrossATNet: real-valued cosine and Hamming ranking with its longest hash code."""
    art = _artifact(C.ARTIFACT, cfg, C.CrossATNetRunConfig)
    cc = _method_config("03_crossatnet_zero_shot", cfg, seed=cfg.seed, device=cfg.device,
                        max_steps=cfg.crossatnet_steps, epochs=None, dataset=cfg.dataset,
                        data_root=cfg.data_root, split=cfg.split)  # epochs=None: CROSSATNET_STEPS sets the length
    if art is not None:
        net, cc = C.load_artifact(art)  # notebook 03's model (or an earlier run of this one)
        source = f"artifact {art.name}"
    else:
        t = time.perf_counter()
        trained = C.train(cc, index.subset("train"), out_dir / "crossatnet", progress=False)
        net = trained.net
        source = f"trained here: {trained.result.steps} steps on seen classes ({time.perf_counter() - t:.0f} s)"
        C.save_artifact(net, cc)
    net.eval().cpu()
    from xmodal_lib.data import preload  # lazy: read at call time: tests patch preload

    ls, lp = C.image_loaders(cc)
    sk, ph = preload(test.sketches, ls, "sketches", False), preload(test.photos, lp, "photos", False)
    emb = C.Embedded(C.embed(net.encode_sketch, sk), C.embed(net.encode_photo, ph), [], [])
    runs = [MethodRun("crossatnet", "crossatnet", net, net, sk, ph, (emb.sketches @ emb.photos.T).float(), source,
                      sketch_loader=ls, norm=ls.normalize)]
    if net.cfg.hash_bits:
        b = max(net.cfg.hash_bits)
        with torch.no_grad():
            d = hamming_distance(pack_bits(net.codes(emb.sketches, b)), pack_bits(net.codes(emb.photos, b)))
        runs.append(MethodRun(f"crossatnet_hash{b}", "crossatnet", net, net, sk, ph, -d.float(), source,
                              sketch_loader=ls, norm=ls.normalize, extra={"bits": b}))
    return runs


# --------------------------------------------------------------------------- XModalViT
def run_xmodalvit(cfg: CompareConfig, index: SBIRIndex, test: SBIRIndex, out_dir: Path) -> list[MethodRun]:
    """XModalViT teacher + distilled students trained on instance pairs of the seen classes."""
    from xmodal_lib.run.artifacts import load_model, save_model  # lazy: upward import (methods -> run)

    xc = _method_config("02_distillation", cfg, **_xmodal_overrides(cfg))
    art_t = _artifact("xmodalvit_zero_shot_teacher", cfg, X.XModalViTConfig)
    art_s = _artifact("xmodalvit_zero_shot_students", cfg, X.XModalViTConfig)
    if art_t is not None and art_s is not None:
        teacher, xc = load_model(art_t, X.XModalViTConfig, X.make_teacher, teacher_pretrained=False,
                                 student_pretrained=False)
        students = X.make_students(xc, teacher.embed_dim)
        load_weights(students, art_s)
        source = f"artifacts {art_t.name} + {art_s.name}"
    else:
        train = X.index_to_tensors(index.subset("train"), _XModalLoader.of(xc), progress=False)
        empty = train.select_photos([])
        data = X.XModalData(train, empty, empty, index.name)
        t = time.perf_counter()
        teacher, r1 = X.train_teacher(xc, data, out_dir / "xmodal_teacher", progress=False)
        students, r2 = X.distil_students(xc, data, teacher, out_dir=out_dir / "xmodal_students", progress=False)
        source = (f"trained here on seen-class instance pairs: teacher {r1.steps} + students {r2.steps} steps "
                  f"({time.perf_counter() - t:.0f} s)")
        for m, name in ((teacher, "teacher"), (students, "students")):  # XModalViT's config names FG data
            save_model(m, _artifacts() / f"xmodalvit_zero_shot_{name}", xc, dataset=cfg.dataset, split=cfg.split)
    teacher.cpu().eval()
    students.cpu().eval()
    from xmodal_lib.data import preload  # lazy: read at call time: tests patch preload

    loader = _XModalLoader.of(xc)
    sk, ph = preload(test.sketches, loader, "sketches", False), preload(test.photos, loader, "photos", False)
    q, g = X.embed(students.encode_sketch, sk), X.embed(students.encode_photo, ph)
    return [MethodRun("xmodalvit", "xmodalvit", students, teacher, sk, ph, (q @ g.T).float(), source,
                      sketch_loader=loader, norm=None if loader.standardize else loader.normalize,
                      extra={"patch_embed": xc.patch_embed, "image_size": xc.image_size})]


def _xmodal_overrides(cfg: CompareConfig) -> dict[str, Any]:
    """This run's fields of XModalViT's config. ``XMODAL_PATCH_EMBED`` hybrid tokens imply, as in the
    cpu profile of notebooks 01/02: patch 16 (the CNN's stride), no per-image standardisation (the
    CNN normalises its own inputs) and no colour views of the teacher's photos (the frozen CNN's
    features are cached once per image; a new view each step would recompute them)."""
    over: dict[str, Any] = dict(seed=cfg.seed, teacher_max_steps=cfg.xmodal_teacher_steps,
                                student_max_steps=cfg.xmodal_student_steps, teacher_device=cfg.device,
                                student_device=cfg.device)
    if cfg.profile == "paper" and cfg.dataset == "sketchy":  # the paper's Sketchy recipe (queues 64, ViT-S students)
        over.update({k: v for k, v in PAPER_DATASETS["sketchy"].items() if k not in ("dataset", "epoch_unit")})
    if cfg.xmodal_patch_embed is not None:
        over["patch_embed"] = cfg.xmodal_patch_embed
        if cfg.xmodal_patch_embed != "pixels":
            over.update(teacher_patch_size=16, student_patch_size=16, standardize_inputs=False, teacher_photo_aug=False)
    if cfg.xmodal_image_size is not None:
        over["image_size"] = cfg.xmodal_image_size
    if cfg.xmodal_lr is not None:
        over.update(teacher_lr=cfg.xmodal_lr, student_lr=cfg.xmodal_lr)
    return over


class _XModalLoader(ImageLoader):
    """XModalViT's loader with its optional per-image standardisation (``standardize_inputs``)
    applied to every loaded image, so files and explorer drawings are preprocessed alike."""

    standardize = False

    @classmethod
    def of(cls, xc: Any) -> "_XModalLoader":
        """The loader of notebooks 01/02 for XModalViT config ``xc`` (size, normalisation, standardisation)."""
        loader = cls(xc.image_size, normalize=xc.input_norm, sketch_crop=False)
        loader.standardize = bool(xc.standardize_inputs)
        return loader

    def load(self, record: Any, seed: int | None = None) -> Tensor:
        x = super().load(record, seed)
        if not self.standardize:
            return x

        return standardize_images(x[None])[0]  # (3, H, W)

    __call__ = load


RUNNERS = {"zse": run_zse, "crossatnet": run_crossatnet, "xmodalvit": run_xmodalvit}


def run_all(cfg: CompareConfig, out_dir: str | Path, index: SBIRIndex | None = None) -> tuple[SBIRIndex, list[MethodRun]]:
    """Every method of ``cfg.methods`` on the same test split; returns (test index, runs).

    ``out_dir`` holds the training runs (logs, checkpoints) of models trained here; the final
    weights go to ``artifacts_dir()`` (``*_zero_shot``) so notebook 06 reuses them.
    """
    index = index or load_index(cfg)
    test = test_index(cfg, index)
    out = Path(out_dir)
    runs: list[MethodRun] = []
    for m in cfg.methods:
        torch.manual_seed(cfg.seed)
        runs.extend(RUNNERS[m](cfg, index, test, out))
    return test, runs


def evaluate_runs(runs: Sequence[MethodRun], test: SBIRIndex,
                  metrics: Sequence[str] = ALL_METRICS) -> dict[str, dict[str, float]]:
    """Every metric convention of the engine for every run (same queries, same gallery)."""
    ql, gl = [r.label for r in test.sketches], [r.label for r in test.photos]
    return {r.name: fair_category_metrics(r.scores, ql, gl, metrics=tuple(metrics), largest=r.largest) for r in runs}


def explorer_galleries(runs: Sequence[MethodRun], test: SBIRIndex,
                       names: Sequence[str] = ("zse_ret", "crossatnet", "xmodalvit")) -> dict:
    """:class:`~xmodal_lib.viz.explorer.ExplorerGallery` per method family from the runs ``names``."""
    metric = {"zse": "cosine", "crossatnet": "cosine", "xmodalvit": "dot"}
    labels = [r.label for r in test.photos]
    out = {}
    for r in runs:
        if r.name in names and r.method not in out:
            out[r.method] = ExplorerGallery(r.method, r.model, r.photos, labels, explain_model=r.explain_model,
                                            metric=metric[r.method], query_images=r.sketches,
                                            sketch_loader=r.sketch_loader, norm=r.norm)
    return out
