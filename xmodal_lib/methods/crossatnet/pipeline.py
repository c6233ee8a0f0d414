"""CrossATNet end to end: config presets, zero-shot data, training with ``train.fit``, evaluation.

Zero-shot protocol (enforced, tested): training sees SEEN classes only. :func:`train` takes the
training part of an index and refuses any record of an unseen class or of the test split
(:func:`check_seen_only`); the class graph is built from the seen class names alone
(:func:`build_class_graph` refuses unseen names), so no name, vector or image of an unseen
class reaches training. Unseen classes appear only in :func:`evaluate`.

Data and training pairs: :mod:`xmodal_lib.methods.crossatnet.data` (re-exported here).
Evaluation: every unseen-class sketch queries every unseen-class photo; real-valued retrieval by
cosine similarity, hashing by Hamming distance of packed codes; metrics only through
:func:`xmodal_lib.retrieval.metrics.category_metrics`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from xmodal_lib.data.index import DataError, SBIRIndex
from xmodal_lib.engine.train import FitOptions, fit
from xmodal_lib.infra.devices import module_device, resolve_device
from xmodal_lib.infra.distributed import gather_cat, gather_cat_nograd
from xmodal_lib.infra.paths import artifacts_dir
from xmodal_lib.methods.crossatnet.config import SKETCHY21_METRICS, CrossATNetRunConfig  # noqa: F401 (re-exported)
from xmodal_lib.methods.crossatnet.data import PairDataset, check_seen_only, image_loaders, load_images, load_index
from xmodal_lib.methods.crossatnet.gcn import GCN, build_graph, normalize_adjacency
from xmodal_lib.methods.crossatnet.losses import (
    attention_agreement_loss,
    bit_balance_loss,
    cross_modal_triplet,
    quantization_loss,
    semantic_alignment_loss,
)
from xmodal_lib.methods.crossatnet.model import CrossATNet, to_channels_last
from xmodal_lib.methods.crossatnet.semantics import EmbedFn, make_embedder
from xmodal_lib.retrieval.chance import chance_metrics
from xmodal_lib.retrieval.codes import hamming_distance, pack_bits
from xmodal_lib.retrieval.embed_cache import embed_images, embed_records, model_fingerprint
from xmodal_lib.retrieval.metrics import category_metrics
from xmodal_lib.retrieval.ties import tie_robust_metrics
from xmodal_lib.run.params import override

__all__ = ["CrossATNetRunConfig", "load_index", "check_seen_only", "image_loaders", "load_images", "PairDataset",
           "ClassGraph", "build_class_graph", "CrossATNetTrainer", "crossatnet_step", "TrainedCrossATNet", "train",
           "embed", "Embedded", "embed_test", "evaluate", "random_ranking_metrics", "run_variant", "ablations",
           "save_artifact", "load_artifact", "ARTIFACT"]
ARTIFACT = "crossatnet_zero_shot"

# ---- semantics ------------------------------------------------------------------------------------
@dataclass
class ClassGraph:
    """The seen-class graph: names, node features [C, d], adjacency [C, C] and its normalisation."""

    names: list[str]
    features: Tensor
    adjacency: Tensor
    a_hat: Tensor


def build_class_graph(seen: Sequence[str], embed_fn: EmbedFn, unseen: Sequence[str] = (),
                      kind: str = "knn", k: int = 5) -> ClassGraph:
    """Embed the SEEN class names and connect them; refuses any name listed in ``unseen``."""
    seen = list(seen)
    leak = sorted(set(seen) & set(unseen))
    if leak:
        raise DataError(f"build_class_graph: unseen classes {leak} may not enter the training graph")
    x = embed_fn(seen).float()
    if x.shape[0] != len(seen):
        raise ValueError(f"build_class_graph: embedder returned {x.shape[0]} rows for {len(seen)} names")
    a = build_graph(x, kind=kind, k=k)
    return ClassGraph(seen, x, a, normalize_adjacency(a))


class CrossATNetTrainer(nn.Module):
    """What ``fit`` trains: the retrieval network plus the graph CNN over the seen-class graph."""

    def __init__(self, net: CrossATNet, graph: ClassGraph | None, cfg: CrossATNetRunConfig) -> None:
        super().__init__()
        self.net, self.cfg = net, cfg
        self.gcn = None
        if graph is not None:
            self.gcn = GCN(graph.features.shape[1], cfg.gcn_hidden, cfg.model.embed_dim, cfg.gcn_dropout)
            self.register_buffer("node_x", graph.features.clone())
            self.register_buffer("a_hat", graph.a_hat.clone())

    def class_nodes(self) -> Tensor:
        """GCN outputs of the seen classes in the shared space [C_seen, D]."""
        if self.gcn is None:
            raise ValueError("this trainer has no GCN (use_gcn=False)")
        return self.gcn(self.node_x, self.a_hat)


def crossatnet_step(tr: CrossATNetTrainer, batch: tuple[Tensor, Tensor, Tensor]) -> dict[str, Tensor]:
    """One training step's losses (see :mod:`xmodal_lib.methods.crossatnet.losses`).

    Under DDP the terms that look across the batch (in-batch negative mining, quantisation and
    bit balance of the hash codes) are computed on the gathered global batch, identically on every
    rank; the per-sample terms (semantic alignment, attention agreement) on the rank's own rows.
    Random mining draws from the global RNG, in the same state on every rank (``fit`` seeds alike).
    """
    s, p, y = batch
    c = tr.cfg
    out = tr.net(s, p)
    photos = [out["z_p"]] + ([out["z_px"]] if "z_px" in out else [])
    y_all = gather_cat_nograd(y)
    z_s_all = gather_cat(out["z_s"])  # (W*B, D), rank 0's rows first
    l_tri = torch.stack([cross_modal_triplet(z_s_all, gather_cat(zp), y_all, c.margin, c.mining)
                         for zp in photos]).mean()
    loss = c.w_triplet * l_tri
    logs = {"triplet": l_tri.detach()}
    if tr.gcn is not None and c.w_semantic > 0:
        nodes = tr.class_nodes()
        l_sem = torch.stack([semantic_alignment_loss(z, y, nodes, c.tau) for z in [out["z_s"], *photos]]).mean()
        loss = loss + c.w_semantic * l_sem
        logs["semantic"] = l_sem.detach()
    if "att_guided" in out and c.w_attention > 0:
        l_att = attention_agreement_loss(out["att_guided"], out["att_self"])
        loss = loss + c.w_attention * l_att
        logs["attention_kl"] = l_att.detach()
    if tr.net.cfg.hash_bits and c.w_hash > 0:
        terms, qs, bs = [], [], []
        for b in tr.net.cfg.hash_bits:
            hs, hp = gather_cat(out[f"h_s/{b}"]), gather_cat(out[f"h_p/{b}"])  # (W*B, b)
            cs = torch.nn.functional.normalize(torch.tanh(hs), dim=-1)
            cp = torch.nn.functional.normalize(torch.tanh(hp), dim=-1)
            l_q = quantization_loss(torch.cat([hs, hp]))
            l_b = 0.5 * (bit_balance_loss(hs) + bit_balance_loss(hp))
            terms.append(cross_modal_triplet(cs, cp, y_all, c.margin, c.mining) + c.w_quant * l_q
                         + c.w_balance * l_b)
            qs.append(l_q.detach())
            bs.append(l_b.detach())
        l_hash = torch.stack(terms).mean()
        loss = loss + c.w_hash * l_hash
        logs.update(hash=l_hash.detach(), quant=torch.stack(qs).mean(), balance=torch.stack(bs).mean())
    return {"loss": loss, **logs}


# ---- training -------------------------------------------------------------------------------------
@dataclass
class TrainedCrossATNet:
    """The result of :func:`train`: trainer (net + GCN), graph, history, timing."""

    trainer: CrossATNetTrainer
    graph: ClassGraph | None
    result: Any  # xmodal_lib.engine.train.TrainResult
    seen: list[str]
    load_seconds: float = 0.0

    @property
    def net(self) -> CrossATNet:
        return self.trainer.net


def train(cfg: CrossATNetRunConfig, train_index: SBIRIndex, out_dir: str | Path,
          embed_fn: EmbedFn | None = None, progress: bool = True, resume: bool = False,
          images: tuple[Tensor, Tensor] | None = None, options: FitOptions | None = None) -> TrainedCrossATNet:
    """Train CrossATNet on the seen classes of ``train_index`` (= ``index.subset("train")``).

    ``embed_fn`` maps class names to vectors (default from ``cfg.semantics``); it is only ever
    called with seen class names. ``images`` = preloaded ``(sketches, photos)`` tensors in the
    order of ``train_index.sketches`` / ``.photos`` (to share one load between runs).
    """
    from xmodal_lib.data import preload  # lazy: read at call time: tests patch preload

    check_seen_only([*train_index.sketches, *train_index.photos], train_index.unseen)
    seen = sorted({r.label for r in train_index.sketches} | {r.label for r in train_index.photos})
    if len(seen) < 2:
        raise DataError(f"{train_index.name}: need at least 2 seen classes to train, got {seen}")
    ids = {c: i for i, c in enumerate(seen)}
    t0 = time.perf_counter()
    if images is None:
        ls, lp = image_loaders(cfg)
        images = (preload(train_index.sketches, ls, "sketches", progress),
                  preload(train_index.photos, lp, "photos", progress))
    load_s = time.perf_counter() - t0
    ys = torch.tensor([ids[r.label] for r in train_index.sketches])
    yp = torch.tensor([ids[r.label] for r in train_index.photos])
    data = PairDataset(images[0], ys, images[1], yp, seed=cfg.train.seed, augment=cfg.augment)

    graph = None
    if cfg.use_gcn:
        if embed_fn is None:
            embed_fn = make_embedder(cfg.semantics, cfg.word_vectors)
        graph = build_class_graph(seen, embed_fn, train_index.unseen, cfg.graph, cfg.graph_k)
    torch.manual_seed(cfg.train.seed)
    net = CrossATNet(cfg.model)
    if cfg.train.channels_last:  # the CNN backbones' weights and inputs NHWC (fit moves the rest)
        to_channels_last(net)
    tr = CrossATNetTrainer(net, graph, cfg)
    res = fit(tr, crossatnet_step, data, cfg.train, out_dir, config=cfg.to_dict(),
              desc="crossatnet", progress=progress, resume=resume, options=options)
    tr.eval()
    return TrainedCrossATNet(tr, graph, res, seen, load_s)


# ---- evaluation -----------------------------------------------------------------------------------
@torch.no_grad()
def embed(fn: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 128,
          device: str | torch.device = "cpu") -> Tensor:
    """Apply an encoder to images [N, 3, H, W] in batches -> [N, D] on CPU."""
    outs = [fn(images[a:a + batch_size].to(device)).float().cpu() for a in range(0, len(images), batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0)


@dataclass
class Embedded:
    """Test-set embeddings: sketches (queries) and photos (gallery) with their labels."""

    sketches: Tensor
    photos: Tensor
    sketch_labels: list[str]
    photo_labels: list[str]


def embed_test(net: CrossATNet, test_index: SBIRIndex, cfg: CrossATNetRunConfig,
               images: tuple[Tensor, Tensor] | None = None, progress: bool = False) -> Embedded:
    """Embed every test sketch and photo (the gallery independent of the queries).

    Each image is embedded once per model (bf16 autocast on CUDA, fp32 on CPU) and cached under
    ``cache_dir()/embeddings`` (:mod:`xmodal_lib.retrieval.embed_cache`): re-evaluating the same
    weights reads the vectors back. Records are keyed by path, size and mtime; preloaded
    ``images`` by a hash of their pixels.
    """
    dev = resolve_device(cfg.train.device)
    net.eval().to(dev)
    fp = model_fingerprint(net)
    if images is None:
        ls, lp = image_loaders(cfg)
        sk = embed_records(test_index.sketches, ls, net.encode_sketch, name="crossatnet/sketch", fingerprint=fp,
                           device=dev)
        ph = embed_records(test_index.photos, lp, net.encode_photo, name="crossatnet/photo", fingerprint=fp,
                           device=dev)
    else:
        sk = embed_images(images[0], net.encode_sketch, name="crossatnet/sketch", fingerprint=fp, device=dev)
        ph = embed_images(images[1], net.encode_photo, name="crossatnet/photo", fingerprint=fp, device=dev)
    return Embedded(sk, ph, [r.label for r in test_index.sketches], [r.label for r in test_index.photos])


def _timed(fn: Callable[[], Tensor], repeat: int = 3) -> tuple[Tensor, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def evaluate(net: CrossATNet, emb: Embedded, metrics: Sequence[str] = ("map_all_voc", "p@100"),
             bits: Sequence[int] | None = None) -> dict[str, dict[str, float]]:
    """Zero-shot retrieval metrics, real-valued (``"real"``, cosine) and per code length (``"hash<b>"``,
    Hamming distance of packed codes). Each row also holds ``score_seconds`` (best of 3: computing
    the Q x G score matrix) and ``bytes_per_item`` of the gallery representation."""
    rows: dict[str, dict[str, float]] = {}
    q, g = emb.sketches, emb.photos
    scores, t_real = _timed(lambda: net.similarity(q, g))  # the model's cosine score (Q, G)
    rows["real"] = {**category_metrics(scores, emb.sketch_labels, emb.photo_labels, metrics),
                    "score_seconds": t_real, "bytes_per_item": 4.0 * g.shape[1]}
    for b in (net.cfg.hash_bits if bits is None else bits):
        with torch.no_grad():
            qc = pack_bits(net.codes(q.to(module_device(net)), b).cpu())
            gc = pack_bits(net.codes(g.to(module_device(net)), b).cpu())
        dist, t_ham = _timed(lambda: hamming_distance(qc, gc))
        # Hamming ties: mean over random tie orders + optimistic/pessimistic bounds (retrieval.ties)
        rows[f"hash{b}"] = {**tie_robust_metrics(dist, emb.sketch_labels, emb.photo_labels, metrics, largest=False),
                            "score_seconds": t_ham, "bytes_per_item": float(gc.shape[1])}
    return rows


def random_ranking_metrics(query_labels: Sequence[str], gallery_labels: Sequence[str],
                           metrics: Sequence[str] = ("map_all_voc", "p@100"), repeats: int = 5,
                           seed: int = 0) -> dict[str, float]:
    """Chance level measured with the metric engine (:func:`xmodal_lib.retrieval.chance.chance_metrics`)."""
    return chance_metrics(query_labels, gallery_labels, metrics, repeats, seed)


def run_variant(cfg: CrossATNetRunConfig, index: SBIRIndex, out_dir: str | Path,
                train_images: tuple[Tensor, Tensor] | None = None,
                test_images: tuple[Tensor, Tensor] | None = None,
                embed_fn: EmbedFn | None = None, progress: bool = False) -> tuple[TrainedCrossATNet, dict]:
    """Train on ``index.subset("train")`` and evaluate on ``index.subset("test")`` (unseen classes)."""
    if train_images is None or test_images is None:  # decode-check train AND test before training
        from xmodal_lib.data.preflight import preflight  # lazy: only needed on this branch
        preflight(index, progress=progress)
    t0 = time.perf_counter()
    trained = train(cfg, index.subset("train"), out_dir, embed_fn=embed_fn, progress=progress,
                    images=train_images)
    t1 = time.perf_counter()
    emb = embed_test(trained.net, index.subset("test"), cfg, images=test_images)
    rows = evaluate(trained.net, emb, cfg.metrics)
    rows["timing"] = {"train_seconds": t1 - t0, "eval_seconds": time.perf_counter() - t1,
                      "steps": float(trained.result.steps)}
    return trained, rows


def ablations(cfg: CrossATNetRunConfig) -> dict[str, CrossATNetRunConfig]:
    """The full model and the three ablations of the notebook (same seed and budget)."""
    return {
        "full": cfg,
        "no_cross_attention": override(cfg, cross_attention=False),
        "no_gcn": override(cfg, use_gcn=False),
        "no_hashing": override(cfg, hash_bits=()),
    }


def save_artifact(net: CrossATNet, cfg: CrossATNetRunConfig, name: str = ARTIFACT) -> Path:
    """Save the retrieval network to ``artifacts_dir()/<name>`` (safetensors + JSON with the run config),
    which notebook 05 reuses instead of retraining."""
    from xmodal_lib.run.artifacts import save_model  # lazy: upward import (methods -> run)

    return save_model(net, artifacts_dir() / name, cfg)


def load_artifact(path: str | Path) -> tuple[CrossATNet, CrossATNetRunConfig]:
    """Rebuild a network saved by :func:`save_artifact` (strict loading, random-init backbone first)."""
    from xmodal_lib.run.artifacts import load_model  # lazy: upward import (methods -> run)

    p = Path(path)  # pretrained=False: the stored weights replace any download
    return load_model(p.with_suffix("") if p.suffix in (".json", ".safetensors") else p, CrossATNetRunConfig,
                      lambda cfg: CrossATNet(cfg.model), pretrained=False)
