"""Model-aware explanation figures: run a method on one (sketch, photo) pair and draw why it matches.

* ``zse``: [Ret] attention (per layer and head, or last layer), the strongest token
  correspondences of the post-CA patch tokens, and sketch-to-photo patch replacement;
* ``xmodalvit``: per XMA layer, where the sketch [CLS] looks in the photo and the photo [CLS]
  in the sketch (needs the fusion *teacher*; students have no cross-modal attention);
* ``crossatnet``: the sketch-guided attention over the photo and the photo's own attention.

Drawing is delegated to the pure functions of :mod:`xmodal_lib.viz.explain`; models return
their attention on request (no hooks).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..devices import module_device
from . import explain as ex


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode inside the block; the model's previous train/eval mode is restored afterwards."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)

METHODS = ("zse", "xmodalvit", "crossatnet")


def _batch(x: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    x = torch.as_tensor(x).float()
    return (x[None] if x.ndim == 3 else x).to(module_device(model))  # (1, 3, H, W)


# --------------------------------------------------------------------------- model-aware parts
@dataclass
class ZSEExplanation:
    """Everything the ZSE-SBIR figures need for one (sketch, photo) pair (batch dim removed)."""

    grid: int
    sketch_attn: list[torch.Tensor]       # per layer (heads, N_l) [Ret]->patch attention
    sketch_attn_pos: list[torch.Tensor]   # per layer (N_l,) grid positions
    photo_attn: list[torch.Tensor]
    photo_attn_pos: list[torch.Tensor]
    sketch_tokens: torch.Tensor           # (Ns, D) post-CA patch tokens
    photo_tokens: torch.Tensor            # (Np, D)
    sketch_kept: torch.Tensor             # (Ns,) grid positions
    photo_kept: torch.Tensor              # (Np,)
    ret_cosine: float                     # cosine of the pre-CA [Ret] tokens ("Ours-Ret")
    rn_score: float                       # relation score of the pair ("Ours-RN")

    def correspondences(self, top_n: int = 12, sketch_mask: np.ndarray | None = None) -> list[ex.Match]:
        return ex.token_correspondences(self.sketch_tokens, self.photo_tokens, top_n,
                                        self.sketch_kept.tolist(), self.photo_kept.tolist(), sketch_mask)

    def kept(self) -> tuple[list[int], list[int]]:
        return self.sketch_kept.tolist(), self.photo_kept.tolist()


@torch.no_grad()
def zse_explain(model, sketch: torch.Tensor, photo: torch.Tensor) -> ZSEExplanation:
    """Run ZSE-SBIR SA (with attention), CA and RN on one pair; eval mode, no gradients."""
    with _eval_mode(model):
        s = model.sa_features(_batch(sketch, model), "sketch", return_attention=True)
        p = model.sa_features(_batch(photo, model), "photo", return_attention=True)
        cs, cp = model.ca(s.tokens, p.tokens)  # (1, 1+N, D) each
        rn = model.rn(cs[:, 1:], s.kept, cp[:, 1:], p.kept)
        cos = torch.nn.functional.cosine_similarity(s.tokens[:, 0], p.tokens[:, 0]).item()
    cpu = lambda xs: [x[0].cpu() for x in xs]  # noqa: E731
    return ZSEExplanation(int(model.sa.grid), cpu(s.ret_attn), cpu(s.ret_attn_pos), cpu(p.ret_attn),
                          cpu(p.ret_attn_pos), cs[0, 1:].cpu(), cp[0, 1:].cpu(), s.kept[0].cpu(),
                          p.kept[0].cpu(), float(cos), float(rn.reshape(-1)[0]))


def zse_attention_figure(image: torch.Tensor, attn: Sequence[torch.Tensor], attn_pos: Sequence[torch.Tensor],
                         grid: int, title: str = "", heads: Sequence[int] | None = None):
    """[Ret] attention per layer (rows) and head (columns) of one image."""
    return ex.attention_grid_figure(image, list(attn), grid, heads=heads,
                                    kept_indices=[p.tolist() for p in attn_pos], title=title)


def zse_pair_figure(sketch: torch.Tensor, photo: torch.Tensor, e: ZSEExplanation, top_n: int = 12,
                    ink_threshold: float = 0.01, title: str = "", norm: str | None = None):
    """Sketch/photo [Ret] attention (last layer), token correspondences and patch replacement.

    ``norm`` = the input normalisation of the images (to draw them in true colours)."""
    import matplotlib.pyplot as plt

    sketch, photo = ex.denormalize(sketch, norm), ex.denormalize(photo, norm)
    g = e.grid
    fig, axes = plt.subplot_mosaic("ABCCD", figsize=(11, 2.6))
    hs = ex.attention_to_heatmap(e.sketch_attn[-1], g, ex.to_display_image(sketch).shape[:2],
                                 kept_indices=e.sketch_attn_pos[-1].tolist())
    hp = ex.attention_to_heatmap(e.photo_attn[-1], g, ex.to_display_image(photo).shape[:2],
                                 kept_indices=e.photo_attn_pos[-1].tolist())
    axes["A"].imshow(ex.overlay_heatmap(sketch, hs))
    axes["A"].set_title("sketch [Ret] attention", fontsize=8)
    axes["B"].imshow(ex.overlay_heatmap(photo, hp))
    axes["B"].set_title("photo [Ret] attention", fontsize=8)
    mask = ex.ink_mask(sketch, g, ink_threshold)
    matches = e.correspondences(top_n, mask)
    lo, hi = ex.draw_correspondences(axes["C"], sketch, photo, matches, g)
    shown = f"top-{len(matches)} token matches" if len(matches) == top_n else \
        f"{len(matches)} token matches ({top_n} asked; only {len(matches)} kept ink tokens)"
    axes["C"].set_title(f"{shown}: sketch ink patch -> most similar photo token", fontsize=8)
    ex.heatmap_colorbar(fig, axes["C"], cmap="viridis", label="token cosine (line colour)", lo=lo, hi=hi,
                        ticks=(f"{lo:.2f}", f"{hi:.2f}"))
    syn = ex.patch_replacement(sketch, photo, e.sketch_tokens, e.photo_tokens, g, ink_threshold, e.kept())
    axes["D"].imshow(syn)
    axes["D"].set_title("patch replacement (ink patches -> matched photo patches)", fontsize=8)
    for ax in axes.values():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"ZSE-SBIR: Ret cosine {e.ret_cosine:.3f}, RN score {e.rn_score:.3f}", fontsize=9)
    fig.tight_layout()
    ex.heatmap_colorbar(fig, [axes["A"], axes["B"]], label="[Ret] attention (min-max per map)")
    return fig


@torch.no_grad()
def xmodal_explain(teacher, sketch: torch.Tensor, photo: torch.Tensor) -> dict[str, Any]:
    """XMA attention of the fusion teacher for one pair.

    Returns ``grid`` and per layer ``sketch_to_photo`` (heads, Np) (sketch [CLS] over photo
    patches), ``photo_to_sketch`` (heads, Ns) (photo [CLS] over sketch patches) and
    ``photo_to_sketch_cls`` (heads,) (weight on the fresh sketch [CLS]).
    """
    with _eval_mode(teacher):
        z_p, z_s, maps = teacher(_batch(photo, teacher), _batch(sketch, teacher), return_attention=True)
    return {
        "grid": tuple(int(v) for v in teacher.grid),
        "sketch_to_photo": [m["sketch_to_photo"][0, :, 1:].cpu() for m in maps],   # drop q_s itself
        "photo_to_sketch": [m["photo_to_sketch"][0, :, 2:].cpu() for m in maps],   # drop q_p, c_s
        "photo_to_sketch_cls": [m["photo_to_sketch"][0, :, 1].cpu() for m in maps],
        "cosine": float(torch.nn.functional.cosine_similarity(z_p, z_s).item()),
    }


def xmodal_pair_figure(sketch: torch.Tensor, photo: torch.Tensor, e: dict[str, Any], title: str = "",
                       norm: str | None = None):
    """Rows = XMA layers; where the fused sketch [CLS] looks in the photo and vice versa."""
    import matplotlib.pyplot as plt

    sketch, photo = ex.denormalize(sketch, norm), ex.denormalize(photo, norm)
    n = len(e["sketch_to_photo"])
    fig, axes = plt.subplots(n, 2, figsize=(4.6, 2.2 * n), squeeze=False)
    for l in range(n):
        hp = ex.attention_to_heatmap(e["sketch_to_photo"][l], e["grid"], ex.to_display_image(photo).shape[:2])
        hs = ex.attention_to_heatmap(e["photo_to_sketch"][l], e["grid"], ex.to_display_image(sketch).shape[:2])
        axes[l, 0].imshow(ex.overlay_heatmap(photo, hp))
        axes[l, 1].imshow(ex.overlay_heatmap(sketch, hs))
        cls_w = float(e["photo_to_sketch_cls"][l].mean())
        axes[l, 0].set_ylabel(f"XMA layer {l + 1}", fontsize=8)
        axes[l, 0].set_title("sketch [CLS] -> photo patches", fontsize=7)
        axes[l, 1].set_title(f"photo [CLS] -> sketch (on s-[CLS] {cls_w:.2f})", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"XModalViT teacher, fused cosine {e['cosine']:.3f}", fontsize=9)
    fig.tight_layout()
    ex.heatmap_colorbar(fig, list(axes[:, 1]), label="XMA attention (min-max per map)")
    return fig


@torch.no_grad()
def crossatnet_explain(model, sketch: torch.Tensor, photo: torch.Tensor) -> dict[str, Any]:
    """CrossATNet attention maps (h, w) of one pair: ``guided`` (by this sketch) and ``own``."""
    with _eval_mode(model):
        x_p, x_s = _batch(photo, model), _batch(sketch, model)
        z_p, own = model.encode_photo(x_p, return_attention=True)
        out = {"own": own[0].cpu(), "cosine": float((model.encode_sketch(x_s) * z_p).sum())}
        if model.cfg.cross_attention:
            _, guided = model.encode_photo_guided(x_p, x_s, return_attention=True)
            out["guided"] = guided[0].cpu()
    return out


def crossatnet_pair_figure(sketch: torch.Tensor, photo: torch.Tensor, e: dict[str, Any], title: str = "",
                           norm: str | None = None):
    """Sketch | photo with sketch-guided attention | photo with its own attention."""
    import matplotlib.pyplot as plt

    sketch, photo = ex.denormalize(sketch, norm), ex.denormalize(photo, norm)
    fig, axes = plt.subplots(1, 3, figsize=(7.2, 2.6))
    size = ex.to_display_image(photo).shape[:2]
    axes[0].imshow(ex.to_display_image(sketch))
    axes[0].set_title("sketch", fontsize=8)
    for ax, key, name in ((axes[1], "guided", "sketch-guided attention"), (axes[2], "own", "photo's own attention")):
        if key in e:
            att = e[key]
            ax.imshow(ex.overlay_heatmap(photo, ex.attention_to_heatmap(att.reshape(-1), tuple(att.shape), size)))
        else:
            ax.imshow(ex.to_display_image(photo))
            name += " (off)"
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"CrossATNet, cosine {e['cosine']:.3f}", fontsize=9)
    fig.tight_layout()
    ex.heatmap_colorbar(fig, list(axes[1:]), label="attention (min-max per map)")
    return fig


def explain_pair(method: str, model, sketch: torch.Tensor, photo: torch.Tensor, **kw):
    """The explanation figure of one (sketch, photo) pair for ``method`` in :data:`METHODS`.

    Keywords go to the method's figure function (``norm`` = input normalisation, ``title`` ...)."""
    if method == "zse":
        return zse_pair_figure(sketch, photo, zse_explain(model, sketch, photo), **kw)
    if method == "xmodalvit":
        if not hasattr(model, "layers"):
            raise ValueError("explain_pair('xmodalvit', ...): pass the fusion teacher (XModalTeacher); "
                             "the students have no cross-modal attention")
        return xmodal_pair_figure(sketch, photo, xmodal_explain(model, sketch, photo), **kw)
    if method == "crossatnet":
        return crossatnet_pair_figure(sketch, photo, crossatnet_explain(model, sketch, photo), **kw)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
