"""Study processes with stand-in training, for the shard tests (``test_shards.py``).

    python tests/study/shard_worker.py STUDY_DIR LOG SETS_JSON SHARD [SHARD ...] [--kill ENCODER:SEED] [--ranks N]

Imports the package once, then forks one process per SHARD (``i/n``; the same shard may be given
twice), releases them at the same moment and runs ``run_study`` in each, on the study given by
the ``--set`` strings in SETS_JSON. Training is replaced by stand-ins that append one JSON line per
unit run to LOG (kind, run folder, pid, resume), pause briefly and write the unit's output, so the
processes race over one study folder within seconds. ``--kill ENCODER:SEED`` makes the process
that reaches that cell SIGKILL itself after the cell's first checkpoint, leaving the claim of a
dead pid behind. ``--ranks N`` runs the (single) shard as a gloo group of N processes, as torchrun
would, each rank logging the units it takes part in. Prints the processes' exit codes as a JSON list.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import repeatseg  # noqa: E402,F401
import repeatseg.engine.cls as cls  # noqa: E402
import repeatseg.engine.seg as seg  # noqa: E402
from repeatseg.config import StudyConfig, load_config, save_config  # noqa: E402
from repeatseg.study import runner  # noqa: E402
from repeatseg.study.plan import make_shard  # noqa: E402

PAUSE_S = 0.2  # long enough for the other workers to reach the same unit


def record(log: Path, study_dir: Path, kind: str, run_dir, resume: bool, rank: int = 0) -> None:
    line = json.dumps({"kind": kind, "run": Path(run_dir).relative_to(study_dir).as_posix(), "pid": os.getpid(),
                       "resume": resume, "rank": rank}) + "\n"
    handle = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, line.encode())  # one write: lines of concurrent workers never interleave
    finally:
        os.close(handle)


def install_stand_ins(log: Path, study_dir: Path, kill: str | None) -> None:
    def pretrain(cfg, run_dir, dist, resume=False):
        record(log, study_dir, "pretrain", run_dir, resume, dist.rank)
        time.sleep(PAUSE_S)
        (Path(run_dir) / "metrics.json").write_text('{"top1": 0.5}')

    def export(run_dir, weights, which="last"):
        Path(weights).parent.mkdir(parents=True, exist_ok=True)
        Path(weights).write_bytes(b"weights")

    def cell(cfg, run_dir, dist, resume=False):
        run_dir = Path(run_dir)
        record(log, study_dir, "cell", run_dir, resume, dist.rank)
        if kill == f"{cfg.model.encoder}:{cfg.train.seed}" and not resume:
            save_config(cfg, run_dir / "config.yaml")
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run_dir / "checkpoints" / "last.state.pt").write_bytes(b"")
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(PAUSE_S)
        (run_dir / "metrics.json").write_text("{}")

    cls.train_classification, seg.train_segmentation, runner.export_encoder = pretrain, cell, export


def run_shard(args: argparse.Namespace, shard_text: str, start, rank: int = 0) -> None:
    study = load_config(StudyConfig, sets=json.loads(args.sets))
    install_stand_ins(args.log, args.study_dir, args.kill)
    shard = make_shard(study, *runner.parse_shard(shard_text))
    dist = runner.DistInfo()
    if args.ranks > 1:  # a torchrun group of one shard
        import torch.distributed

        torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank,
                                             world_size=args.ranks)
        dist = runner.DistInfo(rank=rank, world_size=args.ranks)
    start.wait()
    runner.run_study(study, args.study_dir, dist, shard, wait_s=120, poll_s=0.05)
    if args.ranks > 1:
        torch.distributed.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("sets")
    parser.add_argument("shards", nargs="+")
    parser.add_argument("--kill")
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--port", type=int, default=29533)
    args = parser.parse_args()
    context = multiprocessing.get_context("fork")  # nothing computed before the fork: it is safe
    start = context.Event()
    jobs = [(shard, rank) for shard in args.shards for rank in range(args.ranks)]
    processes = [context.Process(target=run_shard, args=(args, shard, start, rank)) for shard, rank in jobs]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join()
    print(json.dumps([process.exitcode for process in processes]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
