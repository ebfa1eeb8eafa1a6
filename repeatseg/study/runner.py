"""Run the study grid: (optional) encoder pretraining, then one ``train_seg`` run per (encoder, seed).

Study folder::

    <study>/study.yaml                       the resolved study config
    <study>/pretrain/<encoder>/              train_cls.py runs (when pretrain.enabled)
    <study>/weights/<encoder>-<tag>.safetensors
    <study>/cells/<encoder>/seed<k>/         ordinary train_seg.py run folders
    <study>/report.md, results.csv, results.json, figures/

A cell with ``metrics.json`` is finished and skipped; one with ``checkpoints/last.state.pt`` is
resumed; so killing the study loses at most the unfinished cell's current epoch.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..config import ClsConfig, SegConfig, StudyConfig, load_config, save_config
from ..engine.distributed import DistInfo, barrier
from ..variants import get_variant
from ..weights import export_encoder


@dataclass
class CellPlan:
    encoder: str
    seed: int
    run_dir: Path

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    @property
    def started(self) -> bool:
        return (self.run_dir / "checkpoints" / "last.state.pt").is_file()


def plan_cells(study: StudyConfig, study_dir: Path) -> list[CellPlan]:
    return [CellPlan(name, seed, study_dir / "cells" / name / f"seed{seed}")
            for name in study.encoders for seed in study.seeds]


def seg_config_for(study: StudyConfig, cell: CellPlan, weights: str | None) -> SegConfig:
    if cell.started:  # a resumed cell keeps the config it started with
        return load_config(SegConfig, [cell.run_dir / "config.yaml"])
    model = {"encoder": cell.encoder, "encoder_weights": weights, "weights_dir": study.weights_dir}
    return load_config(SegConfig, [study.seg_config],
                       [{"model": model, "train": {"seed": cell.seed}, "output": str(cell.run_dir)}], study.seg_sets)


def say(dist: DistInfo, text: str) -> None:
    if dist.is_main:
        tqdm.write(text, file=sys.stderr)


def pretrain_encoder(study: StudyConfig, study_dir: Path, encoder: str, dist: DistInfo) -> str:
    """Train (or resume, or reuse) the encoder's classifier and export it; returns the weights path."""
    from ..engine.cls import train_classification

    variant = get_variant(encoder)
    weights = study_dir / "weights" / f"{encoder}-{study.pretrain.tag}.safetensors"
    if weights.is_file():
        return str(weights)
    run_dir = study_dir / "pretrain" / encoder
    if not (run_dir / "metrics.json").is_file():
        resume = (run_dir / "checkpoints" / "last.state.pt").is_file()
        files = [run_dir / "config.yaml"] if resume else [study.pretrain.config]
        cfg = load_config(ClsConfig, files, [{"model": {"name": variant.timm_name}, "output": str(run_dir)}],
                          study.pretrain.sets)
        say(dist, f"[pretrain] {variant.timm_name} -> {run_dir}" + (" (resuming)" if resume else ""))
        train_classification(cfg, run_dir, dist, resume=resume)
    if dist.is_main:
        export_encoder(run_dir, weights)
    barrier()
    return str(weights)


def weights_for(study: StudyConfig, encoder: str) -> str | None:
    return study.weights.get(encoder, study.weights.get("default"))


def run_study(study: StudyConfig, study_dir: Path, dist: DistInfo) -> list[CellPlan]:
    """Pretrain (if configured) and run every unfinished cell; returns the plan."""
    from ..engine.seg import train_segmentation

    study_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        save_config(study, study_dir / "study.yaml")
    if study.pretrain.enabled and not study.pretrain.config:
        raise ValueError("pretrain.enabled needs pretrain.config (a configs/cls/*.yaml recipe)")
    cells = plan_cells(study, study_dir)
    durations: list[float] = []
    for index, cell in enumerate(cells, 1):
        done = sum(c.finished for c in cells)
        left = len(cells) - done
        if cell.finished:
            continue
        eta = f"{_clock(left * sum(durations) / len(durations))}" if durations else "after the first cell"
        state = "resuming" if cell.started else "starting"
        say(dist, f"[cell {index}/{len(cells)}] {cell.encoder} seed {cell.seed}: {state} | done {done}, "
                  f"left {left}, ETA {eta}")
        start = time.perf_counter()
        weights = pretrain_encoder(study, study_dir, cell.encoder, dist) if study.pretrain.enabled else \
            weights_for(study, cell.encoder)
        cfg = seg_config_for(study, cell, weights)
        train_segmentation(cfg, cell.run_dir, dist, resume=cell.started)
        barrier()
        durations.append(time.perf_counter() - start)
    say(dist, f"all {len(cells)} cells finished")
    return cells


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
