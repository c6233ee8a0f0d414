"""DDP equivalence on CPU: 2 gloo processes give the single-process loss, gradients, queues and weights.

One ``torchrun --nproc_per_node=2`` launch of this file (gloo, ``distributed.setup``) computes
every scenario; the tests compare each rank's results with a
single process fed the same GLOBAL batch. Scenarios: one step of the XModalViT teacher (XAQC),
the students (XAQC + RKD on the gathered batch), the triplet baseline, CrossATNet (semi-hard and
random in-batch mining, hash losses on the gathered batch) and ZSE-SBIR; then ``train_teacher``
(the notebooks' pipeline function) under DDP against one process: same weights and queue, only
rank 0 writes, and a run stopped mid-epoch resumes under DDP to the same weights; and the
``xmodal train`` CLI on both ranks.

BatchNorm (CrossATNet's CNN backbones) normalises with per-rank statistics under DDP, so its
step is compared with BN layers in eval mode (running statistics); dropout is 0 in every model.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from xmodal_lib.engine import train as T  # noqa: E402
from xmodal_lib.infra import distributed as D  # noqa: E402
from xmodal_lib.methods.xmodalvit import pipeline as xv  # noqa: E402
from xmodal_lib.methods.xmodalvit.xaqc import XAQC  # noqa: E402
from xmodal_lib.run.params import build

WORLD = 2
TINY = dict(image_size=16, teacher_patch_size=8, teacher_depth=1, teacher_embed_dim=24, teacher_num_heads=3,
            xma_depth=1, student_patch_size=8, student_depth=1, student_embed_dim=24, student_num_heads=3,
            teacher_queue=12, student_queue=12, teacher_batch_size=4, student_batch_size=4, baseline_batch_size=4,
            teacher_epochs=2, student_epochs=1,
            baseline_epochs=1, teacher_schedule="constant", teacher_device="cpu", student_device="cpu", baseline_device="cpu")
RTOL, ATOL = 1e-5, 1e-5


# ---- method cases: (model, step_fn, state modules, global batch) -----------------------------------
def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def case_teacher():
    cfg = build(xv.XModalViTConfig, **TINY)
    model = xv.make_teacher(cfg)
    q = XAQC(model.embed_dim, cfg.teacher_queue, seed=5)
    return model, xv.teacher_step(q), {"xaqc": q}, (_images(4, 16, 1), _images(4, 16, 2), _images(4, 16, 3))


def _exact_pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``rkd.pairwise_distances`` without the |a|^2 + |b|^2 - 2ab expansion (same value in exact arithmetic)."""
    diff = e[:, None, :] - e[None, :, :]  # (N, N, D)
    d = (diff * diff).sum(-1).clamp(min=eps).sqrt()
    return d * (1.0 - torch.eye(e.shape[0], dtype=d.dtype))


def case_students():
    # The photo student's RKD input [e_p; e_p] repeats every row. rkd.pairwise_distances expands
    # |a - b|^2, so a repeated pair's distance is sqrt(rounding noise) (about 5e-3 measured, not 0)
    # and differs between any two GEMM orderings (1.4e-3 relative in loss.dist between DDP and one
    # process). The comparison therefore uses the direct difference, identical in exact arithmetic.
    cfg = build(xv.XModalViTConfig, **TINY)
    teacher = xv.freeze(xv.make_teacher(cfg))
    students = xv.make_students(cfg, teacher.embed_dim)
    xp, xs = XAQC(teacher.embed_dim, 12, seed=6), XAQC(teacher.embed_dim, 12, seed=7)
    step = xv.student_step(teacher, xp, xs, relational=True)
    return students, step, {"xaqc_p": xp, "xaqc_s": xs}, (_images(4, 16, 4), _images(4, 16, 5), _images(4, 16, 6))


def case_triplet():
    cfg = build(xv.XModalViTConfig, **TINY)
    students = xv.make_students(cfg, 24, normalize=True)
    return students, xv.triplet_step(0.2), {}, (_images(4, 16, 7), _images(4, 16, 8), _images(4, 16, 9))


