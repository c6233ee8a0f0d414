"""``xmodal reproduce``: run the numbered notebooks with papermill under a parameter profile.

A profile is a folder of parameter files, ``notebooks/params/<profile>/<notebook_stem>.yaml``
(flat ``KEY: value``; a missing file means "the notebook's own defaults"). Every run gets
``runs/<timestamp>/`` holding the executed notebooks, ``manifest.json`` (git state, package
versions, device, profile, parameters and seeds per notebook, wall times, status),
``results.json`` + ``results.md`` (every ``<artifacts>/results/*.json`` the notebooks wrote)
and ``artifacts/`` (checkpoints handed from one notebook to the next within the run).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from xmodal_lib.infra import paths
from xmodal_lib.infra.atomic_io import atomic_write_json
from xmodal_lib.infra.errors import Interrupted, OutputError, RunFailure
from xmodal_lib.run.manifest import environment_facts
from xmodal_lib.run.plan import (  # noqa: F401
    NOTEBOOK_RE,
    PROFILES,
    NotebookPlan,
    check_notebook_params,
    discover_notebooks,
    load_yaml_params,
    notebook_parameters,
    parameters_cell,
    parse_override,
    parse_parameters,
    plan_run,
    profile_params,
)
from xmodal_lib.run.report import collect_results, headline_text, results_markdown, run_report, summary_table  # noqa: F401


class NotebookFailed(RunFailure):
    """A notebook raised during a reproduce run; the message names the notebook and the cell."""

    def __init__(self, notebook: str, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.notebook = notebook
        self.run_dir = run_dir


# --------------------------------------------------------------------------- running


@dataclass
class NotebookRecord:
    """What the manifest says about one notebook."""

    name: str
    output: str
    status: str = "pending"  # pending | running | ok | failed | interrupted (SIGINT/SIGTERM)
    wall_s: float | None = None
    started_utc: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    injected: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


def _utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_dir(parent: Path | None = None) -> Path:
    """A fresh ``<runs>/<YYYYmmdd-HHMMSS>`` folder (suffixed ``-1``, ``-2``... when runs start in one second).

    Atomic under concurrency: ``mkdir`` without ``exist_ok`` either creates the folder or fails, and
    a failure moves on to the next suffix (no check-then-create race between processes)."""
    parent = Path(parent) if parent else paths.runs_dir()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"runs folder {parent}: cannot be created ({err.strerror or err}); "
                          f"expected a writable folder (--runs-dir or $XMODAL_RUNS)") from None
    for i in range(10_000):
        cand = parent / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            cand.mkdir()
            return cand
        except FileExistsError:
            continue
        except OSError as err:
            raise OutputError(f"runs folder {parent}: cannot create {cand.name} ({err.strerror or err}); "
                              f"expected a writable folder (--runs-dir or $XMODAL_RUNS)") from None
    raise OutputError(f"runs folder {parent}: 10000 runs already started at {stamp}")


def _kill_children() -> None:
    """SIGKILL our child processes (the notebook's kernel, its loader workers): a kernel asked to shut
    down in the middle of a cell prints its own traceback, and one left alone outlives the run."""
    try:
        import psutil  # lazy: optional dependency, ImportError handled; ships with IPython, which every kernel needs
    except ImportError:  # pragma: no cover
        return
    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass


def _interrupted(err: BaseException | None, records: list[NotebookRecord], manifest: dict[str, Any],
                 run_dir: Path, log: Callable[[str], None]) -> Interrupted:
    """Mark every ``running`` record ``interrupted`` and, for ``err`` (a KeyboardInterrupt), the manifest's
    ``interrupted_by``; returns the :class:`Interrupted` to raise (it carries ``run_dir``)."""
    stop = err if isinstance(err, Interrupted) else Interrupted(signal.SIGINT)
    stop.run_dir = run_dir
    if err is not None:
        manifest["interrupted_by"] = signal.Signals(stop.signum).name
        log(f"  INTERRUPTED ({stop})")
    for r in records:
        if r.status == "running":
            r.status, r.error = "interrupted", {"ename": "Interrupted", "evalue": str(stop), "cell_index": None}
    return stop


def _raise_on_signals() -> Callable[[], None]:
    """Make SIGTERM (and SIGINT) raise :class:`~xmodal_lib.infra.errors.Interrupted` in the main thread, once:
    the first signal kills the running kernel and stops the run so it is recorded; later ones get the
    previous handlers (a second SIGTERM ends the process at once). Returns the restoring function."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.getsignal(s) for s in sigs}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    def handler(signum: int, frame: Any) -> None:
        restore()
        _kill_children()
        raise Interrupted(signum)

    for s in sigs:
        signal.signal(s, handler)
    return restore


def _seeds(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if "SEED" in k.upper()}


def _failure(err: BaseException, plan: NotebookPlan) -> dict[str, Any]:
    """Failing cell of ``plan.path``: index in the stored notebook, execution count, error."""
    from papermill.exceptions import PapermillExecutionError  # lazy: optional extra papermill

    if not isinstance(err, PapermillExecutionError):
        return {"ename": type(err).__name__, "evalue": str(err)[:2000], "cell_index": None}
    import nbformat  # lazy: optional extra nbformat

    src_index = None
    nb = nbformat.read(str(plan.path), as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source.strip() == (err.source or "").strip():
            src_index = i
            break
    first = next((ln for ln in (err.source or "").splitlines() if ln.strip()), "")
    return {
        "ename": err.ename,
        "evalue": str(err.evalue)[:2000],
        "cell_index": src_index,
        "executed_cell_index": err.cell_index,
        "execution_count": err.exec_count,
        "cell_first_line": first[:200],
    }


def describe_failure(name: str, error: Mapping[str, Any]) -> str:
    """One line naming the notebook, the cell and the exception."""
    where = (
        f"cell {error['cell_index']} (execution count {error.get('execution_count')}: "
        f"{error.get('cell_first_line', '')!r})"
        if error.get("cell_index") is not None
        else "before any cell ran" if error.get("executed_cell_index") is None else
        f"executed cell {error['executed_cell_index']}"
    )
    return f"notebook {name} failed at {where}: {error['ename']}: {error['evalue']}"


def _start_run(plans: list[NotebookPlan], runs_parent: Path | None, facts: dict[str, Any]
               ) -> tuple[Path, list[NotebookRecord], dict[str, Any]]:
    """The run folder (with ``artifacts/``), one record per notebook and the first manifest."""
    run_dir = new_run_dir(runs_parent)
    (run_dir / "artifacts").mkdir()
    records = [NotebookRecord(name=p.path.name, output=p.path.name, parameters=p.effective, injected=p.injected)
               for p in plans]
    manifest: dict[str, Any] = {
        "xmodal_run": run_dir.name, "created_utc": _utc(), "status": "running", **facts,
        **environment_facts(paths.repo_root()),
        "env": {"XMODAL_ARTIFACTS": str(run_dir / "artifacts"), "XMODAL_RUNS": str(run_dir / "train"),
                "XMODAL_FIGURES": str(run_dir / "figures")},
        "seeds": {p.stem: _seeds(p.effective) for p in plans}, "notebooks": [], "total_wall_s": None,
    }
    return run_dir, records, manifest


def _run_notebook(plan: NotebookPlan, rec: NotebookRecord, run_dir: Path, kernel: str, progress: bool,
                  log: Callable[[str], None]) -> NotebookFailed | None:
    """Execute one notebook with papermill into the run folder; a failure is recorded, not raised."""
    import papermill as pm  # lazy: optional extra papermill

    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(plan.path), str(run_dir / plan.path.name), parameters=plan.injected, kernel_name=kernel,
            progress_bar=progress, cwd=str(plan.path.parent),
            # the kernel talks to papermill over 127.0.0.1 (HMAC-signed messages); ipykernel's
            # "TCP without encryption" notice would repeat for every notebook, so only errors
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except KeyboardInterrupt:  # SIGINT or SIGTERM (see _raise_on_signals)
        rec.wall_s = round(time.perf_counter() - t0, 2)
        raise
    except Exception as err:  # papermill or kernel failure: record, then stop the run
        rec.wall_s = round(time.perf_counter() - t0, 2)
        rec.status, rec.error = "failed", _failure(err, plan)
        msg = describe_failure(plan.path.name, rec.error)
        log(f"  FAILED after {rec.wall_s:.1f} s: {msg}")
        return NotebookFailed(plan.path.name, msg, run_dir)
    rec.wall_s = round(time.perf_counter() - t0, 2)
    rec.status = "ok"
    log(f"  ok in {rec.wall_s:.1f} s")
    return None


@contextlib.contextmanager
def _kernel_env(run_dir: Path) -> Iterator[None]:
    """The kernels inherit this environment: checkpoints, results, training folders and figures of
    the notebooks stay inside this run's folder; the caller's values come back afterwards."""
    keys = {"XMODAL_ARTIFACTS": run_dir / "artifacts", "XMODAL_RUNS": run_dir / "train",
            "XMODAL_FIGURES": run_dir / "figures"}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(v) for k, v in keys.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _close_run(run_dir: Path, records: list[NotebookRecord], manifest: dict[str, Any], failed: bool,
               wall_s: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Final manifest (status, results, figures), ``results.json`` and ``results.md``; returns the results."""
    _interrupted(None, records, manifest, run_dir, log)  # a record still "running" was interrupted
    results = collect_results(run_dir / "artifacts")
    manifest["total_wall_s"] = round(wall_s, 2)
    manifest["status"] = "failed" if failed else ("ok" if all(r.status == "ok" for r in records) else "interrupted")
    manifest["results"] = sorted(results)
    manifest["figures"] = sorted(f.name for f in (run_dir / "figures").glob("*.png"))
    manifest["notebooks"] = [asdict(r) for r in records]
    atomic_write_json(run_dir / "manifest.json", manifest, sort_keys=False)
    atomic_write_json(run_dir / "results.json", results, sort_keys=False)
    (run_dir / "results.md").write_text(run_report(manifest, records, results), encoding="utf-8")
    return results


def reproduce(
    profile: str = "smoke",
    only: Iterable[str] | None = None,
    overrides: Iterable[str] = (),
    profile_file: Path | None = None,
    data_root: str | None = None,
    kernel: str = "python3",
    notebooks_dir: Path | None = None,
    runs_parent: Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Run the selected notebooks in order; returns the run folder.

    Raises :class:`NotebookFailed` (after writing the manifest) when a notebook fails, and
    ``ValueError`` for a bad selection or parameter before anything runs. SIGINT and SIGTERM alike
    stop the run with :class:`~xmodal_lib.infra.errors.Interrupted` after the manifest (run and notebook
    ``interrupted``, ``interrupted_by``), ``results.json`` and ``results.md`` are written.
    """
    import papermill  # lazy: optional extra papermill; noqa: F401  (missing papermill fails before a run folder exists)

    nb_dir = Path(notebooks_dir) if notebooks_dir else paths.notebooks_dir()
    if profile not in PROFILES and not (nb_dir / "params" / profile).is_dir():
        raise ValueError(f"--profile {profile!r}: expected one of {PROFILES} or a folder notebooks/params/<name>/")
    notebooks = discover_notebooks(nb_dir, only)
    if not notebooks:
        raise ValueError(f"no NN_*.ipynb notebooks in {nb_dir}")
    plans = plan_run(notebooks, profile, nb_dir, overrides, profile_file, data_root)
    facts = {"profile": profile, "profile_file": str(profile_file) if profile_file else None,
             "data_root": data_root, "kernel": kernel, "overrides": list(overrides)}
    run_dir, records, manifest = _start_run(plans, runs_parent, facts)

    def flush() -> None:
        manifest["notebooks"] = [asdict(r) for r in records]
        atomic_write_json(run_dir / "manifest.json", manifest, sort_keys=False)

    flush()
    log(f"xmodal reproduce: profile={profile}, {len(plans)} notebook(s) -> {run_dir}")
    t_all = time.perf_counter()
    failure: NotebookFailed | None = None
    restore_signals = _raise_on_signals()  # SIGTERM like SIGINT: recorded below, never a silent death
    try:
        with _kernel_env(run_dir):
            for i, (plan, rec) in enumerate(zip(plans, records), 1):
                rec.status, rec.started_utc = "running", _utc()
                flush()
                shown = ", ".join(f"{k}={v!r}" for k, v in plan.injected.items()) or "defaults"
                log(f"[{i}/{len(plans)}] {plan.path.name} ({shown})")
                failure = _run_notebook(plan, rec, run_dir, kernel, progress, log)
                if failure is not None:
                    break
                flush()
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM through _raise_on_signals: record, write, stop
        raise _interrupted(err, records, manifest, run_dir, log) from None
    finally:
        results = _close_run(run_dir, records, manifest, failure is not None, time.perf_counter() - t_all, log)
        restore_signals()
    log(summary_table(records, manifest["total_wall_s"]))
    log(headline_text(results))
    log(f"run folder: {run_dir}")
    if failure:
        raise failure
    return run_dir
