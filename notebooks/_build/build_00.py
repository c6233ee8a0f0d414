"""Generate ``notebooks/00_data_tour.ipynb`` (run: ``python notebooks/_build/build_00.py``)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import code, md, new_notebook, params_cell, write  # noqa: E402

PARAMS = {
    "PROFILE": "smoke",
    "DATA_ROOT": None,
    "REAL_KIND": "sketchy",
    "REAL_SPLIT": None,
    "N_CLASSES": 6,
    "PER_CLASS": 4,
    "IMG_SIZE": 96,
    "SEED": 0,
    "INTERACTIVE": True,
}
COMMENTS = {
    "PROFILE": "smoke | paper (set by `xmodal reproduce`)",
    "DATA_ROOT": "folder of a real dataset, e.g. ../shared/data/sketchy_mini; None for synthetic only",
    "REAL_KIND": "sketchy | sake | qmul_v1 | qmul_v2 | qmul_v2_pickle | manifest",
    "REAL_SPLIT": "reader split name, e.g. zeroshot1 for Sketchy; None for the reader default",
    "N_CLASSES": "classes shown in the grids",
    "PER_CLASS": "photos and sketches per class in the grids",
    "IMG_SIZE": "display resolution (pixels)",
    "SEED": "which classes/images are drawn",
    "INTERACTIVE": "widget cells (off in headless runs)",
}

cells = [
    md(
        """
        # 00 · Data tour

        What the models in notebooks 01–06 are trained and evaluated on. By default that is the
        **embedded synthetic benchmark**, generated on first use from a seed (nothing is downloaded):

        * `synthetic` — category level: drawable objects named with real words, with a declared
          zero-shot split (about a quarter of the classes are *unseen*: never used for training,
          only as test queries and gallery). Used by 03 CrossATNet, 04 ZSE-SBIR and 05 evaluation.
        * `synthetic_fg` — instance level, QMUL-style train/test: every photo is one object instance
          with its own shape parameters and several sketches of it. Used by 01/02 (XModalViT).

        The same views are drawn for a real dataset when `DATA_ROOT` points to one (Sketchy,
        SAKE-format lists, QMUL Shoe/Chair, or your own CSV manifest; see `xmodal_lib.data`).
        Figures go to `figures/00_*.png`.
        """
    ),
    params_cell(PARAMS, COMMENTS),
    code(
        """
        from IPython.display import Markdown, display

        from xmodal_lib.data import open_dataset
        from xmodal_lib.results import write_results
        from xmodal_lib.viz import data_plots as dp
        from xmodal_lib.viz.plots import save_fig, setup_style

        setup_style()
        cat = open_dataset("synthetic")
        fg = open_dataset("synthetic_fg")
        print(cat.name, cat.counts())
        print(fg.name, fg.counts())
        """
    ),
    md(
        """
        ## Photos and sketches per class

        Each row is one class: photos on the left, sketches on the right. Photos carry colour,
        shading, clutter, pose and scale; sketches are dark strokes on white, jittered, with
        missing strokes and deformations — the modality gap every method has to bridge.
        Unseen (zero-shot) classes are starred.
        """
    ),
    code(
        """
        shown = dp.pick_classes(cat, N_CLASSES, seed=SEED, prefer_unseen=2)
        fig = dp.class_grid(cat, shown, per_class=PER_CLASS, size=IMG_SIZE, seed=SEED)
        save_fig(fig, "00_synthetic_class_grid");
        """
    ),
    md(
        """
        ## One instance and its sketches

        Fine-grained retrieval asks for *this* object, not just its class: every sketch keeps the
        shape details of the photo it was drawn from.
        """
    ),
    code(
        """
        fig = dp.instance_view(fg, size=2 * IMG_SIZE)
        save_fig(fig, "00_synthetic_fg_instance")
        print({split: fg.subset(split).counts() for split in ("train", "test")})
        """
    ),
    md(
        """
        ## Class counts and the zero-shot split

        Zero-shot SBIR trains on the *seen* classes and tests on the *unseen* ones only: queries are
        sketches of unseen classes, the gallery their photos. Hatched bars are unseen classes.
        """
    ),
    code(
        """
        fig = dp.class_count_bars(cat)
        save_fig(fig, "00_synthetic_class_counts")
        display(Markdown(dp.split_table(cat)))
        """
    ),
    md(
        """
        ## A real dataset (when `DATA_ROOT` is set)

        Run with e.g. `-p DATA_ROOT=../shared/data/sketchy_mini -p REAL_SPLIT=zeroshot1`
        (`xmodal reproduce --only 00 --data-root ...`). With `DATA_ROOT = None` this section is skipped.
        """
    ),
    code(
        """
        real = None
        if DATA_ROOT is not None:
            real = open_dataset(REAL_KIND, root=DATA_ROOT, split=REAL_SPLIT)
            print(real.name, real.counts())
            fig = dp.class_grid(real, dp.pick_classes(real, N_CLASSES, seed=SEED, prefer_unseen=2),
                                per_class=PER_CLASS, size=IMG_SIZE, seed=SEED)
            save_fig(fig, f"00_{REAL_KIND}_class_grid")
            if dp.instances_with_sketches(real):
                save_fig(dp.instance_view(real, size=2 * IMG_SIZE), f"00_{REAL_KIND}_instance")
            save_fig(dp.class_count_bars(real), f"00_{REAL_KIND}_class_counts")
            display(Markdown(dp.split_table(real)))
        else:
            print("DATA_ROOT is None: showing the embedded synthetic data only.")
        """
    ),
    md("The counts go to `results/00_data_tour.json` so a reproduce run records what data it saw."),
    code(
        """
        counts = {"synthetic": cat.counts(), "synthetic_fg": fg.counts()}
        if real is not None:
            counts[real.name] = real.counts()
        write_results("00_data_tour", counts)
        counts
        """
    ),
    md("## Browse classes (interactive; `INTERACTIVE = True` in JupyterLab)"),
    code(
        """
        if INTERACTIVE:
            import ipywidgets as widgets

            widgets.interact(
                lambda cls: dp.class_grid(cat, [cls], per_class=PER_CLASS + 2, size=IMG_SIZE, seed=SEED),
                cls=widgets.Dropdown(options=cat.classes, description="class"),
            )
        """
    ),
]

if __name__ == "__main__":
    out = write(new_notebook(cells), "00_data_tour.ipynb")
    print(f"wrote {out}")
