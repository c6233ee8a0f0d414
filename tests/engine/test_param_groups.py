"""Optimiser groups of the shared loop: biases and norms exempt from weight decay (nanoGPT's
``configure_optimizers``), a deliberate difference from the official code, which decays every parameter."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from xmodal_lib.engine.resume import apply_new_rates
from xmodal_lib.engine.train import TrainConfig, _make_optimizer, fit, param_groups


class Small(nn.Module):
    """Every kind of parameter the methods have: embedding, matrices, biases, LayerNorm, BatchNorm, token."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(5, 6)
        self.cls = nn.Parameter(torch.randn(1, 1, 6))
        self.fc = nn.Linear(6, 6)
        self.ln = nn.LayerNorm(6)
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.head = nn.Linear(6, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = self.bn(self.conv(x.view(-1, 1, 1, 6).expand(-1, 1, 3, 6))).mean((1, 2, 3))  # (B,)
        h = self.ln(self.fc(x + self.emb.weight[0] + self.cls[0, 0])) + img[:, None]  # (B, 6)
        return self.head(h)


DECAYED = {"emb.weight", "cls", "fc.weight", "conv.weight", "head.weight"}
EXEMPT = {"fc.bias", "ln.weight", "ln.bias", "conv.bias", "bn.weight", "bn.bias"}


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_groups_exempt_biases_and_norms(optimizer):
    model = Small()
    opt = _make_optimizer(TrainConfig(optimizer=optimizer, weight_decay=0.05), list(model.parameters()))
    assert len(opt.param_groups) == 2
    decay, exempt = opt.param_groups
    assert _names(model, decay) == DECAYED and decay["weight_decay"] == 0.05 and not decay["no_decay"]
    assert _names(model, exempt) == EXEMPT and exempt["weight_decay"] == 0.0 and exempt["no_decay"]


def test_empty_group_left_out():
    only_biases = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.ones(4))]
    groups = param_groups(only_biases, 0.1)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in only_biases]


def test_fit_decays_only_matrices(tmp_path):
    """One AdamW step with zero loss gradient: decayed weights shrink by exactly (1 - lr * wd), the
    exempt ones do not move (with decay on every parameter, they would shrink too)."""
    model = Small()
    model.bn.weight.data.fill_(2.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = TensorDataset(torch.randn(4, 6))

    def step(m: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": 0.0 * m(batch[0]).sum()}

    cfg = TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5, batch_size=4, max_steps=1, device="cpu",
                      ckpt_every=None)
    fit(model, step, data, cfg, tmp_path, progress=False)
    for n, p in model.named_parameters():
        want = before[n] * (1 - 0.1 * 0.5) if n in DECAYED else before[n]
        torch.testing.assert_close(p.detach(), want, msg=n)


def test_new_rates_after_resume_keep_exempt_group_at_zero():
    opt = _make_optimizer(TrainConfig(optimizer="adamw", weight_decay=0.01), list(Small().parameters()))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    apply_new_rates(opt, sched, lr=1e-3, weight_decay=0.2)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.2, 0.0]
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3]
