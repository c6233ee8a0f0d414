"""ZSE-SBIR model: tokenizer, token selection, attention paths, CA variants, relation network."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from xmodal_lib.methods.zse.ca import CrossAttention
from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig
from xmodal_lib.methods.zse.rn import RelationNetwork, kernel_matrix, scatter_to_grid
from xmodal_lib.methods.zse.sa import ConvStem, SelfAttentionModule, kept_count, select_tokens


def _thin_224(**kw) -> ZSEConfig:
    """224/16 geometry (196 patches) with a very thin width so it runs in a blink."""
    return ZSEConfig(img_size=224, patch_size=16, depth=12, prune_layers=(4, 7, 10), dim=16, heads=2, ca_heads=2,
                     ca_ffn=16, rn_dim=8, **kw)


def test_conv_stem_shapes_paper_and_smoke():
    assert ConvStem(32, patch_size=16)(torch.randn(2, 3, 224, 224)).shape == (2, 196, 32)
    stem = ConvStem(768, patch_size=16)  # the official stem: 3→64→128→256→768, no bias, 2.15M params
    convs = [m for m in stem.net if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 768]
    assert all(c.bias is None for c in convs) and convs[0].kernel_size == (7, 7)
    assert sum(p.numel() for p in stem.parameters()) == 2_147_520
    assert stem(torch.randn(1, 3, 32, 32)).shape == (1, 4, 768)
    assert ConvStem(48, patch_size=8)(torch.randn(1, 3, 48, 48)).shape == (1, 36, 48)
    with pytest.raises(ValueError, match="power of two"):
        ConvStem(16, patch_size=12)


def test_token_selection_196_177_160_144():
    torch.manual_seed(0)
    model = ZSESBIR(_thin_224(keep_rate=0.9)).eval()
    assert model.sa.kept_per_layer() == [196] * 3 + [177] * 3 + [160] * 3 + [144] * 3
    out = model.sa_attention(torch.randn(2, 3, 224, 224), "sketch")
    assert out.tokens.shape == (2, 145, 16)
    assert out.kept.shape == (2, 144)
    for row in out.kept:  # strictly increasing grid positions inside the 14x14 grid
        assert bool((row[1:] > row[:-1]).all()) and 0 <= int(row.min()) and int(row.max()) < 196
    # maps entering layers 1..12 (before selection at 4, 7, 10)
    assert [a.shape[-1] for a in out.ret_attn] == [196] * 4 + [177] * 3 + [160] * 3 + [144] * 2
    assert all(a.shape[:2] == (2, 2) for a in out.ret_attn)
    assert bool((out.ret_attn[0].sum(-1) < 1).all())  # [Ret]->patches: the [Ret]->[Ret] weight is left out
    # end to end with the relation network over the kept tokens
    score = model(torch.randn(2, 3, 224, 224), torch.randn(2, 3, 224, 224)).score
    assert score.shape == (2,) and bool(((score > 0) & (score < 1)).all())


def test_kept_count_rounding():
    assert [kept_count(n, 0.9) for n in (196, 177, 160)] == [177, 160, 144]
    with pytest.raises(ValueError):
        kept_count(10, 0.0)


def test_select_tokens_keeps_top_attention_in_grid_order():
    x = torch.arange(1 + 5, dtype=torch.float32).view(1, 6, 1).repeat(1, 1, 2)  # token t has value t
    attn = torch.tensor([[[0.1, 0.5, 0.05, 0.3, 0.05]], [[0.1, 0.3, 0.05, 0.5, 0.05]]]).permute(1, 0, 2)
    pos = torch.tensor([[10, 11, 12, 13, 14]])
    kept_x, kept_pos = select_tokens(x, attn, pos, rate=0.6)  # ceil(3) tokens: seq 1, 3, 0 -> sorted 0, 1, 3
    assert kept_pos.tolist() == [[10, 11, 13]]
    assert kept_x[0, :, 0].tolist() == [0.0, 1.0, 2.0, 4.0]  # [Ret] first, then patches 1, 2, 4


@pytest.mark.parametrize("keep_rate", [1.0, 0.9])
def test_fused_and_manual_attention_paths_agree(keep_rate):
    torch.manual_seed(1)
    model = ZSESBIR(ZSEConfig(keep_rate=keep_rate)).eval()
    x = torch.randn(3, 3, 48, 48)
    fused = model.sa_features(x, "sketch")
    manual = model.sa_attention(x, "sketch")
    assert not fused.ret_attn and len(manual.ret_attn) == 4
    torch.testing.assert_close(fused.tokens, manual.tokens, atol=1e-5, rtol=1e-5)
    assert torch.equal(fused.kept, manual.kept)


def test_stem_on_sketches_only_by_default():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48, 48)
    for stem, photo_changes in (("sketch", False), ("both", True)):
        sa = SelfAttentionModule(48, 8, 32, 2, 2, stem=stem, dropout=0.0).eval()
        before = sa(x, "photo").tokens.clone(), sa(x, "sketch").tokens.clone()
        with torch.no_grad():
            for p in sa.stem.parameters():
                p.add_(0.5)
        after = sa(x, "photo").tokens, sa(x, "sketch").tokens
        assert (not torch.allclose(before[0], after[0])) == photo_changes
        assert not torch.allclose(before[1], after[1])


def _ref_layer(layer, q_in, k_in, v_in):
    """Direct formula of one post-norm CA layer (dropout off)."""
    H = layer.heads
    B, N, D = q_in.shape
    q, k, v = layer.q(q_in), layer.k(k_in), layer.v(v_in)
    split = lambda t: t.view(B, N, H, D // H).transpose(1, 2)
    w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(D // H), dim=-1)
    a = layer.o((w @ split(v)).transpose(1, 2).reshape(B, N, D))

    def ln(t, norm):
        return norm.a * (t - t.mean(-1, keepdim=True)) / (t.std(-1, unbiased=True, keepdim=True) + 1e-6) + norm.b

    h = ln(v_in + a, layer.norm1)
    return ln(h + layer.ffn(h), layer.norm2)


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_cross_attention_variants_match_direct_formula(variant):
    torch.manual_seed(0)
    ca = CrossAttention(dim=16, heads=4, ffn=24, dropout=0.0, variant=variant).eval()
    xs, xp = torch.randn(3, 7, 16), torch.randn(3, 7, 16)
    s, p = ca(xs, xp)
    ls, lp = ca.sketch_layer, ca.photo_layer
    if variant == "paper":  # query from the other modality
        exp_s, exp_p = _ref_layer(ls, xp, xs, xs), _ref_layer(lp, xs, xp, xp)
    else:  # key from the other modality
        exp_s, exp_p = _ref_layer(ls, xs, xp, xs), _ref_layer(lp, xp, xs, xp)
    torch.testing.assert_close(s, exp_s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p, exp_p, atol=1e-5, rtol=1e-5)
    # cached projections give the same outputs
    s2, p2 = ca.pairs_from_projections(ca.project(xs, "sketch"), ca.project(xp, "photo"), xs, xp)
    torch.testing.assert_close(s2, s, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(p2, p, atol=1e-6, rtol=1e-6)
    assert len(list(ca.children())) == 2  # no unused third copy


def test_cross_attention_variants_differ():
    torch.manual_seed(0)
    a = CrossAttention(16, 4, 24, 0.0, "paper").eval()
    b = CrossAttention(16, 4, 24, 0.0, "code").eval()
    b.load_state_dict(a.state_dict())
    xs, xp = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    assert not torch.allclose(a(xs, xp)[0], b(xs, xp)[0])


def test_relation_network_paper_sizes_and_range():
    rn = RelationNetwork(dim=32, grid=14, rn_dim=16).eval()
    dims = [m.in_features for m in rn.mlp if isinstance(m, torch.nn.Linear)]
    assert dims == [2401, 343, 49] and rn.anchors == 49
    pos = torch.arange(196).expand(3, -1)
    s = rn(torch.randn(3, 196, 32), pos, torch.randn(3, 196, 32), pos)
    assert s.shape == (3,) and bool(((s > 0) & (s < 1)).all())
    kept = RelationNetwork(dim=32, grid=14, rn_dim=16, tokens="kept", n_kept=144)
    assert [m.in_features for m in kept.mlp if isinstance(m, torch.nn.Linear)] == [20736, 1728, 144]


def test_relation_network_permute_is_not_raw_view():
    torch.manual_seed(0)
    rn = RelationNetwork(dim=8, grid=4, rn_dim=4).eval()
    raw = RelationNetwork(dim=8, grid=4, rn_dim=4, raw_view=True).eval()
    raw.load_state_dict(rn.state_dict())
    t, pos = torch.randn(2, 16, 8), torch.arange(16).expand(2, -1)
    a = rn.anchor_tokens(t, pos)
    # proper channels-first: anchor 0 = conv over tokens 0, 1, 4, 5 of the 4x4 grid
    exp0 = torch.einsum("ocij,nijc->no", rn.conv.weight, t.view(2, 4, 4, 8)[:, :2, :2]) + rn.conv.bias
    torch.testing.assert_close(a[:, 0], exp0, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, raw.anchor_tokens(t, pos))


def test_scatter_and_kernel_zero_vectors():
    t = torch.ones(1, 2, 3)
    g = scatter_to_grid(t, torch.tensor([[1, 3]]), 4)
    assert g[0, :, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    k = kernel_matrix(torch.zeros(1, 2, 3), torch.randn(1, 2, 3))
    assert torch.equal(k, torch.zeros(1, 2, 2))


def test_pretrained_file_strict_except_stem(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    src = SelfAttentionModule(32, 8, 16, 2, 2, stem="none")
    sd = {k: v.contiguous() for k, v in src.vit.state_dict().items()}
    save_file(sd, str(tmp_path / "vit.safetensors"))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sa = SelfAttentionModule(32, 8, 16, 2, 2, stem="sketch", pretrained=str(tmp_path / "vit.safetensors"))
    assert any("stem" in str(x.message) for x in w)
    assert torch.equal(sa.vit.blocks[1].mlp.fc2.weight, src.vit.blocks[1].mlp.fc2.weight)
    del sd["blocks.1.mlp.fc2.weight"]
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="blocks.1.mlp.fc2.weight"):
        SelfAttentionModule(32, 8, 16, 2, 2, pretrained=str(tmp_path / "bad.safetensors"))


def test_bad_params_raise():
    with pytest.raises(ValueError, match="stem"):
        ZSESBIR(ZSEConfig(stem="photo"))
    with pytest.raises(ValueError, match="variant"):
        ZSESBIR(ZSEConfig(ca_variant="swap"))
    with pytest.raises(ValueError, match="prune_layers"):
        ZSESBIR(ZSEConfig(keep_rate=0.9, prune_layers=(9,)))
    with pytest.raises(ValueError, match="modality"):
        ZSESBIR(ZSEConfig()).sa_features(torch.randn(1, 3, 48, 48), "image")


def test_rn_variants_end_to_end_with_token_selection():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 48, 48)
    full = ZSESBIR(ZSEConfig())
    pruned = ZSESBIR(ZSEConfig(keep_rate=0.9))
    pruned.load_state_dict(full.state_dict())  # "grid" RN: the same weights with or without selection
    kept = ZSESBIR(ZSEConfig(keep_rate=0.9, rn_tokens="kept")).eval()
    assert kept.rn.anchors == kept.sa.kept_per_layer()[-1] == 30
    for m in (pruned.eval(), kept):
        s = m(x, x.flip(0)).score
        assert s.shape == (2,) and bool(((s > 0) & (s < 1)).all())
    # dropped grid cells reach the RN conv as zero vectors
    sa = pruned.sa_features(x, "sketch")
    grid = scatter_to_grid(sa.tokens[:, 1:], sa.kept, 36)
    dropped = torch.ones(2, 36, dtype=torch.bool).scatter(1, sa.kept, False)
    assert int(dropped.sum()) == 2 * (36 - 30) and bool((grid[dropped] == 0).all())
