"""XModalViT pipeline: config presets, (photo, A, B) dataset, frozen teacher, resume, evaluation."""
from __future__ import annotations

import pytest
import torch

from xmodal_lib.methods.xmodalvit import pipeline as xv
from xmodal_lib.methods.xmodalvit.config import PAPER_DATASETS
from xmodal_lib.run.params import build, notebook_config, preset

TINY = dict(image_size=16, teacher_patch_size=8, teacher_depth=1, teacher_embed_dim=12, teacher_num_heads=3,
            xma_depth=1, student_patch_size=8, student_depth=1, student_embed_dim=12, student_num_heads=3,
            teacher_queue=8, student_queue=8, teacher_batch_size=4, student_batch_size=4, baseline_batch_size=4,
            teacher_epochs=1, student_epochs=1,
            baseline_epochs=1, teacher_device="cpu", student_device="cpu", baseline_device="cpu")


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
    p = preset("02_distillation", "paper")
    assert (p.teacher_train.batch_size, p.student_train.batch_size, p.teacher_train.lr, p.student_train.lr, p.teacher_queue,
            p.student_queue) == (16, 16, 3e-6, 1e-5, 128, 256)
    assert p.teacher.backbone == "vit_base_patch16_224" and p.student.backbone == "vit_tiny_patch16_224.augreg_in21k"
    s = preset("02_distillation", "paper", **PAPER_DATASETS["sketchy"])
    assert (s.teacher_queue, s.student_queue, s.student.backbone) == (64, 64, "vit_small_patch16_224.augreg_in21k")
    c = notebook_config("01_fusion_teacher", {"PROFILE": "smoke", "TEACHER_EPOCHS": 3, "SEED": 5, "lower": 1})
    assert c.teacher_train.epochs == 3 and c.seed == 5 and c.profile == "smoke"
    with pytest.raises(ValueError, match="sketch_target"):
        xv.XModalViTConfig(sketch_target="x")
    with pytest.raises(ValueError, match="PROFILE"):
        notebook_config("01_fusion_teacher", {"PROFILE": "huge"})
    # the paper profile's own parameters (DATASET among them) bind without clashing with a preset
    p2 = notebook_config("02_distillation", {"PROFILE": "paper", "PAPER_DATASET": "shoev2", "DATASET": "qmul_v2"})
    assert (p2.profile, p2.dataset) == ("paper", "qmul_v2")


def test_dataset_deterministic_and_two_sketches(data):
    ds = xv.TripletPhotoSketchDataset(data.train, seed=0)
    a = ds[3]
    assert all(torch.equal(x, y) for x, y in zip(a, ds[3]))
    p, sa, sb = a
    own = [data.train.sketches[i] for i in (6, 7)]
    assert any(torch.equal(sa, o) for o in own) and any(torch.equal(sb, o) for o in own)
    assert not torch.equal(sa, sb)  # two different sketches when the photo has two


def test_teacher_frozen_during_distillation(data, tmp_path):
    cfg = build(xv.XModalViTConfig, **TINY)
    teacher = xv.make_teacher(cfg)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    students, res = xv.distil_students(cfg, data, teacher, out_dir=tmp_path / "s", progress=False)
    assert res.steps == 2 and {"xaqc_photo", "xaqc_sketch", "dist", "angle"} <= set(res.history[-1])
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert any(p.grad is not None for p in students.parameters())  # the students did train


def test_student_step_gradient_reaches_students_not_teacher(data):
    cfg = build(xv.XModalViTConfig, **TINY)
    teacher = xv.freeze(xv.make_teacher(cfg))
    st = xv.make_students(cfg, teacher.embed_dim)
    from xmodal_lib.methods.xmodalvit.xaqc import XAQC
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
    cfg = build(xv.XModalViTConfig, **{**TINY, "teacher_epochs": 2, "teacher_schedule": "constant"})
    t_full, _ = xv.train_teacher(cfg, data, out_dir=tmp_path / "full", progress=False)
    part = build(xv.XModalViTConfig, **{**TINY, "teacher_epochs": 2, "teacher_max_steps": 3,
                 "teacher_schedule": "constant"})
    xv.train_teacher(part, data, out_dir=tmp_path / "part", progress=False)  # "killed" after 3 of 4 steps
    t_res, res = xv.train_teacher(cfg, data, out_dir=tmp_path / "part", resume=True, progress=False)
    assert res.steps == 4
    for (k, a), b in zip(t_full.state_dict().items(), t_res.state_dict().values()):
        assert torch.equal(a, b), k


