"""Exact top-k over a gallery split into shards (FAISS flat index per shard, or torch per shard) vs unsharded.

Random embeddings (normal, then cosine, as in bench_metrics), exact search: every sharded result
is compared with the unsharded FAISS top-k of the same run. Scores must agree position by position
within float rounding (``exact_up_to_rounding``: max |Δscore| <= 1e-5); indices then differ only
where two gallery items score equal up to rounding (different GEMM blocking per shard can swap such
near-ties), reported as ``indices_equal_fraction``. The table gives build and search time and the
ratio to the unsharded FAISS baseline.

Sizes: default 20,000 queries x 20,000 gallery x 768-d; ``--preset quickdraw`` is QuickDraw-Extended
(92,291 sketch queries x 54,151 photos, 768-d, k = 200 for P@200); ``--quick`` a tiny CI size.
``--backends faiss,torch`` chooses the searchers (torch runs on ``--device``, e.g. cuda: the GPU
path without faiss-gpu); ``--shards 1,2,4,8`` the shard counts.

Usage::

    python benchmarks/bench_faiss_shards.py --quick
    flock /tmp/xmodal_cpu.lock python benchmarks/bench_faiss_shards.py --preset quickdraw --backends faiss
    python benchmarks/bench_faiss_shards.py --preset quickdraw --backends torch --device cuda   # GPU

Prints a table and writes JSON (``--out``, default ``benchmarks/results/bench_faiss_shards_<...>.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from bench_metrics import peak_rss_mb  # noqa: E402  (the sibling script's; one definition)

from xmodal_lib.retrieval.faiss_backend import FaissIndex, ShardedFaissIndex, faiss_available, sharded_topk  # noqa: E402

SCORE_TOL = 1e-5
PRESETS = {"quickdraw": dict(queries=92291, gallery=54151, dim=768, k=200)}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_faiss(q: torch.Tensor, g: torch.Tensor, k: int, shards: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    t = time.perf_counter()
    idx = FaissIndex(g.shape[1], "cosine").add(g) if shards == 1 else ShardedFaissIndex(g.shape[1], "cosine").add(g, shards)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    s, i = idx.search(q, k)
    return {"build_s": t_build, "search_s": time.perf_counter() - t}, s, i


def run_torch(q: torch.Tensor, g: torch.Tensor, k: int, shards: int, dev: torch.device,
              chunk: int | None) -> tuple[dict, torch.Tensor, torch.Tensor]:
    _sync(dev)
    t = time.perf_counter()
    qd, gd = q.to(dev), g.to(dev)
    _sync(dev)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    s, i = sharded_topk(qd, gd, k, metric="cosine", shards=shards, backend="torch", chunk_size=chunk, device=dev)
    _sync(dev)
    return {"build_s": t_build, "search_s": time.perf_counter() - t}, s.cpu(), i.cpu()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None)
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--gallery", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--shards", default="1,2,4,8")
    ap.add_argument("--backends", default="faiss,torch")
    ap.add_argument("--device", default="cpu", help="device of the torch backend")
    ap.add_argument("--chunk", type=int, default=None, help="queries per chunk of the torch backend")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.preset:
        for key, v in PRESETS[a.preset].items():
            setattr(a, key, v)
    if a.quick:
        a.queries, a.gallery, a.dim, a.k, a.shards = 300, 1000, 32, 20, "1,3"
    shards = [int(s) for s in a.shards.split(",")]
    backends = [b for b in a.backends.split(",") if b]
    if "faiss" in backends and not faiss_available():
        raise SystemExit("faiss is not importable (install the [index] extra) - run with --backends torch")
    torch.set_num_threads(a.threads)
    if "faiss" in backends:
        import faiss

        faiss.omp_set_num_threads(a.threads)
    dev = torch.device(a.device)
    gen = torch.Generator().manual_seed(a.seed)
    q = torch.randn(a.queries, a.dim, generator=gen)
    g = torch.randn(a.gallery, a.dim, generator=gen)
    print(f"exact cosine top-{a.k}: {a.queries:,} queries x {a.gallery:,} gallery x {a.dim}-d, "
          f"{a.threads} threads, torch device {dev}", flush=True)

    rows, ref = [], None
    plan = ([("faiss", 1)] if "faiss" in backends else []) + [(b, s) for b in backends for s in shards
                                                              if not (b == "faiss" and s == 1)]
    for backend, s in plan:
        if backend == "faiss":
            r, sc, ix = run_faiss(q, g, a.k, s)
        elif backend == "torch":
            r, sc, ix = run_torch(q, g, a.k, s, dev, a.chunk)
        else:
            raise SystemExit(f"--backends: unknown {backend!r} (faiss, torch)")
        if ref is None:
            ref = (sc, ix, f"{backend} x{s}")
        r.update(backend=backend, shards=s, total_s=r["build_s"] + r["search_s"],
                 indices_equal_fraction=float((ix == ref[1]).float().mean()),
                 max_abs_score_diff=float((sc - ref[0]).abs().max()), peak_rss_mb=peak_rss_mb())
        r["exact_up_to_rounding"] = r["max_abs_score_diff"] <= SCORE_TOL
        rows.append(r)
        print({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    base = rows[0]["search_s"]
    for r in rows:
        r["search_speedup_vs_baseline"] = base / r["search_s"]

    print(f"\n{'backend':8s} {'shards':>6s} {'build s':>9s} {'search s':>10s} {'x base':>7s} {'equal idx':>10s} "
          f"{'max |ds|':>9s}   (baseline: {ref[2]})")
    for r in rows:
        print(f"{r['backend']:8s} {r['shards']:6d} {r['build_s']:9.3f} {r['search_s']:10.3f} "
              f"{r['search_speedup_vs_baseline']:6.2f}x {r['indices_equal_fraction']:10.6f} {r['max_abs_score_diff']:9.2e}")
    report = {"benchmark": "bench_faiss_shards", "quick": a.quick, "preset": a.preset, "queries": a.queries,
              "gallery": a.gallery, "dim": a.dim, "k": a.k, "threads": a.threads, "device": str(dev),
              "baseline": ref[2], "rows": rows, "score_tolerance": SCORE_TOL,
              "all_exact_up_to_rounding": all(r["exact_up_to_rounding"] for r in rows),
              "torch": torch.__version__, "platform": platform.platform()}
    tag = "quick" if a.quick else (a.preset or f"{a.queries}x{a.gallery}")
    out = Path(a.out) if a.out else HERE / "results" / f"bench_faiss_shards_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
