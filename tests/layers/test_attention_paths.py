"""Fused (SDPA) and explicit attention give the same outputs and gradients in every method's model.

Also: ``set_attention_impl`` really switches (the explicit regime never calls SDPA, the fused one
does), it reports how many modules it switched, and the figure paths still return weights.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodal_lib.layers.attention import attention_impl, attention_impl_counts, set_attention_impl
from xmodal_lib.methods.crossatnet.model import CrossATNet, CrossATNetConfig
from xmodal_lib.methods.xmodalvit.model import build_students, build_teacher, vit_overrides
from xmodal_lib.methods.zse.ca import CrossAttention as ZSECrossAttention
from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig

TINY_VIT = vit_overrides(patch_size=8, depth=2, embed_dim=48, num_heads=3)


def _teacher():
    torch.manual_seed(0)
    return build_teacher("vit_tiny_patch16_224", img_size=32, **TINY_VIT)


def _students():
    torch.manual_seed(0)
    return build_students("vit_tiny_patch16_224", out_dim=48, img_size=32, **TINY_VIT)


def _zse():
    torch.manual_seed(0)
    return ZSESBIR(ZSEConfig(dropout=0.0, keep_rate=0.9))


def _crossatnet_vit():
    torch.manual_seed(0)
    return CrossATNet(CrossATNetConfig(backbone="test_vit", img_size=64, output_stride=0,
                                       embed_dim=16, attn_dim=8, hash_bits=(8,)))


def _images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _loss_teacher(m):
    z_p, z_s = m(_images(3, 32, 1), _images(3, 32, 2))
    return z_p, (z_p.square().sum() + (z_s * z_s.roll(1, 0)).sum())


def _loss_students(m):
    e_p, e_s = m(_images(3, 32, 1), _images(3, 32, 2))
    return e_p, (e_p @ e_s.t()).sum()


def _loss_zse(m):
    out = m(_images(3, 48, 1), _images(3, 48, 2))
    return out.ret_sketch, out.ret_sketch.square().sum() + out.ret_photo.sum() + out.score.sum()


def _loss_crossatnet(m):
    out = m(_images(3, 64, 1), _images(3, 64, 2))
    return out["z_p"], sum(v.sum() for v in out.values())


CASES = {  # name: (model factory, loss fn, switchable attention modules)
    "xmodalvit_teacher": (_teacher, _loss_teacher, 2 * 2 + 3 * 2),  # 2 ViTs x 2 blocks + 3 XMA x 2 CA
    "xmodalvit_students": (_students, _loss_students, 2 * 2),
    "zse_sbir": (_zse, _loss_zse, 4 + 2),  # SA depth 4 + 2 CA layers
    "crossatnet_vit": (_crossatnet_vit, _loss_crossatnet, 2 * 6),  # 2 timm test_vit (depth 6)
}


def _run(model, loss_fn, impl):
    model.zero_grad(set_to_none=True)
    set_attention_impl(model, impl)
    out, loss = loss_fn(model)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("name", sorted(CASES))
def test_fused_and_explicit_agree_forward_and_backward(name, monkeypatch):
    factory, loss_fn, n_attn = CASES[name]
    model = factory().train()
    assert set_attention_impl(model, "fused") == n_attn
    calls = []
    real = F.scaled_dot_product_attention

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    out_f, g_f = _run(model, loss_fn, "fused")
    assert calls, "the fused regime never called scaled_dot_product_attention"

    def forbidden(*a, **k):
        raise AssertionError("SDPA called in the explicit regime")

    monkeypatch.setattr(F, "scaled_dot_product_attention", forbidden)
    out_e, g_e = _run(model, loss_fn, "explicit")
    assert attention_impl_counts(model) == {"fused": 0, "explicit": n_attn}
    torch.testing.assert_close(out_f, out_e, atol=1e-5, rtol=1e-4)
    assert g_f.keys() == g_e.keys() and len(g_f) > 0
    for k in g_f:
        # fp32 reductions in another order: ~1e-5 apart on gradients of ~1e-4 (a wrong mask or scale is >= 1e-2 off)
        torch.testing.assert_close(g_f[k], g_e[k], atol=5e-5, rtol=1e-3, msg=lambda m, k=k: f"{k}: {m}")


def test_impl_switch_is_validated_and_restored():
    model = _teacher()
    with pytest.raises(ValueError, match="fused"):
        set_attention_impl(model, "flash")
    set_attention_impl(model, "fused")
    with attention_impl(model, "explicit") as n:
        assert n == 10 and attention_impl_counts(model)["explicit"] == 10
    assert attention_impl_counts(model) == {"fused": 10, "explicit": 0}


def test_cnn_crossatnet_has_no_switchable_attention():
    net = CrossATNet(CrossATNetConfig(backbone="test_resnet", img_size=32, output_stride=8, embed_dim=8,
                                      attn_dim=4, hash_bits=(8,)))
    assert set_attention_impl(net, "explicit") == 0  # its poolings are always explicit


def test_figure_paths_return_weights_under_the_fused_regime():
    t = _teacher().eval()
    set_attention_impl(t, "fused")
    maps = t.xma_attention(_images(2, 32, 1), _images(2, 32, 2))
    assert len(maps) == 3 and maps[0]["sketch_to_photo"].shape == (2, 3, 1 + 16)
    torch.testing.assert_close(maps[0]["photo_to_sketch"].sum(-1), torch.ones(2, 3))

    z = _zse().eval()
    set_attention_impl(z, "fused")
    sa = z.sa_attention(_images(2, 48, 1), "sketch")
    assert len(sa.ret_attn) == 4 and sa.ret_attn[0].shape == (2, 4, 36)

    net = _crossatnet_vit().eval()
    att = net.photo_attention(_images(2, 64, 1))
    assert att.shape == (2, 4, 4)
    torch.testing.assert_close(att.flatten(1).sum(-1), torch.ones(2))


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_zse_ca_weights_and_sdpa_path(variant):
    torch.manual_seed(0)
    ca = ZSECrossAttention(dim=16, heads=4, ffn=24, dropout=0.0, variant=variant).eval()
    xs, xp = torch.randn(3, 7, 16), torch.randn(3, 7, 16)
    s_f, p_f = ca(xs, xp)  # fused
    s_w, p_w, w_s, w_p = ca.attention(xs, xp)  # explicit, with weights
    torch.testing.assert_close(s_f, s_w, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p_f, p_w, atol=1e-5, rtol=1e-5)
    assert w_s.shape == (3, 4, 7, 7) and w_p.shape == (3, 4, 7, 7)
    torch.testing.assert_close(w_s.sum(-1), torch.ones(3, 4, 7))
    # the cached-projection path (exhaustive evaluation) uses the same kernel choice
    for impl in ("fused", "explicit"):
        set_attention_impl(ca, impl)
        s2, p2 = ca.pairs_from_projections(ca.project(xs, "sketch"), ca.project(xp, "photo"), xs, xp)
        torch.testing.assert_close(s2, s_f, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(p2, p_f, atol=1e-5, rtol=1e-5)
