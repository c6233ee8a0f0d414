"""One fixed return type per model method: encode_sketch / encode_photo -> [B, D], similarity -> [Q, G]
(the score each pipeline ranks by), attention maps from named methods; and one Explanation for all methods."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.methods.crossatnet.model import CrossATNet, CrossATNetConfig
from xmodal_lib.methods.xmodalvit.model import FusedEmbeddings, build_students, build_teacher
from xmodal_lib.methods.zse.ca import CAOutput
from xmodal_lib.methods.zse.model import ZSESBIR, SAOutput, ZSEConfig
from xmodal_lib.retrieval.search import similarity
from xmodal_lib.viz import explain_models as em

SIZE = 32
VIT = dict(img_size=SIZE, patch_size=8, depth=1, embed_dim=24, num_heads=3)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    catn = CrossATNet(CrossATNetConfig(backbone="test_resnet", img_size=SIZE, output_stride=8, embed_dim=16,
                                       attn_dim=8, hash_bits=(8,))).eval()
    zse = ZSESBIR(ZSEConfig(img_size=SIZE, patch_size=8, dim=32, depth=2, heads=2, ca_heads=2, ca_ffn=32,
                            rn_dim=8, prune_layers=(2,))).eval()
    students = build_students("vit_tiny_patch16_224", out_dim=16, **VIT).eval()
    teacher = build_teacher("vit_tiny_patch16_224", xma_depth=2, **VIT).eval()
    return {"crossatnet": catn, "zse": zse, "students": students, "teacher": teacher}


@pytest.mark.parametrize("name, metric", [("crossatnet", "cosine"), ("zse", "cosine"), ("students", "dot")])
@torch.no_grad()
def test_encoders_and_similarity(models, name, metric):
    m = models[name]
    q, g = m.encode_sketch(_images(3, 1)), m.encode_photo(_images(5, 2))
    assert isinstance(q, torch.Tensor) and q.ndim == 2 and q.shape[0] == 3 and g.shape[0] == 5
    s = m.similarity(q, g)
    assert s.shape == (3, 5)
    torch.testing.assert_close(s, similarity(q, g, metric), rtol=1e-5, atol=1e-6)  # the pipelines' score


@torch.no_grad()
def test_named_attention_methods(models):
    catn, zse, teacher = models["crossatnet"], models["zse"], models["teacher"]
    p, s = _images(2, 3), _images(2, 4)
    own, guided = catn.photo_attention(p), catn.guided_attention(p, s)
    assert own.shape == guided.shape == (2, 4, 4)  # 32 px at stride 8
    torch.testing.assert_close(guided.sum((1, 2)), torch.ones(2))
    fused = teacher(p, s)
    assert isinstance(fused, FusedEmbeddings) and fused.photo.shape == fused.sketch.shape == (2, 24)
    maps = teacher.xma_attention(p, s)
    assert len(maps) == 2 and maps[0]["sketch_to_photo"].shape == (2, 3, 1 + 16)
    plain, with_maps = zse.sa_features(s, "sketch"), zse.sa_attention(s, "sketch")
    assert isinstance(plain, SAOutput) and isinstance(with_maps, SAOutput)
    assert plain.ret_attn == [] and len(with_maps.ret_attn) == 2 and with_maps.ret_attn[0].shape == (2, 2, 16)
    torch.testing.assert_close(plain.tokens, with_maps.tokens, rtol=1e-5, atol=1e-5)
    ca = zse.ca(plain.tokens, plain.tokens)
    out = zse.ca.attention(plain.tokens, plain.tokens)
    assert isinstance(ca, tuple) and len(ca) == 2 and isinstance(out, CAOutput)
    torch.testing.assert_close(out.sketch, ca[0], rtol=1e-5, atol=1e-5)


def test_one_explanation_type_for_every_method(models):
    sk, ph = _images(1, 5)[0], _images(1, 6)[0]
    cases = {"zse": models["zse"], "xmodalvit": models["teacher"], "crossatnet": models["crossatnet"]}
    for method, model in cases.items():
        e = em.explain(method, model, sk, ph)
        assert type(e) is em.Explanation and e.method == method and e.grid == (4, 4)
        assert -1.0 <= e.cosine <= 1.0 and e.photo_attn and all(a.shape[-1] == 16 for a in e.photo_attn)
    assert em.explain("crossatnet", models["crossatnet"], sk, ph).guided_attn.shape == (1, 16)
    z = em.explain("zse", models["zse"], sk, ph)
    assert 0.0 < z.rn_score < 1.0 and z.side == 4 and len(z.kept()[0]) == 16
    with pytest.raises(ValueError, match="only ZSE-SBIR"):
        em.explain("xmodalvit", models["teacher"], sk, ph).correspondences()
    with pytest.raises(ValueError, match="fusion teacher"):
        em.explain("xmodalvit", models["students"], sk, ph)
