"""Faults and bad input on the engine side (issue "nothing silent, nothing late, nothing lost").

Resume refuses a changed setup and falls back past an unreadable newest checkpoint; stale temp
files go; checkpoints get ordinary file modes; an unwritable checkpoint folder or ``--out`` is
found before the first step; damaged teacher/checkpoint JSON, checkpoints of another shape and
malicious ``.pth`` files give our message naming the file; the CLI prints one line with exit
status 2 (bad input) or 1 (failure); ``xmodal reproduce`` records SIGTERM like SIGINT; run folders
are created atomically under concurrency.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # --import-mode=importlib: the toy of test_train
from test_train import CFG, Queue, ToyData, make_model, make_step, run  # noqa: E402

from xmodal_lib import cli
from xmodal_lib.engine.train import FitOptions, TrainConfig, fit, list_checkpoints
from xmodal_lib.infra.checkpoint import load_tensors, save_tensors, save_weights
from xmodal_lib.run import runner

ROOT = Path(__file__).resolve().parents[2]


def _fit(out: Path, model: nn.Module | None = None, fail_at: int | None = None, resume: bool = True,
         allow_changed_setup: bool | None = None, **over):
    """The toy training of test_train (15 steps, checkpoints at 2, 4, 5, 6, 8, 10, ...) with a step
    counter; ``fail_at``: raise KeyboardInterrupt at that call (a kill). Returns (model, steps run, result)."""
    model = model or make_model()
    queue, calls = Queue(), [0]
    inner = make_step(queue)

    def step(m, batch):
        calls[0] += 1
        if calls[0] == fail_at:
            raise KeyboardInterrupt("simulated kill")
        return inner(m, batch)

    extra = {} if allow_changed_setup is None else {"options": FitOptions(allow_changed_setup=allow_changed_setup)}
    res = fit(model, step, ToyData(), TrainConfig(**{**CFG, **over}), out, state_modules={"queue": queue},
              resume=resume, progress=False, config={"name": "toy"}, **extra)
    return model, calls[0], res


def _killed(out: Path, at: int, **over) -> None:
    with pytest.raises(KeyboardInterrupt):
        _fit(out, fail_at=at, resume=False, **over)


# --------------------------------------------------------------------------- resume: setup changes


@pytest.mark.parametrize("change", [{"batch_size": 4}, {"lr": 1e-3}, {"batch_size": 4, "lr": 1e-3}])
def test_resume_refuses_a_changed_setup_naming_the_fields(tmp_path: Path, change: dict) -> None:
    from xmodal_lib.infra.errors import ResumeMismatchError

    _killed(tmp_path, 6)  # 5 steps done, newest checkpoint step 5
    with pytest.raises(ResumeMismatchError) as info:
        _fit(tmp_path, **change)
    msg = str(info.value)
    for key in change:
        assert f"{key}: {CFG[key]!r} in the checkpoint, {change[key]!r} now" in msg, msg
    assert "step_00000005" in msg and "--resume-changed" in msg
    # loader and checkpoint-cadence fields may change (they do not change the numbers)
    _, steps, res = _fit(tmp_path, num_workers=0, ckpt_every=3, keep_last=4)
    assert steps == 10 and res.steps == 15


def test_resume_with_a_cosine_schedule_refuses_a_changed_length(tmp_path: Path) -> None:
    from xmodal_lib.infra.errors import ResumeMismatchError

    _killed(tmp_path, 6)
    with pytest.raises(ResumeMismatchError, match=r"max_steps: None in the checkpoint, 12 now"):
        _fit(tmp_path, max_steps=12)


def test_resume_changed_setup_when_allowed_warns_and_applies_the_new_lr(tmp_path: Path) -> None:
    _fit(tmp_path, max_steps=5, resume=False, schedule="constant")
    # constant schedule: a longer run is an extension, not a change; the lr is a change
    with pytest.warns(UserWarning, match=r"changed setup \(allowed\): lr: 0\.01 in the checkpoint, 0\.001 now$"):
        _, steps, res = _fit(tmp_path, max_steps=8, schedule="constant", lr=1e-3, allow_changed_setup=True)
    assert steps == 3 and [r["lr"] for r in res.history[5:]] == [1e-3] * 3


def test_cli_resume_changed_flag_reaches_fit(tmp_path: Path, monkeypatch) -> None:
    seen = {}

    def fake(args, cfg, out, progress, options):
        seen["allow"], seen["resume"], seen["loop"] = options.allow_changed_setup, args.resume, options.loop
        raise SystemExit(0)

    monkeypatch.setattr(cli, "_train_method", fake)
    with pytest.raises(SystemExit):
        cli.main(["train", "crossatnet", "--out", str(tmp_path / "o"), "--resume-changed", "--loop", "keep_last=1"])
    assert seen == {"allow": True, "resume": True, "loop": {"keep_last": 1}}


def test_cli_resume_with_a_changed_setup_is_refused_before_any_data(tmp_path: Path, capsys, monkeypatch) -> None:
    stored = {**cli._make_config("crossatnet", "smoke", None, {}).to_dict(), "batch_size": 7}
    save_tensors(tmp_path / "o" / "checkpoints" / "step_00000004", {"rng.torch": torch.get_rng_state()},
                 {"config": stored, "train_config": {}})
    monkeypatch.setattr(cli, "_train_method", lambda *a: pytest.fail("data loading started"))
    assert cli.main(["train", "crossatnet", "--out", str(tmp_path / "o"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step_00000004" in err and "batch_size: 7 in the checkpoint, 32 now" in err, err


# --------------------------------------------------------------------------- resume: damaged files


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


@pytest.mark.parametrize("damage", ["truncated_safetensors", "json_empty_object", "json_garbage"])
def test_resume_falls_back_past_an_unreadable_newest_checkpoint(tmp_path: Path, damage: str) -> None:
    ref, _, ref_res = _fit(tmp_path / "ref", resume=False)
    _killed(tmp_path / "a", 10, keep_last=3)  # 9 steps done: step_5, step_6, step_8 kept
    newest = list_checkpoints(tmp_path / "a")[-1]
    assert newest.name == "step_00000008"
    if damage == "truncated_safetensors":
        _truncate(newest.with_name(newest.name + ".safetensors"))
    else:
        newest.with_name(newest.name + ".json").write_text("{}" if damage == "json_empty_object" else "{'step': 8")
    with pytest.warns(UserWarning, match=r"skipping unreadable checkpoint .*step_00000008"):
        model, steps, res = _fit(tmp_path / "a", keep_last=3)
    assert steps == 15 - 6, "continued from the previous checkpoint (step 6)"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert [r["loss"] for r in res.history] == [r["loss"] for r in ref_res.history]


def test_resume_with_every_checkpoint_unreadable_names_them(tmp_path: Path) -> None:
    from xmodal_lib.infra.errors import CheckpointError

    _killed(tmp_path, 6)  # step_4, step_5 kept
    for stem in list_checkpoints(tmp_path):
        stem.with_name(stem.name + ".json").write_text("{}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CheckpointError) as info:
            _fit(tmp_path)
    msg = str(info.value)
    assert "no readable checkpoint" in msg and "step_00000004.json" in msg and "step_00000005.json" in msg
    assert "'optimizer'" in msg and "not a training checkpoint" in msg


def test_resume_with_wrong_shapes_names_file_and_keys(tmp_path: Path) -> None:
    from xmodal_lib.infra.errors import CheckpointError

    _killed(tmp_path, 6)
    torch.manual_seed(0)
    wider = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    with pytest.raises(CheckpointError) as info:
        _fit(tmp_path, model=wider)
    msg = str(info.value)
    assert "step_00000005.safetensors" in msg and "0.weight (16, 6) vs (32, 6)" in msg, msg
    assert "size mismatch" not in msg


def test_resume_removes_stale_temp_files_and_half_checkpoints(tmp_path: Path) -> None:
    _killed(tmp_path, 6)
    ck = tmp_path / "checkpoints"
    stale = [ck / ".step_00000006.safetensors.1a2b3c4d.tmp", ck / ".step_00000006.json.5e6f7a8b.tmp",
             ck / "step_00000007.safetensors"]  # a kill between the tensors and the JSON
    for p in stale:
        p.write_bytes(b"partial")
    with pytest.warns(UserWarning, match="left by an interrupted checkpoint write"):
        _, steps, _ = _fit(tmp_path)
    assert steps == 10
    assert not [p for p in stale if p.exists()]
    assert not list(ck.glob(".*.tmp"))


def test_checkpoint_files_get_the_mode_of_ordinary_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        _fit(tmp_path, max_steps=3, resume=False, ckpt_every=1)
        save_weights(make_model(), tmp_path / "w")
    finally:
        os.umask(old)
    files = list((tmp_path / "checkpoints").glob("step_*")) + [tmp_path / "w.safetensors", tmp_path / "w.json"]
    assert files and {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o644)}


# --------------------------------------------------------------------------- unwritable output folders


def test_unwritable_checkpoint_folder_is_found_before_the_first_step(tmp_path: Path, monkeypatch) -> None:
    """As root every folder is writable, so the refusal of the filesystem is simulated at ``os.open``."""
    from xmodal_lib.infra.errors import OutputError

    ck = (tmp_path / "checkpoints").resolve()
    real_open = os.open

    def deny(path, flags, *a, **k):
        if Path(os.fsdecode(path)).resolve().parent == ck and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    calls = [0]

    def step(m, batch):
        calls[0] += 1
        x, y = batch
        return {"loss": nn.functional.cross_entropy(m(x), y)}

    with pytest.raises(OutputError, match=r"checkpoint folder .*checkpoints: cannot write there \(Permission denied\)"):
        fit(make_model(), step, ToyData(), TrainConfig(**CFG), tmp_path, progress=False)
    assert calls[0] == 0, "no training step before the refusal"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write into a 0o500 folder")
def test_read_only_checkpoint_folder_real_permissions(tmp_path: Path) -> None:
    from xmodal_lib.infra.errors import OutputError

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints").chmod(0o500)
    try:
        with pytest.raises(OutputError, match="checkpoint folder"):
            run(tmp_path)
    finally:
        (tmp_path / "checkpoints").chmod(0o700)


@pytest.mark.parametrize("kind", ["file_in_the_way", "read_only"])
def test_cli_unwritable_out_is_one_line_exit_2_before_any_data(tmp_path: Path, capsys, monkeypatch, kind) -> None:
    if kind == "read_only":
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            pytest.skip("root can write into a 0o500 folder")
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
    else:
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "run"
    monkeypatch.setattr(cli, "_train_method", lambda *a: pytest.fail("training started"))
    try:
        code = cli.main(["train", "crossatnet", "--out", str(out)])
    finally:
        if kind == "read_only":
            out.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: --out {out}: cannot write there"), err
    assert "Traceback" not in err and "OSError" not in err


# --------------------------------------------------------------------------- damaged or hostile files


@pytest.mark.parametrize("damage", ["garbage", "missing", "no_config"])
def test_teacher_json_damaged_or_missing_names_the_file(tmp_path: Path, damage: str) -> None:
    from xmodal_lib.infra.errors import CheckpointError
    from xmodal_lib.methods.xmodalvit import pipeline as xv

    stem = tmp_path / "xmodalvit_teacher"
    save_tensors(stem, {"w": torch.zeros(2)}, {"config": {}})
    js = tmp_path / "xmodalvit_teacher.json"
    if damage == "garbage":
        js.write_text('{"config": {"embed_dim": 12,,}}')
    elif damage == "missing":
        js.unlink()
    else:
        js.write_text('{"kind": "weights"}')
    with pytest.raises(CheckpointError) as info:
        xv.load_teacher(stem)
    msg = str(info.value)
    assert f"teacher config {js}" in msg, msg
    assert {"garbage": "not valid JSON", "missing": "file missing", "no_config": "'config' mapping"}[damage] in msg


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('XMODAL_EVIL_MARK', '/nonexistent/x')}",))


def test_malicious_pth_is_refused_without_weights_only_advice(tmp_path: Path, monkeypatch) -> None:
    from xmodal_lib.infra.errors import UntrustedPickleError
    from xmodal_lib.layers.backbones import load_weights_file

    mark = tmp_path / "PWNED"
    monkeypatch.setenv("XMODAL_EVIL_MARK", str(mark))
    bad = tmp_path / "vit.pth"
    with open(bad, "wb") as f:
        pickle.dump({"pos_embed": _Evil()}, f, protocol=2)
    torch.save({"state_dict": {"w": _Evil()}}, tmp_path / "vit2.pth")
    for path in (bad, tmp_path / "vit2.pth"):
        with pytest.raises(UntrustedPickleError) as info:
            load_weights_file(path)
        msg = str(info.value)
        assert "refused: untrusted pickle" in msg and path.name in msg, msg
        assert "weights_only" not in msg and info.value.__suppress_context__ and info.value.__cause__ is None
    assert not mark.exists(), "the pickle's code never ran"


def test_cli_pretrained_malicious_pth_one_line_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    from xmodal_lib.layers.backbones import load_weights_file

    bad = tmp_path / "vit.pth"
    with open(bad, "wb") as f:
        pickle.dump({"w": _Evil()}, f, protocol=2)
    monkeypatch.setattr(cli, "_train_method", lambda *a: load_weights_file(bad))
    assert cli.main(["train", "crossatnet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused: untrusted pickle" in err and "weights_only" not in err, err


def test_garbage_pth_and_missing_weights_name_the_file(tmp_path: Path) -> None:
    from xmodal_lib.infra.checkpoint import load_weights
    from xmodal_lib.infra.errors import CheckpointError
    from xmodal_lib.layers.backbones import load_weights_file

    junk = tmp_path / "vit.pth"
    junk.write_bytes(b"\x0c" + b"not a checkpoint " * 16)  # fixed bytes: no chance of a valid opcode run
    with pytest.raises(CheckpointError, match=r"vit\.pth.*not a readable torch weight file"):
        load_weights_file(junk)
    with pytest.raises(CheckpointError, match=r"checkpoint file missing: .*nope\.safetensors"):
        load_weights(make_model(), tmp_path / "nope")


# --------------------------------------------------------------------------- one error surface


def test_cli_failure_is_one_line_exit_1_and_debug_shows_the_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    def boom(*a):
        raise RuntimeError("CUDA out of memory\nsecond line")

    monkeypatch.setattr(cli, "_train_method", boom)
    argv = ["train", "crossatnet", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: CUDA out of memory; second line (--debug shows the traceback)\n", err
    assert cli.main([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().endswith("error: RuntimeError: "
                                                                                 "CUDA out of memory; second line")


def test_cli_bad_input_paths_are_one_line_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    """Bad input in several places of the train command: each one line, exit 2, no traceback."""
    from xmodal_lib.data.index import DataError
    from xmodal_lib.infra.errors import InputError

    assert issubclass(DataError, InputError)
    out = ["--out", str(tmp_path / "o")]
    cases = {
        "--loop": (["train", "crossatnet", "--loop", "nope=1", *out], "--loop ['nope']"),
        "-p": (["train", "crossatnet", "-p", "garbage", *out], "-p 'garbage'"),
    }
    for name, (argv, expected) in cases.items():
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, (name, err)
    for exc, expected in [(DataError("photos.csv line 3: empty class"), "photos.csv line 3"),
                          (FileNotFoundError(2, "No such file or directory", "/data/x.yaml"), "/data/x.yaml"),
                          (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "utf-8")]:
        monkeypatch.setattr(cli, "_train_method", lambda *a, e=exc: (_ for _ in ()).throw(e))
        assert cli.main(["train", "crossatnet", *out]) == 2, exc
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "Traceback" not in err, err


# --------------------------------------------------------------------------- reproduce: signals, run folders


def test_reproduce_runs_folder_not_creatable_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    import nbformat

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("SEED = 0")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, str(nbdir / "00_x.ipynb"))
    (tmp_path / "afile").write_text("x")
    code = cli.main(["reproduce", "--notebooks-dir", str(nbdir), "--runs-dir", str(tmp_path / "afile" / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: runs folder {tmp_path / 'afile' / 'runs'}: cannot be created"), err


def test_run_folders_are_created_atomically_under_concurrency(tmp_path: Path, monkeypatch) -> None:
    """18 runs starting in the same second; a slow filesystem widens any check-then-create window."""
    real_exists = Path.exists

    def slow_exists(self, *a, **k):
        found = real_exists(self, *a, **k)
        time.sleep(0.02)
        return found

    monkeypatch.setattr(Path, "exists", slow_exists)
    monkeypatch.setattr(runner, "datetime", _FrozenDatetime)
    made, errors = [], []
    gate = threading.Barrier(18)

    def start() -> None:
        gate.wait()
        try:
            made.append(runner.new_run_dir(tmp_path / "runs"))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=start) for _ in range(18)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(made)) == 18 and all(p.is_dir() for p in made)
    assert sorted(p.name for p in made)[0] == "20260101-000000"


class _FrozenDatetime:
    @staticmethod
    def now(tz=None):
        import datetime as dt

        return dt.datetime(2026, 1, 1, tzinfo=tz)


def _sleeping_notebooks(tmp_path: Path) -> Path:
    import nbformat

    d = tmp_path / "nbs"
    d.mkdir()
    for name, cells in (("00_first.ipynb", ["from xmodal_lib.run.results import write_results\n"
                                             "write_results('first', {'seed': SEED})"]),
                        ("01_slow.ipynb", ["import time\nopen(MARK, 'w').close()\ntime.sleep(120)"]),
                        ("02_never.ipynb", ["print('never')"])):
        nb = nbformat.v4.new_notebook()
        p = nbformat.v4.new_code_cell("SEED = 0\nMARK = ''")
        p.metadata["tags"] = ["parameters"]
        nb.cells = [p, *[nbformat.v4.new_code_cell(c) for c in cells]]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, str(d / name))
    return d


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_reproduce_records_sigterm_and_sigint_alike(tmp_path: Path, sig: signal.Signals) -> None:
    """The kernel of 01 is in a cell when the signal comes; 00 finished (only in the SIGTERM case, to
    save a kernel start), 02 never starts."""
    nbdir, mark = _sleeping_notebooks(tmp_path), tmp_path / "in_cell"
    first = sig == signal.SIGTERM
    if not first:
        (nbdir / "00_first.ipynb").unlink()
    env = dict(os.environ, XMODAL_RUNS=str(tmp_path / "runs"), MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    env.pop("XMODAL_ARTIFACTS", None)
    cmd = [sys.executable, "-m", "xmodal_lib", "reproduce", "--notebooks-dir", str(nbdir), "--no-progress",
           "-p", f"MARK={mark}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not mark.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert f"interrupted by {sig.name}" in err.strip().splitlines()[-1]
    (run,) = (tmp_path / "runs").iterdir()
    man = json.loads((run / "manifest.json").read_text())
    status = {n["name"]: n["status"] for n in man["notebooks"]}
    assert man["status"] == "interrupted" and man["interrupted_by"] == sig.name
    assert status == {**({"00_first.ipynb": "ok"} if first else {}), "01_slow.ipynb": "interrupted",
                      "02_never.ipynb": "pending"}
    assert json.loads((run / "results.json").read_text()) == ({"first": {"seed": 0}} if first else {})
    assert "status **interrupted**" in (run / "results.md").read_text()
