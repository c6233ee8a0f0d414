"""Figures of a dataset: photo/sketch grid per class, one instance with its sketches, class counts.

Pure functions of an :class:`~xmodal_lib.data.index.SBIRIndex`; they return matplotlib figures
and never save (the notebook calls ``save_fig``). Images are read with the data module's
``ImageLoader`` so stroke-pickle sketches and RGBA sketches look exactly as models see them.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from xmodal_lib.data.index import Record, SBIRIndex


def _loader(size: int) -> Any:
    from xmodal_lib.data.transforms import ImageLoader  # lazy: keeps viz.data_plots free of torch at import

    return ImageLoader(size=size, normalize="none")


def to_rgb(record: Record, size: int = 96, loader: Any | None = None) -> np.ndarray:
    """One record as an ``(size, size, 3)`` float array in [0, 1] for ``imshow``."""
    img = (loader or _loader(size)).load(record)  # (3, H, W)
    arr = img.detach().float().cpu().numpy().transpose(1, 2, 0)  # (H, W, 3)
    return np.clip(arr, 0.0, 1.0)


def pick_classes(index: SBIRIndex, n: int, seed: int = 0, prefer_unseen: int = 0) -> list[str]:
    """``n`` classes of ``index`` drawn with ``seed`` (at least ``prefer_unseen`` unseen ones if any)."""
    rng = random.Random(seed)
    unseen = [c for c in index.classes if c in set(index.unseen)]
    seen = [c for c in index.classes if c not in set(index.unseen)]
    k_u = min(prefer_unseen, len(unseen), n)
    chosen = rng.sample(unseen, k_u) + rng.sample(seen, min(n - k_u, len(seen)))
    return sorted(chosen)


def class_grid(
    index: SBIRIndex,
    classes: Sequence[str] | None = None,
    per_class: int = 4,
    size: int = 96,
    seed: int = 0,
) -> Any:
    """Rows = classes; ``per_class`` photos then ``per_class`` sketches in each row.

    Unseen (zero-shot test) classes are marked with a star in the row label.
    """
    import matplotlib.pyplot as plt  # lazy: keeps viz.data_plots free of matplotlib at import

    classes = list(classes) if classes is not None else pick_classes(index, 6, seed)
    if not classes:
        raise ValueError("class_grid: no classes to show")
    by_cls: dict[str, dict[str, list[Record]]] = defaultdict(lambda: {"photo": [], "sketch": []})
    for r in (*index.photos, *index.sketches):
        by_cls[r.label][r.modality].append(r)
    loader = _loader(size)
    rng = random.Random(seed)
    ncols = 2 * per_class
    fig, axes = plt.subplots(len(classes), ncols, figsize=(1.3 * ncols, 1.35 * len(classes)), squeeze=False)
    unseen = set(index.unseen)
    for row, cls in enumerate(classes):
        for m, modality in enumerate(("photo", "sketch")):
            recs = by_cls[cls][modality]
            picks = rng.sample(recs, min(per_class, len(recs)))
            for j in range(per_class):
                ax = axes[row, m * per_class + j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(picks):
                    ax.imshow(to_rgb(picks[j], size, loader))
                else:
                    ax.set_facecolor("0.92")
                if row == 0 and j == 0:
                    ax.set_title("photos" if modality == "photo" else "sketches", fontsize=9, loc="left")
        label = f"{cls} *" if cls in unseen else cls
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{index.name}: photos | sketches per class (* = unseen class)", fontsize=10)
    fig.tight_layout()
    return fig


def instances_with_sketches(index: SBIRIndex) -> dict[str, tuple[Record, list[Record]]]:
    """Instance id -> (its photo, its sketches), for photos that have at least one sketch."""
    sketches: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for s in index.sketches:
        if s.instance:
            sketches[(s.label, s.instance)].append(s)
    out: dict[str, tuple[Record, list[Record]]] = {}
    for p in index.photos:
        sk = sketches.get((p.label, p.instance))
        if p.instance and sk:
            out[f"{p.label}/{p.instance}" if p.label else p.instance] = (p, sorted(sk, key=lambda r: str(r.path)))
    return out


def instance_view(
    index: SBIRIndex, instance: str | None = None, max_sketches: int = 6, size: int = 128
) -> Any:
    """One photo and the sketches drawn from it (the instance with most sketches by default)."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.data_plots free of matplotlib at import

    pairs = instances_with_sketches(index)
    if not pairs:
        raise ValueError(f"{index.name}: no photo has sketches with a matching instance id")
    if instance is None:
        instance = max(sorted(pairs), key=lambda k: len(pairs[k][1]))
    if instance not in pairs:
        raise ValueError(f"instance {instance!r} not in {index.name} (e.g. {sorted(pairs)[:3]})")
    photo, sketches = pairs[instance]
    sketches = sketches[:max_sketches]
    loader = _loader(size)
    fig, axes = plt.subplots(1, 1 + len(sketches), figsize=(2.0 * (1 + len(sketches)), 2.3), squeeze=False)
    for ax, rec, title in zip(
        axes[0], [photo, *sketches], ["photo"] + [f"sketch {i + 1}" for i in range(len(sketches))]
    ):
        ax.imshow(to_rgb(rec, size, loader))
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{index.name}: instance {instance}", fontsize=10)
    fig.tight_layout()
    return fig


def class_count_bars(index: SBIRIndex, max_classes: int = 60) -> Any:
    """Photos and sketches per class, unseen classes hatched (first ``max_classes`` classes)."""
    import matplotlib.pyplot as plt  # lazy: keeps viz.data_plots free of matplotlib at import

    classes = index.classes[:max_classes]
    photos = index.class_counts("photo")
    sketches = index.class_counts("sketch")
    unseen = set(index.unseen)
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(classes) + 2), 3.4))
    hatch = ["//" if c in unseen else "" for c in classes]
    b1 = ax.bar(x - 0.2, [photos.get(c, 0) for c in classes], 0.4, label="photos", color="#4c72b0")
    b2 = ax.bar(x + 0.2, [sketches.get(c, 0) for c in classes], 0.4, label="sketches", color="#dd8452")
    for bars in (b1, b2):
        for bar, h in zip(bars, hatch):
            bar.set_hatch(h)
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("images")
    more = f" (first {max_classes} of {len(index.classes)})" if len(index.classes) > max_classes else ""
    ax.set_title(f"{index.name}: images per class{more}; hatched = unseen", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def split_table(index: SBIRIndex) -> str:
    """Markdown table of the zero-shot split: classes, photos and sketches on each side."""
    unseen = set(index.unseen)
    rows = []
    for name, keep in (("seen (train)", lambda c: c not in unseen), ("unseen (test)", lambda c: c in unseen)):
        cls = [c for c in index.classes if keep(c)]
        p = sum(1 for r in index.photos if keep(r.label))
        s = sum(1 for r in index.sketches if keep(r.label))
        rows.append(f"| {name} | {len(cls)} | {p} | {s} |")
    lines = ["| part | classes | photos | sketches |", "|---|---|---|---|", *rows]
    if unseen:
        lines.append("")
        lines.append("Unseen classes: " + ", ".join(sorted(unseen)))
    return "\n".join(lines)
