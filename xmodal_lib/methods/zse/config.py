"""ZSE-SBIR's run config: every notebook-04 parameter, the model's nested (:class:`ZSEConfig`), and
the paper's other zero-shot datasets as data (:data:`PAPER_DATASETS`). The profiles (smoke, cpu,
paper) are the YAML files of ``notebooks/params/<profile>/04_zse_sbir.yaml``, read by
:func:`xmodal_lib.run.params.preset`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xmodal_lib.engine.train import TrainConfig
from xmodal_lib.methods.zse.model import ZSEConfig
from xmodal_lib.run.params import nested, to_dict

__all__ = ["ZSEPipelineConfig", "PAPER_DATASETS"]


#: the paper's zero-shot datasets: the values that differ from the paper profile (Sketchy-Ext 25,
#: ``notebooks/params/paper/04_zse_sbir.yaml``), e.g. ``preset("04_zse_sbir", "paper",
#: **PAPER_DATASETS["sketchy21"])``; the profile's METRICS hold every metric the paper reports on any
#: of them (methods_spec.md §3.8-3.9; official mAP@200 = VOC-interpolated). DATA_ROOT is the user's.
PAPER_DATASETS: dict[str, dict[str, Any]] = {
    "sketchy25": {},
    "sketchy21": dict(split="zeroshot0"),
    "tuberlin": dict(split="zeroshot"),
    "quickdraw": dict(split="zeroshot"),
}


@dataclass
class ZSEPipelineConfig:
    """Every notebook parameter of 04_zse_sbir: the model's (``model``, :class:`ZSEConfig`, parameters
    under their own names: ``DIM`` -> ``model.dim``), the training loop's (``train``,
    :class:`~xmodal_lib.engine.train.TrainConfig`: ``LR`` -> ``train.lr``) and the run's (data, evaluation).

    The defaults are a tiny CPU run; the profiles are the YAML files (:func:`xmodal_lib.run.params.preset`).
    Paper profile, also official: fp32 training, LayerNorm eps 1e-5, the released sketch crop and
    photo resize (``preprocess="official"``), SAM ViT-B/16 ImageNet-1k weights
    (``ZSEConfig.vit_name``), and training on all seen classes for a fixed 30 epochs
    (``val_classes=0``, the last epoch kept; the official code picks the best epoch on an
    unseen-class subsample, which we never do; ``val_classes=10`` selects on held-out seen classes)."""

    model: ZSEConfig = nested(ZSEConfig)  # methods_spec.md §3.3-3.5
    profile: str = "smoke"
    dataset: str = "synthetic"     # "synthetic" | "sketchy" | "sake"
    data_root: str | None = None
    split: str | None = None       # zero-shot split of real data ("zeroshot1" ...)
    preprocess: str = "ours"       # "ours" (ink < 200 crop, square pad) | "official": released crop (data.official_crop)
    ts_warmup_epochs: int = 0      # keep_rate < 1: epochs with all tokens before pruning starts (authors: 5-10)
    # training (§3.7): the shared loop's settings under their own names (LR -> train.lr, PRECISION ->
    # train.precision: auto = bf16 autocast on CUDA | fp32 (official) | bf16 | fp16)
    train: TrainConfig = nested(TrainConfig, epochs=1, batch_size=8, lr=1e-4, weight_decay=1e-2, optimizer="adamw",
                                schedule="constant", ckpt_every=None, keep_last=1)
    items_per_epoch: int = 480
    val_classes: int = 3           # seen classes held out for model selection
    # evaluation (§3.9)
    metrics: tuple[str, ...] = ("map_all_voc", "p@100")
    rerank_k: int = 20
    rerank_ks: tuple[int, ...] = (1, 5, 10, 20, 50)
    block_q: int = 20
    block_g: int = 100
    eval_batch: int = 64
    rn_max_pairs: int = 50_000_000  # exhaustive rn is skipped (reported) above this many pairs
    # fine-grained setting
    fg_kind: str = "synthetic_fg"  # "synthetic_fg" | "qmul_v1"
    fg_train_category: str = "shoe"
    fg_test_category: str = "chair"
    fg_items_per_epoch: int = 480

    def __post_init__(self) -> None:
        self.metrics, self.rerank_ks = tuple(self.metrics), tuple(int(k) for k in self.rerank_ks)
        if self.dataset not in ("synthetic", "sketchy", "sake"):
            raise ValueError(f"ZSEPipelineConfig.dataset: expected 'synthetic', 'sketchy' or 'sake', got {self.dataset!r}")
        if self.rerank_k < 1 or self.val_classes < 0 or self.items_per_epoch < self.train.batch_size:
            raise ValueError("ZSEPipelineConfig: need rerank_k >= 1, val_classes >= 0, items_per_epoch >= batch_size")
        if self.ts_warmup_epochs and self.model.rn_tokens == "kept":
            raise ValueError("ZSEPipelineConfig.ts_warmup_epochs needs rn_tokens='grid' (the 'kept' RN is built for the pruned count)")
        if self.preprocess not in ("ours", "official") or self.ts_warmup_epochs < 0:
            raise ValueError(f"ZSEPipelineConfig: preprocess 'ours' | 'official' and ts_warmup_epochs >= 0 expected, "
                             f"got {self.preprocess!r}, {self.ts_warmup_epochs}")
        if self.fg_kind not in ("synthetic_fg", "qmul_v1"):
            raise ValueError(f"ZSEPipelineConfig.fg_kind: expected 'synthetic_fg' or 'qmul_v1', got {self.fg_kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, by parameter name (:func:`xmodal_lib.run.params.to_dict`; read back with ``from_dict``)."""
        return to_dict(self)
