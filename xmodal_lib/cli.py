"""The ``xmodal`` command line: ``xmodal reproduce`` runs the notebook pipeline, ``xmodal list`` shows it,
``xmodal train`` trains one method with the notebooks' pipeline functions (also under ``torchrun``)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from xmodal_lib import __version__
from xmodal_lib.infra import paths
from xmodal_lib.infra.errors import Interrupted, XModalError, one_line
from xmodal_lib.infra.paths import runs_dir
from xmodal_lib.run.params import ConfigError, flat_params, override, params_of_field, parse_value, preset
from xmodal_lib.run.runner import NotebookFailed, discover_notebooks, notebook_parameters, profile_params, reproduce

TRAIN_METHODS = ("xmodalvit-teacher", "xmodalvit-students", "xmodalvit-baseline", "crossatnet", "zse")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="xmodal",
        description="Reproducible companion to XModalViT, CrossATNet and ZSE-SBIR.",
    )
    ap.add_argument("--version", action="version", version=f"xmodal {__version__}")
    ap.add_argument("--debug", action="store_true",
                    help="print the traceback behind an error (also accepted after the command; XMODAL_DEBUG=1)")
    sub = ap.add_subparsers(dest="command", required=True)
    _add_reproduce(sub)
    _add_train(sub)
    ls = sub.add_parser("list", help="list the notebooks and the parameters a profile sets")
    ls.add_argument("--profile", default="smoke")
    ls.add_argument("--notebooks-dir", type=Path, default=None)
    ls.add_argument("--all", action="store_true", help="every parameter, not only those the profile changes")

    from xmodal_lib.official import commands as official_commands  # lazy: keeps cli free of torch at import; convert-official, evaluate

    official_commands.add_subparsers(sub)
    return ap


def _add_reproduce(sub: Any) -> None:
    rp = sub.add_parser(
        "reproduce",
        help="run the numbered notebooks headless with papermill",
        description=(
            "Run notebooks/NN_*.ipynb in order under a parameter profile. Each run writes "
            "runs/<timestamp>/ with the executed notebooks, manifest.json, results.json and results.md."
        ),
    )
    rp.add_argument("--profile", default="smoke",
                    help="smoke (CPU, embedded data, minutes), cpu (CPU, the small real datasets of ../shared/data, "
                         "<= 15 min a notebook) or paper (GPU, real data); = notebooks/params/<profile>/<stem>.yaml")
    rp.add_argument("--only", default=None,
                    help="comma-separated notebook numbers or stems, e.g. 00,02")
    rp.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="parameter override for every selected notebook that has KEY "
                         "(NN.KEY=VALUE for one notebook); VALUE is read as YAML (3, 1e-4, true, None)")
    rp.add_argument("--profile-file", type=Path, default=None,
                    help="extra YAML of parameters (flat, or nested per notebook stem/number)")
    rp.add_argument("--data-root", default=None,
                    help="real dataset root, passed as DATA_ROOT to notebooks that take it")
    rp.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    rp.add_argument("--notebooks-dir", type=Path, default=None,
                    help="folder of NN_*.ipynb notebooks (default: the repository's notebooks/)")
    rp.add_argument("--runs-dir", type=Path, default=None,
                    help="parent of the run folders (default runs/ or $XMODAL_RUNS)")
    rp.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")


def _add_train(sub: Any) -> None:
    tr = sub.add_parser(
        "train",
        help="train one method (single process, or every rank under torchrun)",
        description=(
            "Train one method with the same pipeline functions the notebooks call. Under torchrun each "
            "rank runs this command: DDP (NCCL on GPUs, gloo on CPU), global batch = the loop's batch "
            "size (batch_size; XModalViT: teacher_/student_/baseline_batch_size), checkpoints and artefacts "
            "written by rank 0. Example: torchrun "
            "--nproc_per_node=4 -m xmodal_lib train crossatnet --profile paper -p batch_size=256"
        ),
    )
    tr.add_argument("method", choices=TRAIN_METHODS,
                    help="xmodalvit-teacher | xmodalvit-students | xmodalvit-baseline | crossatnet | zse")
    tr.add_argument("--profile", default="smoke",
                    help="the preset: the method notebook's notebooks/params/<profile>/<stem>.yaml (smoke, cpu, "
                         "paper: the folders of notebooks/params/; an unknown one is refused naming them)")
    tr.add_argument("--dataset", default=None,
                    help="--profile paper on another paper dataset, the method's PAPER_DATASETS (xmodalvit: "
                         "shoev2/chairv2/sketchy; crossatnet: sketchy/sketchy21/tuberlin; zse: "
                         "sketchy25/sketchy21/tuberlin/quickdraw)")
    tr.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="parameter of the method (lower-case name, e.g. batch_size=64, data_root=/data; "
                         "xmodalvit-*: teacher_batch_size, student_device ...); "
                         "VALUE is read as YAML")
    tr.add_argument("--loop", action="append", default=[], metavar="KEY=VALUE",
                    help="training-loop field for every fit(): num_workers, pin_memory, prefetch_factor, "
                         "persistent_workers, compile, channels_last, sync_batchnorm, find_unused_parameters, "
                         "profile_timing, precision, ckpt_every, keep_last")
    tr.add_argument("--out", type=Path, default=None,
                    help="training folder (checkpoints, metrics.jsonl); default runs/train/<method>_<profile>")
    tr.add_argument("--teacher", type=Path, default=None,
                    help="xmodalvit-students: the teacher's weights (default: notebook 01's artefact)")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out "
                    "(refused when the stored setup differs, naming the fields)")
    tr.add_argument("--resume-changed", action="store_true",
                    help="--resume even though the setup changed (e.g. batch_size, lr): a warning names the "
                         "fields and the new values apply from here on")
    tr.add_argument("--evaluate", action="store_true", help="evaluate on the test split afterwards (rank 0)")
    tr.add_argument("--backend", default="auto", choices=("auto", "nccl", "gloo"),
                    help="process-group backend under torchrun (auto: nccl when training on CUDA)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bars")


def _cmd_list(args: argparse.Namespace) -> int:
    nb_dir = args.notebooks_dir or paths.notebooks_dir()
    for nb in discover_notebooks(nb_dir):
        defaults = notebook_parameters(nb)
        prof = profile_params(args.profile, nb.stem, nb_dir)
        print(nb.name)
        changed = {k for k in defaults if k in prof and prof[k] != defaults[k]}  # what the profile changes
        for k, v in defaults.items():
            if k in changed or args.all:
                mark = f"  -> {prof[k]!r} ({args.profile})" if k in changed else ""
                print(f"    {k} = {v!r}{mark}")
        if not args.all and len(defaults) > len(changed):
            print(f"    ({len(defaults) - len(changed)} more as the notebook's defaults; --all lists them)")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    try:
        import papermill  # lazy: optional dependency, ImportError handled; noqa: F401
    except ImportError:
        print('error: xmodal reproduce needs papermill: pip install -e ".[notebooks]"', file=sys.stderr)
        return 2

    only = args.only.split(",") if args.only else None
    try:
        reproduce(
            profile=args.profile,
            only=only,
            overrides=args.param,
            profile_file=args.profile_file,
            data_root=args.data_root,
            kernel=args.kernel,
            notebooks_dir=args.notebooks_dir,
            runs_parent=args.runs_dir,
            progress=not args.no_progress,
        )
    except NotebookFailed as err:
        print(f"error: {one_line(err)} (manifest: {err.run_dir / 'manifest.json'})", file=sys.stderr)
        return 1
    return 0  # bad input, other failures and interruptions: main()'s one error surface


def _parse_kv(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` items read by :func:`xmodal_lib.run.params.parse_value` (the same reader as
    ``xmodal reproduce -p``); keys are field names in either case (``lr`` or ``LR``)."""
    out: dict[str, Any] = {}
    for text in items:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
        out[key.strip().lower()] = parse_value(raw)
    return out


