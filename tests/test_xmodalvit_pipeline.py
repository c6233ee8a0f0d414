"""XModalViT pipeline: config presets, (photo, A, B) dataset, frozen teacher, resume, evaluation."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.pipelines import xmodalvit as xv

TINY = dict(image_size=16, teacher_patch_size=8, teacher_depth=1, teacher_embed_dim=12, teacher_num_heads=3,
            xma_depth=1, student_patch_size=8, student_depth=1, student_embed_dim=12, student_num_heads=3,
            teacher_queue=8, student_queue=8, batch_size=4, teacher_epochs=1, student_epochs=1,
            baseline_epochs=1, device="cpu")


def _split(n_photos: int, per: int, seed: int) -> xv.FGTensors:
    g = torch.Generator().manual_seed(seed)
    photos = torch.rand(n_photos, 3, 16, 16, generator=g)
    sk = torch.rand(n_photos * per, 3, 16, 16, generator=g)
    s2p = torch.arange(n_photos).repeat_interleave(per)
    return xv.FGTensors(photos, sk, s2p, [str(i) for i in range(n_photos)])


@pytest.fixture()
def data():
    return xv.XModalData(_split(8, 2, 0), _split(4, 1, 1), _split(6, 2, 2), "fake")


def test_presets_and_params():
    p = xv.XModalViTConfig.paper("shoev2")
    assert (p.batch_size, p.teacher_lr, p.student_lr, p.teacher_queue, p.student_queue) == (16, 3e-6, 1e-5, 128, 256)
    assert p.teacher_backbone == "vit_base_patch16_224" and p.student_backbone == "vit_tiny_patch16_224"
    s = xv.XModalViTConfig.paper("sketchy")
    assert (s.teacher_queue, s.student_queue, s.student_backbone) == (64, 64, "vit_small_patch16_224")
    c = xv.XModalViTConfig.from_params({"PROFILE": "smoke", "TEACHER_EPOCHS": 3, "SEED": 5, "lower": 1})
    assert c.teacher_epochs == 3 and c.seed == 5 and c.profile == "smoke"
    with pytest.raises(ValueError, match="sketch_target"):
        xv.XModalViTConfig(sketch_target="x")
    with pytest.raises(ValueError, match="PROFILE"):
        xv.XModalViTConfig.from_params({"PROFILE": "huge"})


def test_dataset_deterministic_and_two_sketches(data):
    ds = xv.TripletPhotoSketchDataset(data.train, seed=0)
    a = ds[3]
    assert all(torch.equal(x, y) for x, y in zip(a, ds[3]))
    p, sa, sb = a
    own = [data.train.sketches[i] for i in (6, 7)]
    assert any(torch.equal(sa, o) for o in own) and any(torch.equal(sb, o) for o in own)
    assert not torch.equal(sa, sb)  # two different sketches when the photo has two


def test_teacher_frozen_during_distillation(data, tmp_path):
    cfg = xv.XModalViTConfig.smoke(**TINY)
    teacher = xv.make_teacher(cfg)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    students, res = xv.distil_students(cfg, data, teacher, out_dir=tmp_path / "s", progress=False)
    assert res.steps == 2 and {"xaqc_photo", "xaqc_sketch", "dist", "angle"} <= set(res.history[-1])
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert any(p.grad is not None for p in students.parameters())  # the students did train


def test_student_step_gradient_reaches_students_not_teacher(data):
    cfg = xv.XModalViTConfig.smoke(**TINY)
    teacher = xv.freeze(xv.make_teacher(cfg))
    st = xv.make_students(cfg, teacher.embed_dim)
    from xmodal_lib.losses.xaqc import XAQC
    step = xv.student_step(teacher, XAQC(12, 8), XAQC(12, 8), relational=False)
    ds = xv.TripletPhotoSketchDataset(data.train)
    batch = [torch.stack(x) for x in zip(*[ds[i] for i in range(4)])]
    out = step(st, batch)
    assert set(out) == {"xaqc_photo", "xaqc_sketch", "loss"}
    out["loss"].backward()
    assert st.photo.backbone.patch_embed.proj.weight.grad.abs().sum() > 0  # photo student sees photos
    assert st.sketch.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


def test_teacher_resume_equals_uninterrupted(data, tmp_path):
    # constant lr: a cosine schedule's length depends on max_steps, which the "kill" uses here
    cfg = xv.XModalViTConfig.smoke(**{**TINY, "teacher_epochs": 2, "teacher_schedule": "constant"})
    t_full, _ = xv.train_teacher(cfg, data, out_dir=tmp_path / "full", progress=False)
    part = xv.XModalViTConfig.smoke(**{**TINY, "teacher_epochs": 2, "teacher_max_steps": 3,
                                       "teacher_schedule": "constant"})
    xv.train_teacher(part, data, out_dir=tmp_path / "part", progress=False)  # "killed" after 3 of 4 steps
    t_res, res = xv.train_teacher(cfg, data, out_dir=tmp_path / "part", resume=True, progress=False)
    assert res.steps == 4
    for (k, a), b in zip(t_full.state_dict().items(), t_res.state_dict().values()):
        assert torch.equal(a, b), k


def test_save_load_teacher_and_evaluate(data, tmp_path):
    cfg = xv.XModalViTConfig.smoke(**TINY)
    t = xv.make_teacher(cfg)
    xv.save_teacher(t, cfg, tmp_path / "teacher")
    t2, cfg2 = xv.load_teacher(tmp_path / "teacher")
    assert cfg2.teacher_embed_dim == 12
    assert all(torch.equal(a, b) for a, b in zip(t.state_dict().values(), t2.state_dict().values()))
    assert xv.load_teacher(tmp_path / "absent") is None
    r = xv.teacher_pair_retrieval(t2, data.test)
    assert r["n_queries"] == 12 and 0.0 <= r["acc@1"] <= r["acc@10"] == 1.0  # gallery of 6 photos
    st = xv.make_students(cfg, 12)
    e = xv.evaluate(st, data.test)
    assert e["n_queries"] == 12 and 1.0 <= e["mean_rank"] <= 6.0
    grids = xv.xma_attention_grids(t2, data.test.photos[0], data.test.sketches[0])
    assert grids["sketch_to_photo"].shape == (1, 2, 2)
    assert torch.allclose(grids["photo_to_sketch"].sum((1, 2)), torch.ones(1))


def test_triplet_baseline_runs(data, tmp_path):
    cfg = xv.XModalViTConfig.smoke(**TINY)
    st, res = xv.train_triplet_baseline(cfg, data, out_dim=12, out_dir=tmp_path / "b", progress=False)
    assert res.steps == 2 and st.normalize
    assert torch.isfinite(torch.tensor(res.history[-1]["loss"]))
