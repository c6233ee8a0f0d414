"""The paper presets carry the official settings (issue: the paper profile is the papers' protocol)."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.methods.xmodalvit.config import PAPER_DATASETS
from xmodal_lib.methods.xmodalvit.data import FGTensors, TripletPhotoSketchDataset
from xmodal_lib.methods.xmodalvit.pipeline import XModalViTConfig
from xmodal_lib.run.params import build, preset


def _fg(n_classes: int, per_class: int = 2) -> FGTensors:
    ids = [f"c{c:03d}/{i}" for c in range(n_classes) for i in range(per_class)]
    n = len(ids)
    return FGTensors(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone(),
                     torch.zeros(2 * n, 3, 2, 2), torch.arange(n).repeat_interleave(2), ids)


def _paper(ds: str) -> XModalViTConfig:
    return preset("02_distillation", "paper", **PAPER_DATASETS[ds])


def test_xmodalvit_paper_preset_is_official():
    for ds, student in (("shoev2", "vit_tiny_patch16_224.augreg_in21k"), ("sketchy", "vit_small_patch16_224.augreg_in21k")):
        c = _paper(ds)
        assert c.student.backbone == student and c.val_fraction == 0.0
        assert {c.teacher_train.precision, c.student_train.precision, c.baseline_train.precision} == {"fp32"}
        assert c.teacher_train.schedule == "official" and c.student_train.schedule == "exponential"
        assert c.baseline_train.weight_decay == c.student_train.weight_decay == 1e-5  # as the official baseline
    assert _paper("sketchy").epoch_unit == "classes"
    assert _paper("chairv2").epoch_unit == "photos"
    with pytest.raises(ValueError, match="epoch_unit"):
        build(XModalViTConfig, epoch_unit="steps")


def test_official_sketchy_epoch_is_one_photo_per_class_in_whole_batches():
    data = _fg(125)
    ds = TripletPhotoSketchDataset(data, seed=0, epoch_unit="classes", batch_size=16)
    assert len(ds) == 128  # 8 full batches of 16 (official: 8 iterations, the last partial)
    ds.set_epoch(3)
    classes = [int(ds[i][0][0, 0, 0].item()) // 2 for i in range(len(ds))]  # photo value -> class
    assert sorted(classes[:125]) == list(range(125))  # every class once, in order, then 3 extra
    ds.set_epoch(4)
    picks = [int(ds[i][0][0, 0, 0].item()) for i in range(125)]
    ds.set_epoch(3)
    assert picks != [int(ds[i][0][0, 0, 0].item()) for i in range(125)]  # the photo drawn varies per epoch
    assert len(TripletPhotoSketchDataset(data, epoch_unit="photos")) == 250
    with pytest.raises(ValueError, match="epoch_unit"):
        TripletPhotoSketchDataset(data, epoch_unit="steps")
