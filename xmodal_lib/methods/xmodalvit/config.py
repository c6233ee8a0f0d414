"""XModalViT's run config: every leaf a notebook parameter of notebooks 01 and 02 (upper case).

The two encoder recipes and the three training loops are nested configs, bound with a prefix
(:func:`xmodal_lib.run.params.nested`): ``TEACHER_DEPTH`` -> ``cfg.teacher.depth``, ``STUDENT_POOL`` ->
``cfg.student.pool``, ``TEACHER_LR`` -> ``cfg.teacher_train.lr``, ``STUDENT_DEVICE`` ->
``cfg.student_train.device``, ``BASELINE_EPOCHS`` -> ``cfg.baseline_train.epochs``
(:class:`~xmodal_lib.engine.train.TrainConfig`: one declaration of every loop setting). The profiles
are the YAML files ``notebooks/params/<profile>/0[12]_*.yaml`` (:func:`xmodal_lib.run.params.preset`);
the paper's other datasets are :data:`PAPER_DATASETS`, what differs from the Shoe-V2 paper profile.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from xmodal_lib.engine.train import TrainConfig
from xmodal_lib.methods.xmodalvit.model import STUDENT_POOLS, vit_overrides
from xmodal_lib.run.params import nested, to_dict

__all__ = ["XModalViTConfig", "EncoderConfig", "StudentConfig", "PAPER_DATASETS"]

#: the paper's datasets (methods_spec §1.6): the values that differ from the paper profile (Shoe-V2);
#: ``preset("02_distillation", "paper", data_root=..., **PAPER_DATASETS["sketchy"])``. On Sketchy the
#: queues are 64, the students ViT-S and an epoch is one photo per class (8 iterations of 16, so the
#: official 20 000 epochs = 160 000 steps).
PAPER_DATASETS: dict[str, dict[str, Any]] = {
    "shoev2": {},
    "chairv2": {},
    "sketchy": dict(dataset="sketchy", epoch_unit="classes", teacher_queue=64, student_queue=64,
                    student_backbone="vit_small_patch16_224.augreg_in21k"),
}


@dataclass
class EncoderConfig:
    """One ViT encoder: a timm name, its weights (False, True = timm download, or a weight file) and
    size overrides of the name's recipe (None = the name's own). Defaults: a tiny random-init ViT."""

    backbone: str = "vit_tiny_patch16_224"
    pretrained: Any = False  # False | True | "path/to/weights.safetensors"
    patch_size: int | None = 8
    depth: int | None = 2
    embed_dim: int | None = 48
    num_heads: int | None = 3

    def overrides(self) -> dict[str, int]:
        """The timm keyword arguments of the non-None size overrides."""
        return vit_overrides(self.patch_size, self.depth, self.embed_dim, self.num_heads)


@dataclass
class StudentConfig(EncoderConfig):
    """A student's encoder and its pooling (``"cls"`` paper, ``"avg"``, ``"cls+avg"``; ``XModalStudent``)."""

    pool: str = "cls"

    def __post_init__(self) -> None:
        if self.pool not in STUDENT_POOLS:
            raise ValueError(f"student_pool: expected one of {STUDENT_POOLS}, got {self.pool!r}")


