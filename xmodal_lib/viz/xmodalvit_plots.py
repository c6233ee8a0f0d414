"""XModalViT figures and diagnostics: XMA attention over both images, and how much of the teacher's
fused embedding each modality explains (re-exported by :mod:`xmodal_lib.methods.xmodalvit.pipeline`; every figure lives in :mod:`xmodal_lib.viz`)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal_lib.infra.devices import module_device
from xmodal_lib.retrieval.chance import fg_chance_metrics
from xmodal_lib.viz.explain import RELATIVE_ATTENTION_LABEL

__all__ = ["xma_attention_grids", "plot_xma_attention", "plot_teacher_val", "teacher_modality_share"]


@torch.no_grad()
def teacher_modality_share(teacher: nn.Module, photos: Tensor, sketches: Tensor,
                           batch_size: int = 256) -> dict[str, dict[str, float]]:
    """How much of the teacher's fused embeddings depends on the photo vs the sketch.

    Runs the teacher on every (photo i, sketch j) combination of ``photos [n,3,H,W]`` and
    ``sketches [n,3,H,W]`` (sketch j drawn from photo j; n x n passes, keep n ~ 30), L2-normalises
    z_p and z_s and splits their variance over the grid (two-way ANOVA): ``"photo"`` = share of the
    photo main effect, ``"sketch"`` = sketch main effect, ``"interaction"`` = the rest. A sketch
    student can only predict the part of its target that depends on the sketch; a teacher whose
    embedding is ~100 % photo gives the students a target a sketch cannot predict except through
    whatever the photo code shares with the drawing (shape).
    """
    n = photos.shape[0]
    if sketches.shape[0] != n or n < 2:
        raise ValueError(f"teacher_modality_share: need n >= 2 photos and n sketches, got {n} and {sketches.shape[0]}")
    was_training = teacher.training
    teacher.eval()
    dev = module_device(teacher)
    pi = photos.repeat_interleave(n, dim=0)  # (n*n, 3, H, W): photo i repeated for every sketch
    sj = sketches.repeat(n, 1, 1, 1)  # (n*n, 3, H, W): sketches cycled
    zp, zs = [], []
    for a in range(0, n * n, batch_size):
        p, s = teacher(pi[a:a + batch_size].to(dev), sj[a:a + batch_size].to(dev))
        zp.append(p.float().cpu())
        zs.append(s.float().cpu())
    teacher.train(was_training)
    out = {}
    for name, z in (("z_p", torch.cat(zp)), ("z_s", torch.cat(zs))):
        z = F.normalize(z, dim=1).view(n, n, -1)  # (photo i, sketch j, D)
        mu = z.mean(dim=(0, 1))
        total = (z - mu).square().sum(-1).mean().clamp_min(1e-12)
        photo = (z.mean(dim=1) - mu).square().sum(-1).mean() / total
        sketch = (z.mean(dim=0) - mu).square().sum(-1).mean() / total
        out[name] = {"photo": float(photo), "sketch": float(sketch), "interaction": float(1 - photo - sketch)}
    return out


@torch.no_grad()
def xma_attention_grids(teacher: nn.Module, photo: Tensor, sketch: Tensor) -> dict[str, Tensor]:
    """Head-averaged XMA attention of one pair on the patch grids, per layer.

    Returns ``"sketch_to_photo" [K, h, w]`` (sketch [CLS] over photo patches) and
    ``"photo_to_sketch" [K, h, w]`` (photo [CLS] over sketch patches); each map is renormalised to
    sum to 1 over the patches (the [CLS]/query tokens' share is dropped).
    """
    teacher.eval()
    dev = module_device(teacher)
    maps = teacher.xma_attention(photo[None].to(dev), sketch[None].to(dev))
    h, w = teacher.grid
    out = {}
    for key, skip in (("sketch_to_photo", 1), ("photo_to_sketch", 2)):  # [q ; P] and [q ; c_s ; P]
        a = torch.stack([m[key][0].mean(0)[skip:] for m in maps]).float().cpu()  # (K, N)
        a = a / a.sum(dim=1, keepdim=True).clamp_min(1e-12)
        out[key] = a.view(-1, h, w)  # (K, h, w)
    return out


def plot_xma_attention(photo: Tensor, sketch: Tensor, grids: Mapping[str, Tensor], title: str = ""):
    """Photo and sketch with each XMA layer's attention overlaid (rows: layers), each map drawn
    relative to uniform attention: weight x number of patches, so 1 = every patch the same weight
    and 2 = twice the uniform share (the colour bars say so)."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.xmodalvit_plots free of matplotlib at import

    k = grids["sketch_to_photo"].shape[0]
    fig, axes = plt.subplots(k, 2, figsize=(5.2, 2.6 * k), squeeze=False)
    size = photo.shape[-1]
    for i in range(k):
        for j, (img, key, lab) in enumerate(((photo, "sketch_to_photo", "sketch [CLS] -> photo"),
                                             (sketch, "photo_to_sketch", "photo [CLS] -> sketch"))):
            ax = axes[i, j]
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            g = grids[key][i]
            rel = g / g.sum().clamp_min(1e-12) * g.numel()  # (h, w) attention relative to uniform (1 = uniform)
            m = F.interpolate(rel[None, None], size=(size, size), mode="nearest")[0, 0]
            im = ax.imshow(m.numpy(), cmap="jet", alpha=0.45, vmin=0.0)
            cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            cb.set_label(RELATIVE_ATTENTION_LABEL, fontsize=8)
            cb.ax.tick_params(labelsize=8)
            ax.set_title(f"XMA {i + 1}: {lab}", fontsize=8)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_teacher_val(val_rows: Sequence[Mapping[str, float]], split, data_name: str, ks: Sequence[int] = (1, 10),
                     seed: int = 0):
    """Teacher validation curves (``TrainResult.val`` rows with ``val_acc@K``) with the chance of the
    same ranking measured on random scores (dashed, in the legend).

    ``split`` is the validation :class:`FGTensors` (train pairs held out from training, never the
    test split); its query/gallery structure is that of
    :func:`xmodal_lib.methods.xmodalvit.pipeline.teacher_pair_retrieval`: every sketch ranks the photos
    that have a sketch, with the teacher's fused embeddings (a sanity check, not sketch-to-photo
    retrieval)."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.xmodalvit_plots free of matplotlib at import

    has = [p for p, s in enumerate(split.sketches_of()) if s]
    pos = {p: i for i, p in enumerate(has)}
    true = [pos[int(p)] for p in split.sketch_to_photo]  # each sketch's photo among the gallery
    chance = fg_chance_metrics(true, len(has), ks=ks, seed=seed)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, k in enumerate(ks):
        rows = [r for r in val_rows if r.get(f"val_acc@{k}") is not None]
        color = f"C{i}"
        ax.plot([r["step"] for r in rows], [r[f"val_acc@{k}"] for r in rows], "o-", color=color,
                label=f"teacher acc@{k}")
        ax.axhline(chance[f"acc@{k}"], color=color, ls="--", lw=1,
                   label=f"chance acc@{k}, random scores ({chance[f'acc@{k}']:.3f})")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("acc@K (fraction of queries)")
    ax.set_title(f"Fusion teacher validation, {data_name}: {len(true)} sketches vs {len(has)} photos\n"
                 "of train pairs held out from training (fused-pair sanity check)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig
