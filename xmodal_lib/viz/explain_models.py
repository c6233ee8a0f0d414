"""Model-aware explanation figures: run a method on one (sketch, photo) pair and draw why it matches.

* ``zse``: [Ret] attention (per layer and head, or last layer), the strongest token
  correspondences of the post-CA patch tokens, and sketch-to-photo patch replacement;
* ``xmodalvit``: per XMA layer, where the sketch [CLS] looks in the photo and the photo [CLS]
  in the sketch (needs the fusion *teacher*; students have no cross-modal attention);
* ``crossatnet``: the sketch-guided attention over the photo and the photo's own attention.

Every method's run gives one :class:`Explanation` (:func:`explain`), which its pair figure draws
(:func:`pair_figure`); :func:`explain_pair` does both. Drawing is delegated to the pure functions of
:mod:`xmodal_lib.viz.explain`; the models give their attention through named methods (no hooks).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from xmodal_lib.infra.devices import module_device
from xmodal_lib.viz import explain as ex
from xmodal_lib.viz.layout import clear_titles


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


# --------------------------------------------------------------------------- the explanation
@dataclass
class Explanation:
    """What one method computed for one (sketch, photo) pair (batch dim removed): the input of every
    pair figure, the same type for the three methods.

    Filled by every method:

    * ``method``: ``"zse"``, ``"xmodalvit"`` or ``"crossatnet"``; ``grid``: (rows, cols) of the patch /
      feature grid every map lies on;
    * ``cosine``: cosine of the pair's embeddings (ZSE-SBIR: the pre-CA [Ret] tokens, "Ours-Ret";
      XModalViT: the teacher's fused [CLS] tokens; CrossATNet: the shared space, own-attention photo);
    * ``photo_attn``: per layer, ``(heads, N_l)`` attention over the photo's positions (ZSE-SBIR:
      [Ret] -> patches; XModalViT: the sketch [CLS] -> photo patches; CrossATNet: one ``(1, N)`` map,
      the photo's own attention, the one retrieval uses);
    * ``sketch_attn``: per layer, ``(heads, N_l)`` over the sketch's positions (ZSE-SBIR: [Ret] ->
      patches; XModalViT: the photo [CLS] -> sketch patches; CrossATNet: empty, its sketch branch
      average-pools).

    Optional, None where the method has no such thing:

    * ``photo_attn_pos`` / ``sketch_attn_pos``: per layer ``(N_l,)`` grid positions of the columns
      (ZSE-SBIR, which token selection can thin out; None = every cell, row-major);
    * ``guided_attn``: ``(1, N)`` CrossATNet's sketch-guided attention over the photo (None without
      cross-attention);
    * ``photo_to_sketch_cls``: per XMA layer ``(heads,)`` weight of the photo [CLS] on the fresh sketch [CLS];
    * ZSE-SBIR: ``sketch_tokens`` / ``photo_tokens`` ``(N, D)`` post-CA patch tokens,
      ``sketch_kept`` / ``photo_kept`` ``(N,)`` their grid positions, ``rn_score`` the relation score.
    """

    method: str
    grid: tuple[int, int]
    cosine: float
    photo_attn: list[torch.Tensor]
    sketch_attn: list[torch.Tensor]
    photo_attn_pos: list[torch.Tensor] | None = None
    sketch_attn_pos: list[torch.Tensor] | None = None
    guided_attn: torch.Tensor | None = None
    photo_to_sketch_cls: list[torch.Tensor] | None = None
    sketch_tokens: torch.Tensor | None = None
    photo_tokens: torch.Tensor | None = None
    sketch_kept: torch.Tensor | None = None
    photo_kept: torch.Tensor | None = None
    rn_score: float | None = None

    @property
    def side(self) -> int:
        """The side of a square grid (ZSE-SBIR's token figures need one)."""
        if self.grid[0] != self.grid[1]:
            raise ValueError(f"Explanation.side: the {self.grid[0]}x{self.grid[1]} grid is not square")
        return int(self.grid[0])

    def _tokens(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.sketch_tokens is None or self.photo_tokens is None or self.sketch_kept is None \
                or self.photo_kept is None:
            raise ValueError(f"Explanation of {self.method!r}: no patch tokens (only ZSE-SBIR's have them)")
        return self.sketch_tokens, self.photo_tokens, self.sketch_kept, self.photo_kept

    def correspondences(self, top_n: int = 12, sketch_mask: np.ndarray | None = None) -> list[ex.Match]:
        """The ``top_n`` strongest (sketch cell, photo cell, cosine) matches of the post-CA patch tokens."""
        st, pt, sk, pk = self._tokens()
        return ex.token_correspondences(st, pt, top_n, sk.tolist(), pk.tolist(), sketch_mask)

    def kept(self) -> tuple[list[int], list[int]]:
        """Grid positions of the kept sketch and photo tokens."""
        _, _, sk, pk = self._tokens()
        return sk.tolist(), pk.tolist()


def _cpu0(xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [x[0].cpu() for x in xs]  # drop the batch dim of a one-pair batch


# --------------------------------------------------------------------------- ZSE-SBIR
@torch.no_grad()
def zse_explain(model, sketch: torch.Tensor, photo: torch.Tensor) -> Explanation:
    """Run ZSE-SBIR SA (with attention), CA and RN on one pair; eval mode, no gradients."""
    with _eval_mode(model):
        s = model.sa_attention(_batch(sketch, model), "sketch")
        p = model.sa_attention(_batch(photo, model), "photo")
        cs, cp = model.ca(s.tokens, p.tokens)  # (1, 1+N, D) each
        rn = model.rn(cs[:, 1:], s.kept, cp[:, 1:], p.kept)
        cos = torch.nn.functional.cosine_similarity(s.tokens[:, 0], p.tokens[:, 0]).item()
    g = int(model.sa.grid)
    return Explanation("zse", (g, g), float(cos), photo_attn=_cpu0(p.ret_attn), sketch_attn=_cpu0(s.ret_attn),
                       photo_attn_pos=_cpu0(p.ret_attn_pos), sketch_attn_pos=_cpu0(s.ret_attn_pos),
                       sketch_tokens=cs[0, 1:].cpu(), photo_tokens=cp[0, 1:].cpu(), sketch_kept=s.kept[0].cpu(),
                       photo_kept=p.kept[0].cpu(), rn_score=float(rn.reshape(-1)[0]))


def zse_attention_figure(image: torch.Tensor, attn: Sequence[torch.Tensor], attn_pos: Sequence[torch.Tensor],
                         grid: int, title: str = "", heads: Sequence[int] | None = None):
    """[Ret] attention per layer (rows) and head (columns) of one image."""
    return ex.attention_grid_figure(image, list(attn), grid, heads=heads,
                                    kept_indices=[p.tolist() for p in attn_pos], title=title)


def zse_pair_figure(sketch: torch.Tensor, photo: torch.Tensor, e: Explanation, top_n: int = 12,
                    ink_threshold: float = 0.01, title: str = "", norm: str | None = None):
    """Sketch/photo [Ret] attention (last layer), token correspondences and patch replacement.

    ``norm`` = the input normalisation of the images (to draw them in true colours)."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.explain_models free of matplotlib at import

    sketch, photo = ex.denormalize(sketch, norm), ex.denormalize(photo, norm)
    g = e.side
    fig, axes = plt.subplot_mosaic("ABCCD", figsize=(13, 3.2))
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
    ex.heatmap_colorbar(fig, axes["B"], label="[Ret] attention (min-max per map)")
    fig.suptitle(title or f"ZSE-SBIR: Ret cosine {e.cosine:.3f}, RN score {e.rn_score:.3f}", fontsize=9)
    fig.tight_layout()
    return clear_titles(fig)


# --------------------------------------------------------------------------- XModalViT
@torch.no_grad()
def xmodal_explain(teacher, sketch: torch.Tensor, photo: torch.Tensor) -> Explanation:
    """XMA attention of the fusion teacher for one pair: per layer ``photo_attn`` (heads, Np) = the
    sketch [CLS] over photo patches, ``sketch_attn`` (heads, Ns) = the photo [CLS] over sketch patches,
    ``photo_to_sketch_cls`` (heads,) = the photo [CLS]'s weight on the fresh sketch [CLS]."""
    with _eval_mode(teacher):
        x_p, x_s = _batch(photo, teacher), _batch(sketch, teacher)
        z_p, z_s = teacher(x_p, x_s)
        maps = teacher.xma_attention(x_p, x_s)
    return Explanation(
        "xmodalvit", tuple(int(v) for v in teacher.grid),
        float(torch.nn.functional.cosine_similarity(z_p, z_s).item()),
        photo_attn=[m["sketch_to_photo"][0, :, 1:].cpu() for m in maps],  # drop q_s itself
        sketch_attn=[m["photo_to_sketch"][0, :, 2:].cpu() for m in maps],  # drop q_p, c_s
        photo_to_sketch_cls=[m["photo_to_sketch"][0, :, 1].cpu() for m in maps])


def xmodal_pair_figure(sketch: torch.Tensor, photo: torch.Tensor, e: Explanation, title: str = "",
                       norm: str | None = None):
    """Rows = XMA layers; where the fused sketch [CLS] looks in the photo and vice versa."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.explain_models free of matplotlib at import

    sketch, photo = ex.denormalize(sketch, norm), ex.denormalize(photo, norm)
    n = len(e.photo_attn)
    fig, axes = plt.subplots(n, 2, figsize=(5.6, 0.5 + 2.5 * n), squeeze=False)
    for l in range(n):
        hp = ex.attention_to_heatmap(e.photo_attn[l], e.grid, ex.to_display_image(photo).shape[:2])
        hs = ex.attention_to_heatmap(e.sketch_attn[l], e.grid, ex.to_display_image(sketch).shape[:2])
        axes[l, 0].imshow(ex.overlay_heatmap(photo, hp))
        axes[l, 1].imshow(ex.overlay_heatmap(sketch, hs))
        cls_w = float(e.photo_to_sketch_cls[l].mean())
        axes[l, 0].set_ylabel(f"XMA layer {l + 1}", fontsize=8)
        axes[l, 0].set_title("sketch [CLS] -> photo patches", fontsize=7)
        axes[l, 1].set_title(f"photo [CLS] -> sketch (on s-[CLS] {cls_w:.2f})", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"XModalViT teacher, fused cosine {e.cosine:.3f}", fontsize=9)
    fig.tight_layout()
    ex.heatmap_colorbar(fig, list(axes[:, 1]), label="XMA attention (min-max per map)")
    return clear_titles(fig)


# --------------------------------------------------------------------------- CrossATNet
@torch.no_grad()
def crossatnet_explain(model, sketch: torch.Tensor, photo: torch.Tensor) -> Explanation:
    """CrossATNet's attention over the photo for one pair: ``photo_attn[0]`` (1, N) the photo's own
    map, ``guided_attn`` (1, N) the map this sketch induces (None without cross-attention)."""
    with _eval_mode(model):
        x_p, x_s = _batch(photo, model), _batch(sketch, model)
        own = model.photo_attention(x_p)[0]  # (h, w)
        cos = float(model.similarity(model.encode_sketch(x_s), model.encode_photo(x_p))[0, 0])
        guided = model.guided_attention(x_p, x_s)[0] if model.cfg.cross_attention else None
    return Explanation("crossatnet", tuple(own.shape), cos, photo_attn=[own.reshape(1, -1).cpu()], sketch_attn=[],
                       guided_attn=None if guided is None else guided.reshape(1, -1).cpu())


def crossatnet_pair_figure(sketch: torch.Tensor, photo: torch.Tensor, e: Explanation, title: str = "",
                           norm: str | None = None):
    """Sketch | photo with sketch-guided attention | photo with its own attention."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.explain_models free of matplotlib at import

    sketch, photo = ex.denormalize(sketch, norm), ex.denormalize(photo, norm)
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.1))
    size = ex.to_display_image(photo).shape[:2]
    axes[0].imshow(ex.to_display_image(sketch))
    axes[0].set_title("sketch", fontsize=8)
    for ax, att, name in ((axes[1], e.guided_attn, "sketch-guided attention"),
                          (axes[2], e.photo_attn[0], "photo's own attention")):
        if att is not None:
            ax.imshow(ex.overlay_heatmap(photo, ex.attention_to_heatmap(att, e.grid, size)))
        else:
            ax.imshow(ex.to_display_image(photo))
            name += " (off)"
        ax.set_title(name, fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    ex.heatmap_colorbar(fig, axes[2], label="attention, both maps (min-max per map)")
    fig.suptitle(title or f"CrossATNet, cosine {e.cosine:.3f}", fontsize=9)
    fig.tight_layout()
    return clear_titles(fig)


def explain(method: str, model, sketch: torch.Tensor, photo: torch.Tensor) -> Explanation:
    """The :class:`Explanation` of one (sketch, photo) pair for ``method`` in :data:`METHODS`."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "xmodalvit" and not hasattr(model, "layers"):
        raise ValueError("explain('xmodalvit', ...): pass the fusion teacher (XModalTeacher); "
                         "the students have no cross-modal attention")
    return {"zse": zse_explain, "xmodalvit": xmodal_explain, "crossatnet": crossatnet_explain}[method](
        model, sketch, photo)


def pair_figure(sketch: torch.Tensor, photo: torch.Tensor, e: Explanation, **kw):
    """The pair figure of an :class:`Explanation` (the figure function of ``e.method``)."""
    draw = {"zse": zse_pair_figure, "xmodalvit": xmodal_pair_figure, "crossatnet": crossatnet_pair_figure}
    return draw[e.method](sketch, photo, e, **kw)


def explain_pair(method: str, model, sketch: torch.Tensor, photo: torch.Tensor, **kw):
    """The explanation figure of one (sketch, photo) pair for ``method`` in :data:`METHODS`.

    Keywords go to the method's figure function (``norm`` = input normalisation, ``title`` ...)."""
    return pair_figure(sketch, photo, explain(method, model, sketch, photo), **kw)
