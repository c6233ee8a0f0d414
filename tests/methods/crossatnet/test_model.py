"""CrossATNet model: query-independent gallery, attention maps, ±1 codes and Hamming ranking."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.methods.crossatnet.model import CrossATNet, CrossATNetConfig
from xmodal_lib.retrieval.codes import hamming_distance, hamming_scores_matmul, pack_bits


@pytest.fixture(scope="module")
def net() -> CrossATNet:
    torch.manual_seed(0)
    cfg = CrossATNetConfig(backbone="test_resnet", img_size=32, output_stride=8, embed_dim=24, attn_dim=8,
                           hash_bits=(16, 64))
    return CrossATNet(cfg).eval()


def test_gallery_embedding_does_not_depend_on_the_query(net):
    g = torch.Generator().manual_seed(1)
    photos = torch.randn(6, 3, 32, 32, generator=g)
    sk_a, sk_b = torch.randn(6, 3, 32, 32, generator=g), torch.randn(6, 3, 32, 32, generator=g)
    with torch.no_grad():
        gallery = net.encode_photo(photos)
        # the training forward with two different sketch batches gives the same gallery embedding
        out_a, out_b = net(sk_a, photos), net(sk_b, photos)
        assert torch.allclose(out_a["z_p"], gallery, atol=1e-6) and torch.allclose(out_b["z_p"], gallery, atol=1e-6)
        # ...while the sketch-guided embedding does depend on the sketch (the guidance is real)
        assert not torch.allclose(out_a["z_px"], out_b["z_px"], atol=1e-4)
        assert not torch.allclose(out_a["att_guided"], out_b["att_guided"], atol=1e-6)
        # one photo alone gets the same embedding as inside a batch (no cross-item leakage in eval)
        assert torch.allclose(net.encode_photo(photos[2:3])[0], gallery[2], atol=1e-5)
    assert torch.allclose(gallery.norm(dim=1), torch.ones(6), atol=1e-5)


def test_attention_maps_are_returned_and_are_distributions(net):
    x, s = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        z, att = net.encode_photo(x), net.photo_attention(x)
        zg, att_g = net.encode_photo_guided(x, s), net.guided_attention(x, s)
    assert z.shape == zg.shape == (3, 24)
    assert att.shape == att_g.shape == (3, 4, 4)  # 32 px at stride 8
    assert torch.allclose(att.sum((1, 2)), torch.ones(3), atol=1e-5)
    assert torch.allclose(att_g.sum((1, 2)), torch.ones(3), atol=1e-5)
    out = net(s, x)  # the training forward pools with the same maps
    assert torch.allclose(out["att_self"].view(3, 4, 4), att, atol=1e-6)
    assert torch.allclose(out["att_guided"].view(3, 4, 4), att_g, atol=1e-6)
    assert torch.allclose(out["z_px"], zg, atol=1e-6) and torch.allclose(out["z_p"], z, atol=1e-6)
    sim = net.similarity(net.encode_sketch(s), z)
    assert sim.shape == (3, 3) and torch.allclose(sim, net.encode_sketch(s) @ z.T, atol=1e-6)


def test_codes_are_pm1_and_hamming_ranking_equals_matmul_identity(net):
    with torch.no_grad():
        q = net.encode_sketch(torch.randn(5, 3, 32, 32))
        g = net.encode_photo(torch.randn(9, 3, 32, 32))
    for b in (16, 64):
        qc, gc = net.codes(q, b), net.codes(g, b)
        assert qc.shape == (5, b) and set(qc.unique().tolist()) <= {-1.0, 1.0}
        assert set(gc.unique().tolist()) <= {-1.0, 1.0}
        d_xor = hamming_distance(pack_bits(qc), pack_bits(gc))
        d_mm = (b - qc @ gc.T) / 2  # the identity, written out
        assert torch.equal(d_xor.float(), d_mm)
        assert torch.equal(hamming_scores_matmul(qc, gc), d_xor)
        assert torch.equal(torch.argsort(d_xor, dim=1, stable=True), torch.argsort(-(qc @ gc.T), dim=1, stable=True))
    with pytest.raises(ValueError, match="no hash head"):
        net.codes(q, 32)


def test_no_cross_attention_variant_and_vit_backbone():
    cfg = CrossATNetConfig(backbone="test_vit", img_size=32, output_stride=0, embed_dim=16, attn_dim=8,
                           hash_bits=(), cross_attention=False)
    m = CrossATNet(cfg).eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
        att = m.photo_attention(torch.randn(2, 3, 32, 32))
    assert "z_px" not in out and "att_guided" not in out and not any(k.startswith("h_") for k in out)
    assert att.shape[0] == 2 and att.shape[1] * att.shape[2] == out["att_self"].shape[1]
    with pytest.raises(ValueError, match="cross_attention=False"):
        m.guided_attention(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="unknown timm model"):
        CrossATNet(CrossATNetConfig(backbone="not_a_model_xyz"))


def test_channels_last_backbones_give_the_same_outputs_and_gradients():
    from xmodal_lib.methods.crossatnet.model import to_channels_last

    cfg = dict(backbone="test_resnet", img_size=32, output_stride=8, embed_dim=24, attn_dim=8, hash_bits=(16,))
    torch.manual_seed(0)
    ref = CrossATNet(CrossATNetConfig(**cfg)).train()
    torch.manual_seed(0)
    nhwc = CrossATNet(CrossATNetConfig(**cfg)).train()
    assert to_channels_last(nhwc) > 0
    conv_w = [m.weight for m in nhwc.photo_net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv_w and all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_w)
    assert to_channels_last(nhwc) == 0  # already converted
    g = torch.Generator().manual_seed(3)
    sk, ph = torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 3, 32, 32, generator=g)
    outs = []
    for m in (ref, nhwc):
        out = m(sk, ph)
        sum(v.float().sum() for v in out.values()).backward()
        outs.append(out)
    for k in outs[0]:
        torch.testing.assert_close(outs[0][k], outs[1][k], atol=1e-5, rtol=1e-4)
    for (n, p), (_, q) in zip(ref.named_parameters(), nhwc.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=lambda m, n=n: f"{n}: {m}")
    # a ViT backbone is not a CNN: nothing converted
    vit = CrossATNet(CrossATNetConfig(backbone="test_vit", img_size=32, output_stride=0, embed_dim=8,
                                      attn_dim=4, hash_bits=()))
    assert to_channels_last(vit) == 0
