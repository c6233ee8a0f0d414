"""ZSE-SBIR exhaustive relation-network retrieval: naive (official) vs cached vs rerank.

The official evaluation (methods_spec.md §3.9) scores every sketch-photo pair with CA + RN in
blocks of 20 sketches × 20 photos and recomputes the SA (ViT) features of the photos for every
sketch block. Ours runs SA once per image (plus the per-image CA projections) and reuses them.
``rn_rerank`` scores only the ``ret`` top-k of each query.

Modes of this script:

* default (CPU): small model, gallery 500 × queries 200, measures naive / cached / rerank@50
  end to end — wall time, number of images through SA (counted in the model), mAP (the naive and
  cached score matrices must give the same mAP);
* ``--quick``: tiny sizes for a smoke test;
* ``--scale sketchy25``: Sketchy-Ext-25 test size (15,229 sketches × 17,101 photos); every RN
  cost is measured on a sample of blocks and extrapolated (naive, cached and rerank@k);
  ``--ret-full`` also runs the ``ret`` mode for real at that size (SA once per image on random
  images, scores and mAP@all / P@100 on the device). ``--scale custom`` uses ``--queries`` /
  ``--gallery`` instead (small CPU checks of the same code);
* ``--preset sketchy25`` (GPU): ``--scale sketchy25 --model paper --precision bf16 --ret-full`` on
  CUDA — ViT-B/16 at 224 px, bf16 autocast, fused SDPA attention.

* ``--roofline``: the exhaustive mode as a roofline (default paper model, 2 queries x 2,000
  gallery): FLOPs per pair of CA + RN counted (:func:`~xmodal_lib.methods.zse.rn_evaluate.pair_flops`,
  checked against ``FlopCounterMode`` in the tests), the cached-projection kernel
  (:class:`~xmodal_lib.methods.zse.rn_evaluate.PairScorer`) timed over the gallery on random SA
  tokens, the sustained n³ GEMM rate of the same dtype sampled in the same run, the achieved
  fraction; the previous cached path, the official per-pair path and SA per image for the
  naive/cached ratio (measured vs the FLOP bound, at this size and at Sketchy-25 scale); rerank@k
  time over exhaustive against k/G.

``--precision``: ``auto`` = bf16 autocast on CUDA, fp32 on CPU. ``--attention explicit`` runs the
official explicit softmax attention instead of SDPA (for a same-run comparison).

Note the bound: cached and naive both score all Q·G pairs through CA + RN; caching removes only
the repeated SA passes (and 6 of 8 CA projections per pair), so speed-up ≤ (naive time) /
(naive time − repeated SA time). Prints a table and writes JSON (``--out``, default
``benchmarks/results/``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xmodal_lib.layers.attention import set_attention_impl  # noqa: E402
from xmodal_lib.methods.zse.evaluate import (  # noqa: E402
    SACache,
    build_cache,
    scores_ret,
    scores_rn,
    scores_rn_naive,
    scores_rn_rerank,
)
from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig  # noqa: E402
from xmodal_lib.methods.zse.rn_evaluate import PairScorer, pair_flops  # noqa: E402
from xmodal_lib.retrieval.metrics import category_metrics  # noqa: E402
from xmodal_lib.retrieval.search import similarity  # noqa: E402
from xmodal_lib.run.params import preset  # noqa: E402

SKETCHY25 = (15229, 17101, 25)  # unseen test sketches, photos, classes (methods_spec.md §3.8)

MODELS = {
    # a thin ViT of paper depth: 48 px / patch 8 (36 patch tokens), dim 64, 12 layers
    "small": dict(img_size=48, patch_size=8, dim=64, depth=12, heads=4, ca_heads=4, ca_ffn=96, rn_dim=48,
                  prune_layers=(4, 7, 10)),
    "tiny": dict(img_size=48, patch_size=8, dim=32, depth=4, heads=2, ca_heads=2, ca_ffn=48, rn_dim=16,
                 prune_layers=(2, 3)),
    "paper": dict(),  # _zse_config: the paper profile's ViT-B/16 at 224 px, CA 8 heads / FFN 1024, RN 49 anchors
}


def _zse_config(name: str) -> ZSEConfig:
    """``MODELS[name]``; ``"paper"``: notebook 04's paper-profile model, random init."""
    if name == "paper":
        return preset("04_zse_sbir", "paper", pretrained=False).model
    return ZSEConfig(**MODELS[name])


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, dev):
    _sync(dev)
    t = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t


