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
from xmodal_lib.viz.explain import denormalize



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
    same axes and linked with dashed lines to their ``extra_k`` nearest seen classes.
    """
    xy, basis = pca_2d(features)
    fig, ax = plt.subplots(figsize=(7, 6))
    ii, jj = torch.nonzero(torch.triu(adjacency, diagonal=1), as_tuple=True)
    for i, j in zip(ii.tolist(), jj.tolist()):
        ax.plot([xy[i, 0], xy[j, 0]], [xy[i, 1], xy[j, 1]], color="0.65", lw=0.8, zorder=1)
    ax.scatter(xy[:, 0], xy[:, 1], s=28, color="#1f77b4", zorder=2, label="seen class (graph node)")
    for k, n in enumerate(names):
        if k % max(1, label_every) == 0:
            ax.annotate(n, (xy[k, 0], xy[k, 1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if extra_features is not None and len(extra_names):
        exy, _ = pca_2d(extra_features, basis)
        d = cosine_distances(torch.cat([extra_features, features]).float())[: len(extra_names), len(extra_names):]
        for e in range(len(extra_names)):
            for j in torch.argsort(d[e], stable=True)[:extra_k].tolist():
                ax.plot([exy[e, 0], xy[j, 0]], [exy[e, 1], xy[j, 1]], color="#d62728", lw=0.8, ls="--", zorder=1)
            ax.annotate(extra_names[e], (exy[e, 0], exy[e, 1]), fontsize=8, color="#d62728",
                        xytext=(3, -9), textcoords="offset points")
        ax.scatter(exy[:, 0], exy[:, 1], s=90, marker="*", color="#d62728", zorder=3,
                   label=f"unseen class (not in the graph; {extra_k} nearest seen)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "Seen-class graph on a 2-D PCA of class-name embeddings")
    ax.legend(fontsize=8, loc="best")
    return fig


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
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label("x uniform", fontsize=7)
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
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
    colors = ["#1f77b4" if k == "real" else "#2ca02c" for k in keys]
    panels = [(metric, f"{metric} (unseen classes)", metric, False),
              ("score_seconds", "scoring time, all queries x gallery", "seconds (log scale)", True),
              ("bytes_per_item", "memory per gallery item", "bytes (log scale)", True)]
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
            ax.text(0.02, 0.97, "torch has no popcount kernel: Hamming = XOR + lookup,\n"
                    "memory-bound; real = one BLAS matrix product", transform=ax.transAxes,
                    fontsize=8, va="top")
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