def test_save_load_teacher_and_evaluate(data, tmp_path):
    cfg = build(xv.XModalViTConfig, **TINY)
    t = xv.make_teacher(cfg)
    xv.save_teacher(t, cfg, tmp_path / "teacher")
    t2, cfg2 = xv.load_teacher(tmp_path / "teacher")
    assert cfg2.teacher.embed_dim == 12 and cfg2 == build(xv.XModalViTConfig, **TINY)  # round trip by name
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
    cfg = build(xv.XModalViTConfig, **TINY)
    st, res = xv.train_triplet_baseline(cfg, data, out_dim=12, out_dir=tmp_path / "b", progress=False)
    assert res.steps == 2 and st.normalize
    assert torch.isfinite(torch.tensor(res.history[-1]["loss"]))


# ---------------------------------------------------------------------------------------------
# our additions: input standardisation, teacher photo views, student pooling, diagnostics
# ---------------------------------------------------------------------------------------------
def test_standardize_images_per_image_and_idempotent():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 8, 8, generator=g) * torch.tensor([1.0, 5.0, 0.1])[:, None, None, None] + 2.0
    y = xv.standardize_images(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(1, 2, 3)), torch.ones(3), atol=1e-4)
    assert torch.allclose(xv.standardize_images(y), y, atol=1e-5)
    assert xv.standardize_images(torch.full((1, 3, 4, 4), 0.7)).abs().max() < 1e-4  # constant -> ~0
    with pytest.raises(ValueError, match="N, C, H, W"):
        xv.standardize_images(torch.rand(3, 8, 8))


def test_standardize_spreads_sketch_features_at_init(tmp_path):
    """Mostly-white sketches embed almost alike in a random-init ViT; standardised ones spread out."""
    import torch.nn.functional as F

    from xmodal_lib.data import open_dataset
    from xmodal_lib.data.datasets import preload
    from xmodal_lib.data.synthetic import SyntheticConfig, generate
    from xmodal_lib.data.transforms import ImageLoader

    tiny = SyntheticConfig(n_photos_per_class=1, classes=("shoe", "cup"), unseen=("cup",), fg_categories=("shoe",),
                           fg_train=12, fg_test=2, image_size=32)
    idx = open_dataset("synthetic_fg", root=generate(tiny, root=tmp_path / "syn"))
    sk = preload(idx.sketches, ImageLoader(32, normalize="half", sketch_crop=False), progress=False)  # (28, 3, 32, 32)
    for seed in range(3):
        st = xv.make_students(build(xv.XModalViTConfig, seed=seed), 12).eval()  # smoke student: width 48, depth 2

        def spread(x):
            with torch.no_grad():
                e = F.normalize(st.sketch.features(x), dim=1)
            return float((e - e.mean(0)).norm(dim=1).mean())

        assert spread(xv.standardize_images(sk)) > 1.8 * spread(sk)  # measured 2.2-2.7x (QMUL sketches ~13x)


def test_photo_views_keep_layout_change_colour():
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(4, 1, 8, 8, generator=g).expand(4, 3, 8, 8)  # grey photos: only the layout
    v = xv.photo_views(grey, torch.Generator().manual_seed(1))
    assert v.shape == grey.shape
    for a, b in zip(grey, v):  # a contrast change around the mean: perfectly correlated layout
        assert torch.corrcoef(torch.stack([a[0].flatten(), b[0].flatten()]))[0, 1] > 0.999
    col = torch.rand(4, 3, 8, 8, generator=g)
    v1 = xv.photo_views(col, torch.Generator().manual_seed(1))
    v2 = xv.photo_views(col, torch.Generator().manual_seed(1))
    assert torch.equal(v1, v2) and not torch.allclose(v1, col)


def test_teacher_step_photo_aug_gives_query_and_key_different_views(data):
    from xmodal_lib.methods.xmodalvit.xaqc import XAQC

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, photo, sketch):
            seen.append(photo.clone())
            z = photo.flatten(1)[:, :12] * self.w
            return z, z

    ds = xv.TripletPhotoSketchDataset(data.train)
    batch = [torch.stack(x) for x in zip(*[ds[i] for i in range(4)])]
    xv.teacher_step(XAQC(12, 8))(Spy(), batch)
    assert torch.equal(seen[0], batch[0]) and torch.equal(seen[1], batch[0])  # paper: the same photo
    seen.clear()
    out = xv.teacher_step(XAQC(12, 8), photo_aug=True)(Spy(), batch)
    assert not torch.equal(seen[0], seen[1]) and torch.isfinite(out["loss"])


@pytest.mark.parametrize("pool", ["cls", "avg", "cls+avg"])
def test_student_pool(pool):
    from xmodal_lib.layers.backbones import tokens

    cfg = build(xv.XModalViTConfig, **{**TINY, "student_pool": pool})
    st = xv.make_students(cfg, 12).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        t = tokens(st.sketch.backbone, x)  # (2, 1+4, 12)
        want = {"cls": t[:, 0], "avg": t[:, 1:].mean(1), "cls+avg": 0.5 * (t[:, 0] + t[:, 1:].mean(1))}[pool]
        assert torch.allclose(st.sketch.features(x), want, atol=1e-6)
        assert st.encode_sketch(x).shape == (2, 12)
    with pytest.raises(ValueError, match="student_pool"):
        build(xv.XModalViTConfig, student_pool="max")


