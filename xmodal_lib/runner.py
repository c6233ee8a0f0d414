"""``xmodal reproduce``: run the numbered notebooks with papermill under a parameter profile.

A profile is a folder of parameter files, ``notebooks/params/<profile>/<notebook_stem>.yaml``
(flat ``KEY: value``; a missing file means "the notebook's own defaults"). Every run gets
``runs/<timestamp>/`` holding the executed notebooks, ``manifest.json`` (git state, package
versions, device, profile, parameters and seeds per notebook, wall times, status),
``results.json`` + ``results.md`` (every ``<artifacts>/results/*.json`` the notebooks wrote)
and ``artifacts/`` (checkpoints handed from one notebook to the next within the run).
"""
from __future__ import annotations

import ast
import json
import os
import re
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from . import paths
from .errors import Interrupted, OutputError, RunFailure
from .manifest import environment_facts
from .params import parse_value
from .run_report import headline_markdown, headline_text

NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_\-]+\.ipynb$")
PROFILES = ("smoke", "paper")


class NotebookFailed(RunFailure):
    """A notebook raised during a reproduce run; the message names the notebook and the cell."""

    def __init__(self, notebook: str, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.notebook = notebook
        self.run_dir = run_dir


# --------------------------------------------------------------------------- notebooks + params


def discover_notebooks(nb_dir: Path, only: Iterable[str] | None = None) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks of ``nb_dir`` in numeric order.

    ``only`` selects by number (``"02"`` or ``"2"``) or by stem (``"02_distillation"``);
    a selector that matches nothing raises ``ValueError``.
    """
    nb_dir = Path(nb_dir)
    if not nb_dir.is_dir():
        raise ValueError(f"notebooks folder {nb_dir} does not exist")
    found = sorted(p for p in nb_dir.iterdir() if NOTEBOOK_RE.match(p.name))
    if only is None:
        return found
    wanted = [s.strip() for s in only if s.strip()]
    chosen: list[Path] = []
    for sel in wanted:
        code = sel.zfill(2) if sel.isdigit() else None
        hits = [p for p in found if (code is not None and p.name[:2] == code) or p.stem == sel]
        if not hits:
            have = ", ".join(p.stem for p in found) or "none"
            raise ValueError(f"--only {sel!r}: no notebook matches in {nb_dir} (have: {have})")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


def parameters_cell(nb: Any) -> tuple[int, Any]:
    """Index and cell of the single cell tagged ``parameters`` (ValueError otherwise)."""
    hits = [
        (i, c) for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(hits) != 1:
        raise ValueError(f"expected exactly one cell tagged 'parameters', found {len(hits)}")
    return hits[0]


def parse_parameters(source: str) -> dict[str, Any]:
    """Assignments of a parameters cell as a dict; only ``NAME = <literal>`` lines are allowed."""
    tree = ast.parse(source)
    out: dict[str, Any] = {}
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            raise ValueError(
                f"parameters cell line {node.lineno}: only 'NAME = <literal>' assignments are allowed"
            )
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError as err:
            raise ValueError(
                f"parameters cell line {node.lineno}: {node.targets[0].id} is not a literal ({err})"
            ) from None
    return out


def notebook_parameters(path: Path) -> dict[str, Any]:
    """Default parameters of a stored notebook (its ``parameters`` cell)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    try:
        _, cell = parameters_cell(nb)
        return parse_parameters(cell.source)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from None


def load_yaml_params(path: Path) -> dict[str, Any]:
    """A flat ``KEY: value`` YAML file as a dict (empty file -> {})."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping KEY: value, got {type(data).__name__}")
    return data


def profile_params(profile: str, stem: str, nb_dir: Path) -> dict[str, Any]:
    """Parameters of ``notebooks/params/<profile>/<stem>.yaml`` ({} when the file is absent)."""
    f = Path(nb_dir) / "params" / profile / f"{stem}.yaml"
    return load_yaml_params(f) if f.is_file() else {}


def parse_override(text: str) -> tuple[str | None, str, Any]:
    """``KEY=VALUE`` or ``NN.KEY=VALUE`` -> (notebook code or None, KEY, typed value).

    VALUE is typed with ``yaml.safe_load`` (``3`` -> int, ``1e-4`` -> float, ``true`` -> bool);
    ``None``/``null`` give None.
    """
    if "=" not in text:
        raise ValueError(f"-p {text!r}: expected KEY=VALUE")
    key, raw = text.split("=", 1)
    key = key.strip()
    scope = None
    if "." in key:
        scope, key = key.split(".", 1)
    if not key.isidentifier():
        raise ValueError(f"-p {text!r}: {key!r} is not a parameter name")
    if raw.strip() in ("None", "none", "null", "~", ""):
        return scope, key, None
    return scope, key, parse_value(raw)  # the one value reader of every command line


def _check_type(nb: str, key: str, default: Any, value: Any, origin: str) -> Any:
    """Coerce int -> float where the default is float; reject values of another type."""
    if default is None or value is None:
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
        if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
            return value
        raise ValueError(
            f"{origin}: parameter {key} of {nb} expects {type(default).__name__} "
            f"(default {default!r}), got {value!r}"
        )
    return value


PATH_KEYS = ("_ROOT", "_DIR", "_PATH", "_FILE")


def _abs_path(key: str, value: Any) -> Any:
    """Make a relative path given on the command line absolute (kernels run in ``notebooks/``).

    Applies to string values of ``*_ROOT``/``*_DIR``/``*_PATH``/``*_FILE`` and ``PRETRAINED``
    parameters that name an existing file or folder relative to the caller's cwd.
    """
    if not isinstance(value, str) or not (key.endswith(PATH_KEYS) or key == "PRETRAINED"):
        return value
    p = Path(value).expanduser()
    return str(p.resolve()) if not p.is_absolute() and p.exists() else value


def check_notebook_params(stem: str, params: Mapping[str, Any]) -> None:
    """Bind ``params`` to the notebook's method config (:mod:`xmodal_lib.params`): a wrong type or an
    out-of-range value is refused now, naming the notebook and the parameter, not minutes into the run.
    Notebooks outside the registry (e.g. a user's own) are not checked beyond their parameters cell."""
    from .params import NOTEBOOKS, bind, config_class

    if stem not in NOTEBOOKS:
        return
    cls = config_class(stem)
    if cls is not None:
        bind(cls, params, local=NOTEBOOKS[stem].local, source=f"notebook {stem}")


@dataclass
class NotebookPlan:
    """One notebook to run with the parameters injected into it."""

    path: Path
    defaults: dict[str, Any]
    injected: dict[str, Any]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def effective(self) -> dict[str, Any]:
        return {**self.defaults, **self.injected}


def plan_run(
    notebooks: list[Path],
    profile: str,
    nb_dir: Path,
    overrides: Iterable[str] = (),
    profile_file: Path | None = None,
    data_root: str | None = None,
) -> list[NotebookPlan]:
    """Resolve the parameters of every notebook: defaults < profile < profile file < --data-root < -p.

    A profile file is either flat (``KEY: value`` for every notebook that declares KEY) or
    nested per notebook (``02_distillation: {EPOCHS: 3}`` or ``"02": {...}``). Unknown keys
    raise ``ValueError`` naming the file or option, so a typo never silently does nothing.
    """
    parsed = [parse_override(o) for o in overrides]
    custom = load_yaml_params(Path(profile_file)) if profile_file else {}
    plans: list[NotebookPlan] = []
    used: set[str] = set()
    for nb in notebooks:
        defaults = notebook_parameters(nb)
        injected: dict[str, Any] = {}
        prof = profile_params(profile, nb.stem, nb_dir)
        for key, value in prof.items():
            if key not in defaults:
                raise ValueError(
                    f"params/{profile}/{nb.stem}.yaml: {key} is not a parameter of {nb.name} "
                    f"(parameters: {', '.join(defaults)})"
                )
            injected[key] = _check_type(nb.name, key, defaults[key], value, f"params/{profile}/{nb.stem}.yaml")
        if "PROFILE" in defaults:
            injected["PROFILE"] = profile
        for key, value in custom.items():
            if isinstance(value, dict):
                if key in (nb.stem, nb.name[:2]):
                    for k2, v2 in value.items():
                        if k2 not in defaults:
                            raise ValueError(f"{profile_file}: {k2} is not a parameter of {nb.name}")
                        v2 = _abs_path(k2, v2)
                        injected[k2] = _check_type(nb.name, k2, defaults[k2], v2, str(profile_file))
                    used.add(f"file:{key}")
            elif key in defaults:
                injected[key] = _check_type(nb.name, key, defaults[key], _abs_path(key, value), str(profile_file))
                used.add(f"file:{key}")
        if data_root is not None and "DATA_ROOT" in defaults:
            root = Path(data_root).expanduser()
            if not root.exists():
                raise ValueError(f"--data-root {data_root}: no such file or folder")
            injected["DATA_ROOT"] = str(root.resolve())
        for scope, key, value in parsed:
            if scope is not None and scope not in (nb.stem, nb.name[:2], nb.name[:2].lstrip("0") or "0"):
                continue
            if key in defaults:
                injected[key] = _check_type(nb.name, key, defaults[key], _abs_path(key, value), f"-p {key}")
                used.add(f"p:{scope}:{key}")
        plans.append(NotebookPlan(path=nb, defaults=defaults, injected=injected))
    for scope, key, _ in parsed:
        if f"p:{scope}:{key}" not in used:
            names = ", ".join(p.path.name for p in plans)
            if scope is not None and not any(scope in (p.stem, p.path.name[:2], p.path.name[:2].lstrip("0") or "0")
                                             for p in plans):
                raise ValueError(f"-p {scope}.{key}: {scope!r} is not one of the selected notebooks ({names})")
            where = f"notebook {scope}" if scope is not None else f"no selected notebook ({names})"
            raise ValueError(f"-p {key}: {where} has no parameter {key}")
    for key, value in custom.items():
        if f"file:{key}" not in used:
            raise ValueError(f"{profile_file}: {key!r} matches no parameter or notebook of this run")
    for plan in plans:  # the configs' own checks (types, ranges) before any notebook starts
        check_notebook_params(plan.stem, plan.effective)
    return plans


# --------------------------------------------------------------------------- results


def collect_results(artifacts: Path) -> dict[str, Any]:
    """Every ``<artifacts>/results/*.json`` merged into one dict keyed by result name."""
    out: dict[str, Any] = {}
    rdir = Path(artifacts) / "results"
    if rdir.is_dir():
        for f in sorted(rdir.glob("*.json")):
            try:
                out[f.stem] = json.loads(f.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                out[f.stem] = {"error": f"unreadable JSON: {err}"}
    return out


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(d, dict):
        rows: list[tuple[str, Any]] = []
        for k, v in d.items():
            rows.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return rows
    return [(prefix, d)]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) > 8:
        return f"[{len(v)} values]"
    return str(v).replace("|", "\\|").replace("\n", " ")


def results_markdown(results: Mapping[str, Any]) -> str:
    """Results as a Markdown table with one row per (result, key)."""
    if not results:
        return "_No notebook wrote results (`<artifacts>/results/*.json`)._\n"
    lines = ["| result | key | value |", "|---|---|---|"]
    for name, res in results.items():
        for key, value in _flatten(res):
            lines.append(f"| {name} | {key} | {_fmt(value)} |")
    return "\n".join(lines) + "\n"


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
        import psutil  # ships with IPython, which every kernel needs
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
    """Make SIGTERM (and SIGINT) raise :class:`~xmodal_lib.errors.Interrupted` in the main thread, once:
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


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _seeds(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if "SEED" in k.upper()}


def _failure(err: BaseException, plan: NotebookPlan) -> dict[str, Any]:
    """Failing cell of ``plan.path``: index in the stored notebook, execution count, error."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(err, PapermillExecutionError):
        return {"ename": type(err).__name__, "evalue": str(err)[:2000], "cell_index": None}
    import nbformat

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
    stop the run with :class:`~xmodal_lib.errors.Interrupted` after the manifest (run and notebook
    ``interrupted``, ``interrupted_by``), ``results.json`` and ``results.md`` are written.
    """
    import papermill as pm

    nb_dir = Path(notebooks_dir) if notebooks_dir else paths.notebooks_dir()
    if profile not in PROFILES and not (nb_dir / "params" / profile).is_dir():
        raise ValueError(f"--profile {profile!r}: expected one of {PROFILES} or a folder notebooks/params/<name>/")
    notebooks = discover_notebooks(nb_dir, only)
    if not notebooks:
        raise ValueError(f"no NN_*.ipynb notebooks in {nb_dir}")
    plans = plan_run(notebooks, profile, nb_dir, overrides, profile_file, data_root)

    run_dir = new_run_dir(runs_parent)
    artifacts = run_dir / "artifacts"
    artifacts.mkdir()
    records = [
        NotebookRecord(name=p.path.name, output=p.path.name, parameters=p.effective, injected=p.injected)
        for p in plans
    ]
    manifest: dict[str, Any] = {
        "xmodal_run": run_dir.name,
        "created_utc": _utc(),
        "status": "running",
        "profile": profile,
        "profile_file": str(profile_file) if profile_file else None,
        "data_root": data_root,
        "kernel": kernel,
        "overrides": list(overrides),
        **environment_facts(paths.repo_root()),
        "env": {"XMODAL_ARTIFACTS": str(artifacts), "XMODAL_RUNS": str(run_dir / "train"),
                "XMODAL_FIGURES": str(run_dir / "figures")},
        "seeds": {p.stem: _seeds(p.effective) for p in plans},
        "notebooks": [],
        "total_wall_s": None,
    }
    mpath = run_dir / "manifest.json"

    def flush() -> None:
        manifest["notebooks"] = [asdict(r) for r in records]
        _write_json(mpath, manifest)

    flush()
    log(f"xmodal reproduce: profile={profile}, {len(plans)} notebook(s) -> {run_dir}")
    saved_env = {k: os.environ.get(k) for k in ("XMODAL_ARTIFACTS", "XMODAL_RUNS", "XMODAL_FIGURES")}
    # the kernel inherits this environment: checkpoints, results and training folders of the
    # notebooks stay inside this run's folder
    os.environ["XMODAL_ARTIFACTS"] = str(artifacts)
    os.environ["XMODAL_RUNS"] = str(run_dir / "train")
    os.environ["XMODAL_FIGURES"] = str(run_dir / "figures")  # each run keeps its own figures
    t_all = time.perf_counter()
    failure: NotebookFailed | None = None
    restore_signals = _raise_on_signals()  # SIGTERM like SIGINT: recorded below, never a silent death
    try:
        for i, (plan, rec) in enumerate(zip(plans, records), 1):
            rec.status, rec.started_utc = "running", _utc()
            flush()
            shown = ", ".join(f"{k}={v!r}" for k, v in plan.injected.items()) or "defaults"
            log(f"[{i}/{len(plans)}] {plan.path.name} ({shown})")
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(
                    str(plan.path),
                    str(run_dir / plan.path.name),
                    parameters=plan.injected,
                    kernel_name=kernel,
                    progress_bar=progress,
                    cwd=str(plan.path.parent),
                    # the kernel talks to papermill over 127.0.0.1 (HMAC-signed messages); ipykernel's
                    # "TCP without encryption" notice would repeat for every notebook, so only errors
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                )
            except KeyboardInterrupt:  # SIGINT or SIGTERM (see below)
                rec.wall_s = round(time.perf_counter() - t0, 2)
                raise
            except Exception as err:  # papermill or kernel failure: record, then stop the run
                rec.wall_s = round(time.perf_counter() - t0, 2)
                rec.status, rec.error = "failed", _failure(err, plan)
                msg = describe_failure(plan.path.name, rec.error)
                log(f"  FAILED after {rec.wall_s:.1f} s: {msg}")
                failure = NotebookFailed(plan.path.name, msg, run_dir)
                break
            rec.wall_s = round(time.perf_counter() - t0, 2)
            rec.status = "ok"
            log(f"  ok in {rec.wall_s:.1f} s")
            flush()
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM through _raise_on_signals: record, write, stop
        raise _interrupted(err, records, manifest, run_dir, log) from None
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _interrupted(None, records, manifest, run_dir, log)  # a record still "running" was interrupted
        results = collect_results(artifacts)
        manifest["total_wall_s"] = round(time.perf_counter() - t_all, 2)
        manifest["status"] = "failed" if failure else (
            "ok" if all(r.status == "ok" for r in records) else "interrupted"
        )
        manifest["results"] = sorted(results)
        manifest["figures"] = sorted(f.name for f in (run_dir / "figures").glob("*.png"))
        flush()
        _write_json(run_dir / "results.json", results)
        (run_dir / "results.md").write_text(run_report(manifest, records, results), encoding="utf-8")
        restore_signals()
    log(summary_table(records, manifest["total_wall_s"]))
    log(headline_text(results))
    log(f"run folder: {run_dir}")
    if failure:
        raise failure
    return run_dir


def run_report(manifest: Mapping[str, Any], records: list[NotebookRecord], results: Mapping[str, Any]) -> str:
    """``results.md``: the run's setting, a notebook table and the results table."""
    git = manifest.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    dev = manifest.get("device") or {}
    lines = [
        f"# xmodal run {manifest.get('xmodal_run')}",
        "",
        f"profile `{manifest.get('profile')}`, commit `{commit}`, device {dev.get('type')} "
        f"({dev.get('name')}), python {manifest.get('python')}, "
        f"torch {(manifest.get('packages') or {}).get('torch')}, status **{manifest.get('status')}**",
        "",
        "| notebook | status | wall time (s) | parameters set |",
        "|---|---|---|---|",
    ]
    for r in records:
        shown = ", ".join(f"{k}={v!r}" for k, v in r.injected.items()) or "defaults"
        wall = f"{r.wall_s:.1f}" if r.wall_s is not None else "-"
        lines.append(f"| {r.name} | {r.status} | {wall} | {_fmt(shown)} |")
    lines += ["", "## Headline metrics", "", headline_markdown(results),
              "The full record of every notebook is `results.json`; the figures are in `figures/`."]
    return "\n".join(lines)


def summary_table(records: list[NotebookRecord], total_s: float | None) -> str:
    """Plain-text table: notebook, status, wall time."""
    w = max([len(r.name) for r in records] + [8])
    lines = [f"{'notebook':<{w}}  {'status':<8}  {'wall':>8}", "-" * (w + 20)]
    for r in records:
        wall = f"{r.wall_s:.1f} s" if r.wall_s is not None else "-"
        lines.append(f"{r.name:<{w}}  {r.status:<8}  {wall:>8}")
    lines.append(f"{'total':<{w}}  {'':<8}  {(total_s or 0):>6.1f} s")
    return "\n".join(lines)
