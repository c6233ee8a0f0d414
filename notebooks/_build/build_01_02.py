"""Generate ``notebooks/01_fusion_teacher.ipynb`` and ``02_distillation.ipynb`` plus their smoke/paper
parameter files (run: ``python notebooks/_build/build_01_02.py``). Paper values come from
``XModalViTConfig.paper("shoev2")`` so the YAML can never drift from the library presets."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import NOTEBOOKS, code, md, new_notebook, params_cell, write  # noqa: E402

from xmodal_lib.pipelines.xmodalvit import XModalViTConfig  # noqa: E402

COMMON = ["PROFILE", "PAPER_DATASET", "DATASET", "DATA_ROOT", "SYNTH_FG_TRAIN", "SYNTH_FG_TEST", "SYNTH_FG_PLAIN",
          "DEVICE", "SEED", "IMAGE_SIZE", "INPUT_NORM", "STANDARDIZE_INPUTS", "VAL_FRACTION", "BATCH_SIZE"]
TEACHER = ["TEACHER_BACKBONE", "TEACHER_PRETRAINED", "TEACHER_PATCH_SIZE", "TEACHER_DEPTH", "TEACHER_EMBED_DIM",
           "TEACHER_NUM_HEADS", "XMA_DEPTH", "XMA_HEADS", "TEACHER_QUEUE", "TEACHER_LR", "TEACHER_WEIGHT_DECAY",
           "TEACHER_SCHEDULE", "TEACHER_EPOCHS", "TEACHER_MAX_STEPS", "TEACHER_PHOTO_AUG", "TEMPERATURE",
           "NORMALIZE_QUERY"]
STUDENT = ["STUDENT_BACKBONE", "STUDENT_PRETRAINED", "STUDENT_PATCH_SIZE", "STUDENT_DEPTH", "STUDENT_EMBED_DIM",
           "STUDENT_NUM_HEADS", "STUDENT_POOL", "STUDENT_QUEUE", "STUDENT_LR", "STUDENT_WEIGHT_DECAY",
           "STUDENT_SCHEDULE",
           "STUDENT_GAMMA", "STUDENT_EPOCHS", "STUDENT_MAX_STEPS", "SKETCH_TARGET", "ANGLE_CHUNK",
           "TRIPLET_MARGIN", "BASELINE_LR", "BASELINE_EPOCHS", "EVAL_METRIC"]
NAMES = {"01_fusion_teacher": COMMON + TEACHER, "02_distillation": COMMON + TEACHER + STUDENT}


def values(cfg: XModalViTConfig, names: list[str], paper_dataset: str) -> dict:
    d = cfg.to_dict()
    return {n: (paper_dataset if n == "PAPER_DATASET" else d[n.lower()]) for n in names}


DEFECTS = """
    **Where we deliberately differ from the official code** (methods_spec.md §1.8):
    1. the students' contrastive target is the teacher's fused [CLS] embedding (768-d for ViT-B), not the
       `[B,1]` sigmoid output of an untrained head that the released student scripts distil;
    2. the photo student is trained on **photos** (the released photo-student script feeds sketches);
    3. evaluation is the standard FG protocol: every test sketch ranks **all** test photos
       (`xmodal_lib.retrieval.metrics.fg_accuracy`), not one random sketch per photo inside a batch;
    4. the XAQC queue enqueues with wrap-around, so a partial batch can never overflow it.
    Also: timm >= 0.9 `forward_features` returns all tokens, which the teacher uses directly.

    **Our additions** (in neither the paper nor its code; the `paper` profile turns them off; each was
    chosen on the held-out val part of TRAIN, never on the test split):
    * `STANDARDIZE_INPUTS`: every photo and sketch is standardised to zero mean and unit std. A sketch
      is ~90 % white background, so a randomly initialised ViT gives all sketches nearly the same
      [CLS] feature (spread of the normalised features 0.016 on QMUL Shoe-V1 sketches, 0.21 once
      standardised); without it the triplet baseline on QMUL (lr 3e-4, 30 epochs) stayed exactly at
      chance, every sketch ranking the photos in the same order.
    * `TEACHER_PHOTO_AUG`: the teacher's query and key see two independent colour views of the photo
      (random channel order, blend to grey, contrast), so it cannot identify an instance by colour alone
      (a colour code is something no sketch can predict).
    * `SYNTH_FG_TRAIN / SYNTH_FG_TEST / SYNTH_FG_PLAIN`: 600 / 100 synthetic shoe instances (was 60 / 30)
      with product-shot photos (white background, no clutter, as in QMUL Shoe). With the former 60
      cluttered training shoes every model stayed near chance, even with standardised inputs; with 300
      cluttered shoes the triplet baseline reached val acc@10 0.37, with 300 product shots 0.78 (chance 0.22).
    * Smoke learning rates 1e-4: at 3e-4 the random-init teacher collapsed on QMUL Shoe-V1 (its loss
      settled at log(K+1), the value of a constant embedding).
    * `STUDENT_POOL` (`"cls"` = paper; `"avg"`, `"cls+avg"` available): [CLS] was best on val.

    `SKETCH_TARGET` is a reading of the paper rather than an addition: the released code distils a
    broken target, the figure shows z_s for the sketch student and the angle term uses z_p. The smoke
    profile uses z_p (better on val: the photo student also learns z_p, so both students aim at one code).
