"""Figures of notebook 03 (CrossATNet): the class graph, attention maps, Hamming vs real retrieval.

Pure plotting functions: tensors in, a matplotlib figure out (the notebook saves it with
``xmodal_lib.viz.plots.save_fig``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from xmodal_lib.methods.crossatnet.gcn import cosine_distances
from xmodal_lib.viz.explain import RELATIVE_ATTENTION_LABEL, denormalize
from xmodal_lib.viz.layout import place_labels


def pca_2d(x: Tensor, basis: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """2-D PCA coordinates of rows of ``x`` [C, d]; returns ``(coords [C, 2], (mean, components))``
    packed as one tensor [3, d] so other points can be projected with the same ``basis``."""
    x = x.double()
    if basis is None:
        mean = x.mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
        basis = torch.cat([mean, v[:2]])  # (3, d)
    return ((x - basis[:1]) @ basis[1:].T).float(), basis


def plot_class_graph(names: Sequence[str], features: Tensor, adjacency: Tensor,
                     extra_names: Sequence[str] = (), extra_features: Tensor | None = None,
                     extra_k: int = 2, title: str = "", label_every: int = 1) -> plt.Figure:
    """The seen-class graph drawn on a 2-D PCA of the class-name embeddings.

    ``extra_*`` (e.g. unseen classes, for the figure only, after training) are projected onto the
    same axes and linked with dashed lines to their ``extra_k`` nearest seen classes. Names are
    placed where they overlap neither another name nor a point (unseen classes first, then every
    ``label_every``-th seen class); names that find no free place are left out, and the title then
    says how many classes are named.
    """
    xy, basis = pca_2d(features)
    fig, ax = plt.subplots(figsize=(10, 8))
    ii, jj = torch.nonzero(torch.triu(adjacency, diagonal=1), as_tuple=True)
    for i, j in zip(ii.tolist(), jj.tolist()):
        ax.plot([xy[i, 0], xy[j, 0]], [xy[i, 1], xy[j, 1]], color="0.65", lw=0.8, zorder=1)
    ax.scatter(xy[:, 0], xy[:, 1], s=28, color="#1f77b4", zorder=2, label="seen class (graph node)")
    exy = torch.zeros(0, 2)
    if extra_features is not None and len(extra_names):
        exy, _ = pca_2d(extra_features, basis)
        d = cosine_distances(torch.cat([extra_features, features]).float())[: len(extra_names), len(extra_names):]
        for e in range(len(extra_names)):
            for j in torch.argsort(d[e], stable=True)[:extra_k].tolist():
                ax.plot([exy[e, 0], xy[j, 0]], [exy[e, 1], xy[j, 1]], color="#d62728", lw=0.8, ls="--", zorder=1)
        ax.scatter(exy[:, 0], exy[:, 1], s=90, marker="*", color="#d62728", zorder=3,
                   label=f"unseen class (not in the graph; {extra_k} nearest seen)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.margins(0.06)
    ax.autoscale_view()
    ax.set_xlim(ax.get_xlim())  # frozen: the labels are placed in display coordinates
    ax.set_ylim(ax.get_ylim())
    every = max(1, label_every)
    picked = [k for k in range(len(names)) if k % every == 0]
    placed: list = []
    n_extra = len(place_labels(ax, exy.tolist(), list(extra_names), xy.tolist(), fontsize=8, color="#d62728",
                               placed=placed, marker_pt=10.0)) if len(exy) else 0
    n_seen = len(place_labels(ax, xy[picked].tolist(), [names[k] for k in picked], xy.tolist() + exy.tolist(),
                              fontsize=7.5, placed=placed))
    total, skipped = len(names) + len(exy), len(picked) + len(exy) - n_extra - n_seen
    title = title or "Seen-class graph on a 2-D PCA of class-name embeddings"
    if n_extra + n_seen < total:
        which = [f"every {_ordinal(every)} seen class"] if every > 1 else []
        which += [f"{skipped} more left out that would overlap another name"] if skipped else []
        title += f"\n(names shown for {n_extra + n_seen} of {total} classes: " + "; ".join(which) + ")"
    ax.set_title(title)
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=2, frameon=False)  # below: over no name
    return fig


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _show(img: Tensor):
    return denormalize(img, "imagenet")  # (H, W, 3) in [0, 1]; CrossATNet inputs are ImageNet-normalised


def plot_attention(sketches: Tensor, photos: Tensor, guided: Tensor, own: Tensor | None = None,
                   titles: Sequence[str] = ()) -> plt.Figure:
    """Rows: examples. Columns: sketch, photo, sketch-guided attention on the photo, the photo's
    own attention (the retrieval path). Images are ImageNet-normalised [B, 3, H, W]; maps [B, h, w].

    Each map is a softmax over the h*w photo cells; it is drawn as weight x (h*w), i.e. relative to
    uniform attention (1 = uniform, 2 = twice the uniform share), on one colour scale per row with
    a colorbar, so the two maps of an example can be compared directly."""
    b = sketches.shape[0]
    cols = 4 if own is not None else 3
    fig, axes = plt.subplots(b, cols, figsize=(2.4 * cols, 2.2 * b), squeeze=False)
    size = photos.shape[-2:]

    def up(m: Tensor) -> Tensor:
        rel = m.float() * m.numel()  # (h, w) weights -> multiples of the uniform weight 1/(h*w)
        return torch.nn.functional.interpolate(rel[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]

    for r in range(b):
        maps = [up(guided[r])] + ([up(own[r])] if own is not None else [])
        vmax = max(float(m.max()) for m in maps)
        panels = [(_show(sketches[r]), None, "sketch (query)"), (_show(photos[r]), None, "photo"),
                  (_show(photos[r]), maps[0], "sketch-guided attention")]
        if own is not None:
            panels.append((_show(photos[r]), maps[1], "photo's own attention"))
        for c, (img, att, name) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(img)
            if att is not None:
                im = ax.imshow(att.cpu(), cmap="jet", alpha=0.5, vmin=0.0, vmax=vmax)
                cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
                cb.set_label(RELATIVE_ATTENTION_LABEL, fontsize=7)
                cb.ax.tick_params(labelsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
        if titles:
            axes[r, 0].set_ylabel(titles[r], fontsize=8)
    fig.suptitle("CrossATNet attention on unseen-class photos (weight relative to uniform; red = attended)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_hash_tradeoff(rows: Mapping[str, Mapping[str, float]], metric: str = "map_all_voc",
                       chance: Mapping[str, float] | None = None, title: str = "") -> plt.Figure:
    """Accuracy, score time and gallery bytes per item for ``real`` and each ``hash<b>`` row.

    One readable panel per quantity (bars labelled with their values, y-axes with units); ``chance``
    (e.g. measured on random scores) draws a dashed, legended line on the accuracy panel. Time and
    memory are on log axes: hashing trades 30-100x less memory for slower scoring here (see
    :func:`hash_tradeoff_summary` for the reason)."""
    hashes = sorted((k for k in rows if k.startswith("hash")), key=lambda k: int(k[4:]) if k[4:].isdigit() else 0)
    keys = hashes + [k for k in rows if k == "real"]  # hash codes by length, then the float embedding
    colors = ["#1f77b4" if k == "real" else "#2ca02c" for k in keys]
    panels = [(metric, f"{metric} (unseen classes)", metric, False),
              ("score_seconds", "scoring time, all queries x gallery", "seconds (log scale)", True),
              ("bytes_per_item", "memory per gallery item", "bytes (log scale)", True)]
    # per panel: a plot area of >= 3.6 x 3.2 in (>= 0.6 in per bar) plus its labels
    width = max(3.6, 0.6 * len(keys)) + 1.2
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 5.0))
    for ax, (field, label, ylabel, log) in zip(axes, panels):
        vals = [float(rows[k][field]) for k in keys]
        bars = ax.bar(keys, vals, color=colors)
        ax.bar_label(bars, fmt="%.3g", fontsize=9, padding=2)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(min(vals) / 3, max(vals) * 30)  # headroom for the labels and the note
        else:
            ax.set_ylim(0, max(vals + [float((chance or {}).get(field, 0.0))]) * 1.25)
        if not log and chance and field in chance:
            ax.axhline(float(chance[field]), color="k", ls="--", lw=1.2,
                       label=f"chance, random scores ({float(chance[field]):.3f})")
            ax.legend(fontsize=9, loc="upper left")
        if field == "score_seconds":
            ax.text(0.02, 0.97, "torch has no popcount kernel:\nHamming = XOR + lookup, memory-bound;\n"
                    "real = one BLAS matrix product", transform=ax.transAxes,
                    fontsize=9, va="top")
        ax.set_title(label, fontsize=11)
        ax.set_ylabel(ylabel, fontsize=10)
        ax.set_xlabel("embedding (real-valued float32, or hash code of b bits)", fontsize=9)
        ax.tick_params(axis="both", labelsize=9)
    fig.suptitle(title or "CrossATNet: Hamming (binary hash codes) vs real-valued retrieval", fontsize=12)
    fig.tight_layout()
    return fig


def attention_agreement(guided: Tensor, own: Tensor, eps: float = 1e-8) -> dict:
    """How far the photo's own attention agrees with the sketch-guided one it is trained towards.

    ``guided``, ``own``: [B, h, w] softmax maps of the same photos. Returns per example the Pearson
    correlation of the two maps, ``KL(guided || own)`` (the training term) and, as its reference,
    ``KL(guided || uniform)``, plus a one-line ``summary`` computed from them."""
    g, o = guided.flatten(1).double(), own.flatten(1).double()  # (B, N)
    gc, oc = g - g.mean(1, keepdim=True), o - o.mean(1, keepdim=True)
    r = (gc * oc).sum(1) / (gc.norm(dim=1) * oc.norm(dim=1)).clamp_min(eps)
    kl = (g.clamp_min(eps) * (g.clamp_min(eps).log() - o.clamp_min(eps).log())).sum(1)
    kl_u = (g.clamp_min(eps) * (g.clamp_min(eps).log() + torch.log(torch.tensor(float(g.shape[1]))))).sum(1)
    mean_r = float(r.mean())
    verdict = ("they agree" if mean_r > 0.3 else
               "they are anti-correlated: the own map is high where the guided map is low" if mean_r < -0.3 else
               "they are nearly unrelated")
    closer = "closer to" if float(kl.mean()) < float(kl_u.mean()) else "no closer to"
    summary = (f"guided vs own attention over {g.shape[0]} examples: mean Pearson r = {mean_r:+.2f} ({verdict}); "
               f"KL(guided || own) = {float(kl.mean()):.3f} vs KL(guided || uniform) = {float(kl_u.mean()):.3f}, "
               f"so the own map is {closer} the guided one than uniform attention is")
    return {"pearson": r.tolist(), "kl": kl.tolist(), "kl_uniform": kl_u.tolist(), "summary": summary}


def hash_tradeoff_summary(rows: Mapping[str, Mapping[str, float]], metric: str = "map_all_voc") -> str:
    """One computed sentence on the Hamming vs real-valued table of :func:`plot_hash_tradeoff`."""
    real = rows["real"]
    parts = []
    for k, r in rows.items():
        if not k.startswith("hash"):
            continue
        slow = r["score_seconds"] / max(real["score_seconds"], 1e-12)
        parts.append(f"{k}: {metric} {r[metric]:.3f} vs {real[metric]:.3f} real, scoring {slow:.1f}x the real time, "
                     f"{real['bytes_per_item'] / r['bytes_per_item']:.0f}x less memory")
    return ("; ".join(parts) + ". Hashing scores slower here because torch has no popcount kernel: XOR + a "
            "lookup table over a (Q, G, bytes) buffer is memory-bound, while real-valued scoring is one BLAS "
            "matrix product; its gain is memory, and speed only with hardware popcount (e.g. a binary index).")
