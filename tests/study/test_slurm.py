"""The Slurm examples (tools/slurm/): they cannot run here (no scheduler), so they are read and
run in their DRY_RUN mode under the environment Slurm would give each task."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from repeatseg.study.runner import parse_shard

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
    assert "NOT run on a cluster by the project" in text


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
