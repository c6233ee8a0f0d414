"""CrossATNet's run config: every leaf a notebook parameter of notebook 03 (upper case), the network's
config nested as ``model`` (:class:`~xmodal_lib.methods.crossatnet.model.CrossATNetConfig`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xmodal_lib.engine.train import TrainConfig
from xmodal_lib.methods.crossatnet.losses import MINING
from xmodal_lib.methods.crossatnet.model import CrossATNetConfig
from xmodal_lib.run.params import nested, to_dict

__all__ = ["CrossATNetRunConfig", "PAPER_DATASETS", "SKETCHY21_METRICS"]

SKETCHY21_METRICS = ("map_all_voc", "p@100", "map@200_voc", "p@200")  # official mAP@200 = VOC-interpolated


#: the paper's zero-shot datasets: what differs from the paper profile (Sketchy-Ext 25 unseen,
#: ``notebooks/params/paper/03_crossatnet_zero_shot.yaml``), for ``xmodal train --dataset``
PAPER_DATASETS: dict[str, dict[str, Any]] = {
    "sketchy": {},
    "sketchy21": dict(split="zeroshot0", metrics=SKETCHY21_METRICS),
    "tuberlin": dict(split="zeroshot"),
}


@dataclass
class CrossATNetRunConfig:
    """Every knob of a CrossATNet run = the parameters of notebook 03: the network's (``model``,
    :class:`CrossATNetConfig`, parameters under their own names: ``EMBED_DIM`` -> ``model.embed_dim``)
    and the run's (data, graph CNN, losses), the training loop's nested as ``train``
    (:class:`~xmodal_lib.engine.train.TrainConfig`, parameters under their own names: ``LR`` -> ``train.lr``). The defaults are a tiny CPU run (6 epochs,
    lr 1e-3; class names still embedded with MiniLM); the profiles are the YAML files
    (:func:`xmodal_lib.run.params.preset`). Paper-profile hyperparameters are ours (the paper's are not
    available)."""

    model: CrossATNetConfig = nested(CrossATNetConfig)
    # data
    dataset: str = "synthetic"  # open_dataset kind: "synthetic", "sketchy", "sake"
    data_root: str | None = None
    split: str | None = None  # zero-shot split of the reader ("zeroshot1", "zeroshot0", SAKE folder)
    # semantics / graph CNN
    use_gcn: bool = True
    semantics: str = "minilm"  # "minilm" | "word2vec" | "hashing" (explicit opt-in)
    word_vectors: str | None = None
    graph: str = "knn"  # "knn" | "mst" | "none"
    graph_k: int = 5
    gcn_hidden: int = 64
    gcn_dropout: float = 0.0
    # losses
    margin: float = 0.2
    mining: str = "semi-hard"
    tau: float = 0.1
    w_triplet: float = 1.0
    w_semantic: float = 1.0
    w_attention: float = 1.0
    w_hash: float = 1.0
    w_quant: float = 0.1
    w_balance: float = 0.1
    # optimisation: the shared loop's settings under their own names (EPOCHS -> train.epochs, SEED -> train.seed)
    train: TrainConfig = nested(TrainConfig, epochs=6, batch_size=32, lr=1e-3, weight_decay=0.0, optimizer="adam",
                                device="cpu", ckpt_every=None, keep_last=1)
    augment: bool = True
    # evaluation
    metrics: tuple[str, ...] = ("map_all_voc", "p@100")

    def __post_init__(self) -> None:
        self.metrics = tuple(self.metrics)
        if self.mining not in MINING:
            raise ValueError(f"CrossATNetRunConfig.mining: expected one of {MINING}, got {self.mining!r}")
        if self.graph not in ("knn", "mst", "none"):
            raise ValueError(f"CrossATNetRunConfig.graph: expected 'knn', 'mst' or 'none', got {self.graph!r}")
        if self.margin < 0 or self.tau <= 0:
            raise ValueError(f"CrossATNetRunConfig: margin >= 0 and tau > 0 expected, got {self.margin}, {self.tau}")

    def to_dict(self) -> dict:
        """JSON-able, by parameter name (:func:`xmodal_lib.run.params.to_dict`; read back with ``from_dict``)."""
        return to_dict(self)
