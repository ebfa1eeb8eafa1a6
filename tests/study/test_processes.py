"""Study processes on one host: registrations held by a kernel lock, live siblings counted (dead ones
not), and one thread count per study, chosen once, recorded in study.yaml and kept."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from repeatseg import threads as threads_module
from repeatseg.config import StudyConfig, load_config
from repeatseg.study import processes
from repeatseg.study.processes import Registration, at_threads, fix_threads, study_threads

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def sibling(tmp_path):
    """Start a process registered in a study folder; yields (study folder, process)."""
    study_dir = tmp_path / "study"
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from repeatseg.study.processes import register
        register({str(study_dir)!r})
        Path({str(ready)!r}).touch()
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the sibling did not register"
    yield study_dir, process
    process.kill()
    process.wait()


def test_a_live_sibling_is_counted_and_a_dead_ones_file_is_removed(sibling):
    study_dir, process = sibling
    mine = Registration(study_dir).open()
    try:
        assert mine.live_on_host() == 2
        theirs = study_dir / processes.FOLDER / f"{processes._host()}-{process.pid}.lock"
        assert theirs.is_file()
        process.kill()  # no clean-up: the kernel drops its lock
        process.wait()
        assert mine.live_on_host() == 1
        assert not theirs.exists()
    finally:
        mine.close()
    assert not mine.path.exists()


def test_files_of_other_hosts_are_left_alone(tmp_path):
    mine = Registration(tmp_path).open()
    try:
        other = mine.folder / "elsewhere-123.lock"
        other.touch()
        assert mine.live_on_host() == 1 and other.exists()
    finally:
        mine.close()


def test_crowding_is_said_once_per_count(tmp_path, monkeypatch):
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 2)
    said = []
    mine = Registration(tmp_path).open()
    try:
        assert mine.say_if_crowded(2, said.append) == 1 and said == []
        assert mine.say_if_crowded(4, said.append) == 1 and len(said) == 1 and "4 threads > 2 usable cores" in said[0]
        mine.say_if_crowded(4, said.append)
        assert len(said) == 1
    finally:
        mine.close()


def study(*sets):
    return load_config(StudyConfig, sets=["encoders=[dense_r18_w1_b8]", "seeds=[0]", *sets])


@pytest.fixture()
def two_cores(monkeypatch):
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_the_count_is_the_cores_shared_by_live_siblings_and_is_recorded(sibling, two_cores):
    study_dir, _ = sibling
    mine = Registration(study_dir).open()
    try:
        config = study()
        assert fix_threads(config, study_dir, mine, settle_s=0) == 1  # 2 cores, 2 study processes
        saved = load_config(StudyConfig, [study_dir / "study.yaml"])
        assert "train.threads=1" in saved.seg_sets and "train.threads=1" in saved.pretrain.sets
    finally:
        mine.close()


def test_a_recorded_count_is_kept_and_a_different_one_refused_once_units_ran(tmp_path, two_cores):
    mine = Registration(tmp_path).open()
    try:
        assert fix_threads(study(), tmp_path, mine, settle_s=0) == 2  # alone on 2 cores
        assert fix_threads(study(), tmp_path, mine, settle_s=0) == 2  # a later process: the recorded count
        assert fix_threads(at_threads(study(), 1), tmp_path, mine, settle_s=0) == 1  # nothing ran yet: allowed
        (tmp_path / "cells" / "dense_r18_w1_b8" / "seed0").mkdir(parents=True)
        (tmp_path / "cells" / "dense_r18_w1_b8" / "seed0" / "config.yaml").write_text("{}\n")
        with pytest.raises(ValueError, match="train.threads=1"):
            fix_threads(at_threads(study(), 2), tmp_path, mine, settle_s=0)
    finally:
        mine.close()


def test_at_threads_replaces_the_count_in_both_sets():
    config = at_threads(at_threads(study("seg_sets=[train.threads=4, data.workers=0]"), 3), 2)
    assert config.seg_sets == ["data.workers=0", "train.threads=2"]
    assert config.pretrain.sets == ["train.threads=2"] and study_threads(config) == 2