"""

CONFIG_CELL = """
    from xmodal_lib.pipelines import xmodalvit as xv
    from xmodal_lib.viz.plots import setup_style, save_fig, plot_curves, bar_table, markdown_table
    from xmodal_lib.results import write_results
    from IPython.display import Markdown, display

    cfg = xv.XModalViTConfig.from_params(globals())
    setup_style()
    print(cfg)
"""

DATA_CELL = """
    data = xv.load_data(cfg)
    for name in ("train", "val", "test"):
        s = getattr(data, name)
        print(f"{data.name} {name}: {s.photos.shape[0]} photos, {s.sketches.shape[0]} sketches, "
              f"{tuple(s.photos.shape[1:])}")
"""


def nb01(params: dict) -> list:
    return [
        md(f"""
            # 01 · XModalViT fusion teacher

            The teacher of *Cross-Modal Fusion Distillation for Fine-Grained SBIR* (BMVC'22) encodes a photo and
            a sketch with two ViTs and fuses them with K cross-modal attention (XMA) blocks that update only the
            two [CLS] tokens: the sketch [CLS] attends to the photo patches, then the photo [CLS] attends to the
            updated sketch branch. It is trained with **XAQC**, a MoCo-style queue contrastive loss pulling the
            photo-branch output of (photo, sketch A) towards the sketch-branch output of (photo, sketch B), two
            sketches of the same photo.

            This notebook trains the teacher, plots its loss, checks its fused embeddings on held-out pairs and
            draws the XMA attention of one sketch-photo pair. The teacher is saved for notebook 02.
            {DEFECTS}
        """),
        params_cell(params),
        code(CONFIG_CELL),
        md("## Data\nFine-grained pairs; a fraction of the TRAIN photos is held out for validation "
           "(the test split is never used for model selection)."),
        code(DATA_CELL),
        md("## Train the teacher\nOne shared training loop (`xmodal_lib.train.fit`): seeded, checkpointed, "
           "resumable; bf16 autocast on GPU, fp32 on CPU."),
        code("""
            teacher, res = xv.train_teacher(cfg, data)
            path = xv.save_teacher(teacher, cfg)
            print(f"{res.steps} steps in {res.wall_time:.1f} s; teacher saved to {path}")
        """),
        code("""
            fig = plot_curves(res.history, ["loss"], title="teacher XAQC loss", smooth=5)
            save_fig(fig, "01_teacher_loss")
            if res.val:
                fig = plot_curves(res.val, ["val_acc@1", "val_acc@10"], x="step", title="held-out TRAIN pairs")
                save_fig(fig, "01_teacher_val")
        """),
        md("""
            ## Sanity check: retrieval with fused embeddings
            The teacher needs **both** a photo and a sketch, so it cannot rank a gallery of photos for a sketch
            without scoring every pair (not what it was trained for, and too costly at scale). As a sanity
            check we measure the teacher's own objective on unseen test instances: the query for each test
            sketch is the sketch-branch output z_s(photo, sketch), the gallery holds the photo-branch output
            z_p(photo', another sketch of photo') for every test photo, scored by cosine. High acc@K means the
            fused embeddings identify the instance across branches and sketches. Because each query already
            saw its true photo, this is **not** a sketch-to-photo retrieval result; notebook 02 gives those.
        """),
        code("""
            n_gallery = sum(1 for s in data.test.sketches_of() if s)
            sanity = xv.teacher_pair_retrieval(teacher, data.test)
            chance = {"acc@1": 1 / n_gallery, "acc@10": min(1.0, 10 / n_gallery)}
            display(Markdown(markdown_table({"teacher (fused pairs)": sanity, "chance": chance},
                                            ["acc@1", "acc@10", "mean_rank"])))
        """),
        md("""
            ## Does the fused embedding depend on the sketch?
            The students must reproduce the teacher's embeddings from **one** modality each. We run the teacher
            on every (photo i, sketch j) combination of 30 test pairs and split the variance of the normalised
            z_p and z_s into a photo part, a sketch part and their interaction. The teacher's loss compares
            two passes that see the **same photo**, so nothing forces it to use the sketch: if the photo part
            is ~1, a sketch student can only learn whatever the photo code shares with a drawing (shape).
        """),
        code("""
            n = min(30, data.test.photos.shape[0])
            first = [s[0] for s in data.test.sketches_of()[:n]]
            share = xv.teacher_modality_share(teacher, data.test.photos[:n], data.test.sketches[first])
            display(Markdown(markdown_table(share, ["photo", "sketch", "interaction"], fmt="{:.3f}")))
            write_results("01_fusion_teacher", {"teacher_pair_retrieval": sanity, "chance": chance,
                                                "modality_share": share, "steps": res.steps, "dataset": data.name,
                                                "profile": cfg.profile})
        """),
        md("## XMA attention of one pair\nHead-averaged attention of each XMA layer: the sketch [CLS] over the "
           "photo patches (left) and the photo [CLS] over the sketch patches (right)."),
        code("""
            i = 0
            j = int(data.test.sketches_of()[i][0])
            grids = xv.xma_attention_grids(teacher, data.test.photos[i], data.test.sketches[j])
            photo, sketch = xv.for_display(data.test.photos[i]), xv.for_display(data.test.sketches[j])
            fig = xv.plot_xma_attention(photo, sketch, grids, title=f"test pair {data.test.photo_ids[i]}")
            save_fig(fig, "01_xma_attention")
        """),
    ]


def nb02(params: dict) -> list:
    return [
        md(f"""
            # 02 · XModalViT distillation: photo and sketch students

            At test time XModalViT runs two small unimodal students: a photo ViT and a sketch ViT whose
            embeddings (LayerNorm + Linear into the teacher's width) are compared by a dot product. Each student
            is distilled from the frozen fusion teacher with XAQC (contrastive, teacher target as the key) plus
            **XMRD**: the RKD distance and angle terms over the batch. We compare
            * **XAQC + XMRD** (the method), * **XAQC only** (ablation: no relational terms), and
            * a **triplet baseline**: the same two students trained with a plain triplet loss and no teacher,
              for the same number of steps.
            {DEFECTS}
        """),
        params_cell(params),
        code(CONFIG_CELL),
        code(DATA_CELL),
        md("## The teacher\nLoaded from notebook 01's artefact (`paths.artifacts_dir()`) when it was trained with "
           "this notebook's teacher settings (architecture, data, input transforms, schedule); otherwise it is "
           "trained here with the same library call."),
        code("""
            loaded = xv.load_teacher()
            if loaded is not None and xv.same_teacher_setup(loaded[1], cfg):
                teacher = loaded[0]
                print("loaded the teacher saved by notebook 01")
            else:
                print("no saved teacher with these settings: training it now (same call as notebook 01)")
                teacher, _ = xv.train_teacher(cfg, data)
                xv.save_teacher(teacher, cfg)
        """),
        md("## Distil the students, the ablation and the triplet baseline"),
        code("""
            runs = {}
            runs["XAQC + XMRD"] = xv.distil_students(cfg, data, teacher, relational=True)
            runs["XAQC only"] = xv.distil_students(cfg, data, teacher, relational=False)
            runs["triplet baseline"] = xv.train_triplet_baseline(cfg, data, out_dim=teacher.embed_dim)
            for name, (_, r) in runs.items():
                print(f"{name}: {r.steps} steps, {r.wall_time:.1f} s")
            fig = plot_curves(runs["XAQC + XMRD"][1].history, ["xaqc_photo", "xaqc_sketch", "dist", "angle"],
                              title="distillation losses", smooth=5)
            save_fig(fig, "02_distillation_losses")
        """),
        md("## FG-SBIR on the test split\nEvery test sketch ranks all test photos; acc@K = share of sketches "
           "whose photo is in the top K (ties count against the query). `p(>chance)` is a one-sided binomial "
           "test of acc@10 against chance over the test sketches (sketches of one photo are not independent, "
           "so read it as a rough guide)."),
        code("""
            from scipy.stats import binomtest

            table = {name: xv.evaluate(m, data.test, cfg.eval_metric) for name, (m, _) in runs.items()}
            n_photos, n_q = data.test.photos.shape[0], data.test.sketches.shape[0]
            chance = {"acc@1": 1 / n_photos, "acc@10": min(1.0, 10 / n_photos), "mean_rank": (n_photos + 1) / 2}
            for row in table.values():
                k = round(row["acc@10"] * n_q)
                row["p(>chance)"] = binomtest(k, n_q, chance["acc@10"], alternative="greater").pvalue
            table["chance"] = dict(chance)
            display(Markdown(markdown_table(table, ["acc@1", "acc@10", "mean_rank", "p(>chance)"], fmt="{:.3g}")))
            fig = bar_table({k: v for k, v in table.items() if k != "chance"}, ["acc@1", "acc@10"],
                            title=f"FG-SBIR on {data.name} (test)", chance=chance)
            save_fig(fig, "02_distillation_acc")
        """),
        code("""
            best = max(["XAQC + XMRD", "XAQC only", "triplet baseline"], key=lambda k: table[k]["acc@10"])
            d = table["XAQC + XMRD"]["acc@10"] - table["triplet baseline"]["acc@10"]
            a = table["XAQC + XMRD"]["acc@10"] - table["XAQC only"]["acc@10"]
            above = table["XAQC + XMRD"]["p(>chance)"] < 0.01
            lines = [f"- Highest acc@10: **{best}** ({table[best]['acc@10']:.3f}; chance {chance['acc@10']:.3f}).",
                     f"- Distilled students (XAQC + XMRD) vs triplet baseline: {d:+.3f} acc@10 "
                     + ("(**the triplet baseline wins here**)." if d < 0 else "(distillation wins here)." if d > 0
                        else "(tie)."),
                     f"- Relational terms (XMRD) vs contrastive only: {a:+.3f} acc@10.",
                     f"- Distilled students vs chance: {table['XAQC + XMRD']['acc@10'] - chance['acc@10']:+.3f} acc@10 "
                     + ("(above chance, p < 0.01)." if above else "(**not** clearly above chance here).")]
            if cfg.profile == "smoke":
                lines.append("- Smoke profile: random init, tiny ViTs, a few hundred steps on synthetic data; "
                             "these numbers show what this setting gives, not the paper's result.")
            display(Markdown("\\n".join(lines)))
        """),
        md("""
            ## Why the distilled students trail the baseline here
            The teacher is trained to match z_p(photo, sketch A) with z_s(photo, sketch B): both passes see the
            **same photo**, so its cheapest solution identifies the photo and ignores the sketch. The table below
            (30 test pairs, every photo with every sketch) shows how much of the teacher's normalised embeddings
            the photo and the sketch explain. A sketch student can only learn the part of a photo code that a
            drawing predicts (the shape); with random initialisation the teacher's photo code is mostly
            something else. With the paper's ImageNet-pretrained ViTs the photo code of a product shot is
            largely shape, which is where the method gets its strength; we cannot use pretrained weights here.
            The triplet baseline has no such bottleneck: its photo and sketch embeddings are shaped together.
            During development a longer-trained teacher (60 instead of 45 epochs: better at its own objective)
            gave *worse* students on the val split (one seed), which fits this explanation.

            It is not the whole story, though. In a development run (smoke settings, seed 0, not an option of
            the library) we blanked the photo in the teacher's key, so z_p became 99.9 % sketch-explained;
            the distilled students' val acc@10 moved only from 0.30 to 0.36 (180 val sketches; test 0.325 both
            ways). Distillation regresses each student onto a *fixed* target code, so whichever modality the
            code comes from, the other student must learn a cross-modal mapping from scratch towards targets it
            cannot reshape, whereas the triplet baseline adapts both embeddings to each other.
        """),
        code("""
            n = min(30, data.test.photos.shape[0])
            first = [s[0] for s in data.test.sketches_of()[:n]]
            share = xv.teacher_modality_share(teacher, data.test.photos[:n], data.test.sketches[first])
            display(Markdown(markdown_table(share, ["photo", "sketch", "interaction"], fmt="{:.3f}")))
            write_results("02_distillation", {"test": table, "chance": chance, "dataset": data.name,
                                              "profile": cfg.profile, "teacher_modality_share": share,
                                              "steps": {k: r.steps for k, (_, r) in runs.items()}})
        """),
        md("""
            ## Closing note: real data (QMUL Shoe-V1, random init, CPU)
            `benchmarks/xmodalvit_qmul_shoes.py` runs the same library calls on the real
            `../shared/data/qmul_v1/shoes` (304 train / 115 test pairs; chance acc@1 = 1/115, acc@10 = 10/115)
            within a 20-minute CPU budget and writes `benchmarks/results/xmodalvit_qmul_shoes.json`. Its
            numbers (shown below when that file exists) come from tiny random-init ViTs trained for minutes:
            they are far from the paper's, which start from ImageNet-21k weights and train for 20 000 epochs.
            Pretrained weights would change them a lot.
        """),
        code("""
            import json
            from xmodal_lib.paths import repo_root

            bench = repo_root() / "benchmarks" / "results" / "xmodalvit_qmul_shoes.json"
            if bench.is_file():
                b = json.loads(bench.read_text())
                cols = ["acc@1", "acc@10", "acc@10_sd", "mean_rank"]
                display(Markdown(markdown_table(b["results"], cols, fmt="{:.3f}")))
                print(b.get("summary", ""))
            else:
                print(f"{bench} not found: run the benchmark to fill this table")
        """),
    ]


def main() -> None:
    smoke, paper = XModalViTConfig.smoke(), XModalViTConfig.paper("shoev2")
    for stem, build in (("01_fusion_teacher", nb01), ("02_distillation", nb02)):
        names = NAMES[stem]
        write(new_notebook(build(values(smoke, names, "shoev2"))), f"{stem}.ipynb")
        for prof, cfg, note in (
            ("smoke", smoke, "CI profile: synthetic FG data, tiny random-init ViTs, CPU, aim <= 2 min"),
            ("paper", paper, "Paper settings (Shoe-V2): set DATA_ROOT to the ShoeV2 folder; EPOCHS = official 20000"),
        ):
            vals = values(cfg, names, "shoev2")
            lines = [f"# {note}"] + [f"{k}: {_yaml(v)}" for k, v in vals.items()]
            p = NOTEBOOKS / "params" / prof / f"{stem}.yaml"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("\n".join(lines) + "\n")


def _yaml(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    r = repr(v)
    if isinstance(v, float) and "e" in r and "." not in r:  # PyYAML needs "3.0e-06", not "3e-06"
        r = r.replace("e", ".0e")
    return r


if __name__ == "__main__":
    main()
