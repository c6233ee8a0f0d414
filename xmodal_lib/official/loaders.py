"""Build our models from the authors' released checkpoints; convert them to safetensors + JSON.

* :func:`zse_from_state_dict` / :func:`load_official_zse`: ZSE-SBIR ``best_checkpoint.pth`` ->
  :class:`~xmodal_lib.methods.zse.model.ZSESBIR` with the settings the released code implies
  (:func:`official_zse_config`): conv tokenizer on both modalities, the code's CA Q/K assignment,
  the RN's raw memory view, SA LayerNorm eps 1e-5, token selection off.
* :func:`teacher_from_state_dict` / :func:`student_from_state_dict` (and ``load_official_*``):
  XModalViT ``teacher_*.pth`` / ``{photo,sketch}_student_*.pth`` -> our teacher / students.
* Geometry (width, depth, patch, image size, MLP width, CA FFN, RN size, XMA depth) is read from
  the tensor shapes. The number of attention heads is not visible in any shape, so it is an
  argument: the defaults are the papers' (ZSE SA 12, CA 8; XMA 3; ViT heads = width / 64, i.e.
  ViT-Ti 3, ViT-S 6, ViT-B 12); the fixtures need other values. A wrong head count loads but
  computes different outputs, which the parity tests would catch.
* ``device="meta"`` builds the model without memory and loads with ``assign=True`` (used to
  prove the mapping at paper size).
* :func:`convert_official` writes our format (``<out>.safetensors`` + ``<out>.json`` with the
  config); :func:`load_converted` reads it back without any pickle.
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xmodal_lib.infra.checkpoint import load_tensors, save_weights
from xmodal_lib.layers.backbones import create_vit
from xmodal_lib.methods.xmodalvit.model import XModalStudent, XModalTeacher
from xmodal_lib.methods.zse.model import ZSESBIR, ZSEConfig
from xmodal_lib.official.keymap import (
    STUDENT_RULES,
    STUDENT_UNUSED,
    TEACHER_RULES,
    TEACHER_UNUSED,
    ZSE_RULES,
    ZSE_UNUSED,
    KeyMappingError,
    remap,
)
from xmodal_lib.official.safe_load import read_official, state_dict_of

__all__ = ["official_zse_config", "zse_from_state_dict", "load_official_zse", "vit_geometry",
           "teacher_from_state_dict", "student_from_state_dict", "load_official_teacher",
           "load_official_student", "convert_official", "load_converted", "load_checkpoint", "FORMAT"]

FORMAT = "xmodal-official-v1"
_VIT_BASE = {"zse": "vit_base_patch16_224", "teacher": "vit_base_patch16_224", "student": "vit_tiny_patch16_224"}


def _need(sd: dict[str, Tensor], key: str, source: str) -> Tensor:
    if key not in sd:
        raise KeyMappingError(f"{source}: expected tensor {key!r} (is this the right kind of checkpoint?)")
    return sd[key]


def _depth(sd: dict[str, Tensor], pattern: str) -> int:
    idx = {int(m[1]) for k in sd if (m := re.match(pattern, k))}
    return max(idx) + 1 if idx else 0


def _build(make, device: str | torch.device | None) -> nn.Module:
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            return make()
    return make()


def _load(model: nn.Module, ours: dict[str, Tensor]) -> nn.Module:
    meta = any(p.is_meta for p in model.parameters())
    model.load_state_dict(ours, strict=True, assign=meta)
    return model.eval()


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# --- ZSE-SBIR -------------------------------------------------------------------------------------
def official_zse_config(sd: dict[str, Tensor], heads: int = 12, ca_heads: int = 8,
                        source: str = "ZSE-SBIR checkpoint") -> ZSEConfig:
    """The :class:`ZSEConfig` of an official ``Model`` state dict (sizes from shapes, settings of the code)."""
    emb = _need(sd, "sa.model.embedding.weight", source)  # (D, 3, p, p)
    pos = _need(sd, "sa.model.pos_embedding", source)  # (1, 1+N, D)
    dim, patch = int(emb.shape[0]), int(emb.shape[-1])
    grid = math.isqrt(int(pos.shape[1]) - 1)
    if grid * grid != int(pos.shape[1]) - 1:
        raise KeyMappingError(f"{source}: pos_embedding {tuple(pos.shape)} is not 1 + a square grid")
    fc1 = _need(sd, "sa.model.transformer.layers.0.0.mlp.net.0.weight", source)  # (hidden, D)
    ffn = _need(sd, "ca.encoder.layer1.0.feed_forward.w_1.weight", source)  # (d_ff, D)
    conv = _need(sd, "conv2d.weight", source)  # (rn_dim, D, 2, 2)
    stem = "both" if "sa.model.scale.seq.0.weight" in sd else "none"
    return ZSEConfig(img_size=grid * patch, patch_size=patch, dim=dim,
                     depth=_depth(sd, r"sa\.model\.transformer\.layers\.(\d+)\."), heads=int(heads),
                     mlp_ratio=int(fc1.shape[0]) / dim, stem=stem, keep_rate=1.0,
                     prune_layers=(4, 7, 10), ca_variant="code",
                     ca_heads=int(ca_heads), ca_ffn=int(ffn.shape[0]), rn_dim=int(conv.shape[0]),
                     rn_tokens="grid", rn_raw_view=True, ln_eps=1e-5, pretrained=False)


def zse_from_state_dict(sd: dict[str, Tensor], heads: int = 12, ca_heads: int = 8,
                        source: str = "ZSE-SBIR checkpoint", device: str | torch.device | None = None,
                        **overrides: Any) -> tuple[ZSESBIR, dict[str, Any]]:
    """Our ZSE model holding the official weights; ``overrides`` change :class:`ZSEConfig` fields
    (for controls such as ``ca_variant="paper"``). Returns ``(model, info)``."""
    cfg = official_zse_config(sd, heads, ca_heads, source)
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise ValueError(f"zse_from_state_dict: {k!r} is not a ZSEConfig field")
        setattr(cfg, k, v)
    cfg = ZSEConfig(**{k: getattr(cfg, k) for k in cfg.__dataclass_fields__})  # re-validate
    model = _build(lambda: ZSESBIR(cfg), device)
    ours, unused = remap(sd, ZSE_RULES, ZSE_UNUSED, _shapes(model), source)
    if int(model.rn.anchors) ** 2 != int(ours["rn.mlp.0.weight"].shape[1]):
        raise KeyMappingError(f"{source}: RN input {ours['rn.mlp.0.weight'].shape[1]} != anchors^2")
    return _load(model, ours), {"config": cfg.to_dict(), "unused_keys": unused}


def load_official_zse(path: str | Path, heads: int = 12, ca_heads: int = 8,
                      device: str | torch.device | None = None, **overrides: Any) -> tuple[ZSESBIR, dict[str, Any]]:
    """Read ``best_checkpoint.pth`` (or ``.pth.xz``) safely and build our model; ``info`` adds
    the file's ``epoch`` / ``map_all`` / ``precision_100`` and its sha256."""
    sd, extras = state_dict_of(read_official(path), str(path))
    model, info = zse_from_state_dict(sd, heads, ca_heads, str(path), device, **overrides)
    info.update(extras=extras, sha256=_sha256(path), source=str(path))
    return model, info


