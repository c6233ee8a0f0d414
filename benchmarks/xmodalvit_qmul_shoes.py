"""XModalViT on the real QMUL Shoe-V1 subset (../shared/data/qmul_v1/shoes): CPU, random init.

Trains the fusion teacher, distils the photo + sketch students (XAQC + XMRD, and XAQC only) and
trains the triplet baseline (same students, no teacher, same number of steps), all through
``xmodal_lib.pipelines.xmodalvit`` with tiny ViTs and the smoke preset's settings (including our
additions: per-image input standardisation, colour views of the teacher's photos, lr 1e-4,
sketch target z_p; ``--paper-recipe`` turns the additions off). Evaluation: the standard FG protocol
on the 115 test pairs (every sketch ranks all 115 photos); chance acc@1 = 1/115, acc@10 = 10/115.
The val split (10 % of the 304 training pairs) is reported too; settings were chosen on it, never
on test. Random init on 304 training pairs: the numbers are far from the paper's (which starts from
ImageNet-21k weights); pretrained weights would change them a lot.

Usage::

    flock /tmp/xmodal_cpu.lock python benchmarks/xmodalvit_qmul_shoes.py      # ~10 min on 2 idle cores
    python benchmarks/xmodalvit_qmul_shoes.py --quick                         # seconds (smoke)

Prints a table and writes JSON (``--out``, default ``benchmarks/results/xmodalvit_qmul_shoes.json``).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from xmodal_lib.paths import shared_data_dir  # noqa: E402
from xmodal_lib.pipelines import xmodalvit as xv  # noqa: E402


def _binom_p(acc: float, n: int, p: float) -> float:
    from scipy.stats import binomtest

    return float(binomtest(round(acc * n), n, p, alternative="greater").pvalue)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--dim", type=int, default=48, help="ViT width of teacher encoders and students")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--teacher-epochs", type=int, default=90)
    ap.add_argument("--student-epochs", type=int, default=60, help="students and triplet baseline")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--paper-recipe", action="store_true",
                    help="turn our additions off (no standardisation, no teacher colour views, sketch target z_s)")
    ap.add_argument("--quick", action="store_true", help="1 epoch per stage, depth 1 (smoke test)")
    ap.add_argument("--out", default=str(HERE / "results" / "xmodalvit_qmul_shoes.json"))
    a = ap.parse_args(argv)
    root = shared_data_dir()
    if root is None or not (root / "qmul_v1" / "shoes").is_dir():
        print("../shared/data/qmul_v1/shoes absent: nothing to benchmark")
        return {}
    if a.quick:
        a.depth, a.teacher_epochs, a.student_epochs = 1, 1, 1
    torch.set_num_threads(2)
    heads = 3
    extra = dict(standardize_inputs=False, teacher_photo_aug=False, sketch_target="z_s") if a.paper_recipe else {}
    cfg = xv.XModalViTConfig.smoke(
        dataset="qmul_v1", data_root=str(root / "qmul_v1" / "shoes"), image_size=a.image_size, seed=a.seed,
        device="cpu", val_fraction=0.1, teacher_patch_size=8, teacher_depth=a.depth, teacher_embed_dim=a.dim,
        teacher_num_heads=heads, student_patch_size=8, student_depth=a.depth, student_embed_dim=a.dim,
        student_num_heads=heads, teacher_queue=64, student_queue=64, teacher_epochs=a.teacher_epochs,
        student_epochs=a.student_epochs, baseline_epochs=a.student_epochs, **extra)
    t0 = time.perf_counter()
    data = xv.load_data(cfg, progress=False)
    rows, val, timing, steps = {}, {}, {"load_data_s": round(time.perf_counter() - t0, 1)}, {}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        teacher, r = xv.train_teacher(cfg, data, out_dir=Path(tmp) / "teacher", progress=False)
        timing["teacher_s"], steps["teacher"] = round(time.perf_counter() - t, 1), r.steps
        rows["teacher fused pairs (sanity, not SBIR)"] = xv.teacher_pair_retrieval(teacher, data.test)
        n = min(30, data.test.photos.shape[0])
        first = [s[0] for s in data.test.sketches_of()[:n]]
        share = xv.teacher_modality_share(teacher, data.test.photos[:n], data.test.sketches[first])
        for name, rel in (("students XAQC+XMRD", True), ("students XAQC only", False)):
            t = time.perf_counter()
            st, r = xv.distil_students(cfg, data, teacher, relational=rel, out_dir=Path(tmp) / name, progress=False)
            timing[f"{name}_s"], steps[name] = round(time.perf_counter() - t, 1), r.steps
            rows[name], val[name] = xv.evaluate(st, data.test, cfg.eval_metric), xv.evaluate(st, data.val)
        t = time.perf_counter()
        st, r = xv.train_triplet_baseline(cfg, data, out_dim=teacher.embed_dim, out_dir=Path(tmp) / "b",
                                          progress=False)
        timing["triplet_s"], steps["triplet baseline"] = round(time.perf_counter() - t, 1), r.steps
        rows["triplet baseline"], val["triplet baseline"] = xv.evaluate(st, data.test, cfg.eval_metric), \
            xv.evaluate(st, data.val)
    n_test, n_q = data.test.photos.shape[0], data.test.sketches.shape[0]
    rows["chance"] = {"acc@1": 1 / n_test, "acc@10": min(1.0, 10 / n_test), "mean_rank": (n_test + 1) / 2}
    for k in ("students XAQC+XMRD", "students XAQC only", "triplet baseline"):
        rows[k]["p_acc10_gt_chance"] = _binom_p(rows[k]["acc@10"], n_q, rows["chance"]["acc@10"])
    total = time.perf_counter() - t0
    head = (f"QMUL Shoe-V1: {data.train.photos.shape[0]} train / {data.val.photos.shape[0]} val / {n_test} test "
            f"pairs, {a.image_size} px, ViT depth {a.depth} width {a.dim}, teacher {a.teacher_epochs} / students and "
            f"baseline {a.student_epochs} epochs, {'paper recipe' if a.paper_recipe else 'smoke recipe'}, "
            f"random init, CPU; total {total:.0f} s")
    print("\n" + head)
    print(f"{'method':42s} {'acc@1':>7s} {'acc@10':>7s} {'mean_rank':>10s} {'p(>chance)':>11s} {'val acc@10':>11s}")
    for k, v in rows.items():
        vv = val.get(k, {}).get("acc@10", float("nan"))
        print(f"{k:42s} {v['acc@1']:7.3f} {v['acc@10']:7.3f} {v.get('mean_rank', float('nan')):10.1f} "
              f"{v.get('p_acc10_gt_chance', float('nan')):11.2g} {vv:11.3f}")
    print(f"teacher modality share (30 test pairs): {json.dumps(share)}")
    b, s = rows["triplet baseline"]["acc@10"], rows["students XAQC+XMRD"]["acc@10"]
    summary = (f"{head}. Distilled students acc@10 {s:.3f} vs triplet baseline {b:.3f} vs chance "
               f"{rows['chance']['acc@10']:.3f}: " + ("the triplet baseline wins." if b > s else
                                                       "distillation wins." if s > b else "tie."))
    out = {"benchmark": "xmodalvit_qmul_shoes", "settings": {**vars(a), "config": cfg.to_dict()},
           "results": rows, "val": val, "teacher_modality_share": share, "steps": steps, "timing_s": timing,
           "total_s": round(total, 1), "summary": summary, "torch": torch.__version__,
           "platform": platform.platform(),
           "note": "random init; pretrained (ImageNet-21k) weights would change these numbers a lot"}
    p = Path(a.out)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(out, indent=1))
    print(summary)
    print(f"wrote {p}")
    return out


if __name__ == "__main__":
    main()
