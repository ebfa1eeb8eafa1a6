"""Run the study grid as a list of units: (optional) pretraining per (encoder, seed), then one
``train_seg`` cell per (encoder, seed) that starts from that seed's pretrained encoder.

Study folder::

    <study>/study.yaml                                 the resolved study config
    <study>/pretrain/<encoder>/seed<k>/                train_cls.py runs (when pretrain.enabled)
    <study>/weights/<encoder>-<tag>-seed<k>.safetensors
    <study>/cells/<encoder>/seed<k>/                   ordinary train_seg.py run folders
    <study>/timing.jsonl                               wall time and machine load of every unit run
    <study>/report.md, results.csv, results.json, figures/

The plan (``plan_units``) is seed-major: every encoder at seed 0, then seed 1, ..., so a study cut
short still has a full grid at fewer seeds. A unit whose output exists is skipped (a pretraining
unit once its weights are exported, a cell once ``metrics.json`` is written); one with
``checkpoints/last.state.pt`` is resumed; so killing the study loses at most the current epoch.
"""

from __future__ import annotations

import json
import os
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
class PretrainPlan:
    """Pretrain ``encoder`` as a classifier with ``seed`` and export its encoder to ``weights``."""

    encoder: str
    seed: int
    run_dir: Path
    weights: Path
    kind = "pretrain"

    @property
    def finished(self) -> bool:
        return self.weights.is_file()

    @property
    def started(self) -> bool:
        return (self.run_dir / "checkpoints" / "last.state.pt").is_file()


@dataclass
class CellPlan:
    """Fine-tune ``encoder`` with ``seed`` (from ``pretrain``'s weights when there is one)."""

    encoder: str
    seed: int
    run_dir: Path
    pretrain: PretrainPlan | None = None
    kind = "cell"

    @property
    def finished(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    @property
    def started(self) -> bool:
        return (self.run_dir / "checkpoints" / "last.state.pt").is_file()


def plan_units(study: StudyConfig, study_dir: Path) -> list[PretrainPlan | CellPlan]:
    """Every unit of work in run order: per seed, per encoder, its pretraining (if enabled) then its cell."""
    units: list[PretrainPlan | CellPlan] = []
    for seed in study.seeds:
        for name in study.encoders:
            pretrain = None
            if study.pretrain.enabled:
                pretrain = PretrainPlan(name, seed, study_dir / "pretrain" / name / f"seed{seed}",
                                        study_dir / "weights" / f"{name}-{study.pretrain.tag}-seed{seed}.safetensors")
                units.append(pretrain)
            units.append(CellPlan(name, seed, study_dir / "cells" / name / f"seed{seed}", pretrain))
    return units


def plan_cells(study: StudyConfig, study_dir: Path) -> list[CellPlan]:
    return [unit for unit in plan_units(study, study_dir) if isinstance(unit, CellPlan)]


def plan_pretraining(study: StudyConfig, study_dir: Path) -> list[PretrainPlan]:
    return [unit for unit in plan_units(study, study_dir) if isinstance(unit, PretrainPlan)]


def seg_config_for(study: StudyConfig, cell: CellPlan, weights: str | None) -> SegConfig:
    if cell.started:  # a resumed cell keeps the config it started with
        return load_config(SegConfig, [cell.run_dir / "config.yaml"])
    model = {"encoder": cell.encoder, "encoder_weights": weights, "weights_dir": study.weights_dir}
    return load_config(SegConfig, [study.seg_config],
                       [{"model": model, "train": {"seed": cell.seed}, "output": str(cell.run_dir)}], study.seg_sets)


def cls_config_for(study: StudyConfig, unit: PretrainPlan) -> ClsConfig:
    if unit.started:
        return load_config(ClsConfig, [unit.run_dir / "config.yaml"])
    overrides = {"model": {"name": get_variant(unit.encoder).timm_name}, "train": {"seed": unit.seed},
                 "output": str(unit.run_dir)}
    return load_config(ClsConfig, [study.pretrain.config], [overrides], study.pretrain.sets)


def say(dist: DistInfo, text: str) -> None:
    if dist.is_main:
        tqdm.write(text, file=sys.stderr)


def run_pretrain(study: StudyConfig, unit: PretrainPlan, dist: DistInfo) -> None:
    """Train (or resume) the classifier, then export its encoder. The final weights are exported,
    not the best epoch's: choosing an epoch on the held-out split would let it leak into the study."""
    from ..engine.cls import train_classification

    if not (unit.run_dir / "metrics.json").is_file():
        train_classification(cls_config_for(study, unit), unit.run_dir, dist, resume=unit.started)
    if dist.is_main:
        export_encoder(unit.run_dir, unit.weights, which="last")
    barrier()


def run_cell(study: StudyConfig, cell: CellPlan, dist: DistInfo) -> None:
    from ..engine.seg import train_segmentation

    weights = str(cell.pretrain.weights) if cell.pretrain else study.weights.get(cell.encoder,
                                                                               study.weights.get("default"))
    train_segmentation(seg_config_for(study, cell, weights), cell.run_dir, dist, resume=cell.started)
    barrier()


def log_timing(study_dir: Path, unit, seconds: float, load_before: float, dist: DistInfo) -> None:
    """One line per unit run: how long it took and the 1-minute load average before and after."""
    if dist.is_main:
        record = {"kind": unit.kind, "encoder": unit.encoder, "seed": unit.seed, "seconds": round(seconds, 2),
                  "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
                  "cpus": os.cpu_count(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with open(study_dir / "timing.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")


def run_study(study: StudyConfig, study_dir: Path, dist: DistInfo) -> list[PretrainPlan | CellPlan]:
    """Run every unfinished unit of the plan; returns the plan."""
    study_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main:
        save_config(study, study_dir / "study.yaml")
    if study.pretrain.enabled and not study.pretrain.config:
        raise ValueError("pretrain.enabled needs pretrain.config (a configs/cls/*.yaml recipe)")
    units = plan_units(study, study_dir)
    durations: dict[str, list[float]] = {"pretrain": [], "cell": []}
    for index, unit in enumerate(units, 1):
        if unit.finished:
            continue
        left = [u for u in units if not u.finished]
        say(dist, f"[{index}/{len(units)}] {unit.kind} {unit.encoder} seed {unit.seed}: "
                  f"{'resuming' if unit.started else 'starting'} | done {len(units) - len(left)}, left {len(left)}, "
                  f"ETA {_eta(left, durations)}")
        start, load_before = time.perf_counter(), os.getloadavg()[0]
        if isinstance(unit, PretrainPlan):
            run_pretrain(study, unit, dist)
        else:
            run_cell(study, unit, dist)
        seconds = time.perf_counter() - start
        durations[unit.kind].append(seconds)
        log_timing(study_dir, unit, seconds, load_before, dist)
    say(dist, f"all {len(units)} units finished")
    return units


def _eta(left: list, durations: dict[str, list[float]]) -> str:
    """Remaining time from the mean duration of each kind so far (the other kind's if none yet)."""
    seen = [d for values in durations.values() for d in values]
    if not seen:
        return "after the first unit"
    fallback = sum(seen) / len(seen)
    mean = {kind: sum(v) / len(v) if v else fallback for kind, v in durations.items()}
    return _clock(sum(mean[unit.kind] for unit in left))


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
