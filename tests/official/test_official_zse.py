"""ZSE-SBIR released-checkpoint loading: every official output tensor reproduced (atol 1e-4).

The fixture (``../shared/reference/official_checkpoints/zse_sbir``) was written by the unmodified
official ``Model`` (depth 2, SA heads 4, CA heads 2, width 768) in the released file structure.
Controls: each wrong setting (paper CA variant, permuted RN view, sketch-only stem, LayerNorm
eps 1e-6) must break parity, so the parity test can fail.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmodal_lib.methods.zse.rn import kernel_matrix
from xmodal_lib.official import KeyMappingError, convert_official, load_converted
from xmodal_lib.official.loaders import zse_from_state_dict
from xmodal_lib.official.safe_load import read_official, state_dict_of

ATOL = 1e-4
HEADS = dict(heads=4, ca_heads=2)  # fixture sizes (fixtures.json: ViTPatch heads 4, --head 2)


@pytest.fixture(scope="module")
def zse_files(official_dir):
    from safetensors.torch import load_file

    d = official_dir / "zse_sbir"
    sd, extras = state_dict_of(read_official(d / "best_checkpoint.pth.xz"), "fixture")
    return {"dir": d, "sd": sd, "extras": extras, "inputs": load_file(str(d / "inputs.safetensors")),
            "outputs": load_file(str(d / "outputs.safetensors"))}


@torch.no_grad()
def zse_outputs(model, inp: dict, out: dict) -> dict[str, torch.Tensor]:
    """Our tensors under the fixture's names (fixtures README §1.4)."""
    model.eval()
    s, p = model.sa_features(inp["sketch"], "sketch"), model.sa_features(inp["photo"], "photo")
    si, pi = out["pair_sketch_index"], out["pair_photo_index"]
    cs, cp = model.ca(s.tokens[si], p.tokens[pi])  # (4, 197, D) each, pairs sketch-major
    a_s = model.rn.anchor_tokens(cs[:, 1:], s.kept[si])  # (4, 49, 512)
    a_p = model.rn.anchor_tokens(cp[:, 1:], p.kept[pi])
    score = model.rn.score(a_s, a_p)  # (4,)
    return {
        "sa_tokens_sketch": s.tokens, "sa_tokens_photo": p.tokens, "sa_ret_sketch": s.ret, "sa_ret_photo": p.ret,
        "ca_ret": torch.cat([cs[:, 0], cp[:, 0]]), "ca_tokens_pair0": torch.stack([cs[0], cp[0]]),
        "rn_anchors_pair0": torch.stack([a_s[0], a_p[0]]), "rn_kernel": kernel_matrix(a_s, a_p).flatten(1),
        "rn_scores": score[:, None], "dist_rn": -score.view(2, 2),
        "dist_sa": torch.cdist(F.normalize(s.ret, dim=-1), F.normalize(p.ret, dim=-1)),
    }


def max_diffs(model, files) -> dict[str, float]:
    ours = zse_outputs(model, files["inputs"], files["outputs"])
    return {k: (v - files["outputs"][k]).abs().max().item() for k, v in ours.items()}


def test_every_official_tensor_reproduced(zse_files):
    model, info = zse_from_state_dict(zse_files["sd"], **HEADS)
    diffs = max_diffs(model, zse_files)
    print("ZSE parity max-abs diffs:", {k: f"{v:.1e}" for k, v in diffs.items()})
    assert set(diffs) == set(zse_files["outputs"]) - {"pair_sketch_index", "pair_photo_index"}
    assert max(diffs.values()) < ATOL, diffs
    assert sorted(info["unused_keys"]) == sorted(k for k in zse_files["sd"] if k.startswith("ca.encoder.layers.0."))
    assert len(info["unused_keys"]) == 16
    assert zse_files["extras"] == {"epoch": 30, "map_all": 0.0, "precision_100": 0.0}


@pytest.mark.parametrize("wrong", [dict(ca_variant="paper"), dict(rn_raw_view=False), dict(stem="sketch"),
                                   dict(ln_eps=1e-6)], ids=["paper_ca", "permuted_rn_view", "sketch_stem", "eps_1e-6"])
def test_wrong_setting_breaks_parity(zse_files, wrong):
    model, _ = zse_from_state_dict(zse_files["sd"], **HEADS, **wrong)
    diffs = max_diffs(model, zse_files)
    print(f"ZSE with {wrong}: max-abs diffs", {k: f"{v:.1e}" for k, v in diffs.items()})
    assert max(diffs.values()) > 10 * ATOL, diffs
    if "ln_eps" not in wrong:  # eps 1e-6 moves the scores by only ~1e-5, the tokens by ~1e-2
        assert diffs["rn_scores"] > ATOL


def test_convert_official_then_our_loader(zse_files, tmp_path):
    stem = convert_official("zse", zse_files["dir"] / "best_checkpoint.pth.xz", tmp_path / "zse", **HEADS)
    assert (tmp_path / "zse.safetensors").is_file() and (tmp_path / "zse.json").is_file()
    model, cfg = load_converted(stem)
    assert cfg["kind"] == "zse" and cfg["model"]["ca_variant"] == "code" and cfg["model"]["ln_eps"] == 1e-5
    assert cfg["official"]["extras"]["epoch"] == 30 and len(cfg["official"]["unused_keys"]) == 16
    diffs = max_diffs(model, zse_files)
    assert max(diffs.values()) < ATOL, diffs


def test_paper_size_key_list_loads_strictly(official_dir, paper_state_dict):
    sd = paper_state_dict(official_dir / "zse_sbir" / "keys_paper_Model.tsv")
    assert len(sd) == 210
    model, info = zse_from_state_dict(sd, device="meta")  # paper heads 12 / 8 by default
    cfg = info["config"]
    assert (cfg["dim"], cfg["depth"], cfg["img_size"], cfg["ca_ffn"], cfg["rn_dim"]) == (768, 12, 224, 1024, 512)
    assert cfg["mlp_ratio"] == 4.0 and model.rn.anchors == 49
    n_used = sum(v.numel() for k, v in sd.items() if k not in info["unused_keys"])
    assert sum(p.numel() for p in model.parameters()) == n_used
    assert n_used + sum(sd[k].numel() for k in info["unused_keys"]) == 102_180_632


def test_mismatches_are_named(zse_files):
    sd = dict(zse_files["sd"])
    sd.pop("conv2d.bias")
    sd["sa.model.extra_token"] = torch.zeros(3)
    sd["rn.rn.6.weight"] = torch.zeros(1, 50)
    with pytest.raises(KeyMappingError) as e:
        zse_from_state_dict(sd, **HEADS)
    msg = str(e.value)
    assert "rn.conv.bias" in msg and "sa.model.extra_token" in msg and "rn.rn.6.weight" in msg
    assert "missing 1" in msg and "unexpected 1" in msg and "mis-shaped 1" in msg
