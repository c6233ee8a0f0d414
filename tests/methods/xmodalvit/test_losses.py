"""XAQC and RKD (XMRD) against direct formulas; queue wrap-around."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmodal_lib.methods.xmodalvit.rkd import angle_cosines, pairwise_distances, rkd_angle, rkd_distance
from xmodal_lib.methods.xmodalvit.xaqc import XAQC, enqueue_wraparound, xaqc_loss


def _sl1(x):
    x = abs(x)
    return 0.5 * x * x if x < 1 else x - 0.5


def test_xaqc_matches_direct_formula():
    torch.manual_seed(0)
    q, k, queue = torch.randn(4, 6), torch.randn(4, 6), F.normalize(torch.randn(6, 5), dim=0)
    tau = 0.07
    ref = 0.0
    for b in range(4):
        kh = k[b] / k[b].norm()
        pos = math.exp(float(q[b] @ kh) / tau)
        neg = sum(math.exp(float(q[b] @ queue[:, j]) / tau) for j in range(5))
        ref += -math.log(pos / (pos + neg))
    assert xaqc_loss(q, k, queue, tau).item() == pytest.approx(ref / 4, rel=1e-4)
    qn = F.normalize(q, dim=1)
    assert xaqc_loss(q, k, queue, tau, normalize_query=True).item() == pytest.approx(
        xaqc_loss(qn, k, queue, tau).item(), rel=1e-5)


def test_xaqc_gradient_only_through_query():
    q, k = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    m = XAQC(4, 6)
    m(q, k).backward()
    assert q.grad is not None and k.grad is None


def test_queue_wraparound_partial_batches_never_overflow():
    m = XAQC(3, 5)
    keys = [torch.randn(b, 3) for b in (2, 2, 3, 1, 7)]
    expected = []
    for kk in keys:
        m(torch.randn(kk.shape[0], 3), kk)
        expected.extend(F.normalize(kk, dim=1))
    # after 15 keys with K=5 the queue holds keys 10..14 at columns (10..14) % 5
    assert int(m.ptr) == 15 % 5
    for i in range(10, 15):
        assert torch.allclose(m.queue[:, i % 5], expected[i], atol=1e-6)
    assert m.queue.shape == (3, 5)


def test_enqueue_batch_larger_than_queue_keeps_last_keys():
    q, ptr = torch.zeros(2, 3), torch.tensor(1)
    keys = torch.tensor([[1.0, 0], [0, 1.0], [1.0, 1.0], [2.0, 0], [0, 3.0]])
    enqueue_wraparound(q, ptr, keys)
    for i in range(2, 5):  # as if enqueued one by one from column 1: key i at column (1 + i) % 3
        assert torch.allclose(q[:, (1 + i) % 3], F.normalize(keys[i], dim=0))
    assert int(ptr) == (1 + 5) % 3


def test_queue_is_in_state_dict():
    m = XAQC(4, 8, seed=3)
    sd = m.state_dict()
    assert set(sd) == {"queue", "ptr"}
    m2 = XAQC(4, 8, seed=4)
    m2.load_state_dict(sd)
    assert torch.equal(m2.queue, m.queue)


def _naive_dist(e):
    n = e.shape[0]
    d = [[float((e[i] - e[j]).norm()) if i != j else 0.0 for j in range(n)] for i in range(n)]
    nz = [x for row in d for x in row if x > 0]
    mu = sum(nz) / len(nz)
    return [[x / mu for x in row] for row in d]


def test_rkd_distance_matches_naive():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5), torch.randn(6, 3) * 3
    ds, dt = _naive_dist(s), _naive_dist(t)
    ref = sum(_sl1(ds[i][j] - dt[i][j]) for i in range(6) for j in range(6)) / 36
    assert rkd_distance(s, t).item() == pytest.approx(ref, rel=1e-4)
    assert torch.allclose(pairwise_distances(s).diagonal(), torch.zeros(6))


def _naive_angles(e):
    n = e.shape[0]
    out = torch.zeros(n, n, n)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                a, b = e[j] - e[i], e[k] - e[i]
                if a.norm() > 0 and b.norm() > 0:
                    out[i, j, k] = (a / a.norm()) @ (b / b.norm())
    return out


@pytest.mark.parametrize("chunk", [None, 1, 2, 5])
def test_rkd_angle_matches_naive_every_vertex(chunk):
    torch.manual_seed(1)
    s, t = torch.randn(5, 4), torch.randn(5, 6)
    a_s, a_t = _naive_angles(s), _naive_angles(t)
    assert torch.allclose(angle_cosines(s), a_s, atol=1e-5)
    ref = sum(_sl1(float(x)) for x in (a_s - a_t).flatten()) / 125
    assert rkd_angle(s, t, chunk_size=chunk).item() == pytest.approx(ref, rel=1e-4)


def test_rkd_angle_chunked_gradient_equals_unchunked():
    torch.manual_seed(2)
    t = torch.randn(7, 3)
    s1 = torch.randn(7, 4, requires_grad=True)
    s2 = s1.detach().clone().requires_grad_(True)
    rkd_angle(s1, t, chunk_size=7).backward()
    rkd_angle(s2, t, chunk_size=2).backward()  # checkpointed chunks
    assert torch.allclose(s1.grad, s2.grad, atol=1e-6)


def test_pairwise_distances_exact_for_duplicate_rows():
    from xmodal_lib.methods.xmodalvit.rkd import pairwise_distances

    torch.manual_seed(0)
    e = torch.randn(5, 64) * 30.0  # large norms: |a|^2+|b|^2-2ab would cancel badly here
    d = pairwise_distances(torch.cat([e, e]))  # row i and row i+5 are identical
    assert d[torch.arange(5), torch.arange(5) + 5].max() < 1e-5
    torch.testing.assert_close(d[:5, :5], torch.cdist(e, e), rtol=1e-5, atol=1e-4)


def test_batch_all_triplet_matches_the_loop_and_losses_are_pure():
    import ast
    from pathlib import Path

    from xmodal_lib.losses.triplet import batch_all_triplet

    g = torch.Generator().manual_seed(0)
    s, p = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ref = [max(0.0, float((s[i] - p[i]).norm() - (s[i] - p[j]).norm() + 0.3)) for i in range(5) for j in range(5) if i != j]
    assert batch_all_triplet(s, p, 0.3).item() == pytest.approx(sum(ref) / len(ref), rel=1e-5)
    lib = Path(__file__).resolve().parents[3] / "xmodal_lib"
    loss_files = [*lib.glob("losses/*.py"), *lib.glob("methods/*/losses.py"),
                  lib / "methods" / "xmodalvit" / "xaqc.py", lib / "methods" / "xmodalvit" / "rkd.py"]
    assert len(loss_files) >= 6 and all(f.exists() for f in loss_files), loss_files
    for f in loss_files:
        mods = [n.module or "" for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.ImportFrom)]
        bad = [m for m in mods if any(x in m for x in ("distributed", "engine", "train", "pipeline", "loader"))]
        assert not bad, f"{f.name} imports training/distributed code: {bad}"