def case_crossatnet(mining: str):
    from xmodal_lib.methods.crossatnet.model import CrossATNet
    from xmodal_lib.methods.crossatnet.pipeline import (
        CrossATNetRunConfig,
        CrossATNetTrainer,
        build_class_graph,
        crossatnet_step,
    )

    cfg = build(CrossATNetRunConfig, img_size=32, embed_dim=16, attn_dim=8, gcn_hidden=8, hash_bits=(8, 16),
                graph_k=1, mining=mining, device="cpu")
    names = ["a", "b", "c"]
    graph = build_class_graph(names, lambda ns: torch.randn(len(ns), 12, generator=torch.Generator().manual_seed(3)),
                              kind="knn", k=1)
    torch.manual_seed(0)
    tr = CrossATNetTrainer(CrossATNet(cfg.model), graph, cfg)
    y = torch.tensor([0, 1, 2, 0, 1, 1, 2, 0])
    return tr, crossatnet_step, {}, (_images(8, 32, 10), _images(8, 32, 11), y)


def case_zse():
    from xmodal_lib.methods.zse.model import ZSESBIR
    from xmodal_lib.methods.zse.pipeline import ZSEPipelineConfig, zse_step

    cfg = build(ZSEPipelineConfig, img_size=32, patch_size=8, dim=24, depth=2, heads=2, ca_heads=2, ca_ffn=24,
                rn_dim=8, prune_layers=(2,), dropout=0.0, device="cpu")
    torch.manual_seed(0)
    batch = {k: _images(4, 32, 20 + i) for i, k in enumerate(("sk_pos", "sk_neg", "ph_pos", "ph_neg"))}
    return ZSESBIR(cfg.model), zse_step, {}, batch


CASES = {"teacher": case_teacher, "students": case_students, "triplet": case_triplet,
         "crossatnet_semihard": lambda: case_crossatnet("semi-hard"),
         "crossatnet_random": lambda: case_crossatnet("random"), "zse": case_zse}


def _rows(batch, r: int, w: int):
    """Rank r's contiguous slice of a global batch (tuple or dict of tensors)."""
    def cut(x):
        b = x.shape[0] // w
        return x[r * b:(r + 1) * b]
    return {k: cut(v) for k, v in batch.items()} if isinstance(batch, dict) else tuple(cut(v) for v in batch)


def one_step(name: str, r: int = 0, w: int = 1) -> dict:
    """One step of a case on rank r of w (w=1: the single-process reference); loss, grads, queues."""
    from xmodal_lib.methods.xmodalvit import rkd

    torch.manual_seed(1234)  # identical RNG on every rank, as fit does (random mining)
    model, step, states, batch = CASES[name]()
    model.train()
    for m in model.modules():  # BN: running statistics (per-rank batch statistics differ under DDP)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    runner = D.wrap_step(model, step, torch.device("cpu"), trainable)
    original = rkd.pairwise_distances
    if name == "students":
        rkd.pairwise_distances = _exact_pairwise_distances
    try:
        out = runner(_rows(batch, r, w))
        logged = D.mean_scalars(out, torch.device("cpu"))
        out["loss"].backward()
    finally:
        rkd.pairwise_distances = original
    res = {f"loss.{k}": torch.tensor(v) for k, v in logged.items()}
    res.update({f"grad.{k}": p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None})
    for s, m in states.items():
        res.update({f"state.{s}.{k}": v.clone() for k, v in m.state_dict().items()})
    return res


# ---- fit scenarios -----------------------------------------------------------------------------------
def fg_data() -> xv.XModalData:
    def split(n_photos: int, per: int, seed: int) -> xv.FGTensors:
        g = torch.Generator().manual_seed(seed)
        photos, sk = torch.rand(n_photos, 3, 16, 16, generator=g), torch.rand(n_photos * per, 3, 16, 16, generator=g)
        return xv.FGTensors(photos, sk, torch.arange(n_photos).repeat_interleave(per), [str(i) for i in range(n_photos)])
    return xv.XModalData(split(12, 2, 0), split(4, 2, 1), split(4, 2, 2), "fake")


