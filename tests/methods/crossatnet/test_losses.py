"""CrossATNet losses against direct formulas written out loop by loop."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodal_lib.methods.crossatnet.losses import (
    attention_agreement_loss,
    bit_balance_loss,
    cross_modal_triplet,
    mine_negatives,
    quantization_loss,
    semantic_alignment_loss,
)


def _batch(seed=0, b=10, d=6):
    g = torch.Generator().manual_seed(seed)
    s = F.normalize(torch.randn(b, d, generator=g), dim=1)
    p = F.normalize(torch.randn(b, d, generator=g), dim=1)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3])[:b]
    return s, p, y


def _direct(anc, pos, y, margin, mining):
    """Loop version: sketch-anchored hinge with the negative chosen by the named rule."""
    losses = []
    for i in range(len(y)):
        d_ap = torch.sqrt(((anc[i] - pos[i] + 1e-6) ** 2).sum())
        negs = [j for j in range(len(y)) if y[j] != y[i]]
        if not negs:
            continue
        d_an = {j: torch.dist(anc[i], pos[j]).item() for j in negs}
        if mining == "hard":
            j = min(negs, key=lambda j: d_an[j])
        else:  # semi-hard: closest negative farther than the positive, else the hardest
            semi = [j for j in negs if d_an[j] > torch.dist(anc[i], pos[i]).item()]
            j = min(semi or negs, key=lambda j: d_an[j])
        d_n = torch.sqrt(((anc[i] - pos[j] + 1e-6) ** 2).sum())
        losses.append(torch.clamp(d_ap - d_n + margin, min=0))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("mining", ["hard", "semi-hard"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_triplet_matches_direct_formula(mining, symmetric):
    s, p, y = _batch()
    got = cross_modal_triplet(s, p, y, margin=0.3, mining=mining, symmetric=symmetric)
    want = _direct(s, p, y, 0.3, mining)
    if symmetric:
        want = (want + _direct(p, s, y, 0.3, mining)) / 2
    assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)


def test_random_mining_picks_other_class_and_matches_formula():
    s, p, y = _batch(seed=3)
    for seed in range(5):
        idx, valid = mine_negatives(s, p, p, y, "random", torch.Generator().manual_seed(seed))
        assert valid.all() and (y[idx] != y).all()
    idx, _ = mine_negatives(s, p, p, y, "random", torch.Generator().manual_seed(7))
    manual = torch.stack([torch.clamp(torch.norm(s[i] - p[i] + 1e-6) - torch.norm(s[i] - p[idx[i]] + 1e-6) + 0.5, min=0)
                          for i in range(len(y))]).mean()
    got = cross_modal_triplet(s, p, y, 0.5, "random", symmetric=False, generator=torch.Generator().manual_seed(7))
    assert got.item() == pytest.approx(manual.item(), rel=1e-5)


def test_triplet_one_class_batch_is_zero_with_grad_and_bad_mining_raises():
    s, p, _ = _batch()
    s.requires_grad_(True)
    out = cross_modal_triplet(s, p, torch.zeros(10, dtype=torch.long), 0.2, "hard")
    assert out.item() == 0.0
    out.backward()
    with pytest.raises(ValueError, match="mining"):
        cross_modal_triplet(s, p, torch.zeros(10, dtype=torch.long), 0.2, "hardest")


def test_hash_terms_and_semantic_alignment_formulas():
    h = torch.tensor([[2.0, -0.5, 0.0], [-1.0, 0.3, 4.0]])
    q = sum((torch.tanh(h[i, k]) - torch.sign(h[i, k])) ** 2 for i in range(2) for k in range(3)) / 6
    assert quantization_loss(h).item() == pytest.approx(q.item(), rel=1e-6)
    bal = sum(((torch.tanh(h[0, k]) + torch.tanh(h[1, k])) / 2) ** 2 for k in range(3)) / 3
    assert bit_balance_loss(h).item() == pytest.approx(bal.item(), rel=1e-6)
    # perfectly saturated, balanced codes: both terms ~ 0
    big = torch.tensor([[30.0, -30.0], [-30.0, 30.0]])
    assert quantization_loss(big).item() < 1e-10 and bit_balance_loss(big).item() < 1e-10

    emb, nodes, y = torch.randn(4, 5), torch.randn(3, 5), torch.tensor([0, 2, 1, 2])
    logits = torch.stack([torch.stack([F.cosine_similarity(emb[i], nodes[c], dim=0) / 0.1 for c in range(3)])
                          for i in range(4)])
    want = torch.stack([-torch.log_softmax(logits[i], 0)[y[i]] for i in range(4)]).mean()
    assert semantic_alignment_loss(emb, y, nodes, tau=0.1).item() == pytest.approx(want.item(), rel=1e-5)


def test_attention_agreement_is_kl_and_stops_teacher_gradient():
    g = torch.softmax(torch.randn(3, 8), 1).requires_grad_(True)
    o = torch.softmax(torch.randn(3, 8), 1).requires_grad_(True)
    kl = attention_agreement_loss(g, o)
    want = (g * (g.log() - o.log())).sum(1).mean()
    assert kl.item() == pytest.approx(want.item(), rel=1e-5)
    kl.backward()
    assert g.grad is None and o.grad is not None
    assert attention_agreement_loss(o.detach(), o.detach()).item() == pytest.approx(0.0, abs=1e-7)
