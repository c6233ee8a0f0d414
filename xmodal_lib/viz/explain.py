"""Explanation figures: attention maps on images, token correspondences, patch replacement.

Pure functions over tensors and images (no model, no hooks): the models return their attention
and tokens on request, the notebook passes them here. Conventions:

* an *image* is a float array ``(H, W, 3)`` in [0, 1] (see :func:`to_display_image` for tensors);
* a patch grid of ``grid x grid`` cells is numbered row-major, position ``p = row * grid + col``;
* with token selection (ZSE-SBIR pruning) a token set holds fewer rows than ``grid**2``; the
  *kept indices* list gives the grid position of each row (ascending, as the model keeps them).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from xmodal_lib.data.transforms import NORMS  # (mean, std) of every input normalisation
from xmodal_lib.viz.layout import span_parents, wrap_title

Match = tuple[int, int, float]

#: colour-bar label of an attention map drawn as weight x (number of cells): 1 = every cell the same weight
RELATIVE_ATTENTION_LABEL = "attention / uniform (1 = uniform)"


# --------------------------------------------------------------------------- images
def to_display_image(x: torch.Tensor | np.ndarray, mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None) -> np.ndarray:
    """A ``(3, H, W)`` / ``(H, W, 3)`` / ``(H, W)`` image as float ``(H, W, 3)`` in [0, 1].

    ``mean``/``std`` undo a ``Normalize``; without them values outside [0, 1] are taken to be
    normalised with mean = std = 0.5 (the ZSE-SBIR convention) when they lie in [-1, 1], and
    min-max rescaled otherwise.
    """
    a = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"image: expected (3,H,W), (H,W,3) or (H,W), got shape {tuple(np.shape(x))}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if mean is not None or std is not None:
        m = np.asarray(mean if mean is not None else (0.0,) * 3, dtype=np.float32)
        s = np.asarray(std if std is not None else (1.0,) * 3, dtype=np.float32)
        a = a * s + m
    elif a.min() < 0.0 or a.max() > 1.0:
        if a.min() >= -1.0 - 1e-4 and a.max() <= 1.0 + 1e-4:
            a = a * 0.5 + 0.5
        else:
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-8)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def denormalize(x: torch.Tensor | np.ndarray, norm: str | None = None) -> np.ndarray:
    """Model input -> display image ``(H, W, 3)`` in [0, 1]; ``norm`` names the loader's
    normalisation (``"none" | "half" | "imagenet"``), None = guess (see :func:`to_display_image`)."""
    if norm is None:
        return to_display_image(x)
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {list(NORMS)} or None, got {norm!r}")
    ms = NORMS[norm]
    return to_display_image(x, (0.0,) * 3, (1.0,) * 3) if ms is None else to_display_image(x, *ms)


def _check_grid(grid: int, name: str = "grid") -> int:
    if not isinstance(grid, (int, np.integer)) or grid < 1:
        raise ValueError(f"{name}: expected a positive int, got {grid!r}")
    return int(grid)


def _positions(n: int, grid: int, kept: Sequence[int] | torch.Tensor | None, name: str) -> np.ndarray:
    """Grid position of each of ``n`` token rows (identity without token selection)."""
    if kept is None:
        if n != grid * grid:
            raise ValueError(f"{name}: {n} patch tokens do not fill a {grid}x{grid} grid; pass the kept "
                             f"indices when token selection is on (and drop the [CLS]/[Ret] token)")
        return np.arange(n)
    pos = np.asarray(kept.cpu() if isinstance(kept, torch.Tensor) else kept, dtype=np.int64).reshape(-1)
    if len(pos) != n:
        raise ValueError(f"{name}: {len(pos)} kept indices for {n} tokens")
    if len(pos) and (pos.min() < 0 or pos.max() >= grid * grid or len(np.unique(pos)) != len(pos)):
        raise ValueError(f"{name}: kept indices must be distinct grid positions in [0, {grid * grid})")
    return pos


# --------------------------------------------------------------------------- attention
def attention_to_heatmap(attn: torch.Tensor | np.ndarray, grid: int | tuple[int, int],
                         image_size: int | tuple[int, int],
                         kept_indices: Sequence[int] | None = None, reduce: str = "mean",
                         normalize: bool = True, mode: str = "bilinear") -> np.ndarray:
    """One attention row over patches -> a ``(H, W)`` heatmap at image resolution.

    ``attn`` is ``(N,)`` or ``(heads, N)`` (heads are reduced by ``reduce`` = mean | max).
    N may be ``grid**2`` (patches), ``grid**2 + 1`` (a [CLS] row including the [CLS] column,
    which is dropped) or ``len(kept_indices)``; pruned positions get 0. ``grid`` may be
    ``(rows, cols)`` for non-square maps (CNN features); kept indices then need a square grid.
    """
    if isinstance(grid, (tuple, list)):
        gh, gw = (_check_grid(g) for g in grid)
        if gh != gw:
            if kept_indices is not None:
                raise ValueError("kept_indices: only supported on a square grid")
            return _heatmap_rect(attn, gh, gw, image_size, reduce, normalize, mode)
        grid = gh
    grid = _check_grid(grid)
    a = torch.as_tensor(np.asarray(attn) if not isinstance(attn, torch.Tensor) else attn).detach().float().cpu()
    if a.ndim == 2:
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce: expected 'mean' or 'max', got {reduce!r}")
        a = a.mean(0) if reduce == "mean" else a.amax(0)
    if a.ndim != 1:
        raise ValueError(f"attn: expected shape (N,) or (heads, N), got {tuple(a.shape)}")
    if kept_indices is None and a.numel() == grid * grid + 1:
        a = a[1:]  # drop the [CLS]->[CLS] entry
    pos = _positions(a.numel(), grid, kept_indices, "attn")
    full = torch.zeros(grid * grid)
    full[torch.as_tensor(pos)] = a
    return _upsample(full.view(1, 1, grid, grid), image_size, mode, normalize)  # (1, 1, g, g) -> (H, W)


def _upsample(m: torch.Tensor, image_size, mode: str, normalize: bool) -> np.ndarray:
    """A ``(1, 1, gh, gw)`` map resized to ``image_size``, optionally min-max normalised to [0, 1]."""
    hw = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    up = F.interpolate(m, size=hw, mode=mode, align_corners=False) if mode != "nearest" \
        else F.interpolate(m, size=hw, mode="nearest")
    h = up[0, 0].numpy()
    if normalize:
        lo, hi = float(h.min()), float(h.max())
        h = (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h)
    return h.astype(np.float32)


def _heatmap_rect(attn, gh: int, gw: int, image_size, reduce: str, normalize: bool, mode: str) -> np.ndarray:
    a = torch.as_tensor(np.asarray(attn) if not isinstance(attn, torch.Tensor) else attn).detach().float().cpu()
    a = a.reshape(-1, gh * gw).mean(0) if reduce == "mean" else a.reshape(-1, gh * gw).amax(0)
    return _upsample(a.view(1, 1, gh, gw), image_size, mode, normalize)  # (1, 1, gh, gw) -> (H, W)


def overlay_heatmap(image: np.ndarray | torch.Tensor, heatmap: np.ndarray, alpha: float = 0.5,
                    cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heatmap (resized to the image if needed) over an image; returns (H, W, 3)."""
    import matplotlib  # lazy: keeps viz.explain free of matplotlib at import

    img = to_display_image(image)
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.shape != img.shape[:2]:
        t = torch.as_tensor(hm)[None, None]
        hm = F.interpolate(t, size=img.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
    colour = matplotlib.colormaps[cmap](np.clip(hm, 0, 1))[..., :3]
    return np.clip((1 - alpha) * img + alpha * colour, 0, 1).astype(np.float32)


def heatmap_colorbar(fig, ax, cmap: str = "jet", label: str = "attention (min-max per map)", lo: float = 0.0,
                     hi: float = 1.0, ticks: Sequence[str] = ("low", "high")):
    """A colorbar beside ``ax`` (one axes or a list) for a heat map drawn with :func:`overlay_heatmap`
    (or lines coloured by a value in [lo, hi]); with the default ticks it says that the map was
    min-max scaled. The bar spans exactly the drawn images of ``ax`` (never up beside their titles,
    whatever layout runs later); titles already set on ``ax`` are wrapped to their panel's width."""
    import matplotlib  # lazy: keeps viz.explain free of matplotlib at import

    sm = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(lo, hi), cmap=cmap)
    cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02)
    if ticks:
        cb.set_ticks([lo, hi], labels=list(ticks))
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)
    span_parents(cb, ax)
    for p in (list(ax) if isinstance(ax, (list, tuple)) else [ax]):
        wrap_title(p)
    return cb


