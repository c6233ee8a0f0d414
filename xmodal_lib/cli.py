"""The ``xmodal`` command line: ``xmodal reproduce`` runs the notebook pipeline, ``xmodal list`` shows it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="xmodal",
        description="Reproducible companion to XModalViT, CrossATNet and ZSE-SBIR.",
    )
    ap.add_argument("--version", action="version", version=f"xmodal {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    rp = sub.add_parser(
        "reproduce",
        help="run the numbered notebooks headless with papermill",
        description=(
            "Run notebooks/NN_*.ipynb in order under a parameter profile. Each run writes "
            "runs/<timestamp>/ with the executed notebooks, manifest.json, results.json and results.md."
        ),
    )
    rp.add_argument("--profile", default="smoke",
                    help="smoke (CPU, embedded data, minutes) or paper (GPU, real data); "
                         "= notebooks/params/<profile>/<stem>.yaml")
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

    ls = sub.add_parser("list", help="list the notebooks and the parameters a profile sets")
    ls.add_argument("--profile", default="smoke")
    ls.add_argument("--notebooks-dir", type=Path, default=None)
    return ap


def _cmd_list(args: argparse.Namespace) -> int:
    from . import paths
    from .runner import discover_notebooks, notebook_parameters, profile_params

    nb_dir = args.notebooks_dir or paths.notebooks_dir()
    for nb in discover_notebooks(nb_dir):
        defaults = notebook_parameters(nb)
        prof = profile_params(args.profile, nb.stem, nb_dir)
        print(nb.name)
        for k, v in defaults.items():
            mark = f"  -> {prof[k]!r} ({args.profile})" if k in prof else ""
            print(f"    {k} = {v!r}{mark}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .runner import NotebookFailed, reproduce

    try:
        import papermill  # noqa: F401
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
        print(f"error: {err} (manifest: {err.run_dir / 'manifest.json'})", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``xmodal`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "reproduce":
        return _cmd_reproduce(args)
    if args.command == "list":
        return _cmd_list(args)
    return 2  # pragma: no cover - argparse rejects unknown commands
