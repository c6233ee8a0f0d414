"""Fault injection: SIGKILL a short training at random moments, resume each time, end bit-identical.

A "zygote" subprocess imports torch and xmodal once, then forks one child per training run (so
a run costs milliseconds, not a torch import); the test SIGKILLs children at moments drawn by a
seeded RNG over the run's measured wall time. Every third kill waits, with the fault-injection
hook ``XMODAL_FAULT_WRITE_SLEEP`` holding each checkpoint write open, until a checkpoint temp file
of that run exists, so those kills land inside a checkpoint write. After every kill every complete
checkpoint must load; each chain ends with an uninterrupted resume whose weights, optimiser state
and loss history must equal those of a run never killed, with no temp file or half checkpoint left.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from xmodal_lib.engine.resume import read_training_checkpoint
from xmodal_lib.engine.train import list_checkpoints
from xmodal_lib.infra.checkpoint import load_tensors

TESTS = Path(__file__).resolve().parent
CHAINS, KILLS_PER_CHAIN, SEED = 4, 9, 20261201

ZYGOTE = textwrap.dedent(f"""
    import os, sys, time, traceback
    from pathlib import Path
    sys.path.insert(0, {str(TESTS)!r})
    import torch
    from test_train import CFG, Queue, ToyData, make_model, make_step
    from xmodal_lib.infra.checkpoint import save_tensors
    from xmodal_lib.engine.train import TrainConfig, fit

    def train(out):
        torch.set_num_threads(1)
        model, queue = make_model(), Queue()
        cfg = TrainConfig(**{{**CFG, "epochs": 6, "ckpt_every": 2, "keep_last": 2}})
        t0 = time.perf_counter()
        res = fit(model, make_step(queue), ToyData(), cfg, out, state_modules={{"queue": queue}},
                  resume=True, progress=False, config={{"name": "toy"}})
        tensors = {{**{{"model." + k: v for k, v in model.state_dict().items()}},
                   **{{"queue." + k: v for k, v in queue.state_dict().items()}}}}
        save_tensors(Path(out) / "final", tensors, {{"history": [[r["step"], r["loss"], r["lr"]] for r in res.history],
                                                   "fit_s": time.perf_counter() - t0, "steps": res.steps}})

    # warm up once here (lazy imports and first-call set-up of autograd and the optimiser), so that
    # every forked child starts training at once; one thread: nothing to break across fork()
    torch.set_num_threads(1)
    train(sys.argv[1])

    for line in sys.stdin:
        cmd, out, pause = line.split()
        assert cmd == "start", f"zygote: expected a start line, got {{line!r}}"
        pid = os.fork()
        if pid == 0:
            try:
                if pause != "0":
                    os.environ["XMODAL_FAULT_WRITE_SLEEP"] = pause
                train(out)
                os._exit(0)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
        print("pid", pid, flush=True)
        line = sys.stdin.readline()  # reaped only when the test says so: until then the pid cannot be reused
        assert line == "reap\\n", f"zygote: expected a reap line, got {{line!r}}"
        print("status", os.waitpid(pid, 0)[1], flush=True)
""")


class Zygote:
    """The forking worker: ``start(out, pause)`` -> child pid; ``wait()`` -> its wait status."""

    def __init__(self, tmp: Path) -> None:
        script = tmp / "zygote.py"
        script.write_text(ZYGOTE)
        self.proc = subprocess.Popen([sys.executable, str(script), str(tmp / "warmup")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)

    def _ask(self, line: str, tag: str) -> int:
        """Send one line, read the tagged answer; a reply out of step fails here, naming both."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().split()
        assert len(reply) == 2 and reply[0] == tag, f"zygote answered {reply!r} to {line!r} (expected '{tag} N')"
        return int(reply[1])

    def start(self, out: Path, pause: float = 0.0) -> int:
        pid = self._ask(f"start {out} {pause}", "pid")
        assert pid > 0, f"zygote gave pid {pid}"
        return pid

    def wait(self) -> int:
        """Reap the child; its wait status (0: finished, ``signal.SIGKILL``: killed). Every start needs one."""
        return self._ask("reap", "status")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _temps(out: Path) -> set[str]:
    d = out / "checkpoints"
    return {p.name for p in d.glob(".*tmp*")} if d.is_dir() else set()


