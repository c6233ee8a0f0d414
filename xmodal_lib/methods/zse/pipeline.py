"""ZSE-SBIR pipeline: training via the shared loop, the three settings (the config: :mod:`.config`).

Settings ("zero-shot everything"):

* :func:`run_zero_shot` — inter-category: train on seen classes, retrieve on unseen classes
  (embedded ``synthetic`` data, ``sketchy`` folders such as ``../shared/data/sketchy_mini`` with a
  SAKE split, or full ``sake`` file lists);
* :func:`run_fine_grained` — intra-category: instance-level pairs, train on one fine-grained
  category and test on another (``synthetic_fg`` shoe → chair, or QMUL-V1 shoes → chairs);
* :func:`evaluate_cross_dataset` — a model trained on one dataset retrieves on another's unseen
  classes (e.g. embedded synthetic → sketchy_mini zeroshot1).

Model selection uses held-out *seen* classes (``val_classes``), never the unseen test classes
(the official code selects on an unseen-class subsample, methods_spec.md §3.7).
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xmodal_lib.data.datasets import preload
from xmodal_lib.data.index import DataError, Record, SBIRIndex
from xmodal_lib.data.preflight import preflight
from xmodal_lib.data.transforms import ImageLoader
from xmodal_lib.engine.train import FitOptions, TrainResult, fit
from xmodal_lib.infra.devices import resolve_device
from xmodal_lib.infra.distributed import broadcast_object
from xmodal_lib.infra.paths import shared_data_dir
from xmodal_lib.methods.zse.config import PAPER_DATASETS, ZSEPipelineConfig  # noqa: F401 (re-exported)
from xmodal_lib.methods.zse.data import ZSEBatchDataset
from xmodal_lib.methods.zse.evaluate import (
    build_cache,
    evaluate_category,
    evaluate_fg,
    rerank_curve,
    scores_ret,
    scores_rn,
    scores_rn_rerank,
)
from xmodal_lib.methods.zse.losses import zse_loss
from xmodal_lib.methods.zse.model import ZSESBIR
from xmodal_lib.retrieval.metrics import category_metrics

__all__ = ["ZSEPipelineConfig", "PAPER_DATASETS", "zse_step", "load_index", "load_images", "train_zse", "train_zero_shot",
           "evaluate_zero_shot", "run_zero_shot", "run_fine_grained", "evaluate_cross_dataset"]

def zse_step(model: ZSESBIR, batch: dict[str, Tensor], w_tri: float = 2.0, w_rn: float = 4.0) -> dict[str, Tensor]:
    """One training step: SA on 4b images, CA + RN on b positive and b negative pairs, total loss.

    Every term is a per-item mean (the triplet's negative comes with the item, not from the batch),
    so under DDP the gradient average over ranks is already the global-batch gradient: no gather.
    """
    b = batch["sk_pos"].shape[0]
    s = model.sa_features(torch.cat([batch["sk_pos"], batch["sk_neg"]]), "sketch")  # (2b, 1+N, D)
    p = model.sa_features(torch.cat([batch["ph_pos"], batch["ph_neg"]]), "photo")
    out = model.pair_forward(s.tokens, s.kept, p.tokens, p.kept)  # rows: b positive, then b negative pairs
    losses = zse_loss(out.ret_sketch[:b], out.ret_photo[:b], out.ret_photo[b:], out.score[:b], out.score[b:],
                      w_tri=w_tri, w_rn=w_rn)
    losses["score_pos"] = out.score[:b].detach().mean()
    losses["score_neg"] = out.score[b:].detach().mean()
    return losses


def load_index(cfg: ZSEPipelineConfig) -> SBIRIndex:
    """The zero-shot index of ``cfg.dataset`` (synthetic is generated on demand)."""
    from xmodal_lib.data.registry import open_dataset  # lazy: read at call time: tests patch open_dataset
    if cfg.dataset == "synthetic":
        return open_dataset("synthetic")
    if cfg.data_root is None:
        raise ValueError(f"ZSEPipelineConfig.data_root is required for dataset={cfg.dataset!r}")
    return open_dataset(cfg.dataset, root=cfg.data_root, split=cfg.split)


def load_images(records: list[Record], cfg: ZSEPipelineConfig, modality: str) -> Tensor:
    """Preprocess ``records`` to (N, 3, S, S) in [-1, 1] (spec §3.2: sketches cropped to their ink)."""
    if cfg.preprocess == "official":  # released geometry: RGB-sum ink crop, photos stretched (§3.2)
        from xmodal_lib.data.official_crop import OfficialZSELoader  # lazy: only needed on this branch
        return preload(records, OfficialZSELoader(cfg.model.img_size), desc=f"load {modality}s", progress=False)
    loader = ImageLoader(cfg.model.img_size, normalize="half", sketch_crop=(modality == "sketch"))
    return preload(records, loader, desc=f"load {modality}s", progress=False)


def _holdout(classes: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    val = sorted(rng.choice(classes, size=min(n, max(len(classes) - 3, 0)), replace=False).tolist()) if n else []
    return [c for c in classes if c not in val], val


def train_zse(cfg: ZSEPipelineConfig, train_index: SBIRIndex, out_dir: str | Path, group: str = "label",
              val_index: SBIRIndex | None = None, model: ZSESBIR | None = None,
              items: int | None = None, desc: str = "zse", resume: bool = False,
              progress: bool = False, options: FitOptions | None = None) -> tuple[ZSESBIR, TrainResult]:
    """Train on ``train_index`` (groups = "label" or "instance"); select the best epoch on ``val_index``.

    Validation = ``ret`` mAP@all on ``val_index`` (held-out seen classes); the weights of the best
    validation epoch are restored at the end (the last epoch when there is no validation data).
    Under DDP every rank validates the same weights, so every rank keeps the same best epoch.
    (After ``resume`` the best epoch is chosen among the epochs validated in this call.)
    """
    torch.manual_seed(cfg.train.seed)
    model = model or ZSESBIR(cfg.model)
    sk = load_images(train_index.sketches, cfg, "sketch")
    ph = load_images(train_index.photos, cfg, "photo")
    key = (lambda r: r.label) if group == "label" else (lambda r: r.instance)
    ds = ZSEBatchDataset(sk, [key(r) for r in train_index.sketches], ph, [key(r) for r in train_index.photos],
                         n_items=items or cfg.items_per_epoch, seed=cfg.train.seed)
    best: dict[str, Any] = {"score": -1.0, "state": None}
    val_fn = None
    if val_index is not None and val_index.sketches and val_index.photos:
        vsk, vph = load_images(val_index.sketches, cfg, "sketch"), load_images(val_index.photos, cfg, "photo")
        vq = [r.label for r in val_index.sketches]
        vg = [r.label for r in val_index.photos]

        def val_fn(m: ZSESBIR) -> dict[str, float]:
            sc = build_cache(m, vsk, "sketch", cfg.eval_batch, with_proj=False)
            pc = build_cache(m, vph, "photo", cfg.eval_batch, with_proj=False)
            v = category_metrics(scores_ret(sc, pc), vq, vg, metrics=("map_all_voc",))["map_all_voc"]
            v = broadcast_object(v)  # under DDP every rank keeps the epoch rank 0 picks
            if v > best["score"]:
                best.update(score=v, state=copy.deepcopy(m.state_dict()))
            return {"val_map_all_voc": v}

    if cfg.ts_warmup_epochs and cfg.model.keep_rate < 1.0:  # authors' advice (issue #1): all tokens first
        model.sa.keep_rate = 1.0
        fit(model, zse_step, ds, replace(cfg.train, epochs=cfg.ts_warmup_epochs, max_steps=None),
            Path(out_dir) / "ts_warmup", resume=resume, config={"zse": cfg.to_dict(), "stage": "ts_warmup"},
            desc=f"{desc} warm-up", progress=progress, options=options)
        model.sa.keep_rate = cfg.model.keep_rate
    res = fit(model, zse_step, ds, cfg.train, out_dir, val_fn=val_fn, resume=resume,
              config={"zse": cfg.to_dict()}, desc=desc, progress=progress, options=options)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    return model, res


@torch.no_grad()
def evaluate_zero_shot(model: ZSESBIR, test_index: SBIRIndex, cfg: ZSEPipelineConfig,
                       modes: tuple[str, ...] = ("ret", "rn", "rn_rerank"), curve: bool = True) -> dict[str, Any]:
    """Category metrics of the three retrieval modes on ``test_index`` (+ mAP vs rerank k, timings, and
    ``scores``: each mode's query x gallery score matrix, larger = more similar)."""
    dev = resolve_device(cfg.train.device)
    model.to(dev).eval()
    sk = load_images(test_index.sketches, cfg, "sketch")
    ph = load_images(test_index.photos, cfg, "photo")
    ql, gl = [r.label for r in test_index.sketches], [r.label for r in test_index.photos]
    t0 = time.perf_counter()
    sc, pc = build_cache(model, sk, "sketch", cfg.eval_batch), build_cache(model, ph, "photo", cfg.eval_batch)
    timing = {"sa_cache_s": time.perf_counter() - t0}
    scores: dict[str, Tensor] = {}
    skipped: dict[str, str] = {}
    for mode in modes:
        t = time.perf_counter()
        if mode == "ret":
            scores[mode] = scores_ret(sc, pc)
        elif mode == "rn":
            if len(ql) * len(gl) > cfg.rn_max_pairs:
                skipped["rn"] = f"{len(ql)} x {len(gl)} pairs > rn_max_pairs={cfg.rn_max_pairs}; use rn_rerank"
                continue
            scores[mode] = scores_rn(model, sc, pc, cfg.block_q, cfg.block_g)
        elif mode == "rn_rerank":
            scores[mode] = scores_rn_rerank(model, sc, pc, cfg.rerank_k)
        else:
            raise ValueError(f"retrieval mode must be one of ('ret', 'rn', 'rn_rerank'), got {mode!r}")
        timing[f"{mode}_s"] = time.perf_counter() - t
    out: dict[str, Any] = {"metrics": evaluate_category(scores, ql, gl, cfg.metrics), "timing": timing,
                           "n_queries": len(ql), "n_gallery": len(gl), "rerank_k": cfg.rerank_k, "skipped": skipped,
                           "scores": {m: s.float().cpu() for m, s in scores.items()}}  # (Q, G) per mode: significance tests reuse them
    if curve:
        out["rerank_curve"] = rerank_curve(model, sc, pc, cfg.rerank_ks, ql, gl, cfg.metrics)
    return out


def train_zero_shot(cfg: ZSEPipelineConfig, out_dir: str | Path, index: SBIRIndex | None = None,
                    desc: str = "zse-zs", resume: bool = False, progress: bool = False,
                    options: FitOptions | None = None) -> tuple[ZSESBIR, TrainResult, list[str], list[str]]:
    """The training half of :func:`run_zero_shot`: ``(model, result, train_classes, val_classes)``."""
    index = index or load_index(cfg)
    if not index.unseen:
        raise DataError(f"{index.name}: no unseen classes; a zero-shot split is needed")
    preflight(index, progress=progress)  # decode-check train AND test before training
    train_cls, val_cls = _holdout(index.seen, cfg.val_classes, cfg.train.seed)
    model, res = train_zse(cfg, index.of_classes(train_cls), out_dir,
                           val_index=index.of_classes(val_cls) if val_cls else None, desc=desc,
                           resume=resume, progress=progress, options=options)
    return model, res, train_cls, val_cls


def run_zero_shot(cfg: ZSEPipelineConfig, out_dir: str | Path, index: SBIRIndex | None = None,
                  desc: str = "zse-zs") -> dict[str, Any]:
    """Train on seen classes (minus ``val_classes`` held out for selection), test on unseen."""
    index = index or load_index(cfg)
    model, res, train_cls, val_cls = train_zero_shot(cfg, out_dir, index, desc)
    ev = evaluate_zero_shot(model, index.of_classes(index.unseen), cfg)
    return {"model": model, "history": res.history, "val": res.val, "train_classes": train_cls,
            "val_classes": val_cls, "test_classes": list(index.unseen), "train_wall_s": res.wall_time, **ev}


def _fg_index(cfg: ZSEPipelineConfig, category: str, split: str) -> SBIRIndex:
    from xmodal_lib.data.registry import open_dataset  # lazy: read at call time: tests patch open_dataset
    if cfg.fg_kind == "synthetic_fg":
        return open_dataset("synthetic_fg", category=category, split=split)
    root = shared_data_dir()
    if root is None:
        raise DataError("qmul_v1 needs ../shared/data (absent)")
    if not (root / "qmul_v1" / category).is_dir():
        have = sorted(d.name for d in (root / "qmul_v1").iterdir() if d.is_dir()) if (root / "qmul_v1").is_dir() else []
        raise DataError(f"FG_TRAIN_CATEGORY / FG_TEST_CATEGORY = {category!r}: no folder {root / 'qmul_v1' / category}; "
                        f"with FG_KIND qmul_v1 the categories are its folder names {have}")
    return open_dataset("qmul_v1", root=root / "qmul_v1" / category, split=split, label=category)


def run_fine_grained(cfg: ZSEPipelineConfig, out_dir: str | Path, desc: str = "zse-fg") -> dict[str, Any]:
    """Intra-category zero-shot: instance-level training on one category, acc@K on another."""
    train = _fg_index(cfg, cfg.fg_train_category, "train")
    test = _fg_index(cfg, cfg.fg_test_category, "test")
    preflight([train, test], progress=False)  # decode-check train AND test before training
    model, res = train_zse(cfg, train, out_dir, group="instance", items=cfg.fg_items_per_epoch, desc=desc)
    sk, ph = load_images(test.sketches, cfg, "sketch"), load_images(test.photos, cfg, "photo")
    pos = {r.instance: i for i, r in enumerate(test.photos)}
    missing = [r.path for r in test.sketches if r.instance not in pos]
    if missing:
        raise DataError(f"fine-grained test set: sketches without their photo, e.g. {missing[0]}")
    true = torch.tensor([pos[r.instance] for r in test.sketches])
    sc, pc = build_cache(model, sk, "sketch", cfg.eval_batch), build_cache(model, ph, "photo", cfg.eval_batch)
    scores = {"ret": scores_ret(sc, pc), "rn": scores_rn(model, sc, pc, cfg.block_q, cfg.block_g),
              "rn_rerank": scores_rn_rerank(model, sc, pc, cfg.rerank_k)}
    return {"history": res.history, "train": f"{cfg.fg_kind}/{cfg.fg_train_category}",
            "test": f"{cfg.fg_kind}/{cfg.fg_test_category}", "n_queries": len(true), "n_gallery": len(pos),
            "metrics": evaluate_fg(scores, true), "chance_acc@1": 1.0 / len(pos)}


def evaluate_cross_dataset(model: ZSESBIR, cfg: ZSEPipelineConfig, root: str | Path,
                           split: str = "zeroshot1", kind: str = "sketchy",
                           modes: tuple[str, ...] = ("ret", "rn", "rn_rerank")) -> dict[str, Any]:
    """Retrieval on another dataset's unseen classes with a model trained elsewhere."""
    from xmodal_lib.data.registry import open_dataset  # lazy: read at call time: tests patch open_dataset
    idx = open_dataset(kind, root=root, split=split)
    out = evaluate_zero_shot(model, idx.of_classes(idx.unseen), cfg, modes=modes, curve=False)
    out["test"] = f"{Path(root).name}/{split} unseen ({len(idx.unseen)} classes)"
    return out
