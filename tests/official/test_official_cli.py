"""``xmodal convert-official`` and ``xmodal evaluate`` end to end on CPU: fixture checkpoints over
real-layout data (sketchy_mini as Sketchy-Ext SAKE lists; QMUL Shoe-V1), tiny galleries."""
from __future__ import annotations

import json

import pytest
import torch

from xmodal_lib.cli import main
from xmodal_lib.methods.reported import CONVENTIONS

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]
UNSEEN = ["airplane", "cup", "swan"]  # 3 of the 25 zeroshot1 classes, 2 photos + 2 sketches each


def _run(argv, capsys) -> str:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_evaluate_zse_end_to_end(official_dir, shared_path, sake_lists, tmp_path, capsys):
    from xmodal_lib.data.datasets import preload
    from xmodal_lib.data.official_crop import OfficialZSELoader
    from xmodal_lib.data.sake import read_sake
    from xmodal_lib.methods.zse.evaluate import scores_rn_naive
    from xmodal_lib.official import load_converted
    from xmodal_lib.retrieval.metrics import category_metrics

    root = shared_path("sketchy_mini")
    split = sake_lists(tmp_path, root, shared_path("splits", "Sketchy", "zeroshot1"), UNSEEN, 2, 2)
    ckpt = official_dir / "zse_sbir" / "best_checkpoint.pth.xz"
    heads = ["--sa-heads", 4, "--ca-heads", 2]
    out = _run(["convert-official", "zse", ckpt, tmp_path / "zse", *heads], capsys)
    assert "zse.safetensors" in out
    common = ["--data-root", root, "--split", split, "--mode", "rn", "--mode", "ret", "--device", "cpu"]
    text = _run(["evaluate", "zse", "--checkpoint", ckpt, *common, *heads, "--json", tmp_path / "a.json"], capsys)
    print(text)
    for needle in ("sketchy_ext_25", "6 sketches x 6 photos", "not comparable", "mAP@all (map_all)",
                   "Prec@100 (precision_100)", CONVENTIONS["map_all_voc"], CONVENTIONS["p@100_minr"],
                   "0.698", "0.797", "0.736", "0.808", "Ours-RN", "Ours-Ret"):
        assert needle in text, needle
    conv = _run(["evaluate", "zse", "--checkpoint", tmp_path / "zse.safetensors", *common,
                 "--json", tmp_path / "b.json"], capsys)
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert [r["value"] for r in a["rows"]] == pytest.approx([r["value"] for r in b["rows"]], abs=1e-6), conv
    # the cached rn path equals the official per-block scheme on the same images
    model, _ = load_converted(tmp_path / "zse")
    test = read_sake(root, split_dir=split).subset("test")
    sk = preload(test.sketches, OfficialZSELoader(224), progress=False)
    ph = preload(test.photos, OfficialZSELoader(224), progress=False)
    ref = category_metrics(scores_rn_naive(model, sk, ph), [r.label for r in test.sketches],
                           [r.label for r in test.photos], metrics=("map_all_voc", "p@100_minr"))
    got = {r["metric"]: r["value"] for r in a["rows"] if r["mode"] == "rn"}
    assert got == pytest.approx({k: ref[k] for k in got}, abs=1e-6)


def test_evaluate_xmodalvit_end_to_end(official_dir, shared_path, tmp_path, capsys):
    from xmodal_lib.data import open_dataset
    from xmodal_lib.data.transforms import ImageLoader
    from xmodal_lib.methods.xmodalvit.data import index_to_tensors
    from xmodal_lib.official import load_converted

    root = shared_path("qmul_v1", "shoes")
    fx = official_dir / "xmodalvit"
    out = _run(["convert-official", "xmodalvit", fx, tmp_path / "conv", "--teacher-heads", 3,
                "--student-heads", 2], capsys)
    assert out.count(".safetensors") == 3
    text = _run(["evaluate", "xmodalvit", "--photo-student", fx / "photo_student_20000.pth",
                 "--sketch-student", fx / "sketch_student_20000.pth", "--teacher", fx / "teacher_20000.pth",
                 "--data-root", root, "--dataset", "qmul_v1", "--setting", "shoe_v2", "--teacher-heads", 3,
                 "--student-heads", 2, "--device", "cpu", "--json", tmp_path / "a.json"], capsys)
    print(text)
    for needle in ("115 sketches x 115 photos", "Acc@1", "Acc@10", CONVENTIONS["acc@1"], CONVENTIONS["acc@10"],
                   "0.4505", "0.9023", "on QMUL-V2", "teacher", "no paper number"):
        assert needle in text, needle
    c = tmp_path / "conv"
    _run(["evaluate", "xmodalvit", "--photo-student", c / "photo_student_20000.safetensors",
          "--sketch-student", c / "sketch_student_20000.safetensors", "--data-root", root,
          "--dataset", "qmul_v1", "--device", "cpu", "--json", tmp_path / "b.json"], capsys)
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    rows_a = {r["metric"]: r["value"] for r in a["rows"] if r["mode"] == "students"}
    assert rows_a == {r["metric"]: r["value"] for r in b["rows"]}
    # independent count: rank = photos scoring at least as high as the true photo
    photo, _ = load_converted(c / "photo_student_20000")
    sketch, _ = load_converted(c / "sketch_student_20000")
    test = index_to_tensors(open_dataset("qmul_v1", root=root).subset("test"), ImageLoader(64, "none"), False)
    with torch.no_grad():
        sim = sketch(test.sketches) @ photo(test.photos).t()
    true = sim.gather(1, test.sketch_to_photo[:, None])
    rank = (sim >= true).sum(1)
    for k in (1, 5, 10):
        assert rows_a[f"acc@{k}"] == pytest.approx((rank <= k).double().mean().item(), abs=1e-9)


def test_evaluate_official_for_notebooks(official_dir, shared_path):
    """The notebooks' OFFICIAL_CHECKPOINT path: a folder of official students, evaluation only."""
    from xmodal_lib.official.evaluate import evaluate_official, find_role

    fx = official_dir / "xmodalvit"
    assert find_role(fx, "photo_student").name == "photo_student_20000.pth"  # bare .safetensors: no .json
    res = evaluate_official("xmodalvit", fx, shared_path("qmul_v1", "shoes"), dataset="qmul_v1",
                            setting="shoev2", device="cpu", student_heads=2)
    assert res["setting"] == "shoe_v2" and res["n_sketches"] == 115
    assert "Acc@10" in res["report"] and "0.9023" in res["report"]
    with pytest.raises(ValueError, match="needs SPLIT"):
        evaluate_official("zse", official_dir / "zse_sbir" / "best_checkpoint.pth.xz", shared_path("sketchy_mini"))
    with pytest.raises(ValueError, match="needs DATA_ROOT"):
        evaluate_official("xmodalvit", fx, None)