def _all_checkpoints_load(out: Path) -> int:
    """Load every complete checkpoint (CheckpointError if one is unreadable); the newest one's step."""
    steps = [read_training_checkpoint(stem)[1]["step"] for stem in list_checkpoints(out)]
    return max(steps, default=0)


def _sigkill(pid: int) -> None:
    """SIGKILL the child. It is reaped only by z.wait(), so a finished one is a zombie that still takes
    the signal (no ESRCH, and its pid cannot have been reused)."""
    os.kill(pid, signal.SIGKILL)


def _kill_inside_a_write(z: Zygote, out: Path, delay: float) -> bool:
    """Start a run whose checkpoint writes pause 50 ms, wait ``delay`` s, then SIGKILL it as soon as a
    temp file of this run exists (inside a write). Returns whether it was killed there."""
    before = _temps(out)
    pid = z.start(out, pause=0.05)
    time.sleep(delay)
    deadline = time.monotonic() + 30
    while not (_temps(out) - before) and not (out / "final.json").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    inside = bool(_temps(out) - before)
    _sigkill(pid)
    status = z.wait()  # always reap, also when no write was caught: the zygote answers in step
    return inside and status == signal.SIGKILL


def _kill_at(z: Zygote, out: Path, delay: float) -> tuple[bool, bool]:
    """Start a run, SIGKILL it after ``delay`` s; returns (killed, a temp file of this run existed)."""
    before = _temps(out)
    pid = z.start(out)
    time.sleep(delay)
    in_write = bool(_temps(out) - before)
    _sigkill(pid)
    status = z.wait()
    return status == signal.SIGKILL, in_write


def _check_chain(out: Path, ref: Path, ref_t: dict, ref_meta: dict) -> None:
    """The chain's final weights, queue, optimiser state and history equal the reference; nothing left over."""
    got_t, got_meta = load_tensors(out / "final")
    assert got_meta["history"] == ref_meta["history"], f"{out.name}: loss history differs"
    assert sorted(got_t) == sorted(ref_t)
    for key, v in ref_t.items():
        assert torch.equal(got_t[key], v), f"{out.name}: {key} differs"
    last, ref_last = list_checkpoints(out)[-1], list_checkpoints(ref)[-1]
    assert last.name == ref_last.name
    a, _ = load_tensors(last)
    b, _ = load_tensors(ref_last)
    assert all(torch.equal(a[k], b[k]) for k in b if not k.startswith("rng.")), f"{out.name}: optimiser state differs"
    assert not _temps(out), f"{out.name}: temp files left: {_temps(out)}"
    assert {p.name for p in (out / "checkpoints").iterdir()} == {
        f"{s.name}{x}" for s in list_checkpoints(out) for x in (".json", ".safetensors")}, "half checkpoints left"


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    z = Zygote(tmp_path)
    try:
        assert z.start(tmp_path / "ref") > 0 and z.wait() == 0, "the uninterrupted reference run failed"
        ref_t, ref_meta = load_tensors(tmp_path / "ref" / "final")
        fit_s = ref_meta["fit_s"]
        kills = in_write = finished_early = 0
        steps_at_kill: list[int] = []
        for chain in range(CHAINS):
            out = tmp_path / f"chain{chain}"
            for k in range(KILLS_PER_CHAIN):
                delay = rng.uniform(0, 3 * fit_s / KILLS_PER_CHAIN)  # a chain's kills span ~1.5 runs
                if k % 3 == 2:
                    killed, wrote = _kill_inside_a_write(z, out, delay), True
                else:
                    killed, wrote = _kill_at(z, out, delay)
                kills += killed
                in_write += killed and wrote
                steps_at_kill.append(_all_checkpoints_load(out))
                if (out / "final.json").exists():  # this resume reached the end before its kill
                    finished_early += 1
                    break
            else:
                assert z.start(out) > 0 and z.wait() == 0, f"chain {chain}: the final resume failed"
            _check_chain(out, tmp_path / "ref", ref_t, ref_meta)
        print(f"fault injection: {kills} SIGKILLs ({in_write} inside a checkpoint write) over {CHAINS} chains "
              f"({finished_early} ended by a resume that outran its kill), reference fit {fit_s:.2f} s, "
              f"{ref_meta['steps']} steps; newest checkpoint after each kill: {steps_at_kill}")
        assert kills >= 20 and in_write >= 6
        assert len(set(steps_at_kill)) >= 5, f"kills did not spread over the run: {steps_at_kill}"
    finally:
        z.close()
