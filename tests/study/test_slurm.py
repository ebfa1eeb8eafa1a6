"""The Slurm scripts (tools/slurm/): read and run in their DRY_RUN mode under the environment Slurm
would give each task, then submitted for real to a one-node Slurm started for these tests
(tools/slurm/local_cluster.sh): the study array, a cancelled task and its rerun, and a two-"node"
torchrun rendezvous whose weights equal a single-node run's. Those skip where Slurm is not
installed (apt-get install slurm-wlm munge; .ci/run installs it)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny_study import CONFIG, study_args, study_sets

from repeatseg.config import StudyConfig, load_config
from repeatseg.files import OWNER_FILE, load_weights
from repeatseg.study.plan import make_shard
from repeatseg.study.runner import CellPlan, parse_shard, plan_units

ROOT = Path(__file__).resolve().parents[2]
SLURM = ROOT / "tools" / "slurm"
SCRIPTS = sorted(SLURM.glob("*.sbatch"))
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def directives(script: Path) -> dict[str, str]:
    """``#SBATCH --key=value`` lines, as Slurm reads them: only those before the first command."""
    found = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH"):
            key, _, value = line.split(maxsplit=1)[1].partition("=")
            found[key] = value
        elif line.strip() and not line.startswith("#"):
            break
    return found


