"""Robust CPU speed: thread settings alone and next to a competing CPU-bound load, in one run.

Workloads (each timed in a fresh worker process, because ``OMP_WAIT_POLICY`` and
``OMP_NUM_THREADS`` are read once when the OpenMP runtime starts):

* ``teacher``: the notebook-01 smoke training step (XModalViT teacher, 2 ViT blocks of width 48 at
  32 px / patch 8, 3 XMA layers, XAQC queue 32, Adam, batch 16 random images): tiny ops, the case
  that slowed down 10x under load;
* ``rn``: one ZSE-SBIR CA + RN scoring block at paper width (D 768, 197 tokens, 1 sketch x 8
  photos from cached projections): large GEMMs, the case where a second thread pays off.

Settings (``--settings``; name -> worker environment / torch calls):

* ``t2``: torch's default here (2 intra-op threads, libgomp's default spin-then-sleep wait);
* ``t2_active``: 2 threads, ``OMP_WAIT_POLICY=ACTIVE`` (spin at every barrier);
* ``t2_passive``: 2 threads, ``OMP_WAIT_POLICY=PASSIVE`` (sleep at barriers at once);
* ``t2_spin10k``: 2 threads, ``GOMP_SPINCOUNT=10000`` (spin ~10k iterations, then sleep);
* ``t2_interop1``: 2 threads, ``torch.set_num_interop_threads(1)``;
* ``t1``: 1 intra-op thread;
* ``policy``: whatever :mod:`xmodal_lib.infra.threads` chooses (``thread_env()`` for the process
  environment + ``apply_thread_policy()``), i.e. the library default being measured.

Each worker times up to ``--steps`` steps and stops after ``--max-seconds`` (at least 3 steps), so
a badly oversubscribed setting cannot take minutes. Load: ``--load-procs`` busy-looping Python
processes (default: one per CPU core), each ending on its own after a deadline, started before and
stopped after each loaded worker. Every setting runs
quiet then loaded, interleaved, ``--repeats`` times; the median over repeats is reported. The
system load average is recorded around each run (other users of the machine are not controlled).

Reported per workload and setting: median step time quiet / loaded, slowdown = loaded / quiet, and
quiet speed relative to the fastest quiet setting. Targets (issue): slowdown <= 2x and quiet speed
drop <= 10 % for the chosen default. Prints a table and writes JSON (``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETTINGS = {  # name -> (extra environment, intra-op threads or None, interop threads or None)
    "t2": ({}, 2, None),
    "t2_active": ({"OMP_WAIT_POLICY": "ACTIVE"}, 2, None),
    "t2_passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2, None),
    "t2_spin10k": ({"GOMP_SPINCOUNT": "10000"}, 2, None),
    "t2_interop1": ({}, 2, 1),
    "t1": ({}, 1, None),
    "policy": (None, None, None),  # the library's own choice (xmodal_lib.infra.threads)
}
WORKLOADS = ("teacher", "rn")
SPIN = "import time\nt = time.time() + {sec}\nx = 0\nwhile time.time() < t:\n    x += 1\n"


# ------------------------------------------------------------------------------------------ worker
def _teacher_step_fn(batch: int):
    import torch

    from xmodal_lib.methods.xmodalvit.pipeline import XModalViTConfig, make_teacher, teacher_step
    from xmodal_lib.methods.xmodalvit.xaqc import XAQC

    cfg = XModalViTConfig()
    model = make_teacher(cfg).train()
    xaqc = XAQC(model.embed_dim, cfg.teacher_queue, cfg.temperature, cfg.normalize_query, seed=cfg.seed)
    step = teacher_step(xaqc, photo_aug=cfg.teacher_photo_aug)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.teacher_train.lr)
    g = torch.Generator().manual_seed(0)
    S = cfg.image_size
    data = [torch.randn(batch, 3, S, S, generator=g) for _ in range(3)]

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        step(model, data)["loss"].backward()
        opt.step()

    return run


def _rn_block_fn(n_photos: int):
    import torch

    from xmodal_lib.methods.zse.model import ZSESBIR
    from xmodal_lib.methods.zse.rn_evaluate import PairScorer
    from xmodal_lib.run.params import preset

    torch.manual_seed(0)  # SA unused: CA + RN at paper width (the paper profile's model) from cached tokens
    model = ZSESBIR(preset("04_zse_sbir", "paper", pretrained=False, depth=1).model).eval()
    N = model.sa.grid ** 2
    xs, xp = torch.randn(1, 1 + N, 768), torch.randn(n_photos, 1 + N, 768)
    pos_s, pos_p = torch.arange(N).expand(1, N), torch.arange(N).expand(n_photos, N)
    scorer = PairScorer(model)
    with torch.no_grad():
        cs, cp = scorer.project(xs, pos_s, "sketch"), scorer.project(xp, pos_p, "photo")

    def run() -> None:
        with torch.no_grad():
            scorer.score_block(cs, cp)

    return run


def worker(workload: str, setting: str, steps: int, warmup: int, intra: int | None, interop: int | None,
           max_seconds: float) -> dict:
    """Time up to ``steps`` calls (stopping after ``max_seconds``) of the workload; step times in ms."""
    import torch

    if setting == "policy":
        from xmodal_lib.infra.threads import apply_thread_policy

        apply_thread_policy()
    else:
        if interop:
            torch.set_num_interop_threads(interop)
        if intra:
            torch.set_num_threads(intra)
    fn = _teacher_step_fn(16) if workload == "teacher" else _rn_block_fn(8)
    for _ in range(warmup):
        fn()
    ts = []
    t_all = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() - t_all > max_seconds and len(ts) >= 3:
            break
    return {"steps_done": len(ts), "median_ms": statistics.median(ts), "mean_ms": statistics.fmean(ts), "min_ms": min(ts),
            "total_s": time.perf_counter() - t_all, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


# ------------------------------------------------------------------------------------------ parent
def _env_for(setting: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")}
    extra, intra, _ = SETTINGS[setting]
    if extra is None:  # the library's policy decides the environment, as xmodal's runner does for kernels
        from xmodal_lib.infra.threads import thread_env

        env.update(thread_env(env))
    else:
        env["XMODAL_OMP_WAIT_POLICY"] = "default"  # the worker's xmodal_lib import must not add its policy
        env.update(extra)
        env["OMP_NUM_THREADS"] = str(intra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _spinners(n: int, seconds: float) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", SPIN.format(sec=seconds)]) for _ in range(n)]


def run_one(workload: str, setting: str, loaded: bool, a: argparse.Namespace) -> dict:
    """One worker subprocess (with ``a.load_procs`` spinners next to it when ``loaded``)."""
    _, intra, interop = SETTINGS[setting]
    cmd = [sys.executable, __file__, "--worker", workload, "--setting", setting, "--steps", str(a.steps),
           "--warmup", str(a.warmup), "--max-seconds", str(a.max_seconds),
           "--intra", str(intra or 0), "--interop", str(interop or 0)]
    load0 = os.getloadavg()[0]
    spin = _spinners(a.load_procs, a.worker_timeout) if loaded else []
    try:
        if spin:
            time.sleep(0.3)  # let the spinners get going
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env_for(setting), timeout=a.worker_timeout)
    finally:
        for p in spin:
            p.terminate()
        for p in spin:
            p.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"worker {workload}/{setting} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out.update(loadavg_before=load0, loadavg_after=os.getloadavg()[0], loaded=loaded)
    return out


def summarise(runs: list[dict], settings: list[str], workloads: list[str]) -> dict:
    """Median over repeats per (workload, setting, quiet/loaded); slowdown and quiet-speed ratios."""
    table = {}
    for w in workloads:
        rows = {}
        for s in settings:
            q = [r["median_ms"] for r in runs if r["workload"] == w and r["setting"] == s and not r["loaded"]]
            l = [r["median_ms"] for r in runs if r["workload"] == w and r["setting"] == s and r["loaded"]]
            rows[s] = {"quiet_ms": statistics.median(q), "loaded_ms": statistics.median(l),
                       "quiet_runs_ms": q, "loaded_runs_ms": l}
            rows[s]["slowdown"] = rows[s]["loaded_ms"] / rows[s]["quiet_ms"]
        best = min(r["quiet_ms"] for r in rows.values())
        for r in rows.values():
            r["quiet_speed_vs_best"] = best / r["quiet_ms"]
        table[w] = rows
    return table


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=15.0, help="a worker stops timing after this (>= 3 steps)")
    ap.add_argument("--load-procs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--worker-timeout", type=float, default=300.0, help="seconds per worker (spinners end then too)")
    ap.add_argument("--quick", action="store_true", help="teacher only, settings t2,policy, 3 steps, one repeat (test)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--setting", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--intra", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--interop", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.worker, a.setting, a.steps, a.warmup, a.intra or None, a.interop or None,
                                a.max_seconds)))
        return {}
    if a.quick:
        a.steps, a.warmup, a.repeats, a.settings, a.workloads = 3, 1, 1, "t2,policy", "teacher"
    settings, workloads = a.settings.split(","), a.workloads.split(",")
    bad = [s for s in settings if s not in SETTINGS] + [w for w in workloads if w not in WORKLOADS]
    if bad:
        raise SystemExit(f"--settings/--workloads: unknown {bad}; expected {sorted(SETTINGS)} / {list(WORKLOADS)}")
    from xmodal_lib.infra.threads import describe_policy

    runs, t0 = [], time.time()
    for rep in range(a.repeats):
        for w in workloads:
            for s in settings:
                for loaded in (False, True):
                    r = run_one(w, s, loaded, a)
                    r.update(workload=w, setting=s, repeat=rep)
                    runs.append(r)
                    print(f"  {w:8s} {s:12s} {'loaded' if loaded else 'quiet ':6s} median {r['median_ms']:8.2f} ms "
                          f"(load avg {r['loadavg_before']:.2f} -> {r['loadavg_after']:.2f})", flush=True)
    table = summarise(runs, settings, workloads)
    loads = [x for r in runs for x in (r["loadavg_before"], r["loadavg_after"])]
    report = {"benchmark": "bench_threads", "cpus": os.cpu_count(), "load_procs": a.load_procs, "steps": a.steps,
              "warmup": a.warmup, "repeats": a.repeats, "policy": describe_policy(), "table": table, "runs": runs,
              "loadavg_min": min(loads), "loadavg_max": max(loads), "wall_s": time.time() - t0, "quick": a.quick,
              "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    if "policy" in settings:
        report["targets"] = {w: {"slowdown_le_2x": table[w]["policy"]["slowdown"] <= 2.0,
                                 "quiet_speed_drop_le_10pct": table[w]["policy"]["quiet_speed_vs_best"] >= 0.9}
                             for w in workloads}
    print(f"\nthread settings, {a.load_procs} competing CPU-bound processes on {os.cpu_count()} CPUs, "
          f"median of {a.repeats} runs x {a.steps} steps; load avg seen {min(loads):.2f}..{max(loads):.2f}")
    print(f"{'workload':9s} {'setting':12s} {'quiet ms':>9s} {'loaded ms':>10s} {'slowdown':>9s} {'quiet vs best':>14s}")
    for w, rows in table.items():
        for s, r in rows.items():
            print(f"{w:9s} {s:12s} {r['quiet_ms']:9.2f} {r['loaded_ms']:10.2f} {r['slowdown']:8.2f}x "
                  f"{r['quiet_speed_vs_best']:13.2f}")
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"bench_threads{'_quick' if a.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"-> {out}")
    return report


if __name__ == "__main__":
    main()