def fit_state(model: nn.Module, res) -> dict:
    out = {f"w.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    out["loss"] = torch.tensor([h["loss"] for h in res.history])
    out["val"] = torch.tensor([v["val_acc@1"] for v in res.val])
    out["steps"] = torch.tensor(res.steps)
    out["data_ms"] = torch.tensor([h["data_ms"] for h in res.history])  # measured: differs run to run
    return out


def _teacher_with_queue(out_dir: Path, resume: bool = False, ckpt_dir: Path | None = None, **over):
    """train_teacher, also returning its XAQC queue (read from the last checkpoint, in ``ckpt_dir``
    when this rank's ``out_dir`` is not the one rank 0 writes to)."""
    from xmodal_lib.infra.checkpoint import load_tensors

    cfg = build(xv.XModalViTConfig, **{**TINY, **over})
    teacher, res = xv.train_teacher(cfg, fg_data(), out_dir, resume=resume, progress=False)
    state = fit_state(teacher, res)
    last = res.last_checkpoint if ckpt_dir is None else ckpt_dir / "checkpoints" / res.last_checkpoint.name
    tensors, _ = load_tensors(last)
    state.update({k: v for k, v in tensors.items() if k.startswith("state.")})
    return state


# ---- the worker (run as a script by the fixture) --------------------------------------------------
def _worker(tmp: Path) -> None:
    D.setup(backend="gloo", device="cpu")
    torch.set_num_threads(1)
    r, w = D.rank(), D.world_size()
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}

    def attempt(key, fn):
        try:
            results[key] = fn()
        except Exception:  # recorded, so one broken case does not hide the others
            errors[key] = traceback.format_exc()

    t = time.perf_counter()
    for name in CASES:
        attempt(f"step.{name}", lambda: one_step(name, r, w))
    shared = tmp / "shared"
    own = shared if r == 0 else tmp / "rank1_own"  # rank 1 gets its own folder: it must stay empty
    attempt("fit.full", lambda: _teacher_with_queue(own / "full", ckpt_dir=shared / "full"))
    attempt("fit.part", lambda: _teacher_with_queue(shared / "resumed", teacher_max_steps=4))
    attempt("fit.resumed", lambda: _teacher_with_queue(shared / "resumed", resume=True))

    def bad_batch():
        try:
            T.fit(nn.Linear(2, 2), lambda m, b: {}, torch.zeros(9, 2), T.TrainConfig(batch_size=3, device="cpu"),
                  tmp / "bad")
        except ValueError as err:
            return {"msg": str(err)}
        return {"msg": ""}
    attempt("bad_batch", bad_batch)

    def sync_bn_on_cpu():
        try:
            T.fit(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), lambda m, b: {}, torch.zeros(8, 2),
                  T.TrainConfig(batch_size=4, device="cpu", sync_batchnorm=True), tmp / "bn")
        except ValueError as err:
            return {"msg": str(err)}
        return {"msg": ""}
    attempt("sync_bn", sync_bn_on_cpu)

    def unused(find: bool):
        class TwoHeads(nn.Module):
            def __init__(self):
                super().__init__()
                self.used, self.spare = nn.Linear(2, 1), nn.Linear(2, 1)

        def step(m, x):
            return {"loss": m.used(x).pow(2).mean()}
        try:
            res = T.fit(TwoHeads(), step, torch.ones(8, 2), T.TrainConfig(batch_size=4, epochs=2, device="cpu",
                        find_unused_parameters=find), tmp / f"unused{find}", progress=False)
        except ValueError as err:
            return {"msg": str(err)}
        return {"msg": "", "steps": torch.tensor(res.steps)}
    attempt("unused", lambda: unused(False))
    attempt("unused_allowed", lambda: unused(True))

    def cli_teacher():  # the torchrun entry point's code, inside this already-initialised group
        from xmodal_lib.cli import main

        args = ["train", "xmodalvit-teacher", "--out", str(shared / "cli"), "--no-progress", "--evaluate"]
        for k, v in {**TINY, "teacher_max_steps": 3, "teacher_queue": 8}.items():
            args += ["-p", f"{k}={v}"]
        return {"rc": torch.tensor(main(args + ["--loop", "num_workers=1", "--loop", "persistent_workers=true"]))}
    attempt("cli", cli_teacher)
    results["meta"] = {"seconds": time.perf_counter() - t, "world": w}
    torch.save({"results": results, "errors": errors}, tmp / f"rank{r}.pt")
    D.cleanup()