# --- XModalViT ------------------------------------------------------------------------------------
def vit_geometry(sd: dict[str, Tensor], prefix: str, heads: int | None, source: str) -> dict[str, Any]:
    """timm ViT kwargs (img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio) from shapes."""
    w = _need(sd, f"{prefix}patch_embed.proj.weight", source)  # (D, 3, p, p)
    pos = _need(sd, f"{prefix}pos_embed", source)  # (1, 1+N, D)
    dim, patch = int(w.shape[0]), int(w.shape[-1])
    grid = math.isqrt(int(pos.shape[1]) - 1)
    if grid * grid != int(pos.shape[1]) - 1:
        raise KeyMappingError(f"{source}: {prefix}pos_embed {tuple(pos.shape)} is not [CLS] + a square grid")
    if heads is None:
        if dim % 64:
            raise ValueError(f"{source}: ViT width {dim} is not a multiple of 64, so the number of heads "
                             "cannot be assumed; pass it explicitly")
        heads = dim // 64
    fc1 = _need(sd, f"{prefix}blocks.0.mlp.fc1.weight", source)
    return dict(img_size=grid * patch, patch_size=patch, embed_dim=dim,
                depth=_depth(sd, re.escape(prefix) + r"blocks\.(\d+)\."), num_heads=int(heads),
                mlp_ratio=int(fc1.shape[0]) / dim)


def _make_teacher(cfg: dict[str, Any]) -> XModalTeacher:
    vit = dict(cfg["vit"])
    img = vit.pop("img_size")
    enc = [create_vit(_VIT_BASE["teacher"], False, img, **vit) for _ in range(2)]
    return XModalTeacher(enc[0], enc[1], depth=cfg["xma_depth"], heads=cfg["xma_heads"])


def _make_student(cfg: dict[str, Any]) -> XModalStudent:
    vit = dict(cfg["vit"])
    img = vit.pop("img_size")
    return XModalStudent(create_vit(_VIT_BASE["student"], False, img, **vit), cfg["out_dim"], pool="cls")


def teacher_from_state_dict(sd: dict[str, Tensor], vit_heads: int | None = None, xma_heads: int = 3,
                            source: str = "XModalViT teacher", device: str | torch.device | None = None
                            ) -> tuple[XModalTeacher, dict[str, Any]]:
    """Our teacher from an official ``ModalityFusionNetwork`` state dict. Returns ``(model, info)``."""
    vit = vit_geometry(sd, "transformer_enc_branch_1.encoder.", vit_heads, source)
    cfg = {"vit": vit, "xma_heads": int(xma_heads),
           "xma_depth": _depth(sd, r"x_modal_transformers\.(\d+)\.")}
    model = _build(lambda: _make_teacher(cfg), device)
    ours, unused = remap(sd, TEACHER_RULES, TEACHER_UNUSED, _shapes(model), source)
    return _load(model, ours), {"config": cfg, "unused_keys": unused}


