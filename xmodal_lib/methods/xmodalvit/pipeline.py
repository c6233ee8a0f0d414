"""XModalViT end to end: config, teacher, distillation, triplet baseline, evaluation.

Notebooks 01 and 02 call these functions; every field of :class:`XModalViTConfig` is a notebook
parameter (upper-case in the ``parameters`` cell). Data live in :mod:`.data`, figures and
diagnostics in :mod:`xmodal_lib.viz.xmodalvit_plots` (both re-exported here). Deliberate differences from the
official code (methods_spec.md §1.8) are implemented here and in the losses:

1. the students' XAQC key is the teacher's 768-d fused [CLS] embedding (not the sigmoid head);
2. the photo student is trained on photos;
3. evaluation ranks all test photos for every test sketch (``fg_accuracy``);
4. the XAQC queue enqueues with wrap-around (``methods.xmodalvit.xaqc``).

Options that are **our additions** (off in the paper profile, on in the smoke profile,
each measured on the val split in the smoke setting): per-image input standardisation
(``standardize_inputs``), colour views of the teacher's photos (``teacher_photo_aug``), student
pooling other than [CLS] (``student_pool``), and the product-photo synthetic data (``synth_fg_*``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmodal_lib.engine.resume import RUNTIME_FIELDS
from xmodal_lib.engine.train import FitOptions, fit
from xmodal_lib.infra.devices import module_device, resolve_device
from xmodal_lib.infra.distributed import gather_cat, gather_cat_nograd
from xmodal_lib.infra.paths import artifacts_dir, runs_dir
from xmodal_lib.losses.triplet import batch_all_triplet
from xmodal_lib.methods.xmodalvit.config import XModalViTConfig
from xmodal_lib.methods.xmodalvit.data import (
    FGTensors,
    TripletPhotoSketchDataset,
    XModalData,
    for_display,
    index_to_tensors,
    load_data,
    photo_views,
    standardize_images,
)
from xmodal_lib.methods.xmodalvit.model import StudentPair, XModalTeacher, build_students, build_teacher
from xmodal_lib.methods.xmodalvit.rkd import rkd_angle, rkd_distance
from xmodal_lib.methods.xmodalvit.xaqc import XAQC
from xmodal_lib.retrieval.metrics import fg_accuracy
from xmodal_lib.retrieval.search import similarity
from xmodal_lib.run.params import override
from xmodal_lib.viz.xmodalvit_plots import plot_xma_attention, teacher_modality_share, xma_attention_grids

__all__ = [
    "XModalViTConfig", "FGTensors", "XModalData", "TripletPhotoSketchDataset", "load_data", "index_to_tensors",
    "standardize_images", "photo_views", "for_display",
    "make_teacher", "make_students", "train_teacher", "save_teacher", "load_teacher",
    "distil_students", "train_triplet_baseline", "evaluate", "teacher_pair_retrieval",
    "teacher_step", "student_step", "triplet_step", "same_teacher_setup",
    "freeze", "embed", "xma_attention_grids", "plot_xma_attention", "teacher_modality_share", "teacher_path",
]

# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def make_teacher(cfg: XModalViTConfig) -> XModalTeacher:
    torch.manual_seed(cfg.seed)
    return build_teacher(**cfg.teacher_kwargs())


def make_students(cfg: XModalViTConfig, out_dim: int, normalize: bool = False) -> StudentPair:
    torch.manual_seed(cfg.seed + 1)
    return build_students(out_dim=out_dim, normalize=normalize, **cfg.student_kwargs())


def freeze(module: nn.Module) -> nn.Module:
    """``requires_grad=False`` on every parameter and eval mode (the distillation teacher)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