def test_teacher_modality_share_separates_photo_and_sketch_dependence():
    class Fake(torch.nn.Module):
        def __init__(self, use):
            super().__init__()
            self.use, self.w = use, torch.nn.Parameter(torch.ones(()))

        def forward(self, photo, sketch):
            zp = photo.flatten(1)[:, :16] * self.w  # photo-only branch
            zs = (sketch if self.use == "sketch" else photo).flatten(1)[:, :16] * self.w
            return zp, zs

    g = torch.Generator().manual_seed(0)
    ph, sk = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    r = xv.teacher_modality_share(Fake("sketch"), ph, sk)
    assert r["z_p"]["photo"] == pytest.approx(1.0, abs=1e-5) and r["z_p"]["sketch"] == pytest.approx(0.0, abs=1e-5)
    assert r["z_s"]["sketch"] == pytest.approx(1.0, abs=1e-5)
    r = xv.teacher_modality_share(Fake("photo"), ph, sk)
    assert r["z_s"]["photo"] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="n >= 2"):
        xv.teacher_modality_share(Fake("photo"), ph[:1], sk[:1])


def test_same_teacher_setup_and_paper_turns_additions_off():
    a = xv.XModalViTConfig()
    assert xv.same_teacher_setup(a, build(xv.XModalViTConfig, student_lr=1.0, baseline_epochs=2, teacher_device="cpu"))
    assert not xv.same_teacher_setup(a, build(xv.XModalViTConfig, standardize_inputs=False))
    assert not xv.same_teacher_setup(a, build(xv.XModalViTConfig, teacher_epochs=1))
    p = preset("02_distillation", "paper")
    assert (p.standardize_inputs, p.teacher_photo_aug, p.student.pool, p.sketch_target) == (False, False, "cls", "z_s")


def test_load_data_synthetic_options_and_standardisation(tmp_path, monkeypatch):
    import xmodal_lib.data as D
    from xmodal_lib.data.synthetic import SyntheticConfig, generate

    tiny = SyntheticConfig(n_photos_per_class=1, classes=("shoe", "cup"), unseen=("cup",), fg_categories=("shoe",),
                           fg_train=6, fg_test=3, image_size=32, fg_plain=True)
    root = generate(tiny, root=tmp_path / "syn")
    calls = []
    real = D.open_dataset

    def fake(kind, root=None, **kw):
        calls.append((kind, kw))
        return real(kind, root=tmp_path / "syn")

    monkeypatch.setattr(D, "open_dataset", fake)
    cfg = build(xv.XModalViTConfig, **{**TINY, "synth_fg_train": 6, "synth_fg_test": 3, "val_fraction": 0.34})
    d = xv.load_data(cfg, progress=False)
    assert calls == [("synthetic_fg", {"fg_categories": ("shoe",), "fg_train": 6, "fg_test": 3, "fg_plain": True})]
    assert (d.train.photos.shape[0], d.val.photos.shape[0], d.test.photos.shape[0]) == (4, 2, 3)
    for s in (d.train, d.test):
        assert torch.allclose(s.sketches.mean(dim=(1, 2, 3)), torch.zeros(s.sketches.shape[0]), atol=1e-5)
    raw = xv.load_data(xv.replace_config(cfg, standardize_inputs=False), progress=False)
    assert raw.test.sketches.max() == 1.0 and root.is_dir()  # "half" norm: white background = 1


def test_photo_views_under_ddp_slice_the_single_process_views(monkeypatch):
    import xmodal_lib.infra.distributed as D

    photos = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    single = xv.photo_views(photos, torch.Generator().manual_seed(3))
    monkeypatch.setattr(D, "world_size", lambda: 2)
    parts = []
    for r in (0, 1):  # each rank holds its half of the global batch and the same RNG stream
        monkeypatch.setattr(D, "rank", lambda r=r: r)
        parts.append(xv.photo_views(photos[4 * r:4 * r + 4], torch.Generator().manual_seed(3)))
    assert torch.equal(torch.cat(parts), single)


def test_seed_reaches_every_loop_unless_a_loop_seed_is_set():
    from xmodal_lib.run.params import override

    cfg = build(xv.XModalViTConfig, seed=3)
    assert [cfg.loop(s).seed for s in ("teacher", "student", "baseline")] == [3, 3, 3]
    assert override(cfg, seed=4).loop("student").seed == 4  # follows SEED after a change too
    assert build(xv.XModalViTConfig, seed=3, teacher_seed=7).loop("teacher").seed == 7
    with pytest.raises(ValueError, match="loop"):
        cfg.loop("critic")
