"""A tiny digits study for the tests that run tools/transfer_study.py as a command (shards, Slurm):
two encoders x two seeds, each unit a second or so on CPU (data: the ``tiny_digits`` fixture)."""

from __future__ import annotations

from pathlib import Path

CONFIG = "configs/study/digits.yaml"
ENCODERS = ["dense_r18_w1_b4", "dense_r18_w2_b4"]
SEEDS = [0, 1]


def study_sets(data: Path, cell_iters: int = 2) -> list[str]:
    """The ``--set`` values: the grid, and recipes cut to a few steps (a cell runs ``cell_iters``
    steps, two per epoch, so a checkpoint every two)."""
    return [f"encoders={ENCODERS}", f"seeds={SEEDS}", "qualitative_ids=[val_00000]",
            f"seg_sets=[data.root={data}, schedule.iters={cell_iters}, schedule.warmup_iters=0, train.batch_size=4, "
            "data.workers=0, train.eval_batch_size=4, train.log_mode=quiet]",
            f"pretrain.sets=[data.root={data}, schedule.epochs=1, schedule.warmup_iters=0, train.batch_size=10, "
            "data.workers=0, train.eval_batch_size=10, train.log_mode=quiet]"]


def study_args(study_dir: Path, data: Path, cell_iters: int = 2) -> list[str]:
    """tools/transfer_study.py's arguments for the tiny study in ``study_dir`` (no --shard)."""
    args = ["--config", CONFIG, "--output", str(study_dir), "--poll-seconds", "0.2"]
    for value in study_sets(data, cell_iters):
        args += ["--set", value]
    return args