def dry_run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    slurm = {"SLURM_NNODES": "2", "SLURM_JOB_ID": "4242", "HEAD_NODE": "node001", "DRY_RUN": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["bash", str(script), *args], env={**slurm, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def array_env(task: int, first: int, last: int, count: int | None = None) -> dict[str, str]:
    return {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(first), "SLURM_ARRAY_TASK_MAX": str(last),
            "SLURM_ARRAY_TASK_COUNT": str(last - first + 1 if count is None else count)}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_put_every_directive_before_the_first_command(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    lines = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert len(lines) == len(directives(script))  # none after a command: Slurm would ignore it
    assert "local_cluster.sh" in text  # says how the project ran it


def test_every_array_task_runs_its_own_shard_and_together_they_cover_the_array():
    script = SLURM / "study_array.sbatch"
    first, last = (int(v) for v in re.fullmatch(r"(\d+)-(\d+)", directives(script)["--array"]).groups())
    shards = []
    for task in range(first, last + 1):
        done = dry_run(script, array_env(task, first, last), "--config", "configs/study/voc_table3.yaml",
                       "--output", "/shared/studies/table3")
        assert done.returncode == 0, done.stderr
        command = done.stdout.split()
        assert command[:2] == ["srun", "--kill-on-bad-exit=1"] and "tools/transfer_study.py" in command
        assert {"--nnodes=2", "--rdzv-backend=c10d", "--rdzv-id=4242"} <= set(command)
        assert any(arg.startswith("--rdzv-endpoint=node001:") for arg in command)
        shards.append(parse_shard(command[command.index("--shard") + 1]))
    assert shards == [(i, last - first + 1) for i in range(last - first + 1)]  # i/N for every task, N = array size


def test_an_array_that_would_miss_shards_or_a_given_shard_is_refused():
    script = SLURM / "study_array.sbatch"
    stepped = dry_run(script, array_env(2, 0, 6, count=4), "--output", "x")  # --array=0-6:2
    assert stepped.returncode == 2 and "0..N-1" in stepped.stderr
    shifted = dry_run(script, array_env(1, 1, 4), "--output", "x")
    assert shifted.returncode == 2
    given = dry_run(script, array_env(0, 0, 3), "--output", "x", "--shard", "0/4")
    assert given.returncode == 2 and "do not pass --shard" in given.stderr
    assert dry_run(script, {}, "--output", "x").returncode == 2  # not an array task


def test_the_multinode_training_runs_one_torchrun_per_node_with_the_given_command():
    script = SLURM / "train_multinode.sbatch"
    assert directives(script)["--ntasks-per-node"] == "1"
    done = dry_run(script, {"GPUS_PER_NODE": "4"}, "tools/train_seg.py", "--config", "configs/seg/voc_unet.yaml",
                   "--output", "/shared/runs/d4")
    assert done.returncode == 0, done.stderr
    command = done.stdout.split()
    assert {"--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d"} <= set(command)
    assert command[-5:] == ["tools/train_seg.py", "--config", "configs/seg/voc_unet.yaml", "--output", "/shared/runs/d4"]
    assert dry_run(script, {}).returncode == 2  # no training command


# ------------------------------------------------------------------ on a one-node Slurm, for real

SLURM_TOOLS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo")
TORCHRUN = Path(sys.executable).with_name("torchrun")
# What every job here gets instead of the scripts' GPU-node defaults: no GPUs, one CPU per task.
CPU_TASK = ["--gpus-per-node=0", "--cpus-per-task=1", "--time=20"]


@dataclass
class Cluster:
    folder: Path
    env: dict[str, str]

    def sbatch(self, script: str, options: list[str], *args: str, **env: str) -> str:
        """Submit ``tools/slurm/<script>`` with ``options`` before it and ``args`` after (the job sees
        this environment and ``env``); the job id."""
        done = subprocess.run(["sbatch", "--parsable", *CPU_TASK, *options, str(SLURM / script), *args],
                              env={**self.env, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def wait(self, job: str, timeout: float = 600) -> dict[str, tuple[str, str]]:
        """Wait until ``job`` (every task of an array) has ended: {array task id or "": (state, exit code)}."""
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-j", job, "-o", "%i"):
            assert time.monotonic() < deadline, f"job {job} still running after {timeout} s"
            time.sleep(0.5)
        ended = {}
        for line in self.run("scontrol", "-o", "show", "job", job).splitlines():
            fields = dict(field.split("=", 1) for field in line.split() if "=" in field)
            ended[fields.get("ArrayTaskId", "")] = (fields["JobState"], fields["ExitCode"])
        return ended

    def run(self, *command: str) -> str:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture(scope="module")
def cluster():
    """A one-node Slurm for this module's tests, stopped afterwards whatever happened."""
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no Slurm here ({', '.join(missing)} not found): apt-get install slurm-wlm munge (.ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="repeatseg-slurm-"))  # short: munge's socket path has a length limit
    try:
        up = subprocess.run(["bash", str(SLURM / "local_cluster.sh"), "up", str(folder)], capture_output=True,
                            text=True, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "REPEATSEG_DIR": str(ROOT), "TORCHRUN": str(TORCHRUN), "GPUS_PER_NODE": "1"}
        yield Cluster(folder, env)
    finally:
        subprocess.run(["bash", str(SLURM / "local_cluster.sh"), "down", str(folder)], capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def timing(study_dir: Path) -> list[dict]:
    path = study_dir / "timing.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.slow
def test_the_study_array_runs_every_unit_once_and_its_rerun_resumes_a_cancelled_task(cluster, tiny_digits, tmp_path):
    study_dir, logs = tmp_path / "study", tmp_path / "logs"
    logs.mkdir()
    cells = 12  # steps per cell, a checkpoint every 2: the victim is stopped at its first, so it cannot finish
    args = study_args(study_dir, tiny_digits, cell_iters=cells)
    study = load_config(StudyConfig, [ROOT / CONFIG], sets=study_sets(tiny_digits, cells))
    units = plan_units(study, study_dir)
    task_1 = make_shard(study, 1, 2)
    victim = next(u for u in units if isinstance(u, CellPlan) and task_1.owns(u))  # task 1's first cell
    array = ["--array=0-1", f"--output={logs}/%A_%a.out"]

    def log(job: str, task: int) -> str:
        return (logs / f"{job}_{task}.out").read_text()

    # 1. Both tasks start; task 1 is cancelled in the middle of its first cell. The cell's process
    # (its claim names it) is stopped at its first checkpoint, so that it cannot finish meanwhile.
    first = cluster.sbatch("study_array.sbatch", array, *args)
    deadline = time.monotonic() + 600
    while not (victim.run_dir / "checkpoints" / "last.state.pt").is_file():
        assert time.monotonic() < deadline and cluster.run("squeue", "-h", "-j", first), log(first, 1)
        time.sleep(0.02)
    holder = json.loads((victim.run_dir / OWNER_FILE).read_text())
    os.kill(holder["pid"], signal.SIGSTOP)
    cluster.run("scancel", f"{first}_1")  # Slurm sends SIGCONT, SIGTERM, and SIGKILL after KillWait
    ended = cluster.wait(first)
    assert ended["0"] == ("COMPLETED", "0:0") and ended["1"][0] == "CANCELLED", ended
    assert victim.started and not victim.finished  # stopped between two checkpoints
    done = Counter((t["kind"], t["encoder"], t["seed"]) for t in timing(study_dir))
    assert set(done.values()) == {1} and (victim.kind, victim.encoder, victim.seed) not in done
    assert {t["shard"] for t in timing(study_dir)} == {"0/2", "1/2"}  # both ran units, side by side

    # 2. The same sbatch again: task 1 takes its units back at once and resumes the cancelled cell.
    second = cluster.sbatch("study_array.sbatch", array, *args)
    assert cluster.wait(second) == {"0": ("COMPLETED", "0:0"), "1": ("COMPLETED", "0:0")}
    assert f"cell {victim.encoder} seed {victim.seed}: resuming" in log(second, 1)
    runs = Counter((t["kind"], t["encoder"], t["seed"]) for t in timing(study_dir))
    assert set(runs) == {(u.kind, u.encoder, u.seed) for u in units} and set(runs.values()) == {1}  # each once
    records = [json.loads(line) for line in (victim.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == cells  # resumed, not restarted: no step logged twice
    reports = [name for name in ((first, 0), (first, 1), (second, 0), (second, 1)) if "report:" in log(*name)]
    assert len(reports) == 1 and (study_dir / "report.md").is_file()  # written once, by the task that completed
    assert not list(study_dir.rglob(OWNER_FILE))  # every claim released, the cancelled task's taken over

    # 3. Once more: nothing to do.
    report_written = (study_dir / "report.md").stat().st_mtime_ns
    third = cluster.sbatch("study_array.sbatch", array, *args)
    assert cluster.wait(third) == {"0": ("COMPLETED", "0:0"), "1": ("COMPLETED", "0:0")}
    assert len(timing(study_dir)) == len(units) and (study_dir / "report.md").stat().st_mtime_ns == report_written
    for task in (0, 1):
        text = log(third, task)
        assert "all 4 units finished" in text and "starting" not in text and "report:" not in text, text


@pytest.mark.slow
def test_two_torchruns_meet_at_one_rendezvous_and_train_what_one_node_trains(cluster, tiny_digits, tmp_path):
    train = ["tools/train_seg.py", "--config", "configs/seg/digits.yaml", "--data-root", str(tiny_digits),
             "--set", "schedule.iters=4", "--set", "schedule.warmup_iters=0", "--set", "train.batch_size=4",
             "--set", "data.workers=0", "--set", "train.eval_batch_size=4", "--set", "train.log_mode=quiet",
             "--set", "train.seed=3"]
    # Two Slurm tasks on the one node, each a torchrun with --nnodes 2 and one process: two "nodes".
    job = cluster.sbatch("train_multinode.sbatch", ["--nodes=1", "--ntasks=2", "--ntasks-per-node=2",
                                                    f"--output={tmp_path}/multinode.out"],
                         *train, "--output", str(tmp_path / "multinode"), LOGLEVEL="INFO")  # torchrun says more
    # Meanwhile the same training as one node with two processes, outside Slurm.
    single = subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node=2", *train,
                             "--output", str(tmp_path / "single")], cwd=ROOT, env=cluster.env, capture_output=True,
                            text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    assert cluster.wait(job) == {"": ("COMPLETED", "0:0")}, (tmp_path / "multinode.out").read_text()[-3000:]
    log = (tmp_path / "multinode.out").read_text()
    # Each agent joined rendezvous <job id> as one of two nodes and started one of the two ranks.
    assert log.count("group_world_size=2") == 2 and "group_rank=0" in log and "group_rank=1" in log, log[-3000:]
    assert "global_ranks=[0]" in log and "global_ranks=[1]" in log
    multinode = load_weights(tmp_path / "multinode" / "checkpoints" / "last.safetensors")
    reference = load_weights(tmp_path / "single" / "checkpoints" / "last.safetensors")
    assert multinode.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(multinode[name], value, rtol=1e-5, atol=1e-6, msg=name)