@dataclass
class XModalViTConfig:
    """Parameters of notebooks 01/02; the field defaults are the smoke profile's values.

    ``*_epochs`` are budgets: the official code runs 20 000 epochs per stage (methods_spec §1.6);
    ``*_max_steps`` caps optimiser steps (None = no cap). The paper profile (Shoe-V2) is official:
    2x ViT-B/16 teacher and ViT-Ti students (``*_in21k`` ImageNet-21k weights), batch 16, Adam
    3e-6 / 1e-5, queues 128/256, tau 0.07, 224 px, the teacher's cosine stepped every 10 iterations
    (``teacher_schedule="official"``), fp32, all training photos (``val_fraction=0``).

    Our additions (not in the paper or its code; the paper profile turns them off):

    * ``standardize_inputs``: per-image mean/std standardisation of photos and sketches in
      :func:`load_data` (random-init ViTs otherwise embed all mostly-white sketches alike).
    * ``teacher_photo_aug``: the teacher's query and key see independent colour views of the photo
      (:func:`photo_views`), so it cannot tell instances apart by colour alone; a colour code is
      something a sketch cannot predict.
    * ``student_pool``: ``"cls"`` (paper), ``"avg"`` or ``"cls+avg"`` (see ``XModalStudent``).
    * ``synth_fg_train`` / ``synth_fg_test`` / ``synth_fg_plain``: size of the synthetic shoe
      benchmark and product-shot photos (white background, no clutter, like QMUL Shoe); only
      used when ``dataset == "synthetic_fg"``.

    ``sketch_target`` is a reading of the paper, not an addition: the released code distils a
    broken target (§1.8); the figure shows z_s for the sketch student, the angle term uses z_p.
    """

    profile: str = "smoke"
    dataset: str = "synthetic_fg"
    data_root: str | None = None
    synth_fg_train: int = 600
    synth_fg_test: int = 100
    synth_fg_plain: bool = True
    image_size: int = 32
    input_norm: str = "half"  # "none" = [0, 1] as the official code; "half" = [-1, 1]; "imagenet"
    standardize_inputs: bool = True
    val_fraction: float = 0.15
    seed: int = 0  # everything: data split, sampling, queues, model init and the loops (unless a *_SEED is set)
    # teacher
    teacher: EncoderConfig = nested(EncoderConfig, "teacher_")  # TEACHER_BACKBONE ... TEACHER_NUM_HEADS
    xma_depth: int = 3
    xma_heads: int = 3
    teacher_queue: int = 32
    # the teacher's training loop: TEACHER_EPOCHS, TEACHER_LR ... TEACHER_DEVICE -> teacher_train.<field>
    teacher_train: TrainConfig = nested(TrainConfig, "teacher_", epochs=45, batch_size=16, lr=1e-4, weight_decay=1e-4,
                                        schedule="cosine", optimizer="adam", seed=None)  # seed None: SEED
    teacher_photo_aug: bool = True
    patch_embed: str = "pixels"  # teacher and students: "pixels" (paper) | "hybrid_lite0" ImageNet CNN-cell tokens (ours)
    cnn_trainable_blocks: int = 0  # hybrid: last CNN stages trained (0 = frozen, features cached per image)
    # students
    student: StudentConfig = nested(StudentConfig, "student_")  # STUDENT_BACKBONE ... STUDENT_POOL
    student_queue: int = 32
    # the students' distillation loop: STUDENT_EPOCHS, STUDENT_LR, STUDENT_GAMMA ... -> student_train.<field>
    student_train: TrainConfig = nested(TrainConfig, "student_", epochs=30, batch_size=16, lr=1e-4, weight_decay=1e-5,
                                        schedule="exponential", gamma=0.99999, optimizer="adam", seed=None)
    sketch_target: str = "z_p"  # teacher branch distilled into the sketch student: "z_s" or "z_p"
    # losses
    temperature: float = 0.07
    normalize_query: bool = True  # smoke: an L2-normalised XAQC query (profiles paper and cpu: False, as the official code)
    angle_chunk: int | None = None
    # triplet baseline (no teacher)
    triplet_margin: float = 0.2
    # its loop: BASELINE_EPOCHS, BASELINE_LR ... -> baseline_train.<field>
    baseline_train: TrainConfig = nested(TrainConfig, "baseline_", epochs=30, batch_size=16, lr=1e-4, weight_decay=1e-5,
                                         schedule="constant", optimizer="adam", seed=None)
    # evaluation: score = dot product of the (un-normalised) student embeddings, as the paper's code
    eval_metric: str = "dot"
    eval_batch_size: int = 64
    epoch_unit: str = "photos"  # "photos": one item per training photo | "classes": official Sketchy epoch, one photo per class

    def __post_init__(self) -> None:
        if self.sketch_target not in ("z_s", "z_p"):
            raise ValueError(f"sketch_target: expected 'z_s' or 'z_p', got {self.sketch_target!r}")
        if self.eval_metric not in ("dot", "cosine", "euclidean"):
            raise ValueError(f"eval_metric: expected 'dot', 'cosine' or 'euclidean', got {self.eval_metric!r}")
        if self.epoch_unit not in ("photos", "classes"):
            raise ValueError(f"epoch_unit: expected 'photos' or 'classes', got {self.epoch_unit!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a value in [0, 1), got {self.val_fraction}")
        for name in ("image_size", "teacher_queue", "student_queue", "xma_depth", "synth_fg_train", "synth_fg_test"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, by parameter name (:func:`xmodal_lib.run.params.to_dict`; read back with ``from_dict``)."""
        return to_dict(self)

    def loop(self, stage: str) -> TrainConfig:
        """The training loop of ``stage`` (``"teacher"``, ``"student"``, ``"baseline"``): its nested
        :class:`TrainConfig`, with ``SEED`` as its seed unless ``<STAGE>_SEED`` is set."""
        if stage not in ("teacher", "student", "baseline"):
            raise ValueError(f"loop(stage=...): expected 'teacher', 'student' or 'baseline', got {stage!r}")
        tc = getattr(self, f"{stage}_train")
        return tc if tc.seed is not None else replace(tc, seed=self.seed)

    def teacher_kwargs(self) -> dict[str, Any]:
        """:func:`~xmodal_lib.methods.xmodalvit.model.build_teacher`'s arguments."""
        return dict(backbone=self.teacher.backbone, pretrained=self.teacher.pretrained,
                    img_size=self.image_size, xma_depth=self.xma_depth, xma_heads=self.xma_heads,
                    patch_embed=self.patch_embed, cnn_trainable_blocks=self.cnn_trainable_blocks,
                    input_norm=self.input_norm, **self.teacher.overrides())

    def student_kwargs(self) -> dict[str, Any]:
        """:func:`~xmodal_lib.methods.xmodalvit.model.build_students`' arguments (``out_dim`` aside)."""
        return dict(backbone=self.student.backbone, pretrained=self.student.pretrained, pool=self.student.pool,
                    patch_embed=self.patch_embed, cnn_trainable_blocks=self.cnn_trainable_blocks,
                    input_norm=self.input_norm, img_size=self.image_size, **self.student.overrides())
