"""xmodal_lib.infra.threads: the OpenMP wait policy reaches child processes; knobs are checked."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xmodal_lib.infra import threads
from xmodal_lib.infra.paths import repo_root

PROBE = ("import os, xmodal_lib, torch; from xmodal_lib.infra.threads import describe_policy; "
         "d = describe_policy(); print(os.environ.get('OMP_WAIT_POLICY'), d['wait_policy_in_time'], torch.get_num_threads())")


def _probe(**env_over: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "XMODAL_THREADS",
                                                            "XMODAL_OMP_WAIT_POLICY")}
    env.update(env_over, PYTHONPATH=str(repo_root()))
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_thread_env_defaults_and_user_values_win():
    assert threads.thread_env({}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert threads.thread_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert threads.thread_env({"XMODAL_OMP_WAIT_POLICY": "default"}) == {}
    assert threads.thread_env({"XMODAL_THREADS": "1"}) == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    assert threads.thread_env({"XMODAL_THREADS": "1", "OMP_NUM_THREADS": "2"}) == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("env, match", [({"XMODAL_THREADS": "0"}, "XMODAL_THREADS"),
                                        ({"XMODAL_THREADS": "two"}, "XMODAL_THREADS"),
                                        ({"XMODAL_OMP_WAIT_POLICY": "spin"}, "XMODAL_OMP_WAIT_POLICY")])
def test_bad_knobs_are_named(env, match):
    with pytest.raises(ValueError, match=match):
        threads.thread_env(env)


def test_import_sets_passive_before_torch_in_a_fresh_process():
    policy, in_time, _ = _probe()
    assert policy == "PASSIVE" and in_time == "True"


def test_opt_out_and_thread_knob_in_a_fresh_process():
    assert _probe(XMODAL_OMP_WAIT_POLICY="default")[0] == "None"
    policy, _, n = _probe(XMODAL_THREADS="1")
    assert policy == "PASSIVE" and n == "1"
