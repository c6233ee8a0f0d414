"""The three methods on the packaged ImageNet EfficientNet-Lite0 (``xmodal[pretrained]``), real data, CPU.

On ``../shared/data`` (``$XMODAL_SHARED_DATA``), each seed repeated, mean ± sd over seeds:

* **sketchy_mini, Sketchy/zeroshot1** (train on the 100 seen classes, test 625 unseen sketches x 625
  unseen photos): CrossATNet on the frozen (or last-stage-trained) Lite0 (full, no-GCN,
  no-cross-attention, 64-bit Hamming of the full model); ZSE-SBIR with hybrid CNN-cell tokens
  (``ret``, ``rn``, ``rn_rerank``; token selection off and on); the frozen backbone alone (global
  average pooled Lite0 features, cosine); chance = uniformly random scores through the same metric
  engine. mAP@all (VOC-interpolated) and P@100.
* **QMUL Shoe-V1 (115 test pairs) / Chair-V1 (97)**: XModalViT with hybrid tokens: teacher fused-pair
  sanity, distilled students (XAQC+XMRD), contrastive-only students (XAQC), the triplet baseline,
  the frozen backbone; chance = random scores. acc@1, acc@10.

Hybrid tokens and the EfficientNet trunk are OUR option for machines without ViT weights (the
papers use ImageNet ViTs); every row says which backbone it used. Each paper's central claim is
stated as holds / does not hold at this scale. Frozen CNN features are cached once per image.

Usage::

    nice -n 10 python benchmarks/pretrained_shared.py --seeds 0 --reduced        # first, minutes
    nice -n 10 python benchmarks/pretrained_shared.py --seeds 0,1,2               # the full run

Prints a table and writes ``benchmarks/results/pretrained_shared.json`` after every section.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xmodal_lib.infra.paths import shared_data_dir  # noqa: E402
from xmodal_lib.layers.pretrained_cnn import PretrainedCNN  # noqa: E402
from xmodal_lib.retrieval.metrics import category_metrics, fg_accuracy  # noqa: E402
from xmodal_lib.run.params import build, override  # noqa: E402

CAT_M = ("map_all_voc", "p@100")


def _frozen_scores(q: torch.Tensor, g: torch.Tensor, input_norm: str) -> torch.Tensor:
    """Cosine scores [Q, G] of globally pooled frozen Lite0 features (no training)."""
    cnn = PretrainedCNN("lite0", cut="s32", input_norm=input_norm, cache=False).eval()
    with torch.no_grad():
        fq = torch.cat([cnn(q[i:i + 128]) for i in range(0, len(q), 128)])
        fg = torch.cat([cnn(g[i:i + 128]) for i in range(0, len(g), 128)])
    fq, fg = torch.nn.functional.normalize(fq, dim=1), torch.nn.functional.normalize(fg, dim=1)
    return fq @ fg.T


def _random_cat(ql: list, gl: list, seed: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(1000 + seed)
    return category_metrics(torch.rand(len(ql), len(gl), generator=g), ql, gl, CAT_M)


def crossatnet_rows(root: Path, seed: int, a: argparse.Namespace) -> dict[str, dict]:
    from xmodal_lib.methods.crossatnet import pipeline as cat
    from xmodal_lib.methods.crossatnet.semantics import make_embedder

    cfg = build(
        cat.CrossATNetRunConfig, dataset="sketchy", data_root=str(root), split="zeroshot1", backbone="pretrained_lite0",
        img_size=a.img_size, output_stride=32, cnn_trainable_blocks=a.cnn_trainable, embed_dim=128, attn_dim=64,
        gcn_hidden=128, graph_k=5, hash_bits=(64,), epochs=a.cat_epochs, batch_size=64, lr=a.cat_lr,
        augment=False, seed=seed, device="cpu")
    index = cat.load_index(cfg)
    images = cat.load_images(cfg, index)
    test = index.subset("test")
    ql, gl = [r.label for r in test.sketches], [r.label for r in test.photos]
    rows: dict[str, dict] = {"chance (random scores)": _random_cat(ql, gl, seed)}
    rows["frozen Lite0 (GAP, cosine)"] = category_metrics(_frozen_scores(*images["test"], "imagenet"), ql, gl, CAT_M)
    embed_fn = make_embedder(cfg.semantics, cfg.word_vectors)
    variants = {"CrossATNet full": cfg, "CrossATNet no-GCN": override(cfg, use_gcn=False),
                "CrossATNet no-cross-attention": override(cfg, cross_attention=False)}
    with tempfile.TemporaryDirectory(prefix="pre_cat_") as tmp:
        for name, vcfg in variants.items():
            _, res = cat.run_variant(vcfg, index, Path(tmp) / name.split()[-1], images["train"], images["test"], embed_fn)
            rows[name] = {**{m: res["real"][m] for m in CAT_M}, "train_s": res["timing"]["train_seconds"]}
            if name == "CrossATNet full":
                rows["CrossATNet full, 64-bit hash"] = {m: res["hash64"][m] for m in CAT_M}
            print(f"  seed {seed} {name}: {rows[name]}", flush=True)
    del images
    return rows


def zse_rows(root: Path, seed: int, a: argparse.Namespace) -> dict[str, dict]:
    """ZSE-SBIR: ``ret`` and ``rn_rerank`` on all 625 x 625; exhaustive ``rn`` (every sketch-photo pair
    through CA + RN) on every ``--rn-every``-th query only (CPU time), next to ``ret`` on the same queries."""
    from xmodal_lib.methods.zse import pipeline as zse
    from xmodal_lib.methods.zse.evaluate import build_cache, scores_ret, scores_rn

    cfg = build(
        zse.ZSEPipelineConfig, profile="cpu", dataset="sketchy", data_root=str(root), split="zeroshot1", img_size=a.img_size,
        patch_size=16, dim=a.zse_dim, depth=a.zse_depth, heads=4, stem="none", prune_layers=(1, 2),
        ca_heads=4, ca_ffn=2 * a.zse_dim, rn_dim=64, patch_embed="hybrid_lite0",
        cnn_trainable_blocks=0, epochs=a.zse_epochs, items_per_epoch=a.zse_items, batch_size=16, lr=a.zse_lr,
        val_classes=10, rerank_k=50, rerank_ks=(10, 50), rn_max_pairs=0, seed=seed, device="cpu")
    index = zse.load_index(cfg)
    test = index.of_classes(index.unseen)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pre_zse_") as tmp:
        for tag, kr in (("token selection off", 1.0), ("token selection r=0.9", 0.9)):
            vcfg = override(cfg, keep_rate=kr)
            res = zse.run_zero_shot(vcfg, Path(tmp) / str(kr), index=index)
            for mode, m in res["metrics"].items():
                rows[f"ZSE-SBIR {mode}, {tag}"] = {k: m[k] for k in CAT_M}
            rows[f"ZSE-SBIR ret, {tag}"]["train_s"] = res["train_wall_s"]
            if kr == 1.0 and a.rn_every > 0:  # exhaustive RN on a query subsample, ret on the same queries
                sub = test.sketches[::a.rn_every]
                model = res["model"]
                sc = build_cache(model, zse.load_images(sub, vcfg, "sketch"), "sketch", vcfg.eval_batch)
                pc = build_cache(model, zse.load_images(test.photos, vcfg, "photo"), "photo", vcfg.eval_batch)
                ql, gl = [r.label for r in sub], [r.label for r in test.photos]
                t = time.perf_counter()
                rows[f"ZSE-SBIR rn (exhaustive), {tag}, every {a.rn_every}th query"] = {
                    **category_metrics(scores_rn(model, sc, pc, vcfg.block_q, vcfg.block_g), ql, gl, CAT_M),
                    "train_s": time.perf_counter() - t}
                rows[f"ZSE-SBIR ret, {tag}, same queries"] = category_metrics(scores_ret(sc, pc), ql, gl, CAT_M)
            print(f"  seed {seed} ZSE {tag}: { {k: round(v['map_all_voc'], 4) for k, v in rows.items()} }", flush=True)
    return {k: {m: v[m] for m in (*CAT_M, "train_s") if m in v} for k, v in rows.items()}


def xmodalvit_rows(root: Path, seed: int, a: argparse.Namespace) -> dict[str, dict]:
    from xmodal_lib.methods.xmodalvit import pipeline as xv

    cfg = build(
        xv.XModalViTConfig, dataset="qmul_v1", data_root=str(root), image_size=a.fg_img_size, seed=seed,
        teacher_device="cpu", student_device="cpu", baseline_device="cpu",
        val_fraction=0.1, input_norm="half", standardize_inputs=False, teacher_photo_aug=False,
        patch_embed="hybrid_lite0", cnn_trainable_blocks=0,
        teacher_patch_size=16, teacher_depth=2, teacher_embed_dim=a.fg_dim, teacher_num_heads=4,
        student_patch_size=16, student_depth=2, student_embed_dim=a.fg_dim, student_num_heads=4,
        teacher_queue=64, student_queue=64, teacher_epochs=a.fg_epochs, student_epochs=a.fg_epochs,
        baseline_epochs=a.fg_epochs, teacher_lr=a.fg_lr, student_lr=a.fg_lr, baseline_lr=a.fg_lr)
    data = xv.load_data(cfg, progress=False)
    n = data.test.photos.shape[0]
    g = torch.Generator().manual_seed(2000 + seed)
    rows = {"chance (random scores)": fg_accuracy(torch.rand(data.test.sketches.shape[0], n, generator=g),
                                                  data.test.sketch_to_photo, ks=(1, 10))}
    rows["frozen Lite0 (GAP, cosine)"] = fg_accuracy(_frozen_scores(data.test.sketches, data.test.photos, "half"),
                                                     data.test.sketch_to_photo, ks=(1, 10))
    with tempfile.TemporaryDirectory(prefix="pre_xv_") as tmp:
        t = time.perf_counter()
        teacher, _ = xv.train_teacher(cfg, data, out_dir=Path(tmp) / "t", progress=False)
        rows["teacher fused pairs (sanity)"] = {**xv.teacher_pair_retrieval(teacher, data.test),
                                                "train_s": time.perf_counter() - t}
        for name, rel in (("students distilled (XAQC+XMRD)", True), ("students contrastive-only (XAQC)", False)):
            t = time.perf_counter()
            st, _ = xv.distil_students(cfg, data, teacher, relational=rel, out_dir=Path(tmp) / name[:12], progress=False)
            rows[name] = {**xv.evaluate(st, data.test, cfg.eval_metric), "train_s": time.perf_counter() - t}
        t = time.perf_counter()
        st, _ = xv.train_triplet_baseline(cfg, data, out_dim=teacher.embed_dim, out_dir=Path(tmp) / "b", progress=False)
        rows["triplet baseline"] = {**xv.evaluate(st, data.test, cfg.eval_metric), "train_s": time.perf_counter() - t}
    rows = {k: {m: float(v[m]) for m in ("acc@1", "acc@10", "train_s") if m in v} for k, v in rows.items()}
    print(f"  seed {seed} {root.name}: " + ", ".join(f"{k} {v['acc@10']:.3f}" for k, v in rows.items()), flush=True)
    return rows


def _aggregate(per_seed: list[dict[str, dict]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in per_seed[0]:
        vals = [r[name] for r in per_seed if name in r]
        row = {}
        for m in vals[0]:
            xs = [v[m] for v in vals]
            row[m] = statistics.fmean(xs)
            row[m + "_sd"] = statistics.stdev(xs) if len(xs) > 1 else 0.0
        out[name] = row
    return out


def _claims(res: dict) -> dict[str, str]:
    def v(sec: str, row: str, m: str) -> float:
        return res.get(sec, {}).get("mean", {}).get(row, {}).get(m, float("nan"))

    out = {}
    if "sketchy_crossatnet" in res:
        full, ng, nc = (v("sketchy_crossatnet", f"CrossATNet {k}", "map_all_voc")
                        for k in ("full", "no-GCN", "no-cross-attention"))
        out["CrossATNet: GCN helps"] = f"{'holds' if full > ng else 'does not hold'} (full {full:.4f} vs no-GCN {ng:.4f})"
        out["CrossATNet: cross-attention helps"] = (f"{'holds' if full > nc else 'does not hold'} "
                                                    f"(full {full:.4f} vs no-cross-attention {nc:.4f})")
    if "sketchy_zse" in res:
        for tag in ("token selection off", "token selection r=0.9"):
            r, rn = v("sketchy_zse", f"ZSE-SBIR ret, {tag}", "map_all_voc"), v("sketchy_zse", f"ZSE-SBIR rn_rerank, {tag}", "map_all_voc")
            out[f"ZSE-SBIR: RN (rerank@50) >= ret ({tag})"] = (f"{'holds' if rn >= r else 'does not hold'} "
                                                             f"(rn_rerank {rn:.4f} vs ret {r:.4f})")
        sec = res["sketchy_zse"]["mean"]
        ex = [k for k in sec if k.startswith("ZSE-SBIR rn (exhaustive)")]
        if ex:
            r, rn = sec[[k for k in sec if k.endswith("same queries")][0]]["map_all_voc"], sec[ex[0]]["map_all_voc"]
            out["ZSE-SBIR: exhaustive RN >= ret (same query subsample)"] = (
                f"{'holds' if rn >= r else 'does not hold'} (rn {rn:.4f} vs ret {r:.4f})")
    for sec in ("qmul_shoes", "qmul_chairs"):
        if sec in res:
            d, t = (v(sec, k, "acc@1") for k in ("students distilled (XAQC+XMRD)", "triplet baseline"))
            d10, t10 = (v(sec, k, "acc@10") for k in ("students distilled (XAQC+XMRD)", "triplet baseline"))
            ok = d >= t and d10 >= t10
            out[f"XModalViT ({sec}): distilled students >= triplet pair"] = (
                f"{'holds' if ok else 'does not hold'} (acc@1 {d:.3f} vs {t:.3f}, acc@10 {d10:.3f} vs {t10:.3f})")
    return out


def _table(res: dict) -> str:
    lines = []
    for sec, body in res.items():
        if not isinstance(body, dict) or "mean" not in body:
            continue
        ms = [m for m in next(iter(body["mean"].values()))
              if not m.endswith("_sd") and m != "train_s" and not m.startswith("n_")]
        lines += [f"\n{sec} ({body['setting']}; seeds {body['seeds']})",
                  "| method | " + " | ".join(ms) + " | train s |", "|---|" + "---|" * (len(ms) + 1)]
        for name, r in body["mean"].items():
            cells = [f"{r[m]:.4f} ± {r[m + '_sd']:.4f}" for m in ms]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {r.get('train_s', float('nan')):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sections", default="sketchy_crossatnet,sketchy_zse,qmul_shoes,qmul_chairs")
    ap.add_argument("--reduced", action="store_true", help="fewer epochs/items (a first, shorter run)")
    ap.add_argument("--img-size", type=int, default=128, help="sketchy_mini image size (multiple of 32)")
    ap.add_argument("--fg-img-size", type=int, default=128, help="QMUL image size (multiple of 16)")
    ap.add_argument("--cnn-trainable", type=int, default=0,
                    help="CrossATNet: last Lite0 stages trained (0: frozen; depthwise-conv backward is slow on CPU)")
    ap.add_argument("--cat-epochs", type=int, default=6)
    ap.add_argument("--cat-lr", type=float, default=1e-3)
    ap.add_argument("--zse-dim", type=int, default=64)
    ap.add_argument("--rn-every", type=int, default=5, help="exhaustive RN on every n-th query (0: skip)")
    ap.add_argument("--zse-depth", type=int, default=2)
    ap.add_argument("--zse-epochs", type=int, default=4)
    ap.add_argument("--zse-items", type=int, default=1600)
    ap.add_argument("--zse-lr", type=float, default=3e-4)
    ap.add_argument("--fg-dim", type=int, default=96)
    ap.add_argument("--fg-epochs", type=int, default=20)
    ap.add_argument("--fg-lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=1, help="1 is faster on a shared, loaded CPU")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pretrained_shared.json"))
    ap.add_argument("--merge", action="store_true", help="keep the other sections already in --out")
    ap.add_argument("--quick", action="store_true", help="Chair-V1 only, 1 epoch, 64 px (tests the script)")
    a = ap.parse_args(argv)
    if a.reduced:
        a.cat_epochs, a.zse_epochs, a.zse_items, a.fg_epochs = 3, 2, 800, 8
    if a.quick:
        a.seeds, a.sections, a.fg_epochs, a.fg_img_size, a.fg_dim = "0", "qmul_chairs", 1, 64, 48
    a.seed_list = [int(s) for s in a.seeds.split(",") if s.strip()]
    torch.set_num_threads(a.threads)
    data = shared_data_dir()
    if data is None:
        print("skipped: ../shared/data absent (set XMODAL_SHARED_DATA)")
        return {}
    sections = {
        "sketchy_crossatnet": (crossatnet_rows, data / "sketchy_mini",
                               f"sketchy_mini zeroshot1, 625 x 625 unseen, {a.img_size} px, Lite0 s32, last "
                               f"{a.cnn_trainable} stage(s) trained, {a.cat_epochs} epochs"),
        "sketchy_zse": (zse_rows, data / "sketchy_mini",
                        f"sketchy_mini zeroshot1, 625 x 625 unseen, {a.img_size} px, hybrid Lite0 s16 tokens (frozen), "
                        f"ViT dim {a.zse_dim} depth {a.zse_depth}, {a.zse_epochs} x {a.zse_items} items"),
        "qmul_shoes": (xmodalvit_rows, data / "qmul_v1" / "shoes",
                       f"QMUL Shoe-V1, 115 test pairs, {a.fg_img_size} px, hybrid Lite0 s16 tokens (frozen), "
                       f"ViT dim {a.fg_dim} depth 2, {a.fg_epochs} epochs per stage"),
        "qmul_chairs": (xmodalvit_rows, data / "qmul_v1" / "chairs",
                        f"QMUL Chair-V1, 97 test pairs, {a.fg_img_size} px, hybrid Lite0 s16 tokens (frozen), "
                        f"ViT dim {a.fg_dim} depth 2, {a.fg_epochs} epochs per stage"),
    }
    old = json.loads(Path(a.out).read_text()) if a.merge and Path(a.out).is_file() else {}
    res: dict = {**old, "benchmark": "pretrained_shared", "reduced": a.reduced, "quick": a.quick,
                 "args": {k: v for k, v in vars(a).items()}, "torch": torch.__version__,
                 "platform": platform.platform()}
    t_all = time.perf_counter()
    for sec in [s for s in a.sections.split(",") if s]:
        fn, root, setting = sections[sec]
        t = time.perf_counter()
        per_seed = []
        for seed in a.seed_list:
            per_seed.append(fn(root, seed, a))
            res[sec] = {"setting": setting, "seeds": a.seed_list[:len(per_seed)], "per_seed": per_seed,
                        "mean": _aggregate(per_seed), "wall_s": time.perf_counter() - t,
                        "args": {k: v for k, v in vars(a).items()}}
            res["claims"], res["wall_s"] = _claims(res), time.perf_counter() - t_all
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(res, indent=1))
    res["table"] = _table(res)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(res["table"])
    print("\nclaims at this scale:")
    for k, v in res["claims"].items():
        print(f"  {k}: {v}")
    print(f"total {res['wall_s']:.0f} s; wrote {a.out}")
    return res


if __name__ == "__main__":
    main()