def _median_time(fn, n: int, dev: torch.device, warmup: int = 2) -> float:
    """Median wall time of ``fn`` over ``n`` runs after ``warmup`` untimed runs (first-shape kernel setup)."""
    for _ in range(warmup):
        fn()
    ts = sorted(_timed(fn, dev)[1] for _ in range(max(1, n)))
    return ts[len(ts) // 2]


def end_to_end(model: ZSESBIR, Q: int, G: int, k: int, block: int, dev: torch.device, seed: int) -> dict:
    """Run the three schemes at full size; returns rows keyed by scheme."""
    g = torch.Generator().manual_seed(seed)
    S = model.cfg.img_size
    sk, ph = torch.randn(Q, 3, S, S, generator=g), torch.randn(G, 3, S, S, generator=g)
    ql = torch.randint(0, 10, (Q,), generator=g)
    gl = torch.randint(0, 10, (G,), generator=g)
    rows = {}
    with torch.no_grad():
        scores_rn_naive(model, sk[:2], ph[:2], block=block)  # warm-up (allocator, kernels)
        model.sa.forward_images = 0
        naive, t = _timed(lambda: scores_rn_naive(model, sk, ph, block=block), dev)
        rows["naive (official, SA per block)"] = {"time_s": t, "sa_images": model.sa.forward_images, "scores": naive}
        model.sa.forward_images = 0
        (sc, pc), t_sa = _timed(lambda: (build_cache(model, sk, "sketch"), build_cache(model, ph, "photo")), dev)
        cached, t_pairs = _timed(lambda: scores_rn(model, sc, pc, block_q=block, block_g=5 * block), dev)
        rows["cached exhaustive"] = {"time_s": t_sa + t_pairs, "sa_time_s": t_sa,
                                     "sa_images": model.sa.forward_images, "scores": cached}
        model.sa.forward_images = 0
        (sc2, pc2), t_sa2 = _timed(lambda: (build_cache(model, sk, "sketch"), build_cache(model, ph, "photo")), dev)
        rr, t_rr = _timed(lambda: scores_rn_rerank(model, sc2, pc2, k=k), dev)
        rows[f"rerank top-{k}"] = {"time_s": t_sa2 + t_rr, "sa_time_s": t_sa2,
                                   "sa_images": model.sa.forward_images, "scores": rr}
        rows["ret"] = {"time_s": t_sa2, "sa_images": Q + G, "scores": scores_ret(sc2, pc2)}
    base = rows["naive (official, SA per block)"]["time_s"]
    for r in rows.values():
        s = r.pop("scores")
        m = category_metrics(s, ql, gl, metrics=("map_all_voc", "p@100"))
        r.update(map_all_voc=m["map_all_voc"], p100=m["p@100"], speedup_vs_naive=base / r["time_s"])
    rows["cached exhaustive"]["max_abs_score_diff_vs_naive"] = float((cached - naive).abs().max())
    return rows


def extrapolated(model: ZSESBIR, Q: int, G: int, k: int, block: int, dev: torch.device, n_sample: int,
                 pairs_per_batch: int = 4000) -> dict:
    """Per-block costs measured on samples and scaled to Q × G (no full-size run)."""
    S = model.cfg.img_size
    x = torch.randn(block, 3, S, S, device=dev)
    with torch.no_grad():
        t_sa_block = _median_time(lambda: model.sa_features(x, "photo"), n_sample, dev)  # one photo block through SA
        sk = build_cache(model, x, "sketch")
        ph = build_cache(model, x, "photo")

        def naive_pairs():  # one block x block of pairs from raw tokens (naive CA + RN)
            st = sk.tokens.repeat_interleave(block, 0)
            pt = ph.tokens.repeat(block, 1, 1)
            return model.pair_forward(st, sk.kept.repeat_interleave(block, 0), pt, ph.kept.repeat(block, 1)).score

        t_pairs_naive = _median_time(naive_pairs, n_sample, dev)
        # the same block from the cache (CA projections reused)
        t_pairs_cached = _median_time(lambda: scores_rn(model, sk, ph, block_q=block, block_g=block), n_sample, dev)
    n_blocks = math.ceil(Q / block) * math.ceil(G / block)
    per_img = t_sa_block / block
    naive = n_blocks * (t_sa_block + t_pairs_naive) + math.ceil(Q / block) * t_sa_block
    cached = (Q + G) * per_img + n_blocks * t_pairs_cached
    rerank = (Q + G) * per_img + (Q * k) / (block * block) * t_pairs_cached
    return {
        "naive (official, SA per block)": {"time_s": naive, "sa_images": Q + math.ceil(Q / block) * G},
        "cached exhaustive": {"time_s": cached, "sa_images": Q + G},
        f"rerank top-{k}": {"time_s": rerank, "sa_images": Q + G},
        "ret": {"time_s": (Q + G) * per_img, "sa_images": Q + G},
        "_measured": {"sa_block_s": t_sa_block, "pair_block_naive_s": t_pairs_naive,
                      "pair_block_cached_s": t_pairs_cached, "block": block, "n_sample": n_sample},
    }


def ret_full(model: ZSESBIR, Q: int, G: int, n_classes: int, dev: torch.device, batch: int, seed: int) -> dict:
    """The ``ret`` mode really run at Q x G: SA once per (random) image, cosine scores, metrics on ``dev``."""
    S = model.cfg.img_size
    gen = torch.Generator(device=dev).manual_seed(seed)
    emb, t_embed = {}, 0.0
    with torch.no_grad():
        model.encode_photo(torch.randn(2, 3, S, S, device=dev))  # warm-up
        for name, n, enc in (("sketch", Q, model.encode_sketch), ("photo", G, model.encode_photo)):
            out = torch.empty(n, model.cfg.dim, device=dev)
            for i in range(0, n, batch):
                x = torch.randn(min(batch, n - i), 3, S, S, generator=gen, device=dev)
                _sync(dev)
                t = time.perf_counter()
                out[i:i + x.shape[0]] = enc(x).float()
                _sync(dev)
                t_embed += time.perf_counter() - t
            emb[name] = out
        ql = torch.randint(0, n_classes, (Q,), generator=gen, device=dev)
        gl = torch.randint(0, n_classes, (G,), generator=gen, device=dev)
        (scores, m), t_metrics = _timed(lambda: (lambda sc: (sc, category_metrics(
            sc, ql, gl, metrics=("map_all_voc", "p@100"))))(similarity(emb["sketch"], emb["photo"])), dev)
    return {"time_s": t_embed + t_metrics, "embed_s": t_embed, "scores_and_metrics_s": t_metrics,
            "images_per_s": (Q + G) / t_embed, "sa_images": Q + G, "map_all_voc": m["map_all_voc"],
            "p100": m["p@100"], "score_matrix": list(scores.shape)}


def gemm_rate(n: int, reps: int, dev: torch.device, dtype: torch.dtype) -> float:
    """Sustained FLOP/s of an n x n x n GEMM of ``dtype`` (median of ``reps`` after one warm-up)."""
    a, b = (torch.randn(n, n, device=dev).to(dtype) for _ in range(2))
    return 2 * n ** 3 / _median_time(lambda: a @ b, reps, dev, warmup=1)


def _sa_flops(model: ZSESBIR, dev: torch.device, restore: str) -> int:
    """FLOPs of one image through SA (FlopCounterMode; explicit attention so matmuls are counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    set_attention_impl(model, "explicit")
    x = torch.randn(1, 3, model.cfg.img_size, model.cfg.img_size, device=dev)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.sa_features(x, "photo")
    set_attention_impl(model, restore)
    return int(fc.get_total_flops())


def roofline(model: ZSESBIR, Q: int, G: int, ks: list[int], block_g: int, naive_block: int, n_naive: int,
             gemm_n: int, dev: torch.device, dtype: torch.dtype, seed: int, attention: str) -> dict:
    """Exhaustive CA + RN pair scoring (random SA tokens) against the measured GEMM rate; rerank@k; naive.

    SA token values do not change the cost of a pair, so the Q + G images are random token sets
    (N(0, 1), the scale of the SA's normed outputs); SA itself is timed per image on real-size inputs.
    The GEMM rate is sampled before every gallery chunk (the CPUs may be shared); its median is the roofline.
    """
    g = torch.Generator(device=dev).manual_seed(seed)
    fl = pair_flops(model)
    D, N = fl["dim"], fl["tokens"]
    pos = torch.arange(N, device=dev)
    tok = lambda n: torch.randn(n, 1 + N, D, generator=g, device=dev)  # noqa: E731
    peaks = [gemm_rate(gemm_n, 3, dev, dtype)]
    sc = PairScorer(model)
    with torch.no_grad():
        sk = sc.project(tok(Q), pos.expand(Q, N), "sketch")
        sc.score_block(sk, sc.project(tok(block_g), pos.expand(block_g, N), "photo"))  # warm-up
        t_pairs = t_proj = 0.0
        chunk = max(block_g, 256)
        chunks = []  # per gallery chunk: pair FLOP/s next to a GEMM rate measured right before it (shared CPUs)
        for j in range(0, G, chunk):
            c = min(chunk, G - j)
            x = tok(c)
            ph, t = _timed(lambda: sc.project(x, pos.expand(c, N), "photo"), dev)
            t_proj += t
            if j:
                peaks.append(gemm_rate(gemm_n, 1, dev, dtype))
            t_c = sum(_timed(lambda: sc.score_block(sk, ph.select(slice(b, b + block_g))), dev)[1]
                      for b in range(0, c, block_g))
            t_pairs += t_c
            chunks.append({"pairs": Q * c, "pair_flops_per_s": Q * c * fl["cached"] / t_c,
                           "gemm_flops_per_s": peaks[-1]})
        t_pair = t_pairs / (Q * G)
        peak = sorted(peaks)[len(peaks) // 2]
        # the previous cached path (CrossAttention.project + pairs_from_cache, tensors repeated per pair)
        xs, xp = tok(Q), tok(block_g)
        old_s = SACache(xs, pos.expand(Q, N), model.ca.project(xs, "sketch"), "sketch")
        old_p = SACache(xp, pos.expand(block_g, N), model.ca.project(xp, "photo"), "photo")
        t_old = _median_time(lambda: scores_rn(model, old_s, old_p, block_q=Q, block_g=block_g), 2, dev, 1) / (Q * block_g)
        # official per-pair CA + RN from raw tokens (pair_forward), and SA per image at full size
        xs, xp = tok(n_naive), tok(n_naive)
        pn = pos.expand(n_naive, N)
        t_naive_pair = _median_time(lambda: model.pair_forward(xs, pn, xp, pn), 2, dev, 1) / n_naive
        img = torch.randn(2, 3, model.cfg.img_size, model.cfg.img_size, generator=g, device=dev)
        t_sa_img = _median_time(lambda: model.sa_features(img, "photo"), 2, dev, 1) / 2
        # rerank@k: ret search over (Q, G) + RN on Q*k row-paired shortlists
        e_s, e_p = torch.randn(Q, D, generator=g, device=dev), torch.randn(G, D, generator=g, device=dev)
        t_ret = _median_time(lambda: similarity(e_s, e_p, metric="cosine").topk(max(ks), dim=1), 3, dev, 1)
        rer = []
        for k in ks:
            n = Q * k
            a, b = sc.project(tok(n), pos.expand(n, N), "sketch"), sc.project(tok(n), pos.expand(n, N), "photo")
            step = Q * block_g
            t_rn = _median_time(lambda: [sc.score_pairs(a.select(slice(i, i + step)), b.select(slice(i, i + step)))
                                         for i in range(0, n, step)], 1, dev, 1)
            t_ex = t_pair * Q * G
            rer.append({"k": k, "k_over_G": k / G, "time_s": t_ret + t_rn, "rn_s": t_rn, "ret_search_s": t_ret,
                        "time_over_exhaustive": (t_ret + t_rn) / t_ex, "rn_per_pair_over_block_per_pair": t_rn / n / t_pair})
    sa_fl = _sa_flops(model, dev, attention)
    t_proj_img = t_proj / G

    def per_pair(q: int, gal: int) -> dict:
        """FLOPs and (measured-component) seconds per pair for q x gal; per-image SA/projections shared out."""
        naive_sa = 1 / gal + math.ceil(q / naive_block) / q  # official: photo SA again for every sketch block
        once = 1 / gal + 1 / q  # ours: SA (+ projections) once per image
        nf, cf = fl["official_pair"] + sa_fl * naive_sa, fl["cached"] + (fl["projections_per_image"] + sa_fl) * once
        nt, ct = t_naive_pair + t_sa_img * naive_sa, t_pair + (t_proj_img + t_sa_img) * once
        return {"queries": q, "gallery": gal, "naive_flops": nf, "cached_flops": cf, "naive_s": nt, "cached_s": ct,
                "naive_over_cached_flop_bound": nf / cf, "naive_over_cached_measured": nt / ct}

    here, s25 = per_pair(Q, G), per_pair(SKETCHY25[0], SKETCHY25[1])
    return {
        "gemm_n": gemm_n, "dtype": str(dtype).replace("torch.", ""), "peak_flops": peak, "peak_flops_samples": peaks,
        "chunks": chunks, "flops_per_pair": fl,
        "sa_flops_per_image": sa_fl, "pairs": Q * G, "exhaustive_pairs_s": t_pairs, "pair_s": t_pair,
        "achieved_flops": fl["cached"] / t_pair, "achieved_fraction_of_gemm": fl["cached"] / t_pair / peak,
        "projection_s_per_image": t_proj_img, "sa_s_per_image": t_sa_img,
        "previous_cached_pair_s": t_old, "speedup_vs_previous_cached": t_old / t_pair,
        "naive": {"block": naive_block, "pair_s_ca_rn": t_naive_pair,
                  "achieved_fraction_of_gemm": fl["official_pair"] / t_naive_pair / peak},
        "naive_over_cached": {"this_run": here, "sketchy25": s25,
                              "note": "seconds from measured components (pair time, SA and projections per image); "
                                      "the FLOP bound assumes both paths run at the same FLOP rate, so the measured "
                                      "ratio exceeds it when the naive path also runs at a lower rate"},
        "rerank": rer,
        "sketchy25_projection_s": {"exhaustive_cached": SKETCHY25[0] * SKETCHY25[1] * t_pair
                                   + (SKETCHY25[0] + SKETCHY25[1]) * (t_sa_img + t_proj / G),
                                   "naive_official": SKETCHY25[0] * SKETCHY25[1] * t_naive_pair
                                   + (math.ceil(SKETCHY25[0] / naive_block) * SKETCHY25[1] + SKETCHY25[0]) * t_sa_img},
    }


def print_roofline(r: dict) -> None:
    fl = r["flops_per_pair"]
    print(f"FLOPs per pair (CA + RN, cached): {fl['cached'] / 1e9:.3f} G (attention {fl['ca_attention'] / 1e9:.3f}, "
          f"out-proj {fl['ca_out_proj'] / 1e9:.3f}, FFN {fl['ca_ffn'] / 1e9:.3f}, RN conv {fl['rn_conv'] / 1e9:.3f}, "
          f"kernel+MLP {(fl['rn_kernel'] + fl['rn_mlp']) / 1e9:.4f}); official per pair {fl['official_pair'] / 1e9:.3f} G; "
          f"SA {r['sa_flops_per_image'] / 1e9:.2f} G per image")
    ps = r["peak_flops_samples"]
    print(f"GEMM {r['gemm_n']}^3 {r['dtype']}: median {r['peak_flops'] / 1e9:.1f} GFLOP/s over {len(ps)} samples "
          f"({min(ps) / 1e9:.1f}..{max(ps) / 1e9:.1f}, one before each gallery chunk)")
    print(f"exhaustive ({r['pairs']} pairs): {r['pair_s'] * 1e3:.2f} ms/pair, {r['achieved_flops'] / 1e9:.1f} GFLOP/s = "
          f"{100 * r['achieved_fraction_of_gemm']:.1f} % of the GEMM rate; previous cached path "
          f"{r['previous_cached_pair_s'] * 1e3:.2f} ms/pair ({r['speedup_vs_previous_cached']:.2f}x slower)")
    nv = r["naive"]
    print(f"official per-pair CA + RN (no cache): {nv['pair_s_ca_rn'] * 1e3:.2f} ms/pair "
          f"({100 * nv['achieved_fraction_of_gemm']:.1f} % of the GEMM rate); naive scheme: photo SA per block of {nv['block']}")
    for name, b in r["naive_over_cached"].items():
        if isinstance(b, dict):
            print(f"  naive/cached at {b['queries']} x {b['gallery']}: measured {b['naive_over_cached_measured']:.2f}x, "
                  f"bound from FLOP counts (equal FLOP rates) {b['naive_over_cached_flop_bound']:.2f}x")
    print(f"{'rerank k':>9s} {'k/G':>7s} {'time [s]':>9s} {'/ exhaustive':>13s}")
    for x in r["rerank"]:
        print(f"{x['k']:9d} {x['k_over_G']:7.4f} {x['time_s']:9.3f} {x['time_over_exhaustive']:13.4f}")
    p = r["sketchy25_projection_s"]
    print(f"Sketchy-25 projection: exhaustive cached {p['exhaustive_cached'] / 3600:.1f} h, naive official "
          f"{p['naive_official'] / 3600:.1f} h")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="cpu | cuda (default cpu; cuda with --preset)")
    ap.add_argument("--model", default=None, choices=sorted(MODELS), help="default small (paper with --preset)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--gallery", type=int, default=500)
    ap.add_argument("--rerank-k", type=int, default=50)
    ap.add_argument("--block", type=int, default=20)
    ap.add_argument("--scale", default=None, choices=["sketchy25", "custom"],
                    help="extrapolate RN costs to this size (custom: --queries x --gallery)")
    ap.add_argument("--preset", default=None, choices=["sketchy25"],
                    help="GPU run at Sketchy-25 scale: paper model, bf16, ret measured at full size")
    ap.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"])
    ap.add_argument("--attention", default="fused", choices=["fused", "explicit"])
    ap.add_argument("--ret-full", action="store_true", help="with --scale: run the ret mode at full size")
    ap.add_argument("--embed-batch", type=int, default=None, help="images per SA batch in --ret-full")
    ap.add_argument("--samples", type=int, default=5, help="blocks timed per cost in --scale mode")
    ap.add_argument("--roofline", action="store_true",
                    help="exhaustive CA + RN pair scoring vs the measured GEMM rate (default paper model, 2 x 2000)")
    ap.add_argument("--rerank-ks", default="25,100,400", help="k values of the rerank scaling in --roofline")
    ap.add_argument("--pair-block", type=int, default=16, help="photos per pair block in --roofline (x all queries)")
    ap.add_argument("--naive-pairs", type=int, default=8, help="pairs timed for the official per-pair path")
    ap.add_argument("--gemm-n", type=int, default=2048, help="n of the n^3 GEMM whose rate is the roofline")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.preset == "sketchy25":
        if a.device is None and not torch.cuda.is_available():
            raise SystemExit("--preset sketchy25 is a GPU run (ViT-B/16 over 32k images); no CUDA device here. "
                             "Pass --device cpu explicitly to force it, or use --scale custom for a small check.")
        a.scale, a.ret_full = "sketchy25", True
        a.model = a.model or "paper"
        a.precision = a.precision or "bf16"
        a.device = a.device or "cuda"
    if a.roofline:
        return main_roofline(a)
    if a.quick:
        a.queries, a.gallery, a.rerank_k, a.block, a.model, a.samples = 24, 50, 10, 8, "tiny", 2
    a.model = a.model or "small"
    dev = torch.device(a.device or "cpu")
    prec = a.precision or "auto"
    if prec == "auto":
        prec = "bf16" if dev.type == "cuda" else "fp32"
    torch.manual_seed(a.seed)
    model = ZSESBIR(_zse_config(a.model)).to(dev).eval()
    n_attn = set_attention_impl(model, a.attention)
    amp = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if prec == "bf16" else contextlib.nullcontext
    full = None
    if a.scale:
        Q, G, n_cls = SKETCHY25 if a.scale == "sketchy25" else (a.queries, a.gallery, 25)
        k = a.rerank_k if a.rerank_k != 50 or a.scale == "custom" else 200
        with amp():
            rows = extrapolated(model, Q, G, k, a.block, dev, a.samples)
            if a.ret_full:
                full = ret_full(model, Q, G, n_cls, dev, a.embed_batch or (256 if dev.type == "cuda" else 32), a.seed)
        meas = rows.pop("_measured")
        if full is not None:
            rows["ret (run at full size)"] = full
        base = rows["naive (official, SA per block)"]["time_s"]
        for r in rows.values():
            r["speedup_vs_naive"] = base / r["time_s"]
        kind = "extrapolated from sampled blocks" + (" + ret run at full size" if full else "")
    else:
        Q, G, k = a.queries, a.gallery, a.rerank_k
        with amp():
            rows = end_to_end(model, Q, G, k, a.block, dev, a.seed)
        meas, kind = {}, "measured end to end"
    n_par = sum(p.numel() for p in model.parameters())
    report = {"benchmark": "bench_zse_eval", "device": str(dev),
              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
              "threads": torch.get_num_threads(), "model": a.model, "params": n_par,
              "model_config": model.cfg.to_dict(), "precision": prec, "attention": a.attention,
              "attention_modules": n_attn, "queries": Q, "gallery": G, "rerank_k": k, "block": a.block,
              "scale": a.scale, "preset": a.preset, "kind": kind, "rows": rows, "measured": meas, "quick": a.quick}
    print(f"ZSE-SBIR retrieval, {Q} queries x {G} gallery, model {a.model} ({n_par/1e6:.2f} M params), "
          f"device {dev}, {prec}, {a.attention} attention, {kind}")
    print(f"{'scheme':34s} {'time [s]':>10s} {'SA images':>10s} {'speed-up':>9s} {'mAP@all':>8s} {'P@100':>7s}")
    for name, r in rows.items():
        print(f"{name:34s} {r['time_s']:10.2f} {r['sa_images']:10d} {r['speedup_vs_naive']:8.2f}x "
              f"{r.get('map_all_voc', float('nan')):8.4f} {r.get('p100', float('nan')):7.4f}")
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / (
        f"bench_zse_eval{'_quick' if a.quick else ''}{'_' + a.scale if a.scale else ''}_{dev.type}_{prec}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"-> {out}")
    return report


def main_roofline(a: argparse.Namespace) -> dict:
    """``--roofline``: table + JSON ``bench_zse_eval_roofline[_quick]_<device>_<precision>.json``."""
    if a.quick:
        a.model, a.gemm_n, a.rerank_ks, a.pair_block, a.naive_pairs = "tiny", 256, "5,10", 8, 4
    Q = 2 if a.queries == 200 else a.queries  # the end-to-end defaults do not apply here
    G = (40 if a.quick else 2000) if a.gallery == 500 else a.gallery
    dev = torch.device(a.device or "cpu")
    prec = a.precision or "auto"
    prec = ("bf16" if dev.type == "cuda" else "fp32") if prec == "auto" else prec
    torch.manual_seed(a.seed)
    model = ZSESBIR(_zse_config(a.model or "paper")).to(dev).eval()
    set_attention_impl(model, a.attention)
    dtype = torch.bfloat16 if prec == "bf16" else torch.float32
    ks = [int(k) for k in a.rerank_ks.split(",")]
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if prec == "bf16" else contextlib.nullcontext()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    with amp:
        r = roofline(model, Q, G, ks, a.pair_block, a.block, a.naive_pairs, a.gemm_n, dev, dtype, a.seed, a.attention)
    r.update(benchmark="bench_zse_eval", mode="roofline", device=str(dev), threads=torch.get_num_threads(),
             gpu=torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, model=a.model or "paper",
             model_config=model.cfg.to_dict(), precision=prec, attention=a.attention, queries=Q, gallery=G,
             wall_s=time.perf_counter() - t0, quick=a.quick, loadavg_before=load0,
             loadavg_after=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
             torch=torch.__version__, date_utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
             target_fraction_ge_50pct=r["achieved_fraction_of_gemm"] >= 0.5)
    print(f"ZSE-SBIR CA + RN roofline, {Q} queries x {G} gallery, model {r['model']}, {dev}, {prec}, "
          f"{r['threads']} threads, load avg {load0} -> {r['loadavg_after']}")
    print_roofline(r)
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / (
        f"bench_zse_eval_roofline{'_quick' if a.quick else ''}_{dev.type}_{prec}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2))
    print(f"-> {out}")
    return r


if __name__ == "__main__":
    main()