#: the notebook whose profile YAML is each ``xmodal train`` method's preset
TRAIN_STEMS = {"xmodalvit-teacher": "01_fusion_teacher", "xmodalvit-students": "02_distillation",
               "xmodalvit-baseline": "02_distillation", "crossatnet": "03_crossatnet_zero_shot",
               "zse": "04_zse_sbir"}
#: the prefix of the training loop each method runs (its ``TrainConfig`` group: ``STUDENT_DEVICE`` ...)
TRAIN_LOOPS = {"xmodalvit-teacher": "teacher_", "xmodalvit-students": "student_", "xmodalvit-baseline": "baseline_"}


def _make_config(method: str, profile: str, dataset: str | None, params: dict[str, Any]) -> Any:
    """The method's notebook config under ``profile`` (its YAML file, :func:`xmodal_lib.run.params.preset`),
    then the paper dataset's values (the method's ``PAPER_DATASETS``), then ``-p``: one bind, so
    unknown keys, types and ranges are refused as the notebooks refuse them."""
    over: dict[str, Any] = {}
    if dataset is not None:
        if method.startswith("xmodalvit"):
            from xmodal_lib.methods.xmodalvit.config import PAPER_DATASETS as table  # lazy: only needed on this branch
        elif method == "crossatnet":
            from xmodal_lib.methods.crossatnet.config import PAPER_DATASETS as table  # lazy: only needed on this branch
        else:
            from xmodal_lib.methods.zse.pipeline import PAPER_DATASETS as table  # lazy: only needed on this branch
        if profile != "paper" or dataset not in table:
            raise ConfigError(f"--dataset {dataset!r}: expected one of {', '.join(table)} with --profile paper")
        over.update(table[dataset])
    return preset(TRAIN_STEMS[method], profile, **{**over, **params})


