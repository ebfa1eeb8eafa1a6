"""Precision targets in the runner: seeds added where the SE is, stopping when met, at the budget
or at max_seeds, and processes that cooperate through claimed run folders."""

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repeatseg.config import ConfigError, StudyConfig, load_config, save_config
from repeatseg.study import adaptive, runner
from repeatseg.study.validity import interval_lines

WIDE, NARROW = "dense_r18_w2_b8", "dense_r18_w1_b8"
MEANS = {NARROW: 0.40, WIDE: 0.50}


def study_of(noise: float, *sets: str) -> StudyConfig:
    study = load_config(StudyConfig, sets=[f"encoders=[{NARROW}, {WIDE}]", "seeds=[0, 1]",
                                           "seg_config=configs/seg/demo.yaml", *sets])
    study._noise = noise  # read by the fake training below
    return study


@pytest.fixture
def fake_training(monkeypatch):
    """Cells that finish at once with mIoU = the encoder's mean + seeded noise (the study's ``_noise``)."""
    ran = []

    def fake(cfg, run_dir, dist, resume=False):
        noise = fake.noise
        rng = random.Random(f"{cfg.model.encoder}-{cfg.train.seed}")
        miou = MEANS[cfg.model.encoder] + rng.gauss(0, noise)
        ran.append((cfg.model.encoder, cfg.train.seed))
        time.sleep(0.02)  # a unit takes time: timing.jsonl rounds to 10 ms, and the budget tests count it
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(run_dir) / "config.yaml")
        (Path(run_dir) / "metrics.json").write_text(json.dumps({"miou": miou, "pixel_acc": miou}))

    import repeatseg.engine.seg as seg

    monkeypatch.setattr(seg, "train_segmentation", fake)
    fake.ran = ran
    return fake


def run(study, study_dir, fake):
    fake.noise = study._noise
    return runner.run_study(study, study_dir, runner.DistInfo(), poll_s=0.05)


def test_a_met_target_stops_adding_seeds(tmp_path, fake_training):
    study = study_of(0.01, "targets=[{quantity: gap, encoders: [%s, %s], z: 8}]" % (WIDE, NARROW), "max_seeds=8")
    run(study, tmp_path, fake_training)
    state = adaptive.progress(study, tmp_path)
    assert state.met
    counts = {name: len(seeds) for name, seeds in adaptive.results(study, tmp_path).items()}
    assert 2 <= min(counts.values()) and max(counts.values()) < 8  # it stopped on the target, not the cap
    assert set(fake_training.ran[:4]) == {(NARROW, 0), (WIDE, 0), (NARROW, 1), (WIDE, 1)}  # the grid first


def test_an_unmet_target_stops_at_max_seeds_and_the_report_says_so(tmp_path, fake_training):
    study = study_of(0.2, "targets=[{quantity: gap, encoders: [%s, %s], se: 0.001}]" % (WIDE, NARROW), "max_seeds=3")
    run(study, tmp_path, fake_training)
    assert {name: sorted(v) for name, v in adaptive.results(study, tmp_path).items()} == {NARROW: [0, 1, 2],
                                                                                         WIDE: [0, 1, 2]}
    assert not adaptive.progress(study, tmp_path).met
    samples = {name: list(v.values()) for name, v in adaptive.results(study, tmp_path).items()}
    lines, intervals = interval_lines(study, samples, "mIoU")
    assert "| **no** |" in "\n".join(lines) and "95 % CI" in "\n".join(lines)
    assert intervals[0]["met"] is False and intervals[0]["n"] == [3, 3]
    assert intervals[0]["ci_low"] < intervals[0]["value"] < intervals[0]["ci_high"]


def test_the_budget_in_unit_hours_stops_the_adaptive_phase(tmp_path, fake_training):
    study = study_of(0.2, "targets=[{quantity: gap, encoders: [%s, %s], se: 0.001}]" % (WIDE, NARROW),
                     "budget_unit_hours=1.0e-9", "max_seeds=10")
    run(study, tmp_path, fake_training)
    assert len(fake_training.ran) == 4  # the grid spent the budget: nothing added
    assert adaptive.choose(study, tmp_path).why.startswith("the budget of")


def test_a_pair_another_process_holds_is_pending_and_an_abandoned_one_is_taken_over(tmp_path, fake_training):
    study = study_of(0.05, "targets=[{quantity: gap, encoders: [%s, %s], se: 0.001}]" % (WIDE, NARROW), "max_seeds=4",
                     "budget_unit_hours=1.0e-9")
    run(study, tmp_path, fake_training)  # the grid; the budget stops it there
    held = tmp_path / "cells" / WIDE / "seed2"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from repeatseg.files import claim_run_folder\n"
        f"with claim_run_folder({str(held)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        study.budget_unit_hours = None
        assert adaptive.pairs_of(study, tmp_path)[-1].seed == 2  # the added seed is part of the plan
        choice = adaptive.choose(study, tmp_path)
        assert choice.action == "run" and (choice.pair.encoder, choice.pair.seed) != (WIDE, 2)
        choice.claim.close()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    choice = adaptive.choose(study, tmp_path)
    assert (choice.action, choice.pair.encoder, choice.pair.seed) == ("run", WIDE, 2)
    assert "taken over" in choice.why
    choice.claim.close()


def test_targets_are_checked_against_the_grid(tmp_path):
    with pytest.raises(ConfigError, match="repeat_r18_f2_b8.*must be among|must be among"):
        runner.check_study(study_of(0.0, "targets=[{quantity: rel_contribution, encoders: [repeat_r18_f2_b8], "
                                         "se: 0.08}]"), tmp_path)
    with pytest.raises(ConfigError, match="give se"):
        runner.check_study(study_of(0.0, f"targets=[{{quantity: gap, encoders: [{WIDE}, {NARROW}]}}]"), tmp_path)
    with pytest.raises(ConfigError, match="quantity"):
        runner.check_study(study_of(0.0, f"targets=[{{quantity: ratio, encoders: [{WIDE}], se: 0.1}}]"), tmp_path)
