"""ZSE-SBIR retrieval modes: ``ret``, exhaustive ``rn`` (cached), ``rn_rerank``, and the naive reference.

* ``ret``: cosine between pre-CA [Ret] tokens of sketches and photos ("Ours-Ret").
* ``rn`` (exhaustive, "Ours-RN"): every sketch-photo pair is scored by CA + RN. SA runs ONCE per
  image (:func:`build_cache`); the per-image CA projections (Q/K/V of both CA layers) are cached
  too, so a pair block only runs attention, FFN, conv and the RN MLP.
* ``rn_rerank``: the top-k photos of each sketch under ``ret`` are re-scored by the RN and placed
  above the rest, which keep their ``ret`` order (score = 2 + rn inside the shortlist, cosine
  ∈ [-1, 1] outside). k = gallery size gives the exhaustive ranking.
* :func:`scores_rn_naive`: the official scheme, for tests and benchmarks only — SA of the photos
  is recomputed for every block of sketches (block 20 × 20), CA runs from raw tokens.

All functions return a score matrix (Q, G), larger = more similar; metrics come from
:mod:`xmodal_lib.retrieval.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from xmodal_lib.infra.devices import module_device
from xmodal_lib.methods.zse.model import ZSESBIR
from xmodal_lib.retrieval.embed_cache import resolve_precision
from xmodal_lib.retrieval.metrics import category_metrics, fg_accuracy

__all__ = ["SACache", "build_cache", "scores_ret", "scores_rn", "scores_rn_naive", "scores_rn_rerank",
           "evaluate_category", "evaluate_fg", "rerank_curve", "MODES"]

MODES = ("ret", "rn", "rn_rerank")


@dataclass
class SACache:
    """SA outputs of a set of images, computed once: tokens (N, 1+n, D), kept (N, n), CA projections."""

    tokens: Tensor
    kept: Tensor
    proj: dict[str, Tensor]
    modality: str

    @property
    def ret(self) -> Tensor:
        return self.tokens[:, 0]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def rows(self, idx: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        return self.tokens[idx], self.kept[idx], {k: v[idx] for k, v in self.proj.items()}


@torch.no_grad()
def build_cache(model: ZSESBIR, images: Tensor, modality: str, batch_size: int = 64,
                with_proj: bool = True, precision: str = "auto") -> SACache:
    """Run SA once over ``images`` (N, 3, H, W) (and the CA projections) in eval mode.

    ``precision``: ``"auto"`` = bf16 autocast on CUDA, fp32 on CPU (``"bf16"``/``"fp32"`` force it;
    ``"fp16"`` = fp16 autocast, close to the official ``model.half()`` evaluation);
    the cached tensors are stored as float32 so every later scoring pass reads the same values.
    """
    model.eval()
    dev = module_device(model)
    prec = "fp16" if precision == "fp16" else resolve_precision(precision, dev)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
    toks, kept, proj = [], [], {}
    for i in range(0, images.shape[0], batch_size):
        with torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            out = model.sa_features(images[i:i + batch_size].to(dev), modality)
            pr = model.ca.project(out.tokens, modality) if with_proj else {}
        toks.append(out.tokens.float())
        kept.append(out.kept)
        for k, v in pr.items():
            proj.setdefault(k, []).append(v.float())
    return SACache(torch.cat(toks), torch.cat(kept), {k: torch.cat(v) for k, v in proj.items()}, modality)


def scores_ret(sk: SACache, ph: SACache) -> Tensor:
    """The model's "Ours-Ret" score: cosine between pre-CA [Ret] tokens, (Q, G) (:meth:`ZSESBIR.similarity`)."""
    return ZSESBIR.similarity(sk.ret, ph.ret)


def _pair_rows(x: Tensor, reps: int, outer: bool) -> Tensor:
    """(b, ...) -> (b*reps, ...) repeated per row (outer=True: i-major) or tiled (outer=False)."""
    if outer:
        return x.repeat_interleave(reps, dim=0)
    return x.repeat(reps, *([1] * (x.dim() - 1)))


