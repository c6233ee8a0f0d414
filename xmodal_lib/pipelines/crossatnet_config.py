"""CrossATNet's run config: every field a notebook parameter of notebook 03 (upper-case), and the
model config it builds (:meth:`CrossATNetRunConfig.model_config`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..losses.crossatnet import MINING
from ..models.crossatnet import CrossATNetConfig

__all__ = ["CrossATNetRunConfig", "SKETCHY21_METRICS"]

SKETCHY21_METRICS = ("map_all_voc", "p@100", "map@200_voc", "p@200")  # official mAP@200 = VOC-interpolated


@dataclass
class CrossATNetRunConfig:
    """Every knob of a CrossATNet run (flat fields = notebook parameters)."""

    # data
    dataset: str = "synthetic"  # open_dataset kind: "synthetic", "sketchy", "sake"
    data_root: str | None = None
    split: str | None = None  # zero-shot split of the reader ("zeroshot1", "zeroshot0", SAKE folder)
    img_size: int = 64
    # model
    backbone: str = "resnet50"
    sketch_backbone: str = ""
    pretrained: bool | str = False
    output_stride: int = 16
    embed_dim: int = 256
    attn_dim: int = 128
    hash_bits: tuple[int, ...] = (16, 32, 64, 128)
    cross_attention: bool = True
    cnn_trainable_blocks: int = 0  # backbone "pretrained_lite0": last CNN stages trained (0 = frozen, cached)
    # semantics / graph CNN
    use_gcn: bool = True
    semantics: str = "minilm"  # "minilm" | "word2vec" | "hashing" (explicit opt-in)
    word_vectors: str | None = None
    graph: str = "knn"  # "knn" | "mst" | "none"
    graph_k: int = 5
    gcn_hidden: int = 256
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
    # optimisation
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    # evaluation
    metrics: tuple[str, ...] = ("map_all_voc", "p@100")

    def __post_init__(self) -> None:
        self.hash_bits = tuple(int(b) for b in self.hash_bits)
        self.metrics = tuple(self.metrics)
        if self.mining not in MINING:
            raise ValueError(f"CrossATNetRunConfig.mining: expected one of {MINING}, got {self.mining!r}")
        if self.graph not in ("knn", "mst", "none"):
            raise ValueError(f"CrossATNetRunConfig.graph: expected 'knn', 'mst' or 'none', got {self.graph!r}")
        if self.margin < 0 or self.tau <= 0:
            raise ValueError(f"CrossATNetRunConfig: margin >= 0 and tau > 0 expected, got {self.margin}, {self.tau}")

    @classmethod
    def smoke(cls, **kw: Any) -> "CrossATNetRunConfig":
        """CPU minutes: synthetic data, 64 px, timm ``test_resnet`` (0.4 M parameters) at stride 8
        (8x8 maps), 6 epochs; class names still embedded with MiniLM."""
        base = dict(dataset="synthetic", img_size=64, backbone="test_resnet", output_stride=8,
                    embed_dim=64, attn_dim=32, gcn_hidden=64, epochs=6, batch_size=32, lr=1e-3,
                    device="cpu")
        base.update(kw)
        return cls(**base)

    @classmethod
    def paper(cls, dataset: str = "sketchy", **kw: Any) -> "CrossATNetRunConfig":
        """GPU profile: ResNet-50 at 224 px (stride 16 -> 14x14 maps) on Sketchy-Ext (25 unseen,
        ``zeroshot1``), Sketchy-Ext 21 (``sketchy21``: mAP@200/P@200 too) or TU-Berlin-Ext (30 unseen).
        Hyperparameters are ours (the paper's are not available)."""
        presets = {
            "sketchy": dict(dataset="sketchy", split="zeroshot1"),
            "sketchy21": dict(dataset="sketchy", split="zeroshot0", metrics=SKETCHY21_METRICS),
            "tuberlin": dict(dataset="sake", split="zeroshot"),
        }
        if dataset not in presets:
            raise ValueError(f"CrossATNetRunConfig.paper(dataset=...): expected one of {list(presets)}, got {dataset!r}")
        base = dict(img_size=224, backbone="resnet50", output_stride=16, pretrained=True, embed_dim=256,
                    attn_dim=128, gcn_hidden=256, epochs=10, batch_size=64, lr=1e-4, device="auto")
        base.update(presets[dataset])
        base.update(kw)
        return cls(**base)

    def model_config(self) -> CrossATNetConfig:
        """The architecture part."""
        return CrossATNetConfig(backbone=self.backbone, sketch_backbone=self.sketch_backbone,
                                pretrained=self.pretrained, img_size=self.img_size,
                                output_stride=self.output_stride, embed_dim=self.embed_dim,
                                attn_dim=self.attn_dim, hash_bits=self.hash_bits,
                                cross_attention=self.cross_attention,
                                cnn_trainable_blocks=self.cnn_trainable_blocks)

    def train_config(self, **kw: Any):
        """The :class:`xmodal_lib.train.TrainConfig` of this run."""
        from ..train import TrainConfig

        base = dict(epochs=self.epochs, max_steps=self.max_steps, batch_size=self.batch_size, lr=self.lr,
                    weight_decay=self.weight_decay, optimizer="adam", seed=self.seed, device=self.device,
                    ckpt_every=None, keep_last=1)
        base.update(kw)
        return TrainConfig(**base)

    def to_dict(self) -> dict:
        """JSON-able dict."""
        d = asdict(self)
        d["hash_bits"], d["metrics"] = list(self.hash_bits), list(self.metrics)
        return d