def _rank0_first(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0 first (it may generate or cache files), then on the other ranks."""
    from xmodal_lib.infra import distributed as D  # lazy: keeps cli free of torch at import

    if D.is_main_process():
        out = fn()
        D.barrier()
        return out
    D.barrier()
    return fn()


def _train_method(args: argparse.Namespace, cfg: Any, out: Path, progress: bool, options: Any):
    """Run the method's pipeline training with ``options`` (:class:`~xmodal_lib.engine.train.FitOptions`:
    ``--loop`` fields, ``--resume-changed``); returns ``(TrainResult, artefact path or None, evaluate())``."""
    from xmodal_lib.infra import distributed as D  # lazy: keeps cli free of torch at import
    from xmodal_lib.run.artifacts import save_model  # lazy: keeps cli free of torch at import

    main = D.is_main_process()
    if args.method.startswith("xmodalvit"):
        from xmodal_lib.methods.xmodalvit import pipeline as xv  # lazy: only needed on this branch

        data = _rank0_first(lambda: xv.load_data(cfg, progress=progress))
        if args.method == "xmodalvit-teacher":
            teacher, res = xv.train_teacher(cfg, data, out, resume=args.resume, progress=progress, options=options)
            path = xv.save_teacher(teacher, cfg) if main else None
            return res, path, lambda: xv.teacher_pair_retrieval(teacher, data.test)
        if args.method == "xmodalvit-students":
            loaded = xv.load_teacher(args.teacher)
            if loaded is None:
                where = args.teacher or xv.teacher_path()
                raise ValueError(f"--teacher: no usable teacher at {where}; run `xmodal train xmodalvit-teacher` first")
            students, res = xv.distil_students(cfg, data, loaded[0], relational=True, out_dir=out,
                                               resume=args.resume, progress=progress, options=options)
        else:
            students, res = xv.train_triplet_baseline(cfg, data, out_dir=out, resume=args.resume, progress=progress,
                                                      options=options)
        path = save_model(students, out / "students", cfg) if main else None
        return res, path, lambda: xv.evaluate(students, data.test, cfg.eval_metric, cfg.eval_batch_size)
    if args.method == "crossatnet":
        from xmodal_lib.methods.crossatnet import pipeline as cat  # lazy: only needed on this branch

        index = _rank0_first(lambda: cat.load_index(cfg))
        trained = cat.train(cfg, index.subset("train"), out, progress=progress, resume=args.resume, options=options)
        path = cat.save_artifact(trained.net, cfg) if main else None
        return trained.result, path, lambda: cat.evaluate(
            trained.net, cat.embed_test(trained.net, index.subset("test"), cfg), cfg.metrics)
    from xmodal_lib.methods.zse import pipeline as zse  # lazy: keeps cli free of torch at import

    index = _rank0_first(lambda: zse.load_index(cfg))
    model, res, _, _ = zse.train_zero_shot(cfg, out, index, resume=args.resume, progress=progress, options=options)
    path = save_model(model, out / "zse_model", cfg) if main else None
    return res, path, lambda: zse.evaluate_zero_shot(model, index.of_classes(index.unseen), cfg, curve=False)["metrics"]


def _cmd_train(args: argparse.Namespace) -> int:
    from xmodal_lib.engine.train import FitOptions  # lazy: keeps cli free of torch at import
    from xmodal_lib.infra import distributed as D  # lazy: keeps cli free of torch at import
    from xmodal_lib.infra.checkpoint import ensure_writable_dir  # lazy: keeps cli free of torch at import

    params = _parse_kv(args.param, "-p")
    options = FitOptions(loop=_parse_kv(args.loop, "--loop"), allow_changed_setup=args.resume_changed)
    cfg = _make_config(args.method, args.profile, args.dataset, params)
    owned = not (D.dist.is_available() and D.dist.is_initialized())
    device = D.setup(args.backend, device=str(flat_params(cfg)[TRAIN_LOOPS.get(args.method, "") + "device"]))
    if D.is_distributed():  # every loop of the run on this rank's device ("cuda" = cuda:LOCAL_RANK)
        cfg = override(cfg, **dict.fromkeys(params_of_field(type(cfg), "device"), device.type))
    out = args.out or runs_dir() / "train" / f"{args.method}_{args.profile}"
    if D.is_main_process():  # before any data is read: a folder we cannot write is bad input, found now
        ensure_writable_dir(out, "--out")
    args.resume = args.resume or args.resume_changed
    if args.resume and not args.resume_changed:  # every rank (same files): a changed setup is refused now
        from xmodal_lib.engine.resume import precheck  # lazy: only needed on this branch

        precheck(out, cfg.to_dict())
    progress = not args.no_progress and D.is_main_process()
    res, path, evaluate = _train_method(args, cfg, out, progress, options)
    main = D.is_main_process()
    if owned:
        D.cleanup()
    if not main:
        return 0
    summary = {"method": args.method, "profile": args.profile, "world_size": res.world_size, "steps": res.steps,
               "final_loss": res.history[-1]["loss"] if res.history else None, "wall_s": round(res.wall_time, 2),
               "data_ms": round(res.data_ms, 2), "step_ms": round(res.step_ms, 2), "out_dir": str(out),
               "weights": str(path) if path else None}
    if args.evaluate:
        summary["test"] = evaluate()
    print(json.dumps(summary, indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xmodal`` console script: the one error surface of every command.

    Every error ends as one line ``error: ...`` on stderr naming the file or parameter and what was
    expected; exit status 2 for bad input (:class:`~xmodal_lib.infra.errors.InputError`, ``ValueError``, a
    file that cannot be opened), 1 for a failure during the work, ``128 + signal`` when interrupted.
    ``--debug`` (anywhere on the line) or ``XMODAL_DEBUG=1`` also prints the traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("XMODAL_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        return _dispatch(argv)
    except (KeyboardInterrupt, Exception) as err:  # noqa: BLE001 - the one place errors become exit codes
        return _report(err, debug)


def _report(err: BaseException, debug: bool) -> int:
    """Print ``err`` as one line (and the traceback with ``debug``); return the exit status."""
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    if isinstance(err, KeyboardInterrupt):
        signum = err.signum if isinstance(err, Interrupted) else int(signal.SIGINT)
        where = f"; run folder {err.run_dir} (manifest status interrupted)" if getattr(err, "run_dir", None) else ""
        print(f"interrupted by {signal.Signals(signum).name}{where}", file=sys.stderr)
        return 128 + signum
    hint = "" if debug else " (--debug shows the traceback)"
    if isinstance(err, ValueError) or (isinstance(err, OSError) and err.filename is not None):
        text = one_line(err) if not isinstance(err, OSError) else f"{err.filename}: {err.strerror or one_line(err)}"
        print(f"error: {text}", file=sys.stderr)
        return 2
    named = one_line(err) if isinstance(err, XModalError) else f"{type(err).__name__}: {one_line(err)}"
    print(f"error: {named}{hint}", file=sys.stderr)
    return 1


def _dispatch(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "reproduce":
        return _cmd_reproduce(args)
    if args.command == "train":
        return _cmd_train(args)
    if args.command == "list":
        return _cmd_list(args)
    if args.command in ("convert-official", "evaluate"):
        from xmodal_lib.official import commands as official_commands  # lazy: only needed on this branch

        return official_commands.main(args)
    return 2  # pragma: no cover - argparse rejects unknown commands
