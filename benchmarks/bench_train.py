"""Training throughput and peak memory of the XModalViT teacher and students (fp32 vs bf16).

One training step = forward + backward + Adam update on random images:
* ``teacher``: 2x ViT (ViT-B/16 in the paper) + 3 XMA layers, XAQC loss (query pass with gradient,
  key pass without, as in ``xv.teacher_step``); img/s counts photo+sketch pairs;
* ``students``: photo + sketch students (ViT-Ti/16 in the paper) distilled from a frozen teacher
  (``xv.student_step`` with XAQC + XMRD: 2 teacher passes without gradient per step); img/s counts pairs.

Batch sizes 16 and 64; precision fp32 and bf16 (autocast; bf16 only on CUDA). Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the process's peak RSS on CPU (cumulative, so
only a rough upper bound there). The full sizes need a GPU; ``--quick`` uses tiny ViTs on CPU so
the script itself is tested.

Usage::

    python benchmarks/bench_train.py            # GPU: paper sizes
    python benchmarks/bench_train.py --quick    # CPU smoke, seconds

Prints a table and writes JSON (``--out``, default ``benchmarks/results/bench_train_<device>.json``).
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from xmodal_lib.losses.xaqc import XAQC  # noqa: E402
from xmodal_lib.models.xmodalvit import build_students, build_teacher, vit_overrides  # noqa: E402
from xmodal_lib.pipelines import xmodalvit as xv  # noqa: E402


def _peak_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench(kind: str, batch: int, precision: str, dev: torch.device, sizes: dict, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    kw = vit_overrides(**sizes["vit"])
    teacher = build_teacher(sizes["teacher"], img_size=sizes["img"], **kw).to(dev)
    dim = teacher.embed_dim
    if kind == "teacher":
        model, q = teacher, XAQC(dim, 128).to(dev)
        step = xv.teacher_step(q)
    else:
        xv.freeze(teacher)
        model = build_students(sizes["student"], out_dim=dim, img_size=sizes["img"],
                               **vit_overrides(**sizes["student_vit"])).to(dev)
        step = xv.student_step(teacher, XAQC(dim, 256).to(dev), XAQC(dim, 256).to(dev), relational=True)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    x = [torch.rand(batch, 3, sizes["img"], sizes["img"], device=dev) for _ in range(3)]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model.train()
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = step(model, x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t0
    return {"kind": kind, "batch": batch, "precision": precision, "img_per_s": batch * steps / dt,
            "step_ms": 1000 * dt / steps, "peak_mb": _peak_mb(dev)}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny ViTs on CPU (smoke test of the script)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batches", default="16,64")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() and not a.quick else "cpu")
    if a.quick:
        sizes = {"teacher": "vit_tiny_patch16_224", "student": "vit_tiny_patch16_224", "img": 32,
                 "vit": dict(patch_size=8, depth=1, embed_dim=48, num_heads=3),
                 "student_vit": dict(patch_size=8, depth=1, embed_dim=24, num_heads=3)}
        a.steps, a.warmup = min(a.steps, 3), 1
        batches = [4, 8]
    else:
        sizes = {"teacher": "vit_base_patch16_224", "student": "vit_tiny_patch16_224", "img": 224,
                 "vit": {}, "student_vit": {}}
        batches = [int(b) for b in a.batches.split(",")]
    precisions = ["fp32", "bf16"] if dev.type == "cuda" else ["fp32"]
    rows = []
    for kind in ("teacher", "students"):
        for b in batches:
            for prec in precisions:
                try:
                    r = bench(kind, b, prec, dev, sizes, a.steps, a.warmup)
                except torch.cuda.OutOfMemoryError:
                    r = {"kind": kind, "batch": b, "precision": prec, "error": "out of memory"}
                    torch.cuda.empty_cache()
                rows.append(r)
                print(r, flush=True)
    print(f"\n{'model':9s} {'batch':>5s} {'prec':>5s} {'img/s':>9s} {'step ms':>9s} {'peak MB':>9s}  ({dev})")
    for r in rows:
        if "error" in r:
            print(f"{r['kind']:9s} {r['batch']:5d} {r['precision']:>5s}  {r['error']}")
        else:
            print(f"{r['kind']:9s} {r['batch']:5d} {r['precision']:>5s} {r['img_per_s']:9.1f} {r['step_ms']:9.1f} "
                  f"{r['peak_mb']:9.0f}")
    ref = {(r["kind"], r["batch"]): r for r in rows if r["precision"] == "fp32" and "error" not in r}
    for r in rows:
        base = ref.get((r["kind"], r["batch"]))
        if base and "error" not in r:
            r["speedup_vs_fp32"] = r["img_per_s"] / base["img_per_s"]
    out = Path(a.out) if a.out else HERE / "results" / f"bench_train_{'quick_' if a.quick else ''}{dev.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "bench_train", "device": str(dev),
                               "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                               "sizes": sizes, "steps": a.steps, "rows": rows, "torch": torch.__version__,
                               "platform": platform.platform()}, indent=1))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
