"""Short training runs that exercise one hardware code path (AMP, channels_last, compile) end to end.

The same check runs on CPU in the test suite and on a GPU in ``tools/gpu_check.py``: a tiny
segmenter trains for a few dozen steps on generated shapes with the path switched on, and passes
when its loss falls and its checkpoint, rebuilt from disk and evaluated the same way, gives the
mIoU the run recorded (the weights written under that path are the weights it trained). What only
a GPU can add (NCCL, SyncBatchNorm, the allocator's memory) stays in the tool.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint_files import CHECKPOINT_DIR, WEIGHTS
from ..config import SegConfig, load_config
from ..data.synthetic import make_synthetic_voc
from ..segmenter import load_segmenter
from .distributed import DistInfo
from .seg import evaluate, train_segmentation, val_loader_for

CHECK_CLASSES = (1, 7, 13)  # distinct shape, texture and hue: learnable in a few dozen steps


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)


def check_data(root: Path) -> Path:
    """A small generated VOC-layout set (made once per root)."""
    if not (root / "VOCdevkit" / "VOC2012" / "ImageSets").is_dir():
        make_synthetic_voc(root, num_train=32, num_val=4, seed=0, min_size=64, max_size=80, classes=CHECK_CLASSES)
    return root


def training_check(name: str, workdir: Path, dist: DistInfo, encoder: str, *, amp: str = "none",
                   channels_last: bool = False, compile: bool = False, iters: int = 24, crop: int = 64) -> CheckResult:
    """Train ``encoder`` for ``iters`` steps with the given path on ``dist.device``; see the module doc."""
    start = time.perf_counter()
    run_dir = workdir / re.sub(r"\W+", "_", name)
    sets = [f"data.root={check_data(workdir / 'data')}", "data.dataset=voc", f"model.encoder={encoder}",
            f"data.crop_size={crop}", "data.workers=0", "train.batch_size=8", f"train.device={dist.device}",
            "train.log_mode=quiet", "train.eval_batch_size=4", "optim.lr=0.05", f"schedule.iters={iters}",
            "schedule.warmup_iters=0",
            "train.log_every=2", "train.eval_every=1000", f"train.amp={amp}", f"train.channels_last={str(channels_last).lower()}",
            f"train.compile={str(compile).lower()}", f"output={run_dir}", "train.seed=0"]
    try:
        cfg = load_config(SegConfig, sets=sets)
        recorded = train_segmentation(cfg, run_dir, dist)["miou"]
        losses = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                  if '"loss"' in line]
        first, last = statistics.fmean(losses[:2]), statistics.fmean(losses[-2:])
        model, _ = load_segmenter(run_dir / CHECKPOINT_DIR / WEIGHTS)
        model.to(dist.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        loader = val_loader_for(Path(cfg.data.root), cfg.data.val_split, dist, 4, 0)
        reloaded = evaluate(model, loader, dist.device, cfg.model.classes, amp, channels_last)["miou"]
    except Exception as error:  # noqa: BLE001 - a check reports, it does not crash the table
        return CheckResult(name, False, f"{type(error).__name__}: {error}", time.perf_counter() - start)
    passed = last < first and abs(reloaded - recorded) < 1e-6
    detail = f"loss {first:.3f} -> {last:.3f}; mIoU {recorded:.4f} recorded, {reloaded:.4f} from the checkpoint"
    return CheckResult(name, passed, detail, time.perf_counter() - start,
                       {"loss_first": first, "loss_last": last, "miou": recorded, "miou_reloaded": reloaded})
