"""ZSE-SBIR on real data: ``../shared/data/sketchy_mini`` with the official ``Sketchy/zeroshot1`` split.

Train from random init on the 100 seen classes (2,500 sketches + 2,500 photos; 10 seen classes
held out for model selection), then retrieve the 25 unseen classes (625 sketches × 625 photos)
in the three modes ``ret``, ``rn`` (exhaustive, cached SA) and ``rn_rerank``: mAP@all
(VOC-interpolated, ``map_all_voc``) and P@100. Plus one cross-dataset number: a model trained on
the embedded synthetic benchmark, tested on the same 25 unseen classes.

CPU budget ≤ 20 min wall in total (small model at 48 px). Chance mAP@all ≈ 0.04 (25 balanced
classes). Prints a table and writes ``benchmarks/results/zse_sketchy_mini.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xmodal_lib.infra.paths import shared_data_dir  # noqa: E402
from xmodal_lib.methods.zse import pipeline as zse  # noqa: E402
from xmodal_lib.run.params import build, override  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--items", type=int, default=2400, help="items per epoch")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--rerank-k", type=int, default=50)
    ap.add_argument("--synthetic-epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a few steps only (smoke test of the script)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "zse_sketchy_mini.json"))
    a = ap.parse_args(argv)
    data = shared_data_dir()
    if data is None or not (data / "sketchy_mini").is_dir():
        print("skipped: ../shared/data/sketchy_mini absent")
        return {}
    root = data / "sketchy_mini"
    if a.quick:
        a.epochs, a.items, a.batch, a.synthetic_epochs = 1, 24, 12, 1
    t_all = time.perf_counter()
    cfg = build(
        zse.ZSEPipelineConfig, dataset="sketchy", data_root=str(root), split="zeroshot1", epochs=a.epochs, items_per_epoch=a.items,
        batch_size=a.batch, lr=a.lr, val_classes=10, rerank_k=a.rerank_k, rerank_ks=(5, 10, 20, 50, 100, 200),
        seed=a.seed, device="cpu")
    work = Path(tempfile.mkdtemp(prefix="zse_sketchy_mini_"))
    index = zse.load_index(cfg)
    if a.quick:  # 14 seen + 5 unseen classes, to exercise the script in seconds
        index = index.of_classes(index.seen[:14] + index.unseen[:5])
    t = time.perf_counter()
    zs = zse.run_zero_shot(cfg, work / "zs", index=index)
    zs_wall = time.perf_counter() - t
    # cross-dataset: trained on the embedded synthetic benchmark, tested on sketchy_mini unseen
    t = time.perf_counter()
    syn_cfg = override(cfg, dataset="synthetic", data_root=None, split=None, epochs=a.synthetic_epochs,
                       items_per_epoch=480 if not a.quick else 24, batch_size=8 if not a.quick else 12, val_classes=3)
    syn = zse.run_zero_shot(syn_cfg, work / "syn", index=zse.load_index(syn_cfg))
    if a.quick:
        xd = zse.evaluate_zero_shot(syn["model"], index.of_classes(index.unseen), syn_cfg, modes=("ret", "rn_rerank"),
                                    curve=False)
        xd["test"] = "sketchy_mini/zeroshot1, 5 unseen classes (quick)"
    else:
        xd = zse.evaluate_cross_dataset(syn["model"], syn_cfg, root, split="zeroshot1", kind="sketchy",
                                        modes=("ret", "rn_rerank"))
    xd_wall = time.perf_counter() - t
    report = {
        "dataset": "sketchy_mini", "split": "Sketchy/zeroshot1", "test": f"{zs['n_queries']} sketches x "
        f"{zs['n_gallery']} photos of {len(zs['test_classes'])} unseen classes",
        "chance_map_all": 1.0 / len(zs["test_classes"]), "config": cfg.to_dict(), "quick": a.quick,
        "train_steps": len(zs["history"]), "train_wall_s": zs["train_wall_s"], "val": zs["val"],
        "zero_shot": {"metrics": zs["metrics"], "rerank_curve": zs["rerank_curve"], "timing": zs["timing"],
                      "wall_s": zs_wall},
        "cross_dataset": {"train": f"synthetic (embedded), {len(syn['history'])} steps",
                          "test": xd["test"], "metrics": xd["metrics"], "wall_s": xd_wall,
                          "synthetic_unseen_metrics": syn["metrics"]},
        "wall_s": time.perf_counter() - t_all, "threads": torch.get_num_threads(),
    }
    print(f"ZSE-SBIR, sketchy_mini Sketchy/zeroshot1: {report['test']}; chance mAP ≈ {report['chance_map_all']:.3f}")
    print(f"trained {report['train_steps']} steps (batch {a.batch}) in {zs['train_wall_s']:.0f} s; "
          f"val (held-out seen) {[round(v['val_map_all_voc'], 4) for v in zs['val']]}")
    print(f"{'setting':34s} {'mode':10s} {'mAP@all':>8s} {'P@100':>7s}")
    for mode, m in zs["metrics"].items():
        print(f"{'sketchy_mini seen -> unseen':34s} {mode:10s} {m['map_all_voc']:8.4f} {m['p@100']:7.4f}")
    for mode, m in xd["metrics"].items():
        print(f"{'synthetic -> sketchy_mini unseen':34s} {mode:10s} {m['map_all_voc']:8.4f} {m['p@100']:7.4f}")
    print("mAP vs rerank k:", [(r["k"], round(r["map_all_voc"], 4)) for r in zs["rerank_curve"]])
    print(f"timing (s): {({k: round(v, 1) for k, v in zs['timing'].items()})}, total {report['wall_s']:.0f} s")
    out = Path(a.out if not a.quick else a.out.replace(".json", "_quick.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"-> {out}")
    return report


if __name__ == "__main__":
    main()