def attention_grid_figure(image: np.ndarray | torch.Tensor, attn: torch.Tensor | np.ndarray, grid: int,
                          layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
                          kept_indices: Sequence[Sequence[int] | None] | None = None,
                          title: str = "", alpha: float = 0.55):
    """Figure of layers (rows) x heads (columns) of [CLS] attention overlaid on the image.

    ``attn`` is ``(L, H, N)`` (one [CLS] row per layer and head) or a list of ``(H, N_l)``
    (N_l shrinks with token selection; then ``kept_indices[l]`` gives its positions). The last
    column is the head mean.
    """
    import matplotlib.pyplot as plt  # lazy: keeps viz.explain free of matplotlib at import

    rows = [torch.as_tensor(np.asarray(r) if not isinstance(r, torch.Tensor) else r) for r in attn]
    if not rows or any(r.ndim != 2 for r in rows):
        raise ValueError("attn: expected (layers, heads, N) or a list of (heads, N) rows")
    layers = list(range(len(rows))) if layers is None else list(layers)
    n_heads = rows[0].shape[0]
    heads = list(range(n_heads)) if heads is None else list(heads)
    img = to_display_image(image)
    fig, axes = plt.subplots(len(layers), len(heads) + 2, figsize=(1.6 * (len(heads) + 2), 1.6 * len(layers)),
                             squeeze=False)
    for r, layer in enumerate(layers):
        kept = kept_indices[layer] if kept_indices is not None else None
        axes[r, 0].imshow(img)
        axes[r, 0].set_ylabel(f"layer {layer}", fontsize=8)
        for c, h in enumerate(heads):
            hm = attention_to_heatmap(rows[layer][h], grid, img.shape[:2], kept_indices=kept)
            axes[r, c + 1].imshow(overlay_heatmap(img, hm, alpha))
            if r == 0:
                axes[r, c + 1].set_title(f"head {h}", fontsize=8)
        hm = attention_to_heatmap(rows[layer], grid, img.shape[:2], kept_indices=kept)
        axes[r, -1].imshow(overlay_heatmap(img, hm, alpha))
        if r == 0:
            axes[r, -1].set_title("mean", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    heatmap_colorbar(fig, list(axes[:, -1]), label="attention (min-max per map)")
    return fig


# --------------------------------------------------------------------------- tokens
def kernel_matrix(sketch_tokens: torch.Tensor, photo_tokens: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every sketch token with every photo token: ``(Ns, Np)``, NaN -> 0."""
    s, p = torch.as_tensor(sketch_tokens).float(), torch.as_tensor(photo_tokens).float()
    if s.ndim != 2 or p.ndim != 2 or s.shape[1] != p.shape[1]:
        raise ValueError(f"tokens: expected (Ns, D) and (Np, D), got {tuple(s.shape)} and {tuple(p.shape)}")
    k = F.normalize(s, dim=1) @ F.normalize(p, dim=1).T  # (Ns, Np)
    return torch.nan_to_num(k, nan=0.0)


def token_correspondences(sketch_tokens: torch.Tensor, photo_tokens: torch.Tensor, top_n: int = 10,
                          sketch_positions: Sequence[int] | None = None,
                          photo_positions: Sequence[int] | None = None,
                          sketch_mask: np.ndarray | Sequence[bool] | None = None,
                          grid: int | None = None) -> list[Match]:
    """The ``top_n`` strongest sketch->photo token matches as ``(i, j, cosine)``.

    Each sketch token i is matched to its most similar photo token j (argmax of the kernel row);
    the ``top_n`` matches with the highest similarity are returned, strongest first. ``i``/``j``
    are grid positions: row indices mapped through ``sketch_positions``/``photo_positions`` (the
    kept-index lists under token selection). ``sketch_mask`` (bool per grid position, e.g. the
    ink mask) restricts which sketch positions may start a match.
    """
    if top_n < 1:
        raise ValueError(f"top_n: expected >= 1, got {top_n}")
    k = kernel_matrix(sketch_tokens, photo_tokens)
    ns, npt = k.shape
    spos = np.arange(ns) if sketch_positions is None else np.asarray(sketch_positions, dtype=np.int64)
    ppos = np.arange(npt) if photo_positions is None else np.asarray(photo_positions, dtype=np.int64)
    if len(spos) != ns or len(ppos) != npt:
        raise ValueError(f"positions: {len(spos)}/{len(ppos)} positions for {ns}/{npt} tokens")
    if grid is not None:
        _positions(ns, grid, spos if sketch_positions is not None else None, "sketch_tokens")
        _positions(npt, grid, ppos if photo_positions is not None else None, "photo_tokens")
    best_sim, best_j = k.max(dim=1)  # (Ns,)
    allowed = np.ones(ns, dtype=bool)
    if sketch_mask is not None:
        mask = np.asarray(sketch_mask, dtype=bool).reshape(-1)
        if ns and len(mask) <= int(spos.max()):
            raise ValueError(f"sketch_mask: {len(mask)} entries do not cover position {spos.max()}")
        allowed = mask[spos]
    order = torch.argsort(best_sim, descending=True, stable=True).tolist()
    out: list[Match] = []
    for i in order:
        if allowed[i]:
            out.append((int(spos[i]), int(ppos[int(best_j[i])]), float(best_sim[i])))
            if len(out) == top_n:
                break
    return out


def ink_mask(sketch_img: np.ndarray | torch.Tensor, grid: int, ink_mask_threshold: float = 0.01,
             ink_level: float = 0.5) -> np.ndarray:
    """Bool ``(grid*grid,)``: cells whose share of ink pixels (grey < ``ink_level``) exceeds the threshold."""
    grid = _check_grid(grid)
    img = to_display_image(sketch_img)
    h, w = img.shape[:2]
    if h % grid or w % grid:
        raise ValueError(f"sketch image {h}x{w} is not divisible into a {grid}x{grid} grid")
    grey = img.mean(-1)
    ink = (grey < ink_level).reshape(grid, h // grid, grid, w // grid)  # (g, ph, g, pw)
    share = ink.mean(axis=(1, 3))  # (g, g)
    return (share > ink_mask_threshold).reshape(-1)


def patch_mapping(sketch_tokens: torch.Tensor, photo_tokens: torch.Tensor, grid: int,
                  kept_indices: tuple[Sequence[int] | None, Sequence[int] | None] | None = None) -> np.ndarray:
    """For each sketch grid position, the grid position of its best photo patch (argmax cosine).

    Returns int ``(grid*grid,)``; -1 where the sketch token was pruned by token selection.
    """
    grid = _check_grid(grid)
    s_kept, p_kept = kept_indices if kept_indices is not None else (None, None)
    spos = _positions(len(sketch_tokens), grid, s_kept, "sketch_tokens")
    ppos = _positions(len(photo_tokens), grid, p_kept, "photo_tokens")
    best = kernel_matrix(sketch_tokens, photo_tokens).argmax(dim=1).numpy()  # (Ns,)
    mapping = np.full(grid * grid, -1, dtype=np.int64)
    mapping[spos] = ppos[best]
    return mapping


def patch_replacement(sketch_img: np.ndarray | torch.Tensor, photo_img: np.ndarray | torch.Tensor,
                      sketch_tokens: torch.Tensor, photo_tokens: torch.Tensor, grid: int,
                      ink_mask_threshold: float = 0.01,
                      kept_indices: tuple[Sequence[int] | None, Sequence[int] | None] | None = None,
                      background: float = 1.0) -> np.ndarray:
    """Sketch-to-photo synthesis: every ink patch of the sketch becomes its best photo patch.

    Tokens are the patch tokens (no [CLS]/[Ret]) of one sketch and one photo, ``(Ns, D)`` and
    ``(Np, D)``; ``kept_indices = (sketch_kept, photo_kept)`` under token selection. Non-ink cells
    are ``background`` (white); ink cells whose token was pruned keep the sketch's own pixels.
    The photo is resized to the sketch's size. Returns float ``(H, W, 3)`` in [0, 1].
    """
    grid = _check_grid(grid)
    sk = to_display_image(sketch_img)
    ph = to_display_image(photo_img)
    h, w = sk.shape[:2]
    if ph.shape[:2] != (h, w):
        t = torch.as_tensor(ph).permute(2, 0, 1)[None]  # (1, 3, H', W')
        ph = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    mask = ink_mask(sk, grid, ink_mask_threshold)
    mapping = patch_mapping(sketch_tokens, photo_tokens, grid, kept_indices)
    ph_cells = ph.reshape(grid, h // grid, grid, w // grid, 3).transpose(0, 2, 1, 3, 4)  # (g, g, ph, pw, 3)
    sk_cells = sk.reshape(grid, h // grid, grid, w // grid, 3).transpose(0, 2, 1, 3, 4)
    out = np.full_like(ph_cells, background)
    for p in np.flatnonzero(mask):
        r, c = divmod(int(p), grid)
        j = mapping[p]
        out[r, c] = sk_cells[r, c] if j < 0 else ph_cells[j // grid, j % grid]
    return out.transpose(0, 2, 1, 3, 4).reshape(h, w, 3).astype(np.float32)


# --------------------------------------------------------------------------- drawing
def patch_centres(grid: int, image_size: int | tuple[int, int]) -> np.ndarray:
    """``(grid*grid, 2)`` pixel (x, y) centres of the grid cells, row-major."""
    h, w = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    ys, xs = np.meshgrid((np.arange(grid) + 0.5) * h / grid, (np.arange(grid) + 0.5) * w / grid, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def draw_correspondences(ax, sketch_img: np.ndarray | torch.Tensor, photo_img: np.ndarray | torch.Tensor,
                         matches: Sequence[Match], grid: int, gap: int = 8, cmap: str = "viridis",
                         linewidth: float = 1.2) -> tuple[float, float]:
    """Sketch and photo side by side with a line (coloured by similarity) per match; returns the
    (lowest, highest) similarity that the colour scale spans (for :func:`heatmap_colorbar`)."""
    import matplotlib  # lazy: keeps viz.explain free of matplotlib at import

    sk, ph = to_display_image(sketch_img), to_display_image(photo_img)
    h = max(sk.shape[0], ph.shape[0])
    canvas = np.ones((h, sk.shape[1] + gap + ph.shape[1], 3), dtype=np.float32)
    canvas[:sk.shape[0], :sk.shape[1]] = sk
    canvas[:ph.shape[0], sk.shape[1] + gap:] = ph
    ax.imshow(canvas)
    cs, cp = patch_centres(grid, sk.shape[:2]), patch_centres(grid, ph.shape[:2])
    sims = np.array([m[2] for m in matches]) if matches else np.zeros(0)
    lo, hi = (sims.min(), sims.max()) if len(sims) else (0.0, 1.0)
    colours = matplotlib.colormaps[cmap]
    for i, j, s in matches:
        x0, y0 = cs[i]
        x1, y1 = cp[j]
        x1 += sk.shape[1] + gap
        col = colours((s - lo) / (hi - lo) if hi > lo else 1.0)
        ax.plot([x0, x1], [y0, y1], "-", color=col, lw=linewidth)
        ax.plot([x0, x1], [y0, y1], "o", color=col, ms=3)
    ax.set_xticks([])
    ax.set_yticks([])
    return float(lo), float(hi)


def correspondence_figure(sketch_img, photo_img, matches: Sequence[Match], grid: int, title: str = ""):
    """A one-axes figure of :func:`draw_correspondences`."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.explain free of matplotlib at import

    fig, ax = plt.subplots(figsize=(6.6, 3.2))
    lo, hi = draw_correspondences(ax, sketch_img, photo_img, matches, grid)
    heatmap_colorbar(fig, ax, "viridis", "token cosine (line colour)", lo, hi, (f"{lo:.2f}", f"{hi:.2f}"))
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def patch_replacement_figure(rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], title: str = ""):
    """Rows of (label, sketch, photo, synthesis) drawn as sketch | photo | synthesis."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.explain free of matplotlib at import

    fig, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.3 * len(rows)), squeeze=False)
    for r, (label, sk, ph, syn) in enumerate(rows):
        for c, (img, name) in enumerate([(sk, "sketch"), (ph, "photo"), (syn, "patch replacement")]):
            axes[r, c].imshow(to_display_image(img))
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
        axes[r, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
