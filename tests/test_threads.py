"""Intra-op threads: the default shares the usable cores, a set count is applied and recorded, a
count that crowds the machine is named, and a resumed run keeps the count it started with."""

import json
import shutil

import pytest
import torch

from repeatseg import threads
from repeatseg.config import SegConfig, load_config
from repeatseg.data.synthetic import make_synthetic_voc
from tests.tool_loader import load_tool


@pytest.fixture()
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def eight_cores(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_default_shares_the_usable_cores_among_the_processes(eight_cores):
    assert threads.usable_cores() == 8
    assert [threads.default_threads(n) for n in (1, 2, 3, 4, 8, 16)] == [8, 4, 2, 2, 1, 1]


def test_omp_num_threads_is_taken_as_the_users_choice(eight_cores, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads(4) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert threads.default_threads(4) == 2


def test_apply_sets_torch_and_records_the_count_in_the_config(eight_cores, restore_threads):
    cfg = load_config(SegConfig)
    assert cfg.train.threads is None
    assert threads.apply_threads(cfg.train, processes=4) == 2
    assert torch.get_num_threads() == 2 and cfg.train.threads == 2
    cfg.train.threads = 1
    assert threads.apply_threads(cfg.train, processes=1) == 1 and torch.get_num_threads() == 1


def test_crowding_is_named_only_beyond_the_cores(eight_cores):
    assert threads.oversubscription(4, 2) is None and threads.oversubscription(1, 8) is None
    message = threads.oversubscription(3, 4)
    assert "3 processes x 4 threads > 8 usable cores" in message and "--threads 2" in message
    assert "16 threads > 8" in threads.oversubscription(1, 16)


def test_zero_threads_is_refused_with_the_key():
    from repeatseg.config import ConfigError

    with pytest.raises(ConfigError, match="train.threads"):
        load_config(SegConfig, sets=["train.threads=0"])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 1-epoch segmentation run at 1 thread, through the command line."""
    root = tmp_path_factory.mktemp("threads")
    make_synthetic_voc(root / "voc", num_train=4, num_val=2, seed=0, min_size=64, max_size=64, classes=(1, 7))
    tool = load_tool("train_seg")
    before = torch.get_num_threads()
    argv = ["--data-root", str(root / "voc"), "--output", str(root / "run"), "--encoder", "dense_r18_w1_b8",
            "--dataset", "voc", "--crop-size", "64", "--batch-size", "2", "--epochs", "1", "--workers", "0",
            "--device", "cpu", "--log-mode", "quiet", "--threads", "1", "--set", "train.eval_batch_size=2",
            "--set", "schedule.warmup_iters=0"]
    try:
        assert tool.main(tool.get_args_parser().parse_args(argv)) == 0
    finally:
        torch.set_num_threads(before)
    return root / "run"


def test_a_run_records_its_thread_count(finished_run):
    assert load_config(SegConfig, [finished_run / "config.yaml"]).train.threads == 1
    assert json.loads((finished_run / "metrics.json").read_text())["threads"] == 1


def test_resuming_at_another_thread_count_is_refused(finished_run, tmp_path, capsys, restore_threads):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = (run / "metrics.jsonl").read_bytes()
    tool = load_tool("train_seg")
    code = tool.main(tool.get_args_parser().parse_args(["--resume", str(run), "--threads", "2", "--epochs", "2"]))
    err = capsys.readouterr().err
    assert code == 2 and "train.threads is 1" in err and "Traceback" not in err
    assert (run / "metrics.jsonl").read_bytes() == before


def test_the_cpu_kind_names_a_cap_on_onednns_instructions(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    plain = threads.cpu_kind()
    assert plain["cpu"] and plain["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "onednn_max_cpu_isa" not in plain  # keys of units recorded before the cap was named
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")  # moves a digits pretraining's losses (docs)
    assert threads.cpu_kind() == {**plain, "onednn_max_cpu_isa": "AVX2"}
