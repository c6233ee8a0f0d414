"""The shared training loop: exact resume after a kill, non-finite loss, checkpoints, schedules."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal_lib.engine.train import NonFiniteLossError, TrainConfig, fit, list_checkpoints, read_log
from xmodal_lib.infra.checkpoint import load_tensors, load_weights, save_weights
from xmodal_lib.infra.errors import CheckpointError


class ToyData(Dataset):
    """Deterministic in (index, epoch): a random noise draw seeded by both."""

    def __init__(self, n: int = 40) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x[:, 0] > 0).long()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        return self.x[i] + 0.1 * torch.randn(6, generator=g), self.y[i]


class Queue(nn.Module):
    """A stand-in for a contrastive queue: a buffer updated every step."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("q", torch.zeros(8, 4))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def push(self, k: torch.Tensor) -> None:
        i = int(self.ptr)
        self.q[i % 8] = k.detach().mean(0)
        self.ptr += 1


def make_model() -> nn.Module:
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))


def make_step(queue: Queue, fail_at: int | None = None, counter: list | None = None):
    def step(model, batch):
        x, y = batch
        if counter is not None:
            counter[0] += 1
            if fail_at is not None and counter[0] == fail_at:
                raise KeyboardInterrupt("simulated kill")
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y) + 1e-3 * (logits[:, :4] @ queue.q.clone().T).pow(2).mean()
        queue.push(logits)
        return {"loss": loss, "acc": (logits.argmax(1) == y).float().mean()}

    return step


CFG = dict(epochs=3, batch_size=8, lr=1e-2, optimizer="adamw", schedule="cosine", warmup_steps=2,
           ckpt_every=2, seed=7, device="cpu")


def run(tmp: Path, fail_at: int | None = None, resume: bool = False, options=None, **over):
    model, queue = make_model(), Queue()
    cfg = TrainConfig(**{**CFG, **over})
    res = fit(model, make_step(queue, fail_at, [0]), ToyData(), cfg, tmp, state_modules={"queue": queue},
              resume=resume, progress=False, config={"name": "toy"}, options=options)
    return model, queue, res


def assert_same(a: nn.Module, b: nn.Module) -> None:
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        assert torch.equal(va, vb), f"{ka} differs"


