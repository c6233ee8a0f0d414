"""CPU thread policy: the OpenMP wait policy and the number of intra-op threads xmodal uses.

Why (``benchmarks/bench_threads.py``, results in ``benchmarks/results/bench_threads.json``): on a
small shared CPU, torch's OpenMP threads spin at the barrier after every parallel op (libgomp's
default waits actively for a while before sleeping). When another process holds a core, the
spinning thread burns its time slice while the thread it waits for is descheduled; with many tiny
ops (the smoke training loops) every op pays that, and the notebook-01 teacher step slowed down
by 10-50x next to a competing CPU-bound load. With ``OMP_WAIT_POLICY=PASSIVE`` a waiting thread
sleeps at once and gives its core away.

Policy (defaults; a user's own ``OMP_WAIT_POLICY`` / ``OMP_NUM_THREADS`` always win):

* ``OMP_WAIT_POLICY=PASSIVE`` is put into ``os.environ`` when ``xmodal_lib`` is imported
  (:func:`prepare_environment`, called by ``xmodal_lib/__init__.py``). The OpenMP runtime reads it
  once, when torch is first imported, so it takes effect in processes that import ``xmodal_lib``
  before torch (the notebooks, the ``xmodal`` CLI, the benchmarks) and in every child process
  (the notebook kernels of ``xmodal reproduce`` inherit the environment). :func:`describe_policy`
  says whether it was in time.
* intra-op threads: torch's default (one per core) unless ``XMODAL_THREADS=N``, which sets
  ``OMP_NUM_THREADS`` for this and child processes and ``torch.set_num_threads`` in
  :func:`apply_thread_policy`.

Knobs (environment): ``XMODAL_OMP_WAIT_POLICY`` = ``passive`` (default) | ``default`` (leave
libgomp's spin-then-sleep) | ``active``; ``XMODAL_THREADS`` = ``auto`` (default) | a positive int.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping

__all__ = ["thread_env", "prepare_environment", "apply_thread_policy", "describe_policy"]

_WAIT = {"passive": "PASSIVE", "active": "ACTIVE", "default": None}
_STATE: dict[str, object] = {"prepared": False, "torch_loaded_before": None}


def _knob_wait(env: Mapping[str, str]) -> str | None:
    raw = env.get("XMODAL_OMP_WAIT_POLICY", "passive").strip().lower()
    if raw not in _WAIT:
        raise ValueError(f"XMODAL_OMP_WAIT_POLICY={raw!r}: expected one of {sorted(_WAIT)}")
    return _WAIT[raw]


def _knob_threads(env: Mapping[str, str]) -> int | None:
    raw = env.get("XMODAL_THREADS", "auto").strip().lower()
    if raw == "auto":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"XMODAL_THREADS={raw!r}: expected 'auto' or a positive integer")
    return int(raw)


def thread_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the policy adds to ``env`` (default ``os.environ``); ones already set are kept."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    wait = _knob_wait(env)
    if wait and "OMP_WAIT_POLICY" not in env:
        out["OMP_WAIT_POLICY"] = wait
    n = _knob_threads(env)
    if n and "OMP_NUM_THREADS" not in env:
        out["OMP_NUM_THREADS"] = str(n)
    return out


def prepare_environment() -> dict[str, str]:
    """Put :func:`thread_env` into ``os.environ`` (once per process); returns what was added."""
    if _STATE["prepared"]:
        return {}
    added = thread_env()
    os.environ.update(added)
    _STATE.update(prepared=True, torch_loaded_before="torch" in sys.modules)
    return added


def apply_thread_policy() -> int:
    """``torch.set_num_threads(XMODAL_THREADS)`` when that knob is set; returns the thread count."""
    import torch  # lazy: keeps infra.threads free of torch at import

    prepare_environment()
    n = _knob_threads(os.environ)
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def describe_policy() -> dict[str, object]:
    """What is in effect: wait policy, whether it was set before torch loaded, threads, knobs."""
    torch = sys.modules.get("torch")
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "wait_policy_in_time": _STATE["prepared"] and not _STATE["torch_loaded_before"],
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "xmodal_omp_wait_policy": os.environ.get("XMODAL_OMP_WAIT_POLICY", "passive"),
            "xmodal_threads": os.environ.get("XMODAL_THREADS", "auto")}
