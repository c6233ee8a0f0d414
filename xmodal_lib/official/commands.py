"""``xmodal convert-official`` and ``xmodal evaluate`` (registered by :mod:`xmodal_lib.cli`).

    xmodal convert-official zse best_checkpoint.pth out/zse_sketchy_ext
    xmodal convert-official xmodalvit teacher_20000.pth out/teacher      (a folder converts every .pth)
    xmodal evaluate zse --checkpoint best_checkpoint.pth --data-root /data/Sketchy \\
        --split zeroshot1 --mode rn --mode ret --precision fp16
    xmodal evaluate xmodalvit --photo-student p.pth --sketch-student s.pth [--teacher t.pth] \\
        --data-root /data/ShoeV2 --dataset qmul_v2 --setting shoe_v2

Checkpoints may be the official ``.pth`` (read safely, no pickle code runs) or a converted
``.safetensors`` (+ ``.json``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from xmodal_lib.data.index import DataError
from xmodal_lib.official.evaluate import evaluate_xmodalvit, evaluate_zse, format_report
from xmodal_lib.official.keymap import KeyMappingError
from xmodal_lib.official.loaders import convert_official, load_checkpoint
from xmodal_lib.official.safe_load import UntrustedPickleError, read_official, state_dict_of

__all__ = ["add_subparsers", "run_convert", "run_evaluate", "main", "COMMANDS"]

COMMANDS = ("convert-official", "evaluate")


def add_subparsers(sub: Any) -> None:
    """Add ``convert-official`` and ``evaluate`` to the ``xmodal`` sub-parser group ``sub``."""
    cv = sub.add_parser("convert-official", help="convert an authors' checkpoint to safetensors + JSON",
                        description="Read an official .pth safely (weights only, no code) and write "
                                    "OUT.safetensors + OUT.json, loadable without pickle.")
    cv.add_argument("method", choices=("zse", "xmodalvit"))
    cv.add_argument("src", type=Path, help="official .pth (.pth.xz); xmodalvit: a file or a folder of .pth")
    cv.add_argument("out", type=Path, help="output stem (xmodalvit folder SRC: output folder)")
    _heads(cv)
    ev = sub.add_parser("evaluate", help="evaluate a released (or converted) checkpoint with the paper's protocol",
                        description="Retrieval metrics under the official conventions, next to the paper's numbers.")
    ev_sub = ev.add_subparsers(dest="method", required=True)
    z = ev_sub.add_parser("zse", help="ZSE-SBIR zero-shot retrieval on SAKE-format test lists")
    z.add_argument("--checkpoint", type=Path, required=True)
    z.add_argument("--data-root", type=Path, required=True, help="root the list paths are relative to")
    z.add_argument("--split", required=True, help="split folder with cname_cid*.txt and *_filelist_zero.txt "
                                                  "(relative to --data-root or a path), e.g. zeroshot1")
    z.add_argument("--mode", action="append", choices=("ret", "rn", "rn_rerank"), default=None,
                   help="retrieval mode (repeatable; default rn, the official default)")
    z.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    z.add_argument("--setting", default=None, help="paper setting key (default: from the split name)")
    z.add_argument("--rerank-k", type=int, default=200)
    z.add_argument("--preprocess", choices=("official", "ours"), default="official",
                   help="input pipeline: the released sketch crop / photo resize (default) or ours")
    x = ev_sub.add_parser("xmodalvit", help="XModalViT FG-SBIR with the students (every sketch vs all photos)")
    x.add_argument("--photo-student", type=Path, required=True)
    x.add_argument("--sketch-student", type=Path, required=True)
    x.add_argument("--teacher", type=Path, default=None, help="optional: adds the teacher's pair diagnostic")
    x.add_argument("--data-root", type=Path, required=True)
    x.add_argument("--dataset", default="qmul_v2", help="reader kind: qmul_v2, qmul_v1, qmul_v2_pickle, manifest")
    x.add_argument("--setting", default=None, choices=("shoe_v2", "chair_v2", "sketchy_fg"))
    for p in (z, x):
        p.add_argument("--device", default="auto")
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
        _heads(p)


def _heads(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("attention heads (not stored in the official files; defaults = the papers')")
    g.add_argument("--sa-heads", type=int, default=12, help="ZSE SA ViT heads (paper 12)")
    g.add_argument("--ca-heads", type=int, default=8, help="ZSE CA heads (paper 8)")
    g.add_argument("--teacher-heads", type=int, default=None, help="XModalViT teacher ViT heads (default width/64)")
    g.add_argument("--student-heads", type=int, default=None, help="XModalViT student ViT heads (default width/64)")
    g.add_argument("--xma-heads", type=int, default=3, help="XModalViT XMA heads (paper 3)")


def _xmodalvit_kind(path: Path) -> str:
    sd, _ = state_dict_of(read_official(path), str(path))
    return "teacher" if any(k.startswith("x_modal_transformers.") for k in sd) else "student"


def _load(path: Path, kind: str, args: argparse.Namespace):
    heads = args.teacher_heads if kind == "teacher" else args.student_heads
    return load_checkpoint(path, kind, sa_heads=args.sa_heads, ca_heads=args.ca_heads, vit_heads=heads,
                           xma_heads=args.xma_heads)


def run_convert(args: argparse.Namespace) -> int:
    """``xmodal convert-official``: prints every written stem."""
    srcs = sorted(args.src.glob("*.pth")) if args.src.is_dir() else [args.src]
    if not srcs:
        raise ValueError(f"{args.src}: no .pth files in this folder")
    for src in srcs:
        out = args.out / src.stem if args.src.is_dir() else args.out
        if args.method == "zse":
            stem = convert_official("zse", src, out, heads=args.sa_heads, ca_heads=args.ca_heads)
        else:
            kind = _xmodalvit_kind(src)
            kw = ({"vit_heads": args.teacher_heads, "xma_heads": args.xma_heads} if kind == "teacher"
                  else {"vit_heads": args.student_heads})
            stem = convert_official(kind, src, out, **kw)
        print(f"{src} -> {stem}.safetensors + {stem}.json")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``xmodal evaluate``: prints the report table (and writes JSON with ``--json``)."""
    if args.method == "zse":
        model = _load(args.checkpoint, "zse", args)
        res = evaluate_zse(model, args.data_root, args.split, modes=tuple(args.mode or ("rn",)),
                           precision=args.precision, device=args.device, batch_size=args.batch_size,
                           rerank_k=args.rerank_k, setting=args.setting, preprocess=args.preprocess)
    else:
        photo = _load(args.photo_student, "student", args)
        sketch = _load(args.sketch_student, "student", args)
        teacher = _load(args.teacher, "teacher", args) if args.teacher else None
        res = evaluate_xmodalvit(photo, sketch, args.data_root, dataset=args.dataset, teacher=teacher,
                                 setting=args.setting, device=args.device, batch_size=args.batch_size)
    print(format_report(res))
    if args.json:
        from xmodal_lib.infra.atomic_io import atomic_write_json  # lazy: only needed on this branch

        atomic_write_json(args.json, res)
    return 0


def main(args: argparse.Namespace) -> int:
    """Dispatch for :mod:`xmodal_lib.cli`; errors in the input become one ``error:`` line, status 2."""
    try:
        return run_convert(args) if args.command == "convert-official" else run_evaluate(args)
    except (UntrustedPickleError, KeyMappingError, DataError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