# ---- pytest side -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp: Path, world: int = WORLD, timeout: float = 240.0) -> tuple[list[dict], str]:
    """Run this file as ``world`` ranks under torchrun (gloo); each rank's saved results and the log."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "XMODAL_ARTIFACTS": str(tmp / "artifacts"), "XMODAL_RUNS": str(tmp / "runs")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={world}",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{_free_port()}", __file__, str(tmp)]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    log = p.stdout.decode(errors="replace")
    assert p.returncode == 0, f"torchrun exited with {p.returncode}:\n{log[-6000:]}"
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(world)], log


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
else:
    import pytest

    @pytest.fixture(scope="module")
    def ddp(tmp_path_factory):
        tmp = tmp_path_factory.mktemp("ddp")
        t = time.perf_counter()
        out, log = launch(tmp)
        print(f"torchrun, 2 gloo ranks: {time.perf_counter() - t:.1f} s wall "
              f"({out[0]['results']['meta']['seconds']:.1f} s of scenarios in rank 0)")
        return tmp, out, log

    @pytest.fixture(scope="module")
    def fit_ref(tmp_path_factory):
        torch.set_num_threads(1)
        return _teacher_with_queue(tmp_path_factory.mktemp("ref"))

    def _get(ddp, key: str) -> list[dict]:
        _, out, _ = ddp
        for r, o in enumerate(out):
            assert key not in o["errors"], f"rank {r}, {key}:\n{o['errors'][key]}"
        return [o["results"][key] for o in out]

    def _without_key_bias(state: dict) -> dict:
        """Drop the key third of ViT ``attn.qkv.bias``: its true gradient is exactly 0 (softmax ignores a
        per-query shift), so Adam turns its rounding noise into updates (two single-process runs with
        1 and 2 threads already differ there by 3.7e-6, elsewhere by <= 3e-8)."""
        out = dict(state)
        for k, v in state.items():
            if k.endswith("attn.qkv.bias"):
                d = v.shape[0] // 3
                out[k] = torch.cat([v[:d], v[2 * d:]])
        return out

    def assert_close(got: dict, ref: dict, what: str) -> None:
        got, ref = ({k: v for k, v in d.items() if k != "data_ms"} for d in (got, ref))
        assert sorted(got) == sorted(ref), f"{what}: keys differ: {sorted(set(got) ^ set(ref))}"
        for k in ref:  # float32 sums in another order: error relative to the tensor's largest entry
            atol = ATOL * max(1.0, float(ref[k].abs().max())) if ref[k].is_floating_point() else 0.0
            torch.testing.assert_close(got[k], ref[k], rtol=RTOL, atol=atol, msg=lambda m: f"{what} {k}: {m}")

    @pytest.mark.slow
    @pytest.mark.parametrize("name", list(CASES))
    def test_one_step_equals_single_process(ddp, name):
        """Loss (every logged term), every parameter gradient and the XAQC queues after one step."""
        torch.set_num_threads(1)
        ref = one_step(name)
        assert any(k.startswith("grad.") for k in ref) and ref["loss.loss"] > 0
        for r, got in enumerate(_get(ddp, f"step.{name}")):
            assert_close(got, ref, f"{name} rank {r}")
        if name == "teacher":  # why fit's weight comparison leaves out the key bias (see _without_key_bias)
            g = ref["grad.photo_encoder.blocks.0.attn.qkv.bias"]
            d = g.shape[0] // 3
            assert g[d:2 * d].abs().max() < 1e-6 * g.abs().max()
        if name in ("teacher", "students"):  # the queue really moved (the check is not vacuous)
            fresh = CASES[name]()[2]
            moved = [k for k, m in fresh.items() if not torch.equal(m.queue, ref[f"state.{k}.queue"])]
            assert moved == list(fresh)

    @pytest.mark.slow
    def test_fit_under_ddp_equals_single_process_and_rank0_writes(ddp, fit_ref):
        tmp = ddp[0]
        ref = fit_ref
        full = _get(ddp, "fit.full")
        assert int(ref["steps"]) == 6 and len(ref["val"]) == 2
        for k, v in full[0].items():  # the ranks hold the very same model
            assert torch.equal(v, full[1][k]) or k == "data_ms", k
        assert_close(_without_key_bias(full[0]), _without_key_bias(ref), "train_teacher")
        assert (tmp / "shared" / "full" / "metrics.jsonl").is_file()
        ckpts = T.list_checkpoints(tmp / "shared" / "full")
        assert ckpts and ckpts[-1].name == "step_00000006"
        rows = [r for r in T.read_log(tmp / "shared" / "full") if r["kind"] == "train"]
        assert [r["step"] for r in rows] == list(range(1, 7)) and all("data_ms" in r and "step_ms" in r for r in rows)
        assert not (tmp / "rank1_own").exists(), "rank 1 must not write checkpoints or logs"

    @pytest.mark.slow
    def test_resume_under_ddp(ddp, fit_ref):
        ref = fit_ref
        part = _get(ddp, "fit.part")
        assert all(int(p["steps"]) == 4 for p in part)
        resumed = _get(ddp, "fit.resumed")
        for k, v in resumed[0].items():
            assert torch.equal(v, resumed[1][k]) or k == "data_ms", k
        # the first 4 rows came back from the checkpoint (their timings are the stopped run's)
        assert torch.equal(resumed[0]["data_ms"][:4], part[0]["data_ms"])
        assert int(resumed[0]["steps"]) == 6
        assert_close(_without_key_bias(resumed[0]), _without_key_bias(ref), "resumed under DDP")

    @pytest.mark.slow
    def test_cli_train_under_torchrun(ddp):
        """``xmodal train`` on 2 ranks: both succeed, rank 0 prints one summary and saves the teacher."""
        tmp, _, log = ddp
        assert [int(c["rc"]) for c in _get(ddp, "cli")] == [0, 0]
        assert log.count('"method": "xmodalvit-teacher"') == 1 and '"world_size": 2' in log and '"acc@1"' in log
        assert '"steps": 3' in log
        assert (tmp / "artifacts" / "xmodalvit_teacher.safetensors").is_file()
        assert [c.name for c in T.list_checkpoints(tmp / "shared" / "cli")] == ["step_00000003"]

    @pytest.mark.slow
    def test_bad_settings_under_ddp_raise(ddp):
        for got in _get(ddp, "bad_batch"):
            assert "GLOBAL batch" in got["msg"] and "(2)" in got["msg"]
        for got in _get(ddp, "sync_bn"):
            assert "sync_batchnorm needs CUDA" in got["msg"]
        for got in _get(ddp, "unused"):
            assert "got no gradient in the first step (spare.weight, spare.bias)" in got["msg"]
        for got in _get(ddp, "unused_allowed"):  # with DDP's flag the same model trains
            assert got["msg"] == "" and int(got["steps"]) == 4

    def test_cli_train_rejects_unknown_keys(capsys):
        from xmodal_lib.cli import main

        assert main(["train", "zse", "-p", "bogus=1"]) == 2
        assert "bogus" in capsys.readouterr().err
        assert main(["train", "crossatnet", "--loop", "lr=1"]) == 2
        assert "not training-loop fields" in capsys.readouterr().err
        assert main(["train", "crossatnet", "-p", "batch_size"]) == 2
        assert "KEY=VALUE" in capsys.readouterr().err

    def test_setup_without_torchrun_is_single_process(monkeypatch):
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            monkeypatch.delenv(var, raising=False)
        assert D.setup(device="cpu") == torch.device("cpu")
        assert not torch.distributed.is_initialized() and D.world_size() == 1 and D.is_main_process()
        x = torch.randn(3, 2, requires_grad=True)
        assert D.gather_cat(x) is x and D.gather_cat_nograd(x) is x
        with pytest.raises(ValueError, match="nccl"):
            D.setup(backend="nccl", device="cpu")
        with pytest.raises(ValueError, match="device must be"):
            D.setup(device="tpu")

    def test_sampler_shards_global_batches():
        """Rank r's batches are the r-th slices of the single-process batches; partial batches dropped."""
        single = T.EpochSampler(10, seed=3, batch_size=4, drop_last=True)
        order = [i for _, i in single]
        assert len(order) == 8 and sorted(order) != list(range(8))
        ranks = [list(T.EpochSampler(10, seed=3, batch_size=4, drop_last=True, rank=r, world_size=2))
                 for r in range(2)]
        for t in range(2):
            glob = [i for r in range(2) for _, i in ranks[r][2 * t:2 * t + 2]]
            assert glob == order[4 * t:4 * t + 4]
        resumed = T.EpochSampler(10, seed=3, batch_size=4, drop_last=True, rank=1, world_size=2)
        resumed.set_epoch(0, start=4)
        assert [i for _, i in resumed] == order[6:8]
        with pytest.raises(ValueError, match="divisible"):
            T.EpochSampler(10, seed=3, batch_size=3, world_size=2)
