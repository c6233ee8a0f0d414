"""XModalViT released-checkpoint loading: teacher and students reproduce the official outputs
(rtol 1e-5 + atol 1e-4) on the fixture written by the unmodified official classes (timm 0.5.4)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodal_lib.official import KeyMappingError, convert_official, load_converted
from xmodal_lib.official.keymap import TEACHER_RULES
from xmodal_lib.official.loaders import student_from_state_dict, teacher_from_state_dict
from xmodal_lib.official.safe_load import read_official, state_dict_of

RTOL, ATOL = 1e-5, 1e-4
T_HEADS, S_HEADS = 3, 2  # fixture ViTs: fixture_vit_teacher 3 heads, fixture_vit_student 2 heads


@pytest.fixture(scope="module")
def xm(official_dir):
    from safetensors.torch import load_file

    d = official_dir / "xmodalvit"
    sds = {n: state_dict_of(read_official(d / f"{n}_20000.pth"), n)[0]
           for n in ("teacher", "photo_student", "sketch_student")}
    return {"dir": d, "sd": sds, "inputs": load_file(str(d / "inputs.safetensors")),
            "outputs": load_file(str(d / "outputs.safetensors"))}


def _score(z_p, z_s, sd):
    """The official sigmoid head (dropped by our loader) recomputed from its two tensors."""
    x = torch.cat([z_p, z_s], dim=1)  # (n, 2D)
    x = F.layer_norm(x, x.shape[1:], sd["mlp_head.0.weight"], sd["mlp_head.0.bias"])  # eps 1e-5
    return torch.sigmoid(F.linear(x, sd["mlp_head.1.weight"], sd["mlp_head.1.bias"]))


@torch.no_grad()
def xm_outputs(teacher, photo, sketch, xm) -> dict[str, torch.Tensor]:
    inp, out = xm["inputs"], xm["outputs"]
    pi, si = out["pair_photo_index"], out["pair_sketch_index"]
    z_p, z_s = teacher(inp["photo"][pi], inp["sketch"][si])
    pe, se = photo(inp["photo"]), sketch(inp["sketch"])
    sim = se @ pe.t()
    return {"teacher_photo_fused": z_p, "teacher_sketch_fused": z_s,
            "teacher_score": _score(z_p, z_s, xm["sd"]["teacher"]),
            "teacher_photo_tokens": teacher._tokens(teacher.photo_encoder, inp["photo"]),
            "teacher_sketch_tokens": teacher._tokens(teacher.sketch_encoder, inp["sketch"]),
            "photo_student_embedding": pe, "sketch_student_embedding": se,
            "photo_student_vit_cls": photo.features(inp["photo"]), "sketch_student_vit_cls": sketch.features(inp["sketch"]),
            "similarity_sketch_x_photo": sim, "ranking": sim.argsort(dim=1, descending=True)}


def excess(ours: dict, out: dict) -> dict[str, float]:
    """max(|a - b| - rtol·|b|): <= atol everywhere means allclose(rtol, atol) holds."""
    return {k: ((v.double() - out[k].double()).abs() - RTOL * out[k].double().abs()).max().item()
            for k, v in ours.items()}


def _models(xm, **teacher_kw):
    t, t_info = teacher_from_state_dict(xm["sd"]["teacher"], vit_heads=T_HEADS, **teacher_kw)
    p, _ = student_from_state_dict(xm["sd"]["photo_student"], vit_heads=S_HEADS)
    s, s_info = student_from_state_dict(xm["sd"]["sketch_student"], vit_heads=S_HEADS)
    return t, p, s, t_info, s_info


def test_every_official_tensor_reproduced(xm):
    t, p, s, t_info, s_info = _models(xm)
    ours = xm_outputs(t, p, s, xm)
    exc = excess(ours, xm["outputs"])
    raw = {k: (v.double() - xm["outputs"][k].double()).abs().max().item() for k, v in ours.items()}
    print("XModalViT parity max-abs diffs:", {k: f"{v:.1e}" for k, v in raw.items()})
    assert set(ours) == set(xm["outputs"]) - {"pair_photo_index", "pair_sketch_index"}
    assert max(exc.values()) <= ATOL, exc
    assert torch.equal(ours["ranking"], xm["outputs"]["ranking"])
    unused = set(t_info["unused_keys"])
    assert {"mlp_head.0.weight", "cls_token_branch_1", "pos_embedding_branch_2",
            "transformer_enc_branch_1.encoder.head.weight", "transformer_enc_branch_2.mlp_head.1.bias"} <= unused
    assert len(unused) == 24 and s_info["unused_keys"] == ["encoder.head.weight", "encoder.head.bias"]


def test_swapped_branches_break_parity(xm, monkeypatch):
    """Control: branch 1 read as the sketch ViT (and 2 as photo) must not reproduce the outputs."""
    swapped = [(r"transformer_enc_branch_1\.encoder\.(.+)", r"sketch_encoder.\1"),
               (r"transformer_enc_branch_2\.encoder\.(.+)", r"photo_encoder.\1"), TEACHER_RULES[2]]
    monkeypatch.setattr("xmodal_lib.official.loaders.TEACHER_RULES", swapped)
    t, p, s, _, _ = _models(xm)
    exc = excess(xm_outputs(t, p, s, xm), xm["outputs"])
    print("XModalViT with swapped branches: excess over rtol", {k: f"{v:.1e}" for k, v in exc.items()})
    assert exc["teacher_photo_fused"] > 10 * ATOL and exc["teacher_photo_tokens"] > 10 * ATOL


def test_convert_official_then_our_loader(xm, tmp_path):
    d = xm["dir"]
    tt, _ = load_converted(convert_official("teacher", d / "teacher_20000.pth", tmp_path / "t", vit_heads=T_HEADS))
    pp, _ = load_converted(convert_official("student", d / "photo_student_20000.pth", tmp_path / "p", vit_heads=S_HEADS))
    ss, cfg = load_converted(convert_official("student", d / "sketch_student_20000.pth", tmp_path / "s",
                                              vit_heads=S_HEADS))
    assert cfg["model"]["vit"]["num_heads"] == S_HEADS and cfg["official"]["unused_keys"] == ["encoder.head.weight",
                                                                                              "encoder.head.bias"]
    exc = excess(xm_outputs(tt, pp, ss, xm), xm["outputs"])
    assert max(exc.values()) <= ATOL, exc


@pytest.mark.parametrize("name,width,heads", [("teacher", 768, 12), ("student_tiny_in21k", 192, 3),
                                              ("student_small_in21k", 384, 6)])
def test_paper_size_key_lists_load_strictly(official_dir, paper_state_dict, name, width, heads):
    sd = paper_state_dict(official_dir / "xmodalvit" / f"keys_paper_{name}.tsv")
    build = teacher_from_state_dict if name == "teacher" else student_from_state_dict
    model, info = build(sd, device="meta")
    vit = info["config"]["vit"]
    assert (vit["embed_dim"], vit["num_heads"], vit["depth"], vit["img_size"]) == (width, heads, 12, 224)
    used = sum(v.numel() for k, v in sd.items() if k not in info["unused_keys"])
    assert sum(p.numel() for p in model.parameters()) == used
    if name != "teacher":
        assert sd["encoder.head.weight"].shape[0] == 21843 and info["unused_keys"] == ["encoder.head.weight",
                                                                                      "encoder.head.bias"]
    else:
        assert info["config"]["xma_depth"] == 3 and len(info["unused_keys"]) == 24


def test_teacher_mismatch_is_named(xm):
    sd = dict(xm["sd"]["teacher"])
    sd.pop("x_modal_transformers.2.cross_attn_layers.0.5.fn.to_q.weight")
    with pytest.raises(KeyMappingError, match=r"layers\.2\.ca_l\.to_q\.weight"):
        teacher_from_state_dict(sd, vit_heads=T_HEADS)
    with pytest.raises(ValueError, match="width 32 is not a multiple of 64"):
        student_from_state_dict(xm["sd"]["photo_student"])
