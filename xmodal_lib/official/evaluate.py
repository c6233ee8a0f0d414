"""Evaluate released checkpoints with the papers' protocols; every number names its convention.

ZSE-SBIR (:func:`evaluate_zse`): the unseen-class test lists of a SAKE-format split
(``read_sake``); sketches ranked against photos by

* ``ret`` — cosine of the pre-CA [Ret] tokens (the official ``-r sa``: L2 distance of normalised
  vectors, the same ranking), paper row "Ours-Ret";
* ``rn`` — exhaustive CA + RN score of every pair (official ``-r rn``, the default), "Ours-RN";
  SA and the CA projections run once per image (cached), not once per 20 × 20 block;
* ``rn_rerank`` — our faster approximation: the ``ret`` top-k re-scored by the RN.

Metrics per setting as in the paper: Sketchy-Ext 25 and TU-Berlin-Ext mAP@all + Prec@100,
Sketchy-Ext 21 mAP@200 + Prec@200, QuickDraw-Ext mAP@all + Prec@200, computed by the metric
engine under the official conventions (:data:`xmodal_lib.methods.reported.CONVENTIONS`).
``precision``: ``fp32``; ``bf16`` / ``fp16`` run SA, CA and RN under autocast — the official
``test.py`` instead casts the whole model to fp16 (``model.half()``), so fp16 here is close to,
not bit-equal with, the official run. Ties are ranked stably (the official argsort is unstable).

Inputs: the released geometry by default (``preprocess="official"``,
:class:`~xmodal_lib.data.official_crop.OfficialZSELoader`: sketch ink box ± 10 px, long side to
224, white padding; photos stretched; [-1, 1]), decoded with PIL rather than OpenCV (see that
module for the small pixel differences); ``"ours"`` uses the project's crop instead.

XModalViT (:func:`evaluate_xmodalvit`): the standard FG-SBIR protocol (every test sketch ranks
all test photos, un-normalised dot product of the students' embeddings, ties count against the
query), which is what the README's numbers describe; the released ``test.py`` differs (one
random sketch per photo, batch galleries). Inputs as the official code: resize + [0, 1], no
normalisation. With a teacher, its fused-embedding pair retrieval is added as a diagnostic
(no paper number exists for it).
"""
from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from xmodal_lib.data.datasets import preload
from xmodal_lib.data.sake import read_sake
from xmodal_lib.data.transforms import ImageLoader
from xmodal_lib.infra.devices import resolve_device
from xmodal_lib.methods.reported import CONVENTIONS, SETTINGS, reported_for
from xmodal_lib.methods.xmodalvit.data import index_to_tensors
from xmodal_lib.methods.xmodalvit.model import StudentPair
from xmodal_lib.methods.xmodalvit.pipeline import evaluate, teacher_pair_retrieval
from xmodal_lib.methods.zse.evaluate import build_cache, scores_ret, scores_rn, scores_rn_rerank
from xmodal_lib.official.loaders import load_checkpoint
from xmodal_lib.retrieval.metrics import category_metrics

__all__ = ["ZSE_METRICS", "PAPER_SIZES", "OFFICIAL_NAMES", "infer_setting", "evaluate_zse", "evaluate_xmodalvit",
           "format_report", "find_role", "evaluate_official"]

#: Paper metrics of each category-level setting (ZSE-SBIR Table 1).
ZSE_METRICS: dict[str, tuple[str, ...]] = {
    "sketchy_ext_25": ("map_all_voc", "p@100_minr"), "tuberlin_ext_30": ("map_all_voc", "p@100_minr"),
    "sketchy_ext_21": ("map@200_voc", "p@200_minr"), "quickdraw_ext_30": ("map_all_voc", "p@200_minr"),
}
#: (test sketches, test photos) of the full test lists (methods_spec.md §3.8).
PAPER_SIZES: dict[str, tuple[int, int]] = {"sketchy_ext_25": (15229, 17101), "sketchy_ext_21": (12694, 12553),
                                           "tuberlin_ext_30": (2400, 27989), "quickdraw_ext_30": (92291, 54151)}
_ZSE_OURS = {"ret": "zse_ret", "rn": "zse_rn", "rn_rerank": "zse_rn"}
_FG_CONV = {"acc@5": "FG acc@5: share of sketches whose photo is in the top 5 (no paper number)"}
#: The names the official code / README print for each engine metric.
OFFICIAL_NAMES = {"map_all_voc": "mAP@all (map_all)", "p@100_minr": "Prec@100 (precision_100)",
                  "map@200_voc": "mAP@200 (map_200)", "p@200_minr": "Prec@200 (precision_200)",
                  "acc@1": "Acc@1", "acc@5": "Acc@5", "acc@10": "Acc@10"}


