"""Which setup changes a resume refuses: the training numbers' fields, not where or how the loop runs."""
from __future__ import annotations

from xmodal_lib.engine.resume import setup_differences


def test_loop_runtime_fields_may_change_under_their_loop_prefix_and_in_nested_configs() -> None:
    stored_cfg = {"teacher_device": "auto", "student_num_workers": 0, "teacher_lr": 1e-4, "seed": 0,
                  "zse": {"num_workers": 0, "device": "auto", "lr": 1e-4}, "eval_batch_size": 64}
    now_cfg = {"teacher_device": "cpu", "student_num_workers": 4, "teacher_lr": 3e-4, "seed": 0,
               "zse": {"num_workers": 2, "device": "cuda", "lr": 5e-4}, "eval_batch_size": 8}
    meta = {"train_config": {"lr": 1e-4, "device": "auto", "schedule": "constant"}, "config": stored_cfg}
    diffs = setup_differences(meta, {"lr": 1e-4, "device": "cpu", "schedule": "constant"}, now_cfg)
    assert diffs == ["config.teacher_lr: 0.0001 in the checkpoint, 0.0003 now",
                     "config.zse.lr: 0.0001 in the checkpoint, 0.0005 now"]
