"""XModalViT models: backbones (strict local weights), teacher shapes/attention, students."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.layers.attention import attention_impl
from xmodal_lib.layers.backbones import create_vit, tokens
from xmodal_lib.methods.xmodalvit.model import (
    CrossAttention,
    FusedEmbeddings,
    build_students,
    build_teacher,
    vit_overrides,
)

KW = vit_overrides(patch_size=8, depth=1, embed_dim=24, num_heads=3)


def _vit(**kw):
    return create_vit("vit_tiny_patch16_224", img_size=32, **{**KW, **kw})


def test_tokens_shape_full_sequence():
    vit = _vit()
    t = tokens(vit, torch.rand(2, 3, 32, 32))
    assert t.shape == (2, 1 + 16, 24)  # [CLS] + 4x4 patches, normed


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_pretrained_roundtrip_strict(tmp_path, suffix):
    torch.manual_seed(0)
    src = _vit()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    else:
        torch.save(src.state_dict(), path)
    torch.manual_seed(1)
    dst = _vit(pretrained=str(path))
    x = torch.rand(2, 3, 32, 32)
    src.eval(), dst.eval()
    assert torch.allclose(tokens(src, x), tokens(dst, x))


def test_local_pretrained_reports_missing_and_unexpected(tmp_path):
    from safetensors.torch import save_file
    sd = {k: v.contiguous() for k, v in _vit().state_dict().items()}
    sd.pop("cls_token")
    sd["bogus.weight"] = torch.zeros(3)
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match=r"missing keys \['cls_token'\].*unexpected keys \['bogus.weight'\]"):
        _vit(pretrained=str(path))


def test_local_pretrained_head_mismatch_is_dropped_with_warning(tmp_path):
    src = _vit(num_classes=10)
    path = tmp_path / "h.pth"
    torch.save(src.state_dict(), path)
    with pytest.warns(UserWarning, match="classifier head"):
        dst = _vit(num_classes=0, pretrained=str(path))
    assert torch.equal(dst.cls_token, src.cls_token)


def test_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        _vit(pretrained=str(tmp_path / "nope.safetensors"))
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match="expected a .safetensors"):
        _vit(pretrained=str(tmp_path / "w.txt"))


def test_cross_attention_single_query_matches_direct_formula():
    torch.manual_seed(0)
    ca = CrossAttention(12, heads=3)
    seq = torch.randn(2, 5, 12)
    out, attn = ca(seq)
    x = ca.norm(seq)
    q = ca.to_q(x[:, :1]).view(2, 1, 3, 4)
    k = ca.to_k(x).view(2, 5, 3, 4)
    v = ca.to_v(x).view(2, 5, 3, 4)
    w = torch.softmax(torch.einsum("bqhd,bthd->bht", q, k) * 4 ** -0.5, dim=-1)  # (B, h, T)
    ref = ca.to_out(torch.einsum("bht,bthd->bhd", w, v).reshape(2, 1, 12))
    assert out.shape == (2, 1, 12) and attn.shape == (2, 3, 5)
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(attn, w, atol=1e-6)


def test_teacher_shapes_attention_and_patch_tokens_untouched():
    torch.manual_seed(0)
    t = build_teacher("vit_tiny_patch16_224", img_size=32, xma_depth=2, **KW).eval()
    p, s = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    z_p, z_s = t(p, s)
    maps = t.xma_attention(p, s)
    assert z_p.shape == (3, 24) and z_s.shape == (3, 24)
    assert len(maps) == 2
    assert maps[0]["sketch_to_photo"].shape == (3, 3, 17)  # [q_s ; 16 photo patches]
    assert maps[0]["photo_to_sketch"].shape == (3, 3, 18)  # [q_p ; c_s ; 16 sketch patches]
    assert torch.allclose(maps[1]["photo_to_sketch"].sum(-1), torch.ones(3, 3))
    assert isinstance(t(p, s), FusedEmbeddings) and t(p, s)._fields == ("photo", "sketch")
    # the photo CLS depends on the sketch, and the sketch CLS on the photo (fusion)
    z_p3, z_s3 = t(p, torch.rand(3, 3, 32, 32))
    assert not torch.allclose(z_p, z_p3)
    assert not torch.allclose(z_s, t(torch.rand(3, 3, 32, 32), s)[1])
    assert t.grid == (4, 4)


def test_students_shapes_and_normalisation():
    st = build_students("vit_tiny_patch16_224", out_dim=40, img_size=32, **KW)
    x = torch.rand(2, 3, 32, 32)
    assert st.encode_photo(x).shape == (2, 40) and st.encode_sketch(x).shape == (2, 40)
    st.normalize = True
    assert torch.allclose(st.encode_photo(x).norm(dim=1), torch.ones(2), atol=1e-5)
    assert st.photo is not st.sketch and st.photo.backbone is not st.sketch.backbone


def test_cross_attention_fused_and_explicit_paths_agree_with_gradients():
    torch.manual_seed(1)
    ca = CrossAttention(24, heads=3)
    seq = torch.randn(4, 11, 24, requires_grad=True)
    out_f, w_f = ca(seq, need_weights=False)  # fused SDPA
    out_e, w_e = ca(seq, need_weights=True)  # explicit softmax
    assert w_f is None and w_e.shape == (4, 3, 11)
    torch.testing.assert_close(out_f, out_e, rtol=1e-5, atol=1e-6)
    g_f = torch.autograd.grad(out_f.square().sum(), seq)[0]
    g_e = torch.autograd.grad(out_e.square().sum(), seq)[0]
    torch.testing.assert_close(g_f, g_e, rtol=1e-4, atol=1e-6)


def test_teacher_outputs_equal_with_and_without_attention_maps():
    torch.manual_seed(0)
    t = build_teacher("vit_tiny_patch16_224", img_size=32, **vit_overrides(8, 1, 24, 3)).eval()
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    zp, zs = t(x, y)  # fused path
    with attention_impl(t, "explicit"):
        zp2, zs2 = t(x, y)  # explicit path
    maps = t.xma_attention(x, y)
    assert len(maps) == len(t.layers) and maps[0]["sketch_to_photo"].shape[-1] == 1 + 16
    torch.testing.assert_close(zp, zp2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(zs, zs2, rtol=1e-5, atol=1e-6)
