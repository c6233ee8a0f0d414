"""Official key names -> xmodal_lib key names, strictly: every tensor is used or listed as unused.

A mapping is a list of rules ``(regex, template)``; the regex must match the whole official key
and the template (``re`` backreferences, or a function of the match) gives our key. Keys that
match an *unused* pattern are dropped and returned by name; any other unmatched key, any of our
keys left without a tensor, and any shape that differs raise :class:`KeyMappingError`, whose
message lists all three groups.

ZSE-SBIR (``buptLinfy/ZSE-SBIR`` ``model.model.Model``) and XModalViT (``abhrac/xmodal-vit``
``ModalityFusionNetwork`` and the students) rules follow the fixtures' README (official
checkpoints, §1.5 and §2.6). Branch 1 of the teacher is the photo ViT and branch 2 the sketch
ViT; the ViTs' ImageNet heads (``*_in21k`` 21843-way in the students) are dropped because our
backbones are built with ``num_classes=0``.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping

from torch import Tensor

__all__ = ["KeyMappingError", "remap", "ZSE_RULES", "ZSE_UNUSED", "TEACHER_RULES", "TEACHER_UNUSED",
           "STUDENT_RULES", "STUDENT_UNUSED"]

Rule = tuple[str, "str | Callable[[re.Match], str]"]


class KeyMappingError(ValueError):
    """Official tensors and our model do not match (missing / unexpected / mis-shaped keys)."""


def _fmt(keys: list[str], limit: int = 12) -> str:
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return "[" + ", ".join(keys[:limit]) + "]" + more


def remap(sd: Mapping[str, Tensor], rules: Iterable[Rule], unused: Iterable[str],
          target_shapes: Mapping[str, tuple[int, ...]], source: str) -> tuple[dict[str, Tensor], list[str]]:
    """Rename ``sd`` by ``rules``; returns ``(our_state_dict, unused_official_keys)``.

    ``target_shapes``: our model's ``{key: shape}``; every one must be produced with that shape.
    """
    compiled = [(re.compile(pat), tpl) for pat, tpl in rules]
    drop = [re.compile(p) for p in unused]
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    dropped, unexpected, dup = [], [], []
    for key, val in sd.items():
        if any(d.match(key) for d in drop):
            dropped.append(key)
            continue
        for rx, tpl in compiled:
            m = rx.fullmatch(key)
            if m:
                new = tpl(m) if callable(tpl) else m.expand(tpl)
                if new in out:
                    dup.append(f"{key} and {origin[new]} -> {new}")
                out[new], origin[new] = val, key
                break
        else:
            unexpected.append(key)
    missing = [k for k in target_shapes if k not in out]
    unexpected += [f"{origin[k]} (-> {k}, not in our model)" for k in out if k not in target_shapes]
    shapes = [f"{origin[k]} -> {k}: file {tuple(v.shape)} vs model {tuple(target_shapes[k])}"
              for k, v in out.items() if k in target_shapes and tuple(v.shape) != tuple(target_shapes[k])]
    if missing or unexpected or shapes or dup:
        raise KeyMappingError(
            f"{source} does not match the model: missing {len(missing)} {_fmt(missing)}; "
            f"unexpected {len(unexpected)} {_fmt(unexpected)}; mis-shaped {len(shapes)} {_fmt(shapes)}"
            + (f"; duplicate targets {_fmt(dup)}" if dup else ""))
    return {k: v for k, v in out.items()}, dropped


# --- ZSE-SBIR -------------------------------------------------------------------------------------
_CA_SUB = {"self_attn.linears.0": "q", "self_attn.linears.1": "k", "self_attn.linears.2": "v",
           "self_attn.linears.3": "o", "sublayer.0.norm": "norm1", "sublayer.1.norm": "norm2",
           "feed_forward.w_1": "ffn.0", "feed_forward.w_2": "ffn.3"}
_CA_SIDE = {"1": "sketch_layer", "2": "photo_layer"}  # layer1 = sketch, layer2 = photo (model/ca.py)

ZSE_RULES: list[Rule] = [
    (r"sa\.model\.embedding\.(weight|bias)", r"sa.vit.patch_embed.proj.\1"),
    (r"sa\.model\.scale\.seq\.([0246])\.weight", r"sa.stem.net.\1.weight"),
    (r"sa\.model\.pos_embedding", "sa.vit.pos_embed"),
    (r"sa\.model\.cls", "sa.vit.cls_token"),
    (r"sa\.model\.transformer\.layers\.(\d+)\.0\.layer_norm_input\.(weight|bias)", r"sa.vit.blocks.\1.norm1.\2"),
    (r"sa\.model\.transformer\.layers\.(\d+)\.0\.layer_norm_out\.(weight|bias)", r"sa.vit.blocks.\1.norm2.\2"),
    (r"sa\.model\.transformer\.layers\.(\d+)\.0\.attention\.to_qkv\.(weight|bias)", r"sa.vit.blocks.\1.attn.qkv.\2"),
    (r"sa\.model\.transformer\.layers\.(\d+)\.0\.attention\.to_out\.0\.(weight|bias)", r"sa.vit.blocks.\1.attn.proj.\2"),
    (r"sa\.model\.transformer\.layers\.(\d+)\.0\.mlp\.net\.0\.(weight|bias)", r"sa.vit.blocks.\1.mlp.fc1.\2"),
    (r"sa\.model\.transformer\.layers\.(\d+)\.0\.mlp\.net\.3\.(weight|bias)", r"sa.vit.blocks.\1.mlp.fc2.\2"),
    (r"sa\.model\.transformer\.encoder_norm\.(weight|bias)", r"sa.vit.norm.\1"),
    (r"ca\.encoder\.layer([12])\.0\.(self_attn\.linears\.[0-3]|sublayer\.[01]\.norm|feed_forward\.w_[12])\.(weight|bias|a|b)",
     lambda m: f"ca.{_CA_SIDE[m[1]]}.{_CA_SUB[m[2]]}.{m[3]}"),
    (r"conv2d\.(weight|bias)", r"rn.conv.\1"),
    (r"rn\.rn\.([036])\.(weight|bias)", r"rn.mlp.\1.\2"),
]
#: The third CA copy ``ca.encoder.layers`` is built by the official code but never used in forward.
ZSE_UNUSED: list[str] = [r"ca\.encoder\.layers\.0\."]

# --- XModalViT ------------------------------------------------------------------------------------
_XMA = {"0": "f_12", "1": "g_21", "2": "ca_s", "3": "f_21", "4": "g_12", "5": "ca_l"}


def _xma(m: re.Match) -> str:
    rest = m[3][len("fn."):] if m[3].startswith("fn.") else m[3]  # PreNorm(fn=Attention) -> ours
    return f"layers.{m[1]}.{_XMA[m[2]]}.{rest}"


TEACHER_RULES: list[Rule] = [
    (r"transformer_enc_branch_1\.encoder\.(.+)", r"photo_encoder.\1"),   # branch 1 = photo
    (r"transformer_enc_branch_2\.encoder\.(.+)", r"sketch_encoder.\1"),  # branch 2 = sketch
    (r"x_modal_transformers\.(\d+)\.cross_attn_layers\.0\.([0-5])\.(.+)", _xma),
]
#: ImageNet heads, the per-branch ``mlp_head`` (768->125), CrossViT leftovers never used in
#: ``forward_features``, and the sigmoid ``mlp_head`` (only in the official ``forward``).
TEACHER_UNUSED: list[str] = [
    r"transformer_enc_branch_[12]\.encoder\.head\.", r"transformer_enc_branch_[12]\.mlp_head\.",
    r"to_patch_embedding_branch_[12]\.", r"pos_embedding_branch_[12]$", r"cls_token_branch_[12]$",
    r"mlp_head\.",
]
STUDENT_RULES: list[Rule] = [
    (r"encoder\.(.+)", r"backbone.\1"),
    (r"mlp_head\.([01])\.(weight|bias)", r"head.\1.\2"),
]
#: The students' timm classifier (``*_in21k``: 21843 classes) is not used by ``forward_features``.
STUDENT_UNUSED: list[str] = [r"encoder\.head\."]