@pytest.mark.parametrize("fail_at", [1, 4, 5, 8, 15])
def test_resume_after_kill_equals_uninterrupted(tmp_path: Path, fail_at: int) -> None:
    ref_model, ref_queue, ref = run(tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", fail_at=fail_at)
    model, queue, res = run(tmp_path / "killed", resume=True)
    assert res.steps == ref.steps == 15
    assert_same(model, ref_model)
    assert torch.equal(queue.q, ref_queue.q) and int(queue.ptr) == int(ref_queue.ptr)
    assert [r["loss"] for r in res.history] == [r["loss"] for r in ref.history]
    rows = [r for r in read_log(tmp_path / "killed") if r["kind"] == "train"]
    assert [r["step"] for r in rows] == list(range(1, 16)), "log must have each step exactly once"


def test_resume_after_sigkill_subprocess(tmp_path: Path) -> None:
    """A real SIGKILL of a training process at an arbitrary point, then resume."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, os, signal, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_train import run
        from pathlib import Path
        import test_train
        orig = test_train.make_step
        def killing(queue, fail_at=None, counter=None):
            inner = orig(queue)
            n = [0]
            def step(model, batch):
                n[0] += 1
                if n[0] == 7 and os.environ.get("KILL"):
                    os.kill(os.getpid(), signal.SIGKILL)
                return inner(model, batch)
            return step
        test_train.make_step = killing
        model, queue, res = run(Path(sys.argv[1]), resume=bool(os.environ.get("RESUME")))
        torch.save({{k: v for k, v in model.state_dict().items()}}, sys.argv[2])
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "a"), str(tmp_path / "a.pt")],
                       env={**env, "KILL": "1"}, capture_output=True)
    assert p.returncode == -signal.SIGKILL
    assert list_checkpoints(tmp_path / "a"), "a checkpoint must exist before the kill"
    subprocess.run([sys.executable, str(script), str(tmp_path / "a"), str(tmp_path / "a.pt")],
                   env={**env, "RESUME": "1"}, check=True, capture_output=True)
    ref_model, _, _ = run(tmp_path / "ref")
    got = torch.load(tmp_path / "a.pt", weights_only=True)
    for k, v in ref_model.state_dict().items():
        assert torch.equal(got[k], v), k


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    model, calls = make_model(), [0]

    def step(m, batch):
        calls[0] += 1
        x, y = batch
        loss = nn.functional.cross_entropy(m(x), y)
        return {"loss": loss * float("nan") if calls[0] == 5 else loss}

    with pytest.raises(NonFiniteLossError, match="non-finite loss.*step 4.*step_00000004"):
        fit(model, step, ToyData(), TrainConfig(**{**CFG, "ckpt_every": 2}), tmp_path, progress=False)
    stems = list_checkpoints(tmp_path)
    assert stems[-1].name == "step_00000004"
    tensors, meta = load_tensors(stems[-1])
    assert meta["step"] == 4 and all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))


def test_checkpoints_are_safetensors_json_and_pruned(tmp_path: Path) -> None:
    run(tmp_path, keep_last=2)
    stems = list_checkpoints(tmp_path)
    assert len(stems) == 2
    meta = json.loads(stems[-1].with_name(stems[-1].name + ".json").read_text())
    assert meta["config"] == {"name": "toy"} and meta["train_config"]["seed"] == 7
    assert not list((tmp_path / "checkpoints").glob("*.tmp")), "no temp files left behind"


def test_val_fn_and_max_steps(tmp_path: Path) -> None:
    model, queue = make_model(), Queue()
    seen = []

    def val(m):
        seen.append(m.training)
        return {"val_metric": 1.0}

    res = fit(model, make_step(queue), ToyData(), TrainConfig(**{**CFG, "max_steps": 7}), tmp_path,
              val_fn=val, state_modules={"queue": queue}, progress=False)
    assert res.steps == 7 and len(res.val) == 1 and seen == [False]


def test_bad_config_and_empty_params(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")
    with pytest.raises(ValueError, match="bf16"):
        fit(make_model(), lambda m, b: {}, ToyData(), TrainConfig(precision="bf16", device="cpu"), tmp_path)
    frozen = make_model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(frozen, lambda m, b: {}, ToyData(), TrainConfig(device="cpu"), tmp_path)


def test_save_load_weights_strict(tmp_path: Path) -> None:
    m = make_model()
    save_weights(m, tmp_path / "w", {"hidden": 16})
    m2 = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))
    assert load_weights(m2, tmp_path / "w.safetensors") == {"hidden": 16}
    assert_same(m, m2)
    with pytest.raises(ValueError, match="missing"):
        load_weights(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4), nn.Linear(4, 2)),
                     tmp_path / "w")
    with pytest.raises(CheckpointError, match="nope.safetensors"):
        load_weights(m2, tmp_path / "nope")


def test_loader_workers_and_persistent_workers_match_in_process(tmp_path: Path) -> None:
    """Workers (persistent ones too) see each epoch's items: the epoch travels with every index."""
    ref_model, ref_queue, ref = run(tmp_path / "ref")
    model, queue, res = run(tmp_path / "workers", num_workers=1, persistent_workers=True, prefetch_factor=3)
    assert_same(model, ref_model)
    assert [r["loss"] for r in res.history] == [r["loss"] for r in ref.history]


def test_data_and_step_times_are_logged(tmp_path: Path) -> None:
    _, _, res = run(tmp_path)
    assert all(r["data_ms"] >= 0 and r["step_ms"] > 0 for r in res.history)
    assert res.step_ms > 0 and res.data_ms >= 0 and res.world_size == 1
    rows = [r for r in read_log(tmp_path) if r["kind"] == "train"]
    assert [r["step_ms"] for r in rows] == [r["step_ms"] for r in res.history]


def test_compile_flag_wraps_the_whole_step(tmp_path: Path, monkeypatch) -> None:
    from xmodal_lib.infra.distributed import StepModule

    assert TrainConfig().compile is False and TrainConfig().channels_last is False
    seen = []

    def fake_compile(module, *a, **k):  # torch.compile itself is slow on 2 CPU cores; only the wiring here
        seen.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    model, _, res = run(tmp_path, compile=True, epochs=1)
    assert len(seen) == 1 and isinstance(seen[0], StepModule) and seen[0].model is model and res.steps == 5


def test_channels_last_model_and_inputs(tmp_path: Path) -> None:
    class Images(Dataset):
        def __len__(self) -> int:
            return 16

        def __getitem__(self, i: int):
            return torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i)), i % 2

    def train(channels_last: bool, out: Path):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        formats = []

        def step(m, batch):
            x, y = batch
            formats.append(x.is_contiguous(memory_format=torch.channels_last))
            return {"loss": nn.functional.cross_entropy(m(x), y)}

        fit(model, step, Images(), TrainConfig(batch_size=4, lr=1e-2, device="cpu", channels_last=channels_last),
            out, progress=False)
        return model, formats

    cl, cl_formats = train(True, tmp_path / "cl")
    plain, plain_formats = train(False, tmp_path / "plain")
    assert all(cl_formats) and not any(plain_formats)
    assert cl[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(cl.parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fit_options_loop_fields_reach_that_fit_only(tmp_path: Path) -> None:
    from xmodal_lib.engine.train import FitOptions

    run(tmp_path / "a", options=FitOptions(loop={"keep_last": 1, "ckpt_every": 3}))
    run(tmp_path / "b")
    assert len(list_checkpoints(tmp_path / "a")) == 1 and len(list_checkpoints(tmp_path / "b")) == 2
    _, meta = load_tensors(list_checkpoints(tmp_path / "a")[-1])
    assert meta["train_config"]["ckpt_every"] == 3
    with pytest.raises(ValueError, match="not training-loop fields"):
        FitOptions(loop={"lr": 1.0})


def test_progress_bar_redraws_are_throttled(tmp_path: Path, monkeypatch) -> None:
    """A redraw per step floods a notebook's iopub channel (nbval then loses the cell's last message):
    the bar redraws at most every 0.5 s however many steps run."""
    from tqdm import tqdm as std_tqdm

    draws = [0]

    class Counting(std_tqdm):
        def display(self, *args, **kwargs):  # every redraw goes through display()
            draws[0] += 1
            return super().display(*args, **kwargs)

    import xmodal_lib.engine.loop as loop_mod  # the loop (and its progress bar) lives there

    monkeypatch.setattr(loop_mod, "tqdm", Counting)
    model, queue = make_model(), Queue()
    cfg = TrainConfig(**{**CFG, "epochs": 40, "ckpt_every": 10_000})  # 5 steps/epoch -> 200 steps
    res = fit(model, make_step(queue), ToyData(), cfg, tmp_path, state_modules={"queue": queue}, progress=True)
    assert res.steps == 200
    assert draws[0] <= 2 + 2 * res.wall_time / 0.5, f"{draws[0]} redraws in {res.wall_time:.2f} s"
    assert draws[0] < res.steps / 4


def test_ckpt_every_none_checkpoints_only_at_epoch_ends(tmp_path: Path) -> None:
    model, queue = make_model(), Queue()
    cfg = TrainConfig(**{**CFG, "epochs": 2, "ckpt_every": None, "keep_last": 10})
    fit(model, make_step(queue), ToyData(), cfg, tmp_path, state_modules={"queue": queue}, progress=False)
    steps = sorted(int(p.name.split("_")[1]) for p in list_checkpoints(tmp_path))
    per_epoch = len(ToyData()) // CFG["batch_size"]
    assert steps == [per_epoch, 2 * per_epoch]
    with pytest.raises(ValueError, match="ckpt_every"):
        TrainConfig(ckpt_every=0)


def test_epochs_none_lets_max_steps_alone_set_the_length(tmp_path: Path) -> None:
    """``epochs=None``: the run is ``max_steps`` long across as many epochs as that takes (no fake
    epoch count), and the cosine schedule spans exactly those steps."""
    per_epoch = len(ToyData()) // CFG["batch_size"]  # 5
    _, _, res = run(tmp_path, epochs=None, max_steps=2 * per_epoch + 3)
    assert res.steps == 13
    rows = [r for r in read_log(tmp_path) if r["kind"] == "train"]
    assert [r["step"] for r in rows] == list(range(1, 14))
    assert rows[-1]["lr"] < 0.05 * CFG["lr"], "cosine over max_steps must end near zero"
    with pytest.raises(ValueError, match="epochs=None.*needs max_steps"):
        TrainConfig(epochs=None)
    with pytest.raises(ValueError, match="TrainConfig.epochs: expected a positive integer, got 0"):
        TrainConfig(epochs=0, max_steps=5)
