"""Training throughput, peak memory and MFU of all three methods, official regime vs fast regimes.

Methods (one training step = forward + backward + optimiser update on random images, using the
pipelines' own step functions and the paper's model sizes, methods_spec.md):

* ``xmodalvit_teacher``: 2x ViT-B/16 (224 px) + 3 XMA layers, XAQC (queue 128), Adam; an item is
  (photo, sketch A, sketch B) = 3 images;
* ``xmodalvit_students_ti`` / ``_s``: photo + sketch students ViT-Ti/16 (Shoe/Chair-V2) or ViT-S/16
  (Sketchy) distilled from the frozen ViT-B teacher (XAQC 256 + XMRD), 3 images per item;
* ``crossatnet``: sketch + photo ResNet-50 (224 px, output stride 16), attention poolings, hash
  heads, GCN over 100 seen classes; 2 images per item;
* ``zse``: ZSE-SBIR ViT-B/16 SA + CA + RN (224 px), AdamW; 4 images per item.

Regimes: ``fp32_eager_explicit`` (the official regime: fp32, explicit softmax attention, eager;
PyTorch's default TF32 settings, recorded), ``fp32_sdpa``, ``bf16_sdpa`` (bf16 autocast, fused
SDPA, channels-last CNNs, fused Adam on CUDA) and ``bf16_sdpa_compile`` (+ ``torch.compile`` of the
networks; losses stay eager). On CPU the bf16 regimes are skipped with a reason (CPU runs fp32_eager_explicit vs
fp32_sdpa). Batch 16 and 64 items (``--quick``: tiny models, batches 2 and 4, CPU).

FLOPs per step are counted once per (method, batch) with ``torch.utils.flop_counter.FlopCounterMode``
over one whole step (forward + backward; the optimiser's elementwise ops are not counted), with
explicit attention (same matmul FLOPs as SDPA). ``--flops-only`` counts without timing on the
``meta`` device (no arithmetic, so paper sizes are cheap on CPU; data-dependent scalars such as a
queue pointer read as 0, which changes no matmul shape; falls back to real tensors if a step
cannot run on meta). MFU = counted FLOPs / step time / peak of the regime's dtype (table below).

Also measured (``--no-loader`` to skip): image loading from PNG files (the embedded synthetic
fine-grained set through ``ImageLoader``) with num_workers 0 vs N and pin_memory, in ms/batch,
against the XModalViT teacher's step ms/batch, and loader-fed training steps.

Usage::

    python benchmarks/bench_train.py                      # GPU: paper sizes, all methods
    python benchmarks/bench_train.py --methods xmodalvit_teacher --batches 16,64
    python benchmarks/bench_train.py --quick              # CPU smoke (CI)
    python benchmarks/bench_train.py --device cpu --size mid   # CPU, 197-token sequences (attention matters)
    python benchmarks/bench_train.py --flops-only         # paper-size FLOPs per step, any machine

Prints a table and writes JSON (``--out``; default ``benchmarks/results/bench_train_<...>.json``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from xmodal_lib.layers.attention import set_attention_impl  # noqa: E402

METHODS = ("xmodalvit_teacher", "xmodalvit_students_ti", "xmodalvit_students_s", "crossatnet", "zse")
REGIMES = ("fp32_eager_explicit", "fp32_sdpa", "bf16_sdpa", "bf16_sdpa_compile")
BASELINE = "fp32_eager_explicit"

# Dense peak TFLOP/s by GPU and dtype. NVIDIA H100 Tensor Core GPU datasheet (SXM5 / PCIe; the
# datasheet's tensor-core figures are "with sparsity", dense = half), H200 datasheet (SXM: same
# compute as H100 SXM; NVL); cross-checked with the per-SM table in glennklockwood.com/garden/
# processors/h100. "fp32" = non-tensor FP32 (what fp32 matmuls use with TF32 off, PyTorch's default).
PEAK_TFLOPS = {
    "H100 SXM": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H200 SXM": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
}
PEAK_SOURCE = ("NVIDIA H100 Tensor Core GPU datasheet; NVIDIA H200 Tensor Core GPU datasheet "
               "(dense = half the sparse tensor-core figure); glennklockwood.com/garden/processors/h100")


def paper_sizes() -> dict:
    return {
        "xmodalvit_teacher": dict(teacher="vit_base_patch16_224", img=224, vit={}, queue=128),
        "xmodalvit_students_ti": dict(teacher="vit_base_patch16_224", student="vit_tiny_patch16_224", img=224,
                                      vit={}, student_vit={}, queue=256),
        "xmodalvit_students_s": dict(teacher="vit_base_patch16_224", student="vit_small_patch16_224", img=224,
                                     vit={}, student_vit={}, queue=64),
        "crossatnet": dict(backbone="resnet50", img=224, output_stride=16, embed_dim=256, attn_dim=128,
                           hash_bits=(16, 32, 64, 128), classes=100, node_dim=384),
        "zse": dict(zse={}),  # the paper profile's model: ViT-B/16 224 px, CA 8 heads / FFN 1024, RN 49 anchors
    }


def _thin_xmodalvit(img: int, vit: dict, queue: int, student_ti: int, student_s: int) -> dict:
    """The three XModalViT rows at a scaled-down size: a thin ViT teacher (``vit`` overrides) and
    students of widths ``student_ti`` / ``student_s`` standing in for ViT-Ti / ViT-S."""
    t = "vit_tiny_patch16_224"
    return {
        "xmodalvit_teacher": dict(teacher=t, img=img, vit=vit, queue=queue),
        "xmodalvit_students_ti": dict(teacher=t, student=t, img=img, vit=vit,
                                      student_vit=dict(vit, embed_dim=student_ti), queue=queue),
        "xmodalvit_students_s": dict(teacher=t, student=t, img=img, vit=vit,
                                     student_vit=dict(vit, embed_dim=student_s), queue=queue),
    }


def quick_sizes() -> dict:
    return {
        **_thin_xmodalvit(32, dict(patch_size=8, depth=1, embed_dim=48, num_heads=3), 8, 24, 36),
        "crossatnet": dict(backbone="test_resnet", img=32, output_stride=8, embed_dim=16, attn_dim=8,
                           hash_bits=(16,), classes=6, node_dim=12),
        "zse": dict(zse=dict(img_size=32, patch_size=8, dim=32, depth=1, heads=2, ca_heads=2, ca_ffn=32,
                             rn_dim=8, prune_layers=(1,))),
    }


def mid_sizes() -> dict:
    """CPU-affordable but realistic sequence length: 224 px / patch 16 (197 tokens), thin and shallow."""
    return {
        **_thin_xmodalvit(224, dict(depth=2, embed_dim=192, num_heads=3), 16, 96, 144),
        "crossatnet": dict(backbone="resnet18", img=224, output_stride=16, embed_dim=64, attn_dim=32,
                           hash_bits=(16, 64), classes=20, node_dim=32),
        "zse": dict(zse=dict(dim=192, depth=2, heads=3, ca_heads=4, ca_ffn=256, rn_dim=64, prune_layers=(1,))),
    }


SIZES = {"paper": paper_sizes, "mid": mid_sizes, "quick": quick_sizes}


# ---------------------------------------------------------------------------------------------
# one method = (trained module, modules whose attention is switched, loss(batch), batch maker)
# ---------------------------------------------------------------------------------------------
def build(method: str, sz: dict, dev: torch.device):
    """``(model, attn_modules, loss_fn(batch) -> Tensor, make_batch(b), images_per_item, opt_cls, opt_kw,
    compile_targets)``: the compile regime compiles the heavy modules in place (``Module.compile``);
    the losses (queues with Python-side pointers) stay eager."""
    from xmodal_lib.methods.xmodalvit import pipeline as xv
    from xmodal_lib.methods.xmodalvit.model import build_students, build_teacher, vit_overrides
    from xmodal_lib.methods.xmodalvit.xaqc import XAQC

    img = sz.get("img", 224)
    rand = lambda b: torch.rand(b, 3, img, img, device=dev)  # noqa: E731
    if method.startswith("xmodalvit"):
        teacher = build_teacher(sz["teacher"], img_size=img, **vit_overrides(**sz["vit"])).to(dev)
        dim = teacher.embed_dim
        make = lambda b: [rand(b) for _ in range(3)]  # noqa: E731  photo, sketch A, sketch B
        if method == "xmodalvit_teacher":
            step = xv.teacher_step(XAQC(dim, sz["queue"]).to(dev))
            return teacher, [teacher], lambda x: step(teacher, x)["loss"], make, 3, torch.optim.Adam, \
                dict(lr=3e-6, weight_decay=1e-4), [teacher]
        xv.freeze(teacher)
        students = build_students(sz["student"], out_dim=dim, img_size=img,
                                  **vit_overrides(**sz["student_vit"])).to(dev)
        step = xv.student_step(teacher, XAQC(dim, sz["queue"]).to(dev), XAQC(dim, sz["queue"]).to(dev))
        return students, [students, teacher], lambda x: step(students, x)["loss"], make, 3, torch.optim.Adam, \
            dict(lr=1e-5, weight_decay=1e-5), [teacher, students.photo, students.sketch]
    if method == "crossatnet":
        from xmodal_lib.methods.crossatnet.gcn import build_graph, normalize_adjacency
        from xmodal_lib.methods.crossatnet.model import CrossATNet
        from xmodal_lib.methods.crossatnet.pipeline import (
            ClassGraph,
            CrossATNetRunConfig,
            CrossATNetTrainer,
            crossatnet_step,
        )
        from xmodal_lib.run.params import build as build_config

        rc = build_config(CrossATNetRunConfig, img_size=img, backbone=sz["backbone"],
                          output_stride=sz["output_stride"], embed_dim=sz["embed_dim"], attn_dim=sz["attn_dim"],
                          gcn_hidden=sz["embed_dim"], hash_bits=sz["hash_bits"], pretrained=False, device=str(dev))
        with torch.device("cpu"):  # the class graph is built on real CPU tensors even when counting on meta
            feats = torch.randn(sz["classes"], sz["node_dim"], generator=torch.Generator().manual_seed(0))
            a = build_graph(feats, kind="knn", k=5)  # stand-in class-name vectors -> kNN graph
            graph = ClassGraph([f"c{i}" for i in range(sz["classes"])], feats, a, normalize_adjacency(a))
        tr = CrossATNetTrainer(CrossATNet(rc.model), graph, rc).to(dev)
        make = lambda b: (rand(b), rand(b), torch.randint(0, sz["classes"], (b,), device=dev))  # noqa: E731
        return tr, [tr], lambda x: crossatnet_step(tr, x)["loss"], make, 2, torch.optim.Adam, dict(lr=1e-4), \
            [tr.net.sketch_net, tr.net.photo_net]
    if method == "zse":
        from xmodal_lib.methods.zse.model import ZSESBIR
        from xmodal_lib.methods.zse.pipeline import zse_step
        from xmodal_lib.run.params import preset

        model = ZSESBIR(preset("04_zse_sbir", "paper", pretrained=False, **sz["zse"]).model).to(dev)
        s = model.cfg.img_size
        make = lambda b: {k: torch.rand(b, 3, s, s, device=dev) for k in ("sk_pos", "sk_neg", "ph_pos", "ph_neg")}  # noqa: E731
        return model, [model], lambda x: zse_step(model, x)["loss"], make, 4, torch.optim.AdamW, \
            dict(lr=1e-5, weight_decay=1e-2), [model.sa, model.ca, model.rn]
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _set_impl(mods, impl: str) -> int:
    return sum(set_attention_impl(m, impl) for m in mods)


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _meta_scalars():
    """On meta tensors ``.item()`` reads 0, ``bool()`` True and ``nonzero`` keeps every element
    (masks of valid pairs / non-zero distances): only bookkeeping and elementwise loss terms
    depend on them, never the shape of a counted matmul or convolution."""
    import torch.fx.experimental._config as fx_config

    item, as_bool = torch.Tensor.item, torch.Tensor.__bool__
    nz = fx_config.meta_nonzero_assume_all_nonzero
    torch.Tensor.item = lambda self: 0 if self.is_meta else item(self)
    torch.Tensor.__bool__ = lambda self: True if self.is_meta else as_bool(self)
    fx_config.meta_nonzero_assume_all_nonzero = True
    try:
        yield
    finally:
        torch.Tensor.item, torch.Tensor.__bool__ = item, as_bool
        fx_config.meta_nonzero_assume_all_nonzero = nz


def count_flops(method: str, sz: dict, batch: int, dev: torch.device) -> tuple[int, str]:
    """FLOPs of one training step (forward + backward), explicit attention; ``(flops, how)``."""
    def run(d: torch.device) -> int:
        torch.manual_seed(0)
        model, mods, loss_fn, make, *_ = build(method, sz, d)
        _set_impl(mods, "explicit")
        model.train()
        x = make(batch)
        with FlopCounterMode(display=False) as fc:
            loss_fn(x).backward()
        return int(fc.get_total_flops())

    if dev.type == "meta":
        try:
            with _meta_scalars(), torch.device("meta"):
                return run(dev), "meta"
        except Exception as e:  # noqa: BLE001 - data-dependent shapes: count on real CPU tensors
            return run(torch.device("cpu")), f"cpu (meta failed: {type(e).__name__})"
    return run(dev), str(dev.type)


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def regime_skip_reason(regime: str, dev: torch.device) -> str | None:
    if dev.type != "cuda" and regime.startswith("bf16"):
        return "bf16 autocast and torch.compile are measured on CUDA only (CPU: fp32_eager_explicit vs fp32_sdpa)"
    return None


def time_regime(method: str, sz: dict, batch: int, regime: str, dev: torch.device, steps: int,
                warmup: int) -> dict:
    torch.manual_seed(0)
    model, mods, loss_fn, make, per_item, opt_cls, opt_kw, targets = build(method, sz, dev)
    fast = regime != BASELINE
    n_attn = _set_impl(mods, "fused" if "sdpa" in regime else "explicit")
    cl = 0
    if regime.startswith("bf16"):
        from xmodal_lib.methods.crossatnet.model import to_channels_last

        cl = to_channels_last(model.net) if hasattr(model, "net") else 0
    if fast and dev.type == "cuda":
        opt_kw = dict(opt_kw, fused=True)
    opt = opt_cls([p for p in model.parameters() if p.requires_grad], **opt_kw)
    bf16 = regime.startswith("bf16")
    torch.backends.cudnn.benchmark = fast  # official code: cudnn.benchmark off (deterministic); fast regimes autotune
    if regime.endswith("compile"):
        for t in targets:
            t.compile()
    model.train()
    x = make(batch)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for i in range(warmup + steps):
        _sync(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    if not math.isfinite(float(loss.detach())):
        raise RuntimeError(f"{method}/{regime}: non-finite loss")
    timed = sorted(times[warmup:])
    dt = timed[len(timed) // 2]  # median step: robust to a shared machine's hiccups
    return {"step_ms": 1000 * dt, "step_ms_mean": 1000 * sum(timed) / len(timed), "step_ms_min": 1000 * timed[0],
            "items_per_s": batch / dt, "img_per_s": batch * per_item / dt,
            "peak_mem_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
            "attn_modules": n_attn, "channels_last_backbones": cl,
            "optimizer_fused": bool(opt_kw.get("fused", False)), "cudnn_benchmark": fast, "loss": float(loss.detach())}


def peak_for(dev: torch.device) -> tuple[str | None, dict | None]:
    if dev.type != "cuda":
        return None, None
    name = torch.cuda.get_device_name(dev)
    for key in ("H100 PCIe", "H200 NVL", "H100 NVL"):
        words = key.split()
        if all(w.lower() in name.lower() for w in words):
            return key, PEAK_TFLOPS[key]
    for key in ("H200 SXM", "H100 SXM"):
        if key.split()[0] in name:
            return key, PEAK_TFLOPS[key]
    return None, None


def regime_dtype(regime: str) -> str:
    if regime.startswith("bf16"):
        return "bf16"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


# ---------------------------------------------------------------------------------------------
# data loading from files
# ---------------------------------------------------------------------------------------------
class FileTriplets(torch.utils.data.Dataset):
    """(photo, sketch A, sketch B) decoded from PNG files on every access (no preloading)."""

    def __init__(self, index, loader) -> None:
        sk = {}
        for r in index.sketches:
            sk.setdefault(r.instance, []).append(r)
        self.photos = [p for p in index.photos if p.instance in sk]
        self.sk, self.loader = sk, loader

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, i: int):
        p = self.photos[i]
        s = self.sk[p.instance]
        return self.loader.load(p), self.loader.load(s[0]), self.loader.load(s[-1])


def bench_loader(img: int, batch: int, workers: list[int], pins: list[bool], n_batches: int,
                 dev: torch.device, train_fn=None) -> list[dict]:
    from xmodal_lib.data import open_dataset
    from xmodal_lib.data.transforms import ImageLoader

    ds = FileTriplets(open_dataset("synthetic_fg").subset("train"), ImageLoader(img))
    rows = []
    for w in workers:
        for pin in pins:
            dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=w, pin_memory=pin,
                                             drop_last=True, persistent_workers=w > 0,
                                             generator=torch.Generator().manual_seed(0))

            def batches(loader):  # endless: epochs back to back
                while True:
                    yield from loader

            it = batches(dl)
            t = time.perf_counter()
            next(it)  # worker start-up + first batch
            first = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(n_batches):
                xb = [v.to(dev, non_blocking=pin) for v in next(it)]
            _sync(dev)
            row = {"num_workers": w, "pin_memory": pin, "first_batch_ms": 1000 * first,
                   "loader_ms_per_batch": 1000 * (time.perf_counter() - t) / n_batches,
                   "dataset_items": len(ds), "batch": batch, "img": img}
            if train_fn is not None:  # the same loader feeding real training steps
                train_fn(xb)  # warm
                _sync(dev)
                t = time.perf_counter()
                for _ in range(n_batches):
                    train_fn([v.to(dev, non_blocking=pin) for v in next(it)])
                _sync(dev)
                row["fed_step_ms"] = 1000 * (time.perf_counter() - t) / n_batches
            rows.append(row)
            del it, dl
    return rows


def loader_train_fn(sz: dict, regime: str, dev: torch.device):
    """A training step of the XModalViT teacher in ``regime`` taking a loader batch."""
    model, mods, loss_fn, _, _, opt_cls, opt_kw, _ = build("xmodalvit_teacher", sz, dev)
    _set_impl(mods, "fused" if "sdpa" in regime else "explicit")
    opt = opt_cls(model.parameters(), **opt_kw)
    model.train()

    def step(x):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=regime.startswith("bf16")):
            loss = loss_fn(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny models on CPU (smoke test of the script)")
    ap.add_argument("--size", default=None, choices=sorted(SIZES),
                    help="model sizes: paper (default), mid (224 px, 197 tokens, thin: CPU-affordable), quick")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available, cpu with --quick)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--regimes", default=None,
                    help=f"comma list of {REGIMES}; default: all that apply to the device (a list given here runs "
                         "as asked, e.g. bf16 on CPU)")
    ap.add_argument("--batches", default=None, help="default 16,64 (quick: 2,4)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 10; quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3, compile 5; quick 1)")
    ap.add_argument("--flops-only", action="store_true", help="count FLOPs per step on the meta device, no timing")
    ap.add_argument("--no-loader", action="store_true", help="skip the data-loading measurement")
    ap.add_argument("--loader-workers", type=int, default=None, help="N of the workers=N setting (default min(8, cpus))")
    ap.add_argument("--loader-img", type=int, default=None,
                    help="image side the loader produces (default: the teacher's input size; another size skips "
                         "the loader-fed steps, e.g. --quick --loader-img 224 times paper-size decoding on CPU)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() and not a.quick else "cpu"))
    size = a.size or ("quick" if a.quick else "paper")
    sizes = SIZES[size]()
    methods = [m for m in a.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; choose from {METHODS}")
    batches = [int(b) for b in (a.batches or ("2,4" if size != "paper" else "16,64")).split(",")]
    regimes = a.regimes.split(",") if a.regimes else list(REGIMES)
    if any(r not in REGIMES for r in regimes):
        raise SystemExit(f"--regimes: choose from {REGIMES}")
    if BASELINE not in regimes:
        regimes.insert(0, BASELINE)
    steps = a.steps or (2 if a.quick else 10)
    gpu_key, peak = peak_for(dev)

    flops: dict[str, dict[int, int]] = {}
    how: dict[str, str] = {}
    for m in methods:
        for b in batches:
            f, h = count_flops(m, sizes[m], b, torch.device("meta") if a.flops_only else dev)
            flops.setdefault(m, {})[b] = f
            how[m] = h
            print(f"flops {m:24s} batch {b:3d}: {f / 1e9:12.3f} GFLOP/step ({h})", flush=True)

    rows: list[dict] = []
    if not a.flops_only:
        for m in methods:
            for b in batches:
                for r in regimes:
                    row = {"method": m, "batch": b, "regime": r, "flops_per_step": flops[m][b]}
                    reason = regime_skip_reason(r, dev) if a.regimes is None else None  # explicit list: run it
                    if r == "fp32_sdpa" and dev.type == "cuda" and a.regimes is None:
                        reason = "not in the default CUDA set (pass --regimes to include it)"
                    if reason:
                        rows.append({**row, "status": "skipped", "reason": reason})
                        continue
                    warm = a.warmup or (1 if a.quick else (5 if r.endswith("compile") else 3))
                    try:
                        row.update(time_regime(m, sizes[m], b, r, dev, steps, warm), status="ok")
                    except torch.cuda.OutOfMemoryError:
                        row.update(status="oom", reason="CUDA out of memory")
                        torch.cuda.empty_cache()
                    if row["status"] == "ok":
                        tfl = row["flops_per_step"] / (row["step_ms"] / 1000) / 1e12
                        row["achieved_tflops"] = tfl
                        row["mfu"] = tfl / peak[regime_dtype(r)] if peak else None
                        row["mfu_dtype"] = regime_dtype(r) if peak else None
                    rows.append(row)
                    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        base = {(r["method"], r["batch"]): r for r in rows if r["regime"] == BASELINE and r["status"] == "ok"}
        for r in rows:
            b0 = base.get((r["method"], r["batch"]))
            if r["status"] == "ok" and b0:
                r["speedup_vs_fp32_eager_explicit"] = r["items_per_s"] / b0["items_per_s"]

    loader_rows, loader_step = [], {}
    if not (a.flops_only or a.no_loader):
        sz = sizes["xmodalvit_teacher"]
        n = a.loader_workers or min(8, os.cpu_count() or 1)
        pins = [False, True] if dev.type == "cuda" else [False]
        lb = 16 if 16 in batches else max(batches)  # loader batch = a measured teacher batch
        best = [r for r in rows if r["method"] == "xmodalvit_teacher" and r["status"] == "ok" and r["batch"] == lb]
        fast = min(best, key=lambda r: r["step_ms"])["regime"] if best else BASELINE
        if fast.endswith("compile"):
            fast = "bf16_sdpa"  # the fed loop runs eager (no recompilation for the loader's tensors)
        img = a.loader_img or sz["img"]
        loader_rows = bench_loader(img, lb, [0, n], pins, 4 if a.quick else 20, dev,
                                   train_fn=loader_train_fn(sz, fast, dev) if img == sz["img"] else None)
        loader_step = {"regime_fed": fast, "step_ms_by_regime": {r["regime"]: r["step_ms"] for r in best}}
        for r in loader_rows:
            print("loader", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)

    # ---- table -------------------------------------------------------------------------------
    print(f"\n{'method':24s} {'batch':>5s} {'regime':20s} {'img/s':>9s} {'step ms':>9s} {'peak MB':>8s} "
          f"{'GFLOP/st':>10s} {'TFLOP/s':>8s} {'MFU':>6s} {'x base':>7s}  ({dev}{', ' + gpu_key if gpu_key else ''})")
    for m in methods:
        for b in batches:
            sel = [r for r in rows if r["method"] == m and r["batch"] == b] or [{"method": m, "batch": b,
                                                                             "regime": "-", "status": "flops"}]
            for r in sel:
                f = flops[m][b] / 1e9
                if r["status"] == "ok":
                    pk = f"{r['peak_mem_mb']:8.0f}" if r["peak_mem_mb"] is not None else f"{'n/a':>8s}"
                    mfu = f"{100 * r['mfu']:5.1f}%" if r.get("mfu") is not None else f"{'n/a':>6s}"
                    print(f"{m:24s} {b:5d} {r['regime']:20s} {r['img_per_s']:9.1f} {r['step_ms']:9.1f} {pk} "
                          f"{f:10.1f} {r['achieved_tflops']:8.3f} {mfu} {r.get('speedup_vs_fp32_eager_explicit', 1):6.2f}x")
                else:
                    print(f"{m:24s} {b:5d} {r['regime']:20s} {'':9s} {'':9s} {'':8s} {f:10.1f}  "
                          f"{r['status']}{': ' + r['reason'] if r.get('reason') else ''}")
    if loader_rows:
        print(f"\nloading (synthetic_fg PNGs -> {loader_rows[0]['img']} px, batch {loader_rows[0]['batch']} triplets) "
              f"vs teacher step: "
              f"{json.dumps({k: round(v, 1) for k, v in loader_step['step_ms_by_regime'].items()})} ms")
        for r in loader_rows:
            fed = (f"fed {loader_step['regime_fed']} step {r['fed_step_ms']:8.1f} ms" if "fed_step_ms" in r
                   else "fed steps n/a (loader image size != model input)")
            print(f"  workers {r['num_workers']:2d} pin {str(r['pin_memory']):5s}: loader {r['loader_ms_per_batch']:8.1f} "
                  f"ms/batch (first {r['first_batch_ms']:7.1f}), {fed}")

    teacher = {r["regime"]: r for r in rows if r["method"] == "xmodalvit_teacher" and r["status"] == "ok"
               and r["batch"] == max(batches)}
    best_t = max((r for k, r in teacher.items() if k.startswith("bf16")), key=lambda r: r["items_per_s"], default=None)
    targets = {"teacher_speedup_ge_3x": None if best_t is None else best_t["speedup_vs_fp32_eager_explicit"] >= 3.0,
               "teacher_mfu_ge_35pct": None if best_t is None or best_t.get("mfu") is None else best_t["mfu"] >= 0.35,
               "teacher_best_regime": None if best_t is None else best_t["regime"]}
    report = {"benchmark": "bench_train", "quick": a.quick, "size": size, "flops_only": a.flops_only, "device": str(dev),
              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "peak_key": gpu_key,
              "peak_tflops": peak, "peak_source": PEAK_SOURCE, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "platform": platform.platform(),
              "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
              "sizes": sizes, "methods": methods, "batches": batches, "steps": steps,
              "flops_per_step": {m: {str(b): f for b, f in v.items()} for m, v in flops.items()},
              "flops_counted_on": how, "rows": rows, "loader": loader_rows, "loader_step": loader_step,
              "targets": targets}
    tag = ("flops_" if a.flops_only else "") + ("" if size == "paper" else size + "_") + dev.type
    out = Path(a.out) if a.out else HERE / "results" / f"bench_train_{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
