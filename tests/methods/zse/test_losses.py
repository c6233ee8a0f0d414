"""ZSE-SBIR losses against direct formulas, and the paper's batch construction."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.data.index import DataError
from xmodal_lib.methods.zse.data import ZSEBatchDataset
from xmodal_lib.methods.zse.losses import matching_loss, zse_loss


def test_zse_loss_matches_direct_formula():
    torch.manual_seed(0)
    a, p, n = torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)
    sp, sn = torch.rand(5), torch.rand(5)
    out = zse_loss(a, p, n, sp, sn)
    d_ap = ((a - p + 1e-6) ** 2).sum(1).sqrt()
    d_an = ((a - n + 1e-6) ** 2).sum(1).sqrt()
    tri = torch.clamp(d_ap - d_an + 1.0, min=0).mean()
    mse = (((sp - 0.99) ** 2).sum() + ((sn - 0.01) ** 2).sum()) / 10
    torch.testing.assert_close(out["triplet"], tri)
    torch.testing.assert_close(out["matching"], mse)
    torch.testing.assert_close(out["loss"], 2 * tri + 4 * mse)
    torch.testing.assert_close(out["triplet"], torch.nn.functional.triplet_margin_loss(a, p, n, margin=1.0))


def test_matching_loss_zero_at_targets_and_grad_flows():
    s_pos = torch.full((3,), 0.99, requires_grad=True)
    assert matching_loss(s_pos, torch.full((3,), 0.01)).item() == pytest.approx(0.0, abs=1e-12)
    loss = matching_loss(torch.full((2,), 0.5, requires_grad=True), torch.full((2,), 0.5))
    assert loss.item() == pytest.approx(((0.49 ** 2) * 2 + (0.49 ** 2) * 2) / 4)


def test_batch_construction_follows_the_paper():
    # images encode their own index so items can be traced back
    sk_groups = ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3
    ph_groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    sk = torch.arange(12, dtype=torch.float32).view(12, 1, 1, 1).expand(12, 3, 2, 2)
    ph = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 2, 2)
    ds = ZSEBatchDataset(sk, sk_groups, ph, ph_groups, n_items=200, seed=3)
    for i in range(200):
        item = ds[i]
        a, b = int(item["sk_pos"][0, 0, 0]), int(item["sk_neg"][0, 0, 0])
        p, n = int(item["ph_pos"][0, 0, 0]), int(item["ph_neg"][0, 0, 0])
        g = sk_groups[a]
        assert sk_groups[b] == g and ph_groups[p] == g  # sk+, sk-, ph+ all from c0
        assert a != b  # sk- is another sketch of c0
        assert ph_groups[n] != g  # ph- from another class (c2)
    assert torch.equal(ds[7]["ph_neg"], ds[7]["ph_neg"])  # deterministic in i
    ds.set_epoch(1)
    assert any(ds.indices(i) != ZSEBatchDataset(sk, sk_groups, ph, ph_groups, 200, 3).indices(i) for i in range(20))


def test_batch_construction_needs_three_groups():
    x = torch.zeros(4, 3, 2, 2)
    with pytest.raises(DataError, match=">= 3 groups"):
        ZSEBatchDataset(x, ["a", "a", "b", "b"], x, ["a", "a", "b", "b"], n_items=4)
