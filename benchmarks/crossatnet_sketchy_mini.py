"""CrossATNet on real sketches: ``../shared/data/sketchy_mini`` with the official Sketchy ``zeroshot1``
split (100 seen classes for training: 2,500 sketches + 2,500 photos; 25 unseen classes for the test:
625 sketch queries against 625 photos), random init, CPU.

Variants (same data, seed, backbone and number of steps): the full model, ``no_gcn`` (no semantic
alignment to the graph CNN), ``no_cross_attention`` (own attention pooling only), and the full
model's 64-bit Hamming retrieval. Metrics: mAP@all (VOC-interpolated) and P@100 on the unseen
classes from ``xmodal_lib.retrieval.metrics.category_metrics``; chance = the same metrics of
uniformly random rankings (mean of 5) measured in the same run.

Usage::

    flock /tmp/xmodal_cpu.lock python benchmarks/crossatnet_sketchy_mini.py          # ~15-20 min, 2 threads
    python benchmarks/crossatnet_sketchy_mini.py --quick                              # minutes, pipeline check

Prints a table and writes JSON (``--out``, default ``benchmarks/results/crossatnet_sketchy_mini.json``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from xmodal_lib.run.params import build, override  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None, help="sketchy_mini folder (default ../shared/data/sketchy_mini)")
    ap.add_argument("--backbone", default="test_resnet")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--output-stride", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--semantics", default="minilm", choices=("minilm", "word2vec", "hashing"))
    ap.add_argument("--word-vectors", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 epoch per variant (pipeline check, numbers meaningless)")
    ap.add_argument("--out", default=str(HERE / "results" / "crossatnet_sketchy_mini.json"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from xmodal_lib.infra.paths import shared_data_dir
    from xmodal_lib.methods.crossatnet import pipeline as cat
    from xmodal_lib.methods.crossatnet.semantics import make_embedder

    root = Path(args.data_root) if args.data_root else (shared_data_dir() or Path("missing")) / "sketchy_mini"
    if not root.is_dir():
        print(f"sketchy_mini not found at {root}; pass --data-root", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    cfg = build(
        cat.CrossATNetRunConfig, dataset="sketchy", data_root=str(root), split="zeroshot1", backbone=args.backbone,
        img_size=args.img_size, output_stride=args.output_stride, embed_dim=128, attn_dim=64, gcn_hidden=128,
        graph_k=5, hash_bits=(64,), epochs=1 if args.quick else args.epochs, batch_size=args.batch_size,
        lr=args.lr, semantics=args.semantics, word_vectors=args.word_vectors, seed=args.seed, device="cpu")
    index = cat.load_index(cfg)
    train_idx, test_idx = index.subset("train"), index.subset("test")
    counts = {"train": train_idx.counts(), "test": test_idx.counts(), "unseen_classes": len(index.unseen)}
    print(f"{index.name}: train {counts['train']}, test {counts['test']}")
    t0 = time.perf_counter()
    images = cat.load_images(cfg, index)
    load_s = time.perf_counter() - t0
    embed_fn = make_embedder(cfg.semantics, cfg.word_vectors)
    chance = cat.random_ranking_metrics([r.label for r in test_idx.sketches], [r.label for r in test_idx.photos],
                                        cfg.metrics, seed=args.seed)

    variants = {"full": cfg, "no_gcn": override(cfg, use_gcn=False),
                "no_cross_attention": override(cfg, cross_attention=False)}
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="crossatnet_bench_") as tmp:
        for name, vcfg in variants.items():
            _, res = cat.run_variant(vcfg, index, Path(tmp) / name, images["train"], images["test"], embed_fn)
            rows[name] = {**{m: res["real"][m] for m in cfg.metrics}, **res["timing"]}
            if name == "full":
                rows["full_hash64"] = {**{m: res["hash64"][m] for m in cfg.metrics}, **res["timing"],
                                       "score_seconds": res["hash64"]["score_seconds"],
                                       "real_score_seconds": res["real"]["score_seconds"]}
            print(f"{name}: " + ", ".join(f"{m}={rows[name][m]:.4f}" for m in cfg.metrics)
                  + f" ({res['timing']['train_seconds']:.0f} s train)", flush=True)
    rows["chance"] = dict(chance)
    wall = time.perf_counter() - t_start

    header = f"| variant | {' | '.join(cfg.metrics)} | x chance ({cfg.metrics[0]}) | train s |"
    lines = [header, "|" + "---|" * (len(cfg.metrics) + 3)]
    for name, r in rows.items():
        ratio = r[cfg.metrics[0]] / chance[cfg.metrics[0]]
        lines.append(f"| {name} | " + " | ".join(f"{r[m]:.4f}" for m in cfg.metrics)
                     + f" | {ratio:.2f} | {r.get('train_seconds', float('nan')):.0f} |")
    table = "\n".join(lines)
    print(table)
    print(f"wall time {wall:.0f} s (image loading {load_s:.0f} s), {args.threads} threads")

    out = {
        "benchmark": "crossatnet_sketchy_mini",
        "setting": "Sketchy zeroshot1 on sketchy_mini: train 100 seen classes, test 25 unseen "
                   "(625 sketch queries x 625 photos), random init, CPU",
        "quick": args.quick, "config": cfg.to_dict(), "counts": counts, "results": rows,
        "chance": chance, "wall_seconds": wall, "image_load_seconds": load_s, "threads": args.threads,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu_count": os.cpu_count()},
        "table": table,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