@torch.no_grad()
def scores_rn(model: ZSESBIR, sk: SACache, ph: SACache, block_q: int = 20, block_g: int = 100) -> Tensor:
    """Exhaustive RN scores (Q, G) from cached SA tokens and CA projections (pair blocks bq × bg)."""
    model.eval()
    Q, G = len(sk), len(ph)
    out = torch.empty(Q, G)
    for i in range(0, Q, block_q):
        st, sp, sj = sk.rows(torch.arange(i, min(i + block_q, Q)))
        bq = st.shape[0]
        for j in range(0, G, block_g):
            pt, pp, pj = ph.rows(torch.arange(j, min(j + block_g, G)))
            bg = pt.shape[0]
            s = model.pairs_from_cache(
                _pair_rows(st, bg, True), _pair_rows(sp, bg, True), {k: _pair_rows(v, bg, True) for k, v in sj.items()},
                _pair_rows(pt, bq, False), _pair_rows(pp, bq, False), {k: _pair_rows(v, bq, False) for k, v in pj.items()},
            )  # (bq*bg,) sketch-major
            out[i:i + bq, j:j + bg] = s.view(bq, bg).float().cpu()
    return out


@torch.no_grad()
def scores_rn_naive(model: ZSESBIR, sketches: Tensor, photos: Tensor, block: int = 20) -> Tensor:
    """The official scheme (reference only): per sketch block, SA of every photo block is recomputed."""
    model.eval()
    dev = module_device(model)
    Q, G = sketches.shape[0], photos.shape[0]
    out = torch.empty(Q, G)
    for i in range(0, Q, block):
        s = model.sa_features(sketches[i:i + block].to(dev), "sketch")
        bq = s.tokens.shape[0]
        for j in range(0, G, block):
            p = model.sa_features(photos[j:j + block].to(dev), "photo")  # recomputed for every i
            bg = p.tokens.shape[0]
            r = model.pair_forward(_pair_rows(s.tokens, bg, True), _pair_rows(s.kept, bg, True),
                                   _pair_rows(p.tokens, bq, False), _pair_rows(p.kept, bq, False)).score
            out[i:i + bq, j:j + bg] = r.view(bq, bg).float().cpu()
    return out


@torch.no_grad()
def scores_rn_rerank(model: ZSESBIR, sk: SACache, ph: SACache, k: int, ret: Tensor | None = None,
                     pairs_per_batch: int = 2000) -> Tensor:
    """``ret`` scores with each query's top-k re-scored by the RN and ranked first (2 + rn)."""
    model.eval()
    ret = scores_ret(sk, ph) if ret is None else ret
    Q, G = ret.shape
    if not 1 <= k:
        raise ValueError(f"rerank k must be >= 1, got {k}")
    k = min(int(k), G)
    top = ret.topk(k, dim=1).indices  # (Q, k)
    qi = torch.arange(Q).repeat_interleave(k)  # (Q*k,)
    gi = top.reshape(-1)
    rn = torch.empty(Q * k)
    for a in range(0, Q * k, pairs_per_batch):
        b = min(a + pairs_per_batch, Q * k)
        st, sp, sj = sk.rows(qi[a:b].to(sk.tokens.device))
        pt, pp, pj = ph.rows(gi[a:b].to(ph.tokens.device))
        rn[a:b] = model.pairs_from_cache(st, sp, sj, pt, pp, pj).float().cpu()
    out = ret.clone().float().cpu()
    out[qi, gi] = 2.0 + rn
    return out


def evaluate_category(scores: dict[str, Tensor], q_labels, g_labels,
                      metrics: tuple[str, ...] = ("map_all_voc", "p@100")) -> dict[str, dict[str, float]]:
    """Category metrics (engine names) of every score matrix in ``scores``."""
    return {name: {m: v for m, v in category_metrics(s, q_labels, g_labels, metrics=metrics).items()
                   if m in metrics} for name, s in scores.items()}


def evaluate_fg(scores: dict[str, Tensor], true_index: Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    """Fine-grained acc@K of every score matrix (true_index (Q,) = position of the drawn photo)."""
    return {name: fg_accuracy(s, true_index, ks=ks) for name, s in scores.items()}


def rerank_curve(model: ZSESBIR, sk: SACache, ph: SACache, ks, q_labels, g_labels,
                 metrics: tuple[str, ...] = ("map_all_voc", "p@100")) -> list[dict[str, float]]:
    """Metrics of ``rn_rerank`` for each k in ``ks`` (one RN pass over the largest k)."""
    ret = scores_ret(sk, ph)
    G = ret.shape[1]
    ks = sorted({min(int(k), G) for k in ks})
    full = scores_rn_rerank(model, sk, ph, ks[-1], ret=ret)
    rows = []
    order = ret.topk(ks[-1], dim=1).indices
    for k in ks:
        s = ret.clone().float().cpu()
        idx = order[:, :k]
        s.scatter_(1, idx, full.gather(1, idx))
        row = {"k": k}
        row.update({m: v for m, v in category_metrics(s, q_labels, g_labels, metrics=metrics).items() if m in metrics})
        rows.append(row)
    return rows