def infer_setting(split: str | Path, n_unseen: int) -> str | None:
    """Setting key of a split folder: ``zeroshot1`` -> Sketchy-Ext 25, ``zeroshot0`` -> 21; the
    ``zeroshot`` folder of a TU-Berlin / QuickDraw path by its 30 unseen classes; else None."""
    p = Path(split)
    name, full = p.name.lower(), str(p).lower()
    if name == "zeroshot1":
        return "sketchy_ext_25"
    if name == "zeroshot0":
        return "sketchy_ext_21"
    if n_unseen == 30 and ("tu" in full and "berlin" in full):
        return "tuberlin_ext_30"
    if n_unseen == 30 and "quickdraw" in full:
        return "quickdraw_ext_30"
    return None


def _amp(dev: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ValueError(f"precision: expected 'fp32', 'bf16' or 'fp16', got {precision!r}")
    return torch.autocast(dev.type, dtype=dtype)


def _row(metric: str, value: float, ours_key: str, setting: str | None, convention: str | None = None) -> dict:
    rep = reported_for(ours_key, setting, metric)
    return {"metric": metric, "official_name": OFFICIAL_NAMES[metric], "value": float(value),
            "convention": convention or CONVENTIONS[metric],
            "paper": rep.value if rep else None, "paper_row": rep.label if rep else None}


@torch.no_grad()
def evaluate_zse(model: nn.Module, data_root: str | Path, split: str | Path,
                 modes: Sequence[str] = ("rn",), precision: str = "fp32", device: str = "auto",
                 batch_size: int = 64, rerank_k: int = 200, setting: str | None = None,
                 preprocess: str = "official", rn_max_pairs: int | None = None) -> dict[str, Any]:
    """ZSE-SBIR zero-shot retrieval on the unseen test lists of ``split`` under ``data_root``.

    ``rn_max_pairs``: above this many sketch-photo pairs exhaustive ``rn`` is replaced by
    ``rn_rerank`` (and the report says so); None = no limit."""
    bad = [m for m in modes if m not in _ZSE_OURS]
    if bad or not modes:
        raise ValueError(f"modes: expected some of {list(_ZSE_OURS)}, got {list(modes)}")
    if setting is not None and setting not in ZSE_METRICS:
        raise ValueError(f"setting: expected one of {list(ZSE_METRICS)}, got {setting!r}")
    if preprocess not in ("official", "ours"):
        raise ValueError(f"preprocess: expected 'official' or 'ours', got {preprocess!r}")
    dev = resolve_device(device)
    _amp(dev, precision)  # validates precision early
    index = read_sake(data_root, split_dir=split)
    test = index.subset("test")
    setting = setting or infer_setting(split, len(index.unseen))
    metrics = ZSE_METRICS.get(setting or "", ("map_all_voc", "p@100_minr"))
    model.to(dev).eval()
    size = int(model.cfg.img_size)
    t0 = time.perf_counter()
    if preprocess == "official":
        from xmodal_lib.data.official_crop import OfficialZSELoader  # lazy: only needed on this branch

        sk_loader: Any = OfficialZSELoader(size)
        ph_loader: Any = sk_loader
    else:
        sk_loader, ph_loader = ImageLoader(size, "half", sketch_crop=True), ImageLoader(size, "half")
    sk = preload(test.sketches, sk_loader, "sketches", progress=False)
    ph = preload(test.photos, ph_loader, "photos", progress=False)
    timing = {"load_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    proj = any(m != "ret" for m in modes)  # CA projections are needed by rn / rn_rerank only
    sc = build_cache(model, sk, "sketch", batch_size, with_proj=proj, precision=precision)
    pc = build_cache(model, ph, "photo", batch_size, with_proj=proj, precision=precision)
    timing["sa_s"] = time.perf_counter() - t0
    ql, gl = [r.label for r in test.sketches], [r.label for r in test.photos]
    note = None
    if "rn" in modes and rn_max_pairs is not None and len(ql) * len(gl) > rn_max_pairs:
        modes = tuple(m for m in modes if m != "rn") + (() if "rn_rerank" in modes else ("rn_rerank",))
        note = (f"exhaustive rn skipped: {len(ql)} x {len(gl)} pairs > rn_max_pairs={rn_max_pairs}; "
                f"rn_rerank (RN on the ret top {rerank_k}) instead")
    rows = []
    for mode in modes:
        t0 = time.perf_counter()
        with _amp(dev, precision):
            if mode == "ret":
                s = scores_ret(sc, pc)
            elif mode == "rn":
                s = scores_rn(model, sc, pc)
            else:
                s = scores_rn_rerank(model, sc, pc, rerank_k)
        timing[f"{mode}_s"] = time.perf_counter() - t0
        vals = category_metrics(s.float().cpu(), ql, gl, metrics=metrics)
        rows += [{"mode": mode, **_row(m, vals[m], _ZSE_OURS[mode], setting)} for m in metrics]
    paper = PAPER_SIZES.get(setting or "")
    return {"method": "ZSE-SBIR", "setting": setting, "setting_text": SETTINGS.get(setting or "", "unknown setting"),
            "n_sketches": len(ql), "n_photos": len(gl), "paper_sizes": paper, "precision": precision,
            "device": str(dev), "rows": rows, "timing": timing, "preprocess": preprocess, "note": note,
            "full_test_set": bool(paper and paper == (len(ql), len(gl)))}


@torch.no_grad()
def evaluate_xmodalvit(photo_student: nn.Module, sketch_student: nn.Module, data_root: str | Path,
                       dataset: str = "qmul_v2", teacher: nn.Module | None = None, setting: str | None = None,
                       device: str = "auto", batch_size: int = 64) -> dict[str, Any]:
    """FG-SBIR acc@1/5/10 of the students on the test split of ``dataset`` (``open_dataset`` kind)."""
    from xmodal_lib.data import open_dataset  # lazy: read at call time: tests patch open_dataset

    if setting is not None and setting not in ("shoe_v2", "chair_v2", "sketchy_fg"):
        raise ValueError(f"setting: expected 'shoe_v2', 'chair_v2' or 'sketchy_fg', got {setting!r}")
    dev = resolve_device(device)
    pair = StudentPair(photo_student, sketch_student, normalize=False).to(dev).eval()
    size = int(photo_student.backbone.patch_embed.img_size[0])
    t0 = time.perf_counter()
    test = index_to_tensors(open_dataset(dataset, root=data_root).subset("test"), ImageLoader(size, "none"),
                            progress=False)
    timing = {"load_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    acc = evaluate(pair, test, metric="dot", batch_size=batch_size)
    timing["students_s"] = time.perf_counter() - t0
    rows = [{"mode": "students", **_row(m, acc[m], "xmodalvit", setting, _FG_CONV.get(m))}
            for m in ("acc@1", "acc@5", "acc@10")]
    if teacher is not None:
        t0 = time.perf_counter()
        tacc = teacher_pair_retrieval(teacher.to(dev).eval(), test, batch_size)
        timing["teacher_s"] = time.perf_counter() - t0
        rows += [{"mode": "teacher", "metric": m, "official_name": "-", "value": float(tacc[m]),
                  "paper": None, "paper_row": None,
                  "convention": f"{m} of the teacher's fused z_s (query) vs z_p (gallery) pair retrieval "
                                "(our diagnostic, no paper number)"} for m in ("acc@1", "acc@10")]
    note = None
    if setting in ("shoe_v2", "chair_v2") and dataset not in ("qmul_v2", "qmul_v2_pickle"):
        note = f"the paper's {setting} numbers are on QMUL-V2; this is {dataset!r}, so they are not comparable"
    return {"method": "XModalViT", "note": note, "setting": setting, "setting_text": SETTINGS.get(setting or "", "unknown setting"),
            "n_sketches": int(test.sketches.shape[0]), "n_photos": int(test.photos.shape[0]), "paper_sizes": None,
            "device": str(dev), "rows": rows, "timing": timing, "full_test_set": None}


def format_report(res: dict[str, Any]) -> str:
    """A plain-text table: mode, metric, our value, the paper's value, the convention."""
    lines = [f"{res['method']} — setting {res['setting'] or '(none: no paper number to compare)'}: "
             f"{res['setting_text']}",
             f"test set: {res['n_sketches']} sketches x {res['n_photos']} photos, device {res['device']}"
             + (f", precision {res['precision']}" if "precision" in res else "")]
    if res.get("paper_sizes") and not res.get("full_test_set"):
        s, p = res["paper_sizes"]
        lines.append(f"NOTE: the paper's numbers are on the full test lists ({s} sketches x {p} photos); "
                     "these lists differ, so the numbers are not comparable")
    if res.get("note"):
        lines.append(f"NOTE: {res['note']}")
    lines.append(f"{'mode':<10} {'metric':<12} {'official name':<24} {'ours':>8} {'paper':>8}  convention")
    for r in res["rows"]:
        paper = f"{r['paper']:.4f}" if r["paper"] is not None else "–"
        who = f" [paper row: {r['paper_row']}]" if r["paper_row"] else ""
        lines.append(f"{r['mode']:<10} {r['metric']:<12} {r['official_name']:<24} {r['value']:>8.4f} {paper:>8}  "
                     f"{r['convention']}{who}")
    lines.append("timing (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res["timing"].items()))
    return "\n".join(lines)


_ROLES = ("teacher", "photo_student", "sketch_student")
_FG_SETTING = {"shoev2": "shoe_v2", "chairv2": "chair_v2", "sketchy": "sketchy_fg"}


def find_role(folder: str | Path, role: str) -> Path | None:
    """The file of ``role`` in an official / converted folder: converted ``<role>_*.safetensors``
    (with its ``.json``) first, else ``<role>_*.pth`` (``.pth.xz``); among several, the highest epoch number."""
    if role not in _ROLES:
        raise ValueError(f"role: expected one of {_ROLES}, got {role!r}")
    d = Path(folder)
    for pattern in (f"{role}_*.safetensors", f"{role}_*.pth", f"{role}_*.pth.xz"):
        found = [p for p in d.glob(pattern) if p.suffix != ".safetensors" or p.with_suffix(".json").is_file()]
        hits = sorted(found, key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)] or [-1])
        if hits:
            return hits[-1]
    return None


def evaluate_official(method: str, checkpoint: str | Path, data_root: str | Path | None, *,
                      split: str | None = None, dataset: str = "qmul_v2", setting: str | None = None,
                      modes: Sequence[str] = ("rn", "ret"), precision: str = "fp32", device: str = "auto",
                      with_teacher: bool = False, **options: Any) -> dict[str, Any]:
    """The notebooks' ``OFFICIAL_CHECKPOINT`` path (evaluation only): ``method`` "zse" takes a
    checkpoint file and a SAKE ``split``; "xmodalvit" a folder holding ``photo_student_*`` and
    ``sketch_student_*`` (and ``teacher_*`` with ``with_teacher``). ``setting`` may also be a
    notebook ``PAPER_DATASET`` (shoev2 / chairv2 / sketchy). ``options``: ``sa_heads``, ``ca_heads``,
    ``student_heads``, ``teacher_heads`` and ``rn_max_pairs`` (zse). The result has ``"report"`` (text)."""
    if data_root is None:
        raise ValueError("OFFICIAL_CHECKPOINT needs DATA_ROOT: the dataset to evaluate on")
    if precision == "auto":  # the official test.py evaluates in fp16 on the GPU
        precision = "fp16" if resolve_device(device).type == "cuda" else "fp32"
    if method == "zse":
        if split is None:
            raise ValueError("OFFICIAL_CHECKPOINT (zse) needs SPLIT, e.g. 'zeroshot1' (Sketchy-Ext 25)")
        model = load_checkpoint(checkpoint, "zse", options.get("sa_heads", 12), options.get("ca_heads", 8))
        res = evaluate_zse(model, data_root, split, modes, precision, device, setting=setting,
                           rn_max_pairs=options.get("rn_max_pairs"))
    elif method == "xmodalvit":
        files = {r: find_role(checkpoint, r) for r in _ROLES}
        missing = [r for r in _ROLES[1:] if files[r] is None]
        if not Path(checkpoint).is_dir() or missing:
            raise ValueError(f"OFFICIAL_CHECKPOINT {checkpoint}: expected a folder with photo_student_* and "
                             f"sketch_student_* (.pth or converted .safetensors); missing {missing}")
        sh = options.get("student_heads")
        ph, sk = (load_checkpoint(files[r], "student", vit_heads=sh) for r in _ROLES[1:])
        teacher = None
        if with_teacher and files["teacher"] is not None:
            teacher = load_checkpoint(files["teacher"], "teacher", vit_heads=options.get("teacher_heads"))
        res = evaluate_xmodalvit(ph, sk, data_root, dataset, teacher, _FG_SETTING.get(setting or "", setting),
                                 device)
    else:
        raise ValueError(f"method: expected 'zse' or 'xmodalvit', got {method!r}")
    res["checkpoint"] = str(checkpoint)
    res["report"] = format_report(res)
    return res