@torch.no_grad()
def embed(fn: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 64,
          device: torch.device | str = "cpu") -> Tensor:
    """``fn`` over ``images`` in batches; float32 embeddings on CPU ``[N, D]``."""
    out = [fn(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate(model: StudentPair, split: FGTensors, metric: str = "dot", batch_size: int = 64) -> dict[str, float]:
    """Standard FG-SBIR protocol: every sketch ranks every photo of ``split`` (acc@1/5/10, ranks)."""
    was_training = model.training
    model.eval()
    dev = module_device(model)
    g = embed(model.encode_photo, split.photos, batch_size, dev)  # (P, D)
    q = embed(model.encode_sketch, split.sketches, batch_size, dev)  # (S, D)
    model.train(was_training)
    # the model's own score (dot, as the paper's code) unless EVAL_METRIC asks for cosine or euclidean
    scores = model.similarity(q, g) if metric == "dot" else similarity(q, g, metric=metric)  # (S, P)
    return fg_accuracy(scores, split.sketch_to_photo, ks=(1, 5, 10))


@torch.no_grad()
def teacher_pair_retrieval(teacher: XModalTeacher, split: FGTensors, batch_size: int = 64) -> dict[str, float]:
    """Sanity check of the fused embeddings (NOT sketch-to-photo retrieval; the teacher needs both inputs).

    Query j = z_s(photo_i, sketch_j) (sketch branch, as the teacher's key); gallery entry for photo g
    = z_p(photo_g, s_g) with s_g another sketch of g where one exists (else the same sketch).
    Ranking all gallery entries, acc@K says whether the fused embeddings identify the instance
    across modalities and sketches on unseen pairs, i.e. the teacher's own objective on held-out data.
    """
    was_training = teacher.training
    teacher.eval()
    dev = module_device(teacher)
    sk_of = split.sketches_of()
    has = [p for p, s in enumerate(sk_of) if s]
    pos = {p: i for i, p in enumerate(has)}
    q_idx = [s for s in range(split.sketches.shape[0])]
    g_sk = [sk_of[p][-1] for p in has]  # last sketch of each photo (query uses every sketch)
    zs, zp = [], []
    for i in range(0, len(q_idx), batch_size):
        sel = q_idx[i:i + batch_size]
        ph = split.photos[split.sketch_to_photo[sel]].to(dev)
        zs.append(teacher(ph, split.sketches[sel].to(dev))[1].float().cpu())
    for i in range(0, len(has), batch_size):
        ph = split.photos[has[i:i + batch_size]].to(dev)
        zp.append(teacher(ph, split.sketches[g_sk[i:i + batch_size]].to(dev))[0].float().cpu())
    teacher.train(was_training)
    q, g = torch.cat(zs), torch.cat(zp)
    true = torch.tensor([pos[int(p)] for p in split.sketch_to_photo], dtype=torch.long)
    return fg_accuracy(F.normalize(q, dim=1) @ F.normalize(g, dim=1).t(), true, ks=(1, 5, 10))


# ---------------------------------------------------------------------------------------------
# training stages
# ---------------------------------------------------------------------------------------------
def _default_out(name: str) -> Path:
    return runs_dir() / "xmodalvit" / name


def teacher_step(xaqc: XAQC, photo_aug: bool = False) -> Callable[[nn.Module, Any], dict[str, Tensor]]:
    """Teacher loss: XAQC(q = z_p(photo, sketch A), k = z_s(photo, sketch B)); the key has no gradient.

    ``photo_aug`` (our addition): the query and the key see two independent colour views of the
    photo (:func:`photo_views`, global torch RNG, so a resumed run draws the same views).
    """

    def step(model: nn.Module, batch: Any) -> dict[str, Tensor]:
        photo, sk_a, sk_b = batch
        p_q, p_k = (photo_views(photo), photo_views(photo)) if photo_aug else (photo, photo)
        z_p = model(p_q, sk_a)[0]
        with torch.no_grad():
            z_s = model(p_k, sk_b)[1]
        loss = xaqc(z_p, z_s, enqueue_keys=gather_cat_nograd(z_s))  # global batch's keys under DDP
        return {"loss": loss, "xaqc": loss.detach()}

    return step


def train_teacher(cfg: XModalViTConfig, data: XModalData, out_dir: str | Path | None = None,
                  resume: bool = False, progress: bool = True, options: FitOptions | None = None):
    """Train the fusion teacher; returns ``(teacher, TrainResult)``. Validation = pair retrieval on val."""
    teacher = make_teacher(cfg)
    xaqc = XAQC(teacher.embed_dim, cfg.teacher_queue, cfg.temperature, cfg.normalize_query, seed=cfg.seed)
    val_fn = (lambda m: {f"val_{k}": v for k, v in teacher_pair_retrieval(m, data.val).items()
                         if k.startswith("acc@")}) if data.val.sketches.shape[0] else None
    res = fit(teacher, teacher_step(xaqc, cfg.teacher_photo_aug), TripletPhotoSketchDataset(data.train, cfg.seed, cfg.epoch_unit, cfg.teacher_train.batch_size),
              cfg.loop("teacher"), out_dir or _default_out("teacher"), val_fn=val_fn,
              state_modules={"xaqc": xaqc}, resume=resume, config=cfg.to_dict(), desc="teacher",
              progress=progress, options=options)
    return teacher, res


def teacher_path(name: str = "xmodalvit_teacher") -> Path:
    """Where notebook 01 leaves the trained teacher for notebook 02 (``artifacts_dir()/<name>``)."""
    return artifacts_dir() / name


def save_teacher(teacher: XModalTeacher, cfg: XModalViTConfig, path: str | Path | None = None) -> Path:
    from xmodal_lib.run.artifacts import save_model  # lazy: upward import (methods -> run)

    return save_model(teacher, path or teacher_path(), cfg)


def load_teacher(path: str | Path | None = None) -> tuple[XModalTeacher, XModalViTConfig] | None:
    """The saved teacher (architecture rebuilt from its stored config, weights strict), or None if absent
    or written by an older version (said, so the caller trains a new one).

    A teacher whose JSON is missing or damaged raises ``CheckpointError`` naming the file."""
    from xmodal_lib.run.artifacts import load_model, unusable  # lazy: upward import (methods -> run)

    p = Path(path) if path is not None else teacher_path()
    if not p.with_name(p.name + ".safetensors").is_file():
        return None  # teacher_pretrained=False: the weights come from the file
    why = unusable(p, XModalViTConfig, "teacher config")
    if why is not None:
        print(f"teacher {p}: {why}; not used")
        return None
    return load_model(p, XModalViTConfig, make_teacher, "teacher config", teacher_pretrained=False)


#: fields that leave a trained teacher as it is: evaluation, the students', and how the teacher's loop ran
#: (its runtime fields, those a resume may change too: device, loader, checkpoints)
_NOT_TEACHER = ("profile", "teacher_pretrained", "eval_metric", "eval_batch_size", "angle_chunk", "sketch_target",
                "triplet_margin", *(f"teacher_{f}" for f in sorted(RUNTIME_FIELDS)))


def same_teacher_setup(a: XModalViTConfig, b: XModalViTConfig) -> bool:
    """True when a teacher trained under ``a`` is the one ``b`` would train: same architecture, data,
    input transforms and teacher schedule (student, baseline and evaluation fields are ignored)."""
    def key(c: XModalViTConfig) -> dict[str, Any]:
        return {k: v for k, v in c.to_dict().items() if k not in _NOT_TEACHER
                and not k.startswith(("student_", "baseline_"))}
    return key(a) == key(b)


def student_step(teacher: XModalTeacher, xaqc_p: XAQC, xaqc_s: XAQC, relational: bool = True,
                 sketch_target: str = "z_s", angle_chunk: int | None = None):
    """Distillation step for the photo and sketch students together (disjoint parameters, so with Adam
    this equals training them separately). Teacher targets: photo student <- z_p(photo, A); sketch
    student <- z_s(photo, A) (or z_p); XMRD on the 2B batch [A; B] (photo student: [photo; photo])."""

    def step(students: nn.Module, batch: Any) -> dict[str, Tensor]:
        photo, sk_a, sk_b = batch
        if module_device(teacher) != photo.device:
            teacher.to(photo.device)
        with torch.no_grad():
            zp_a, zs_a = teacher(photo, sk_a)
            zp_b, zs_b = teacher(photo, sk_b) if relational else (zp_a, zs_a)
        t_a, t_b = (zs_a, zs_b) if sketch_target == "z_s" else (zp_a, zp_b)
        e_p = students.photo(photo)  # (B, D)
        e_a = students.sketch(sk_a)
        out = {"xaqc_photo": xaqc_p(e_p, zp_a, enqueue_keys=gather_cat_nograd(zp_a)),  # global keys under DDP
               "xaqc_sketch": xaqc_s(e_a, t_a, enqueue_keys=gather_cat_nograd(t_a))}
        if relational:
            e_b = students.sketch(sk_b)
            s_p, t_p = torch.cat([e_p, e_p]), torch.cat([zp_a, zp_b])  # (2B, D)
            s_s, t_s = torch.cat([e_a, e_b]), torch.cat([t_a, t_b])
            # RKD relates every pair/triple of the batch: under DDP it sees the global batch (2B*W, D)
            s_p, t_p, s_s, t_s = (gather_cat(x) for x in (s_p, t_p, s_s, t_s))
            out["dist"] = rkd_distance(s_p, t_p) + rkd_distance(s_s, t_s)
            out["angle"] = rkd_angle(s_p, t_p, angle_chunk) + rkd_angle(s_s, t_s, angle_chunk)
        out["loss"] = sum(out.values())
        return out

    return step


def distil_students(cfg: XModalViTConfig, data: XModalData, teacher: XModalTeacher, relational: bool = True,
                    out_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
                    options: FitOptions | None = None):
    """Distil photo + sketch students from the frozen ``teacher``; returns ``(StudentPair, TrainResult)``."""
    freeze(teacher).to(resolve_device(cfg.student_train.device))
    students = make_students(cfg, teacher.embed_dim)
    d = teacher.embed_dim
    xp = XAQC(d, cfg.student_queue, cfg.temperature, cfg.normalize_query, seed=cfg.seed + 2)
    xs = XAQC(d, cfg.student_queue, cfg.temperature, cfg.normalize_query, seed=cfg.seed + 3)
    name = "students_xaqc_xmrd" if relational else "students_xaqc"
    res = fit(students, student_step(teacher, xp, xs, relational, cfg.sketch_target, cfg.angle_chunk),
              TripletPhotoSketchDataset(data.train, cfg.seed, cfg.epoch_unit, cfg.student_train.batch_size), cfg.loop("student"),
              out_dir or _default_out(name), val_fn=_val_fn(cfg, data), state_modules={"xaqc_p": xp, "xaqc_s": xs},
              resume=resume, config={**cfg.to_dict(), "relational": relational}, desc=name, progress=progress,
              options=options)
    return students, res


def _val_fn(cfg: XModalViTConfig, data: XModalData):
    if data.val.sketches.shape[0] == 0:
        return None
    return lambda m: {f"val_{k}": v for k, v in evaluate(m, data.val, cfg.eval_metric, cfg.eval_batch_size).items()
                      if k.startswith("acc@")}


def triplet_step(margin: float):
    """Plain triplet baseline: sketch anchor, its photo positive, every other photo of the batch as a
    negative (hinge averaged), on L2-normalised embeddings (Euclidean distance)."""

    def step(students: nn.Module, batch: Any) -> dict[str, Tensor]:
        photo, sk_a, _ = batch
        e_p, e_s = students.encode_photo(photo), students.encode_sketch(sk_a)  # (B, D), normalised
        e_p, e_s = gather_cat(e_p), gather_cat(e_s)  # negatives from the global batch under DDP (B*W, D)
        return {"loss": batch_all_triplet(e_s, e_p, margin)}

    return step


def train_triplet_baseline(cfg: XModalViTConfig, data: XModalData, out_dim: int | None = None,
                           out_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
                           options: FitOptions | None = None):
    """The same student pair trained with a triplet loss and no teacher; returns ``(StudentPair, TrainResult)``."""
    dim = out_dim or cfg.teacher.embed_dim or 768
    students = make_students(cfg, dim, normalize=True)
    res = fit(students, triplet_step(cfg.triplet_margin), TripletPhotoSketchDataset(data.train, cfg.seed, cfg.epoch_unit, cfg.baseline_train.batch_size),
              cfg.loop("baseline"), out_dir or _default_out("triplet_baseline"), val_fn=_val_fn(cfg, data),
              resume=resume, config={**cfg.to_dict(), "method": "triplet"}, desc="triplet", progress=progress,
              options=options)
    return students, res


def replace_config(cfg: XModalViTConfig, **changes: Any) -> XModalViTConfig:
    """A copy with ``changes`` by parameter name (``teacher_depth=1``), validated (sweeps, benchmarks)."""
    return override(cfg, **changes)
