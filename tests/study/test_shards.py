"""Shards of a study sharing one folder: the assignment, claims that keep every unit to one process,
a killed shard's unit taken over, cells waiting for a pretraining another process runs. Training is
replaced by stand-ins (``shard_worker.py``); ``test_shard_study.py`` runs real shards end to end."""

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from repeatseg.config import StudyConfig, load_config
from repeatseg.files import FLOCK, HEARTBEAT, LOCK_ENV, OWNER_FILE, claim_run_folder
from repeatseg.study import runner
from repeatseg.study.plan import assign_pairs, make_shard
from repeatseg.study.runner import Shard, parse_shard, plan_units, run_study, study_complete

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("shard_worker.py")
SETS = ["encoders=[dense_r18_w1_b8, dense_r18_w2_b8]", "seeds=[0, 1]", "seg_config=configs/seg/digits.yaml",
        "pretrain.enabled=true", "pretrain.config=configs/cls/digits.yaml", "pretrain.tag=digits"]


def study_of(sets=SETS) -> StudyConfig:
    return load_config(StudyConfig, sets=sets)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def workers(study_dir: Path, log: Path, shards: list[str], *extra: str) -> list[int]:
    """Exit codes of one process per shard, started together (see shard_worker.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), str(study_dir), str(log), json.dumps(SETS), *shards, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_shard_arguments_are_checked():
    assert parse_shard("2/5") == (2, 5) and parse_shard("0/1") == (0, 1)
    for bad in ("5/5", "1", "a/2", "-1/2", "0/0", "1/2/3"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_heaviest_pairs_are_spread_first_and_the_rule_is_deterministic():
    pairs = [(e, s) for s in (0, 1) for e in ("small", "big", "mid")]
    weight = {"small": 1.0, "big": 10.0, "mid": 4.0}
    assignment = assign_pairs(pairs, weight, 2)
    # big s0 -> 0, big s1 -> 1, mid s0 -> 0 (tie: lowest shard), mid s1 -> 1, small s0 -> 0, small s1 -> 1
    assert assignment == {("big", 0): 0, ("big", 1): 1, ("mid", 0): 0, ("mid", 1): 1, ("small", 0): 0, ("small", 1): 1}
    assert assign_pairs(pairs, weight, 2) == assignment
    # four shards: the two big pairs alone, each mid pair joined by a small one
    assert assign_pairs(pairs, weight, 4) == {("big", 0): 0, ("big", 1): 1, ("mid", 0): 2, ("mid", 1): 3,
                                              ("small", 0): 2, ("small", 1): 3}


def test_every_unit_belongs_to_exactly_one_shard_with_its_pretraining(tmp_path):
    study = study_of()
    units = plan_units(study, tmp_path)
    shards = [make_shard(study, i, 3) for i in range(3)]
    owners = {(u.kind, u.encoder, u.seed): [s.index for s in shards if s.owns(u)] for u in units}
    assert all(len(found) == 1 for found in owners.values())
    assert all(owners[("pretrain", e, s)] == owners[("cell", e, s)] for _, e, s in owners)
    assert make_shard(study, 1, 3).assignment == shards[1].assignment  # every shard computes the same rule
    assert Shard().owns(units[0]) and str(Shard()) == "0/1"


@pytest.mark.parametrize("lock", [FLOCK, HEARTBEAT])  # kernel locks, and the fallback where they are local
def test_shards_and_a_whole_grid_process_started_together_run_every_unit_once(tmp_path, monkeypatch, lock):
    monkeypatch.setenv(LOCK_ENV, lock)
    study_dir, log = tmp_path / "study", tmp_path / "log.jsonl"
    shards = ["0/2", "1/2", "0/1"]  # two shards and, racing both, a process running the whole grid
    assert workers(study_dir, log, shards) == [0, 0, 0]
    runs = Counter((r["kind"], r["run"]) for r in read_log(log))
    units = plan_units(study_of(), study_dir)
    assert sorted(runs) == sorted((u.kind, u.run_dir.relative_to(study_dir).as_posix()) for u in units)
    assert set(runs.values()) == {1}  # nothing ran twice
    assert study_complete(study_of(), study_dir)
    assert not list(study_dir.rglob(OWNER_FILE))  # every claim was released
    timing = [json.loads(line) for line in (study_dir / "timing.jsonl").read_text().splitlines()]
    assert len(timing) == len(units) and {t["shard"] for t in timing} <= set(shards)


def test_a_killed_shards_cell_is_taken_over_and_resumed_by_a_later_run(tmp_path, monkeypatch):
    study_dir, log = tmp_path / "study", tmp_path / "log.jsonl"
    assert workers(study_dir, log, ["0/1"], "--kill", "dense_r18_w2_b8:0") == [-9]
    cell = study_dir / "cells" / "dense_r18_w2_b8" / "seed0"
    assert (cell / OWNER_FILE).is_file() and not (cell / "metrics.json").exists()  # a dead pid's claim
    before = read_log(log)

    calls = []

    def cell_run(cfg, run_dir, dist, resume=False):
        calls.append((Path(run_dir).relative_to(study_dir).as_posix(), resume))
        (Path(run_dir) / "metrics.json").write_text("{}")

    def pretrain_run(cfg, run_dir, dist, resume=False):
        calls.append((Path(run_dir).relative_to(study_dir).as_posix(), resume))
        (Path(run_dir) / "metrics.json").write_text("{}")

    import repeatseg.engine.cls as cls
    import repeatseg.engine.seg as seg

    monkeypatch.setattr(seg, "train_segmentation", cell_run)
    monkeypatch.setattr(cls, "train_classification", pretrain_run)
    monkeypatch.setattr(runner, "export_encoder", lambda run_dir, weights, which: Path(weights).write_bytes(b"w"))
    run_study(study_of(), study_dir, runner.DistInfo())
    assert calls[0] == ("cells/dense_r18_w2_b8/seed0", True)  # taken over from the dead pid, resumed
    finished_before = {r["run"] for r in before if r["run"] != "cells/dense_r18_w2_b8/seed0"}
    assert not finished_before & {run for run, _ in calls}  # what the killed shard finished is not redone
    assert study_complete(study_of(), study_dir) and not (cell / OWNER_FILE).exists()


def test_the_ranks_of_a_torchrun_shard_follow_rank_0s_claims(tmp_path):
    study_dir, log = tmp_path / "study", tmp_path / "log.jsonl"
    finished = study_dir / "cells" / "dense_r18_w1_b8" / "seed1"  # rank 0 skips it; so must rank 1
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text("{}")
    port = 20000 + os.getpid() % 20000
    assert workers(study_dir, log, ["1/2"], "--ranks", "2", "--port", str(port)) == [0, 0]
    records = read_log(log)
    per_rank = [[(r["kind"], r["run"]) for r in records if r["rank"] == rank] for rank in (0, 1)]
    assert per_rank[0] == per_rank[1] and per_rank[0]  # the same units in the same order on both ranks
    shard = make_shard(study_of(), 1, 2)
    its_pretraining = study_dir / "pretrain" / "dense_r18_w1_b8" / "seed1"  # done once its cell is
    expected = [(u.kind, u.run_dir.relative_to(study_dir).as_posix()) for u in plan_units(study_of(), study_dir)
                if shard.owns(u) and u.run_dir not in (finished, its_pretraining)]
    assert per_rank[0] == expected
    assert len((study_dir / "timing.jsonl").read_text().splitlines()) == len(expected)  # rank 0 logs


def _stand_ins(monkeypatch, calls):
    import repeatseg.engine.cls as cls
    import repeatseg.engine.seg as seg

    def cell_run(cfg, run_dir, dist, resume=False):
        calls.append(("cell", Path(cfg.model.encoder_weights).name))
        (Path(run_dir) / "metrics.json").write_text("{}")

    monkeypatch.setattr(seg, "train_segmentation", cell_run)
    monkeypatch.setattr(cls, "train_classification", lambda *a, **k: calls.append(("pretrain",)))


def test_a_cell_waits_for_the_pretraining_another_process_holds(tmp_path, monkeypatch):
    study = study_of(["encoders=[dense_r18_w1_b8]", "seeds=[0]", *SETS[2:]])
    pretrain = plan_units(study, tmp_path)[0]
    calls, said, waiting = [], [], threading.Event()
    _stand_ins(monkeypatch, calls)

    def say(dist, text):
        said.append(text)
        if text.startswith("waiting for pretrain dense_r18_w1_b8 seed 0 (run by another process), "
                           "cell dense_r18_w1_b8 seed 0 (needs its pretraining)"):
            waiting.set()

    monkeypatch.setattr(runner, "say", say)
    with claim_run_folder(pretrain.run_dir):  # another process is pretraining this encoder
        thread = threading.Thread(target=run_study, args=(study, tmp_path, runner.DistInfo()),
                                  kwargs=dict(wait_s=120, poll_s=0.01))
        thread.start()
        assert waiting.wait(60)
        pretrain.weights.parent.mkdir(parents=True, exist_ok=True)
        pretrain.weights.write_bytes(b"exported")  # ... and exports it
    thread.join(60)
    assert calls == [("cell", pretrain.weights.name)]  # the cell ran from those weights; no second pretraining
    assert any("held elsewhere" in text for text in said)


def test_a_cell_whose_pretraining_never_comes_is_left_for_a_later_run(tmp_path, monkeypatch):
    study = study_of(["encoders=[dense_r18_w1_b8]", "seeds=[0]", *SETS[2:]])
    pretrain = plan_units(study, tmp_path)[0]
    calls, said = [], []
    _stand_ins(monkeypatch, calls)
    monkeypatch.setattr(runner, "say", lambda dist, text: said.append(text))
    with claim_run_folder(pretrain.run_dir):
        units = run_study(study, tmp_path, runner.DistInfo(), wait_s=0.05, poll_s=0.01)
    assert calls == [] and not units[1].finished
    assert any(text.startswith("gave up waiting") and "cell dense_r18_w1_b8 seed 0 (needs its pretraining)" in text
               for text in said)