def student_from_state_dict(sd: dict[str, Tensor], vit_heads: int | None = None,
                            source: str = "XModalViT student", device: str | torch.device | None = None
                            ) -> tuple[XModalStudent, dict[str, Any]]:
    """Our student (ViT + LayerNorm + Linear, [CLS] pooling) from an official student state dict."""
    out_dim = int(_need(sd, "mlp_head.1.weight", source).shape[0])
    cfg = {"vit": vit_geometry(sd, "encoder.", vit_heads, source), "out_dim": out_dim}
    model = _build(lambda: _make_student(cfg), device)
    ours, unused = remap(sd, STUDENT_RULES, STUDENT_UNUSED, _shapes(model), source)
    return _load(model, ours), {"config": cfg, "unused_keys": unused}


def load_official_teacher(path: str | Path, vit_heads: int | None = None, xma_heads: int = 3,
                          device: str | torch.device | None = None) -> tuple[XModalTeacher, dict[str, Any]]:
    """Read ``teacher_*.pth`` safely and build our teacher."""
    sd, extras = state_dict_of(read_official(path), str(path))
    model, info = teacher_from_state_dict(sd, vit_heads, xma_heads, str(path), device)
    info.update(extras=extras, sha256=_sha256(path), source=str(path))
    return model, info


def load_official_student(path: str | Path, vit_heads: int | None = None,
                          device: str | torch.device | None = None) -> tuple[XModalStudent, dict[str, Any]]:
    """Read ``photo_student_*.pth`` / ``sketch_student_*.pth`` safely and build our student."""
    sd, extras = state_dict_of(read_official(path), str(path))
    model, info = student_from_state_dict(sd, vit_heads, str(path), device)
    info.update(extras=extras, sha256=_sha256(path), source=str(path))
    return model, info


# --- conversion -----------------------------------------------------------------------------------
def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert_official(kind: str, src: str | Path, out: str | Path, **kw: Any) -> Path:
    """Official file ``src`` -> ``<out>.safetensors`` + ``<out>.json``; ``kind`` is
    ``"zse"``, ``"teacher"`` or ``"student"``; ``kw`` go to the matching ``load_official_*``."""
    loaders = {"zse": load_official_zse, "teacher": load_official_teacher, "student": load_official_student}
    if kind not in loaders:
        raise ValueError(f"convert_official(kind=...): expected one of {list(loaders)}, got {kind!r}")
    model, info = loaders[kind](src, **kw)
    config = {"format": FORMAT, "kind": kind, "model": info["config"],
              "official": {"source": Path(src).name, "sha256": info["sha256"], "extras": info["extras"],
                           "unused_keys": info["unused_keys"]}}
    return save_weights(model, out, config=config)


def load_converted(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A model written by :func:`convert_official` (no pickle anywhere), strictly; ``(model, config)``."""
    tensors, meta = load_tensors(path)
    cfg = meta.get("config", {})
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path}: not a converted official checkpoint (config.format {cfg.get('format')!r}, "
                         f"expected {FORMAT!r}); convert it with `xmodal convert-official`")
    kind, mc = cfg["kind"], cfg["model"]
    if kind == "zse":
        model: nn.Module = ZSESBIR(ZSEConfig(**{**mc, "prune_layers": tuple(mc["prune_layers"])}))
    elif kind == "teacher":
        model = _make_teacher(mc)
    elif kind == "student":
        model = _make_student(mc)
    else:
        raise ValueError(f"{path}: unknown converted kind {kind!r}")
    own = _shapes(model)
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [k for k in own if k in tensors and tuple(tensors[k].shape) != own[k]]
    if missing or unexpected or shapes:
        raise KeyMappingError(f"{path}: does not match its config: missing {missing[:10]}, "
                              f"unexpected {unexpected[:10]}, mis-shaped {shapes[:10]}")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), cfg


def load_checkpoint(path: str | Path, kind: str, sa_heads: int = 12, ca_heads: int = 8,
                    vit_heads: int | None = None, xma_heads: int = 3) -> nn.Module:
    """An official ``.pth`` (``.pth.xz``) or converted ``.safetensors``/``.json`` of ``kind``
    (``"zse"``, ``"teacher"``, ``"student"``) as our model in eval mode; heads as in ``load_official_*``."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        model, cfg = load_converted(p)
        if cfg["kind"] != kind:
            raise ValueError(f"{p}: a converted {cfg['kind']!r} checkpoint, expected {kind!r}")
        return model
    if kind == "zse":
        return load_official_zse(p, heads=sa_heads, ca_heads=ca_heads)[0]
    if kind == "teacher":
        return load_official_teacher(p, vit_heads=vit_heads, xma_heads=xma_heads)[0]
    if kind == "student":
        return load_official_student(p, vit_heads=vit_heads)[0]
    raise ValueError(f"load_checkpoint(kind=...): expected 'zse', 'teacher' or 'student', got {kind!r}")
