"""Learning-rate schedules and the precision switch of the shared loop (paper fidelity items 4, 7)."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.engine.train import PRECISIONS, SCHEDULES, TrainConfig, _lr_lambda, fit


def _official_reference(total: int, lr: float = 3e-6) -> list[float]:
    """The released XModalViT teacher loop: CosineAnnealingLR(T_max = all iterations, eta_min 0),
    ``scheduler.step()`` once every 10 iterations; the rate used at each iteration."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0)
    out = []
    for it in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if (it + 1) % 10 == 0:
            sched.step()
    return out


def test_official_schedule_matches_torch_cosine_stepped_every_10_iterations():
    total = 8 * 250  # e.g. Sketchy: 8 iterations per official epoch, 250 epochs
    ref = _official_reference(total)
    f = _lr_lambda(TrainConfig(schedule="official"), total, 8)
    ours = [3e-6 * f(t) for t in range(total)]
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-18)
    assert ours[-1] / ours[0] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(0.1 * torch.pi)).item()), rel=1e-3)
    assert 0.97 < ours[-1] / ours[0] < 0.98  # ~97.6 % of the start, as methods_spec §1.6 derives


def test_cosine_schedule_goes_to_zero_and_official_does_not():
    total = 2000
    cos = _lr_lambda(TrainConfig(schedule="cosine"), total, 8)
    off = _lr_lambda(TrainConfig(schedule="official"), total, 8)
    assert cos(total - 1) < 1e-4 and off(total - 1) > 0.97
    assert {"official", "cosine"} <= set(SCHEDULES)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")


def test_precision_switch_values_and_cpu_errors(tmp_path):
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="int8")
    model = torch.nn.Linear(3, 1)
    data = [(torch.randn(3), torch.randn(1)) for _ in range(8)]

    def step(m, b):
        x, y = b
        return {"loss": ((m(x) - y) ** 2).mean()}

    for prec in ("bf16", "fp16"):
        with pytest.raises(ValueError, match=f"precision='{prec}' needs a CUDA device"):
            fit(model, step, data, TrainConfig(precision=prec, device="cpu", batch_size=4), tmp_path / prec,
                progress=False)
    before = model.weight.detach().clone()
    res = fit(model, step, data, TrainConfig(precision="fp32", device="cpu", batch_size=4, lr=0.1,
                                             schedule="official", epochs=2), tmp_path / "fp32", progress=False)
    assert res.steps == 4 and not torch.equal(before, model.weight)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (fp16 autocast with a gradient scaler)")
def test_fp16_training_step_on_cuda(tmp_path):
    model = torch.nn.Linear(3, 1)
    data = [(torch.randn(3), torch.randn(1)) for _ in range(8)]
    res = fit(model, lambda m, b: {"loss": ((m(b[0]) - b[1]) ** 2).mean()}, data,
              TrainConfig(precision="fp16", device="cuda", batch_size=4, lr=0.1), tmp_path, progress=False)
    assert res.steps == 2 and torch.isfinite(model.weight).all()
