"""Kill a tiny training run with SIGKILL at random moments, resume it each time, and compare the
result with an uninterrupted run. Run by ``test_reliability.py``; prints one JSON summary line.

    python tests/engine/kill_loop.py --data-root DATA --workdir DIR --kills 8 --seed 0
    python tests/engine/kill_loop.py ... --set train.ema_decay=0.9   # any recipe override, every run

The package is imported once; every run is a forked child (the parent computes nothing before
forking, so the fork is safe), which keeps a dozen runs within seconds. Half of the kills fall
anywhere in a run, half just after a checkpoint write has begun (``checkpoints/.pending`` appears).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import train_seg  # noqa: E402  (imports repeatseg, torch, smp and timm once, before any fork)

from repeatseg.files import MARKER  # noqa: E402

TIMING_KEYS = {"images_per_s", "data_wait_share"}  # the only fields a resumed run may log differently


def run_args(data_root: Path, run_dir: Path, resume: bool, sets: tuple[str, ...] = ()) -> list[str]:
    if resume:
        return ["--resume", str(run_dir), "--log-mode", "quiet"]
    return ["--data-root", str(data_root), "--output", str(run_dir), "--encoder", "repeat_r18_f2_b8",
            "--dataset", "voc", "--crop-size", "64", "--batch-size", "2", "--epochs", "6", "--workers", "0",
            "--device", "cpu", "--log-mode", "quiet", "--lr", "0.05",
            "--set", "train.eval_batch_size=2", "--set", "train.log_every=1",
            "--set", "schedule.warmup_iters=0", "--set", "train.eval_every=1", *(f"--set={s}" for s in sets)]


def train(argv: list[str]) -> None:
    sys.exit(train_seg.main(train_seg.get_args_parser().parse_args(argv)))


def launch(argv: list[str]) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(target=train, args=(argv,))
    process.start()
    return process


def wait_for(path: Path, process: multiprocessing.Process, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.is_alive():
        if path.exists():
            return True
        time.sleep(0.002)
    return False


def records(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS} for line in lines]


def same_weights(a: Path, b: Path) -> bool:
    from repeatseg.files import load_weights

    first, second = load_weights(a), load_weights(b)
    import torch

    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def main(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    work = Path(args.workdir)
    reference = work / "reference"
    start = time.monotonic()
    process = launch(run_args(args.data_root, reference, resume=False, sets=args.sets))
    process.join()
    duration = time.monotonic() - start
    assert process.exitcode == 0, f"the uninterrupted run failed ({process.exitcode})"

    kills, trials, summary = 0, 0, {"kills": 0, "during_checkpoint_write": 0, "after_commit_point": 0,
                                     "before_first_checkpoint": 0, "runs_compared": 0, "launches": 1}
    while kills < args.kills:
        trials += 1
        run_dir = work / f"run{trials}"
        while True:
            started = (run_dir / "checkpoints" / "last.state.pt").exists()
            process = launch(run_args(args.data_root, run_dir, resume=started, sets=args.sets))
            summary["launches"] += 1
            if kills < args.kills:
                if kills % 2:
                    if wait_for(run_dir / "checkpoints" / ".pending", process, duration):
                        time.sleep(rng.uniform(0.0, 0.05))
                else:
                    time.sleep(rng.uniform(0.0, 0.6 * duration))
            if kills < args.kills and process.is_alive():
                process.kill()
                process.join()
                kills += 1
                pending = run_dir / "checkpoints" / ".pending"
                summary["during_checkpoint_write"] += pending.exists()
                summary["after_commit_point"] += (pending / "manifest.json").exists()
                summary["before_first_checkpoint"] += not (run_dir / "checkpoints" / "last.state.pt").exists()
                continue
            process.join()
            assert process.exitcode == 0, f"{run_dir}: a resumed run failed ({process.exitcode})"
            break
        for name in ("last.safetensors", "best.safetensors"):
            assert same_weights(reference / "checkpoints" / name, run_dir / "checkpoints" / name), (run_dir, name)
        assert records(run_dir) == records(reference), f"{run_dir}: metrics.jsonl differs from the uninterrupted run's"
        leftovers = [p.name for p in run_dir.rglob("*") if p.name.startswith(".") and p.name != MARKER]
        assert not leftovers, f"{run_dir}: left behind {leftovers}"
        summary["runs_compared"] += 1
    summary["kills"] = kills
    summary["uninterrupted_s"] = round(duration, 2)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override for every run, e.g. train.ema_decay=0.9")
    print(json.dumps(main(parser.parse_args())))
