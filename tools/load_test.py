"""No collapse under load: how much slower one digits unit runs beside competing units or an unrelated
CPU load than alone, against the fair share of the machine.

    python tools/load_test.py                          # this tree: alone, 4 together, beside a CPU load
    python tools/load_test.py --baseline main          # the same scenarios for main, as it ran (torch's threads)
    python tools/load_test.py --kind cell --steps 200  # a cell instead, shortened (seconds extrapolated)

Scenarios, each unit a fresh process (``tools/time_units.py`` runs it):

- **alone**: one unit at its default threads (this tree: the usable cores).
- **4 units**: four units started together, each at the count four study processes on this host
  choose (the usable cores / 4, at least 1); the figure is their median. Fair share: 4x (four
  processes on the cores one had alone).
- **beside a CPU load**: one unit at its default threads beside one busy single-threaded process
  per usable core (``--load-command`` to use another, e.g. the test suite), which it does not know
  about. Fair share: 2x (half the machine).

The baseline (``--baseline REV``, a temporary git worktree) runs every scenario at torch's own
default threads, as that commit did. Prints seconds, slowdown against alone and the fair share,
with ``os.getloadavg()`` before and after. Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool
import time_units  # noqa: E402  (the unit commands, their extrapolation and the git worktree)

ROOT = time_units.ROOT
BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_unit(kind: str, tree: Path, data_root: Path, work: Path, steps: int | None, threads: int | None,
               sets: list[str]) -> tuple[subprocess.Popen, Path, float]:
    """A unit of ``tree`` started in the background: (process, run folder, start time)."""
    output = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work)) / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(tree)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    argv = time_units.unit_argv(kind, tree, data_root, output, steps, sets)
    process = subprocess.Popen([sys.executable, *argv], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    return process, output, time.perf_counter()


def finish_unit(kind: str, tree: Path, data_root: Path, steps: int | None, sets: list[str], started) -> float:
    """Wait for a started unit; its seconds (extrapolated to the whole unit when shortened)."""
    process, output, start = started
    _, err = process.communicate()
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{kind} unit of {tree} failed ({process.returncode}):\n{err[-3000:]}")
    if steps is not None:
        loop, done = time_units.loop_seconds(output, time_units.recipe(kind, tree, sets)["train"]["batch_size"])
        seconds += loop / done * time_units.recipe_steps(kind, tree, data_root, sets) - loop
    return seconds


def scenarios(kind: str, tree: Path, data_root: Path, work: Path, steps: int | None, sets: list[str],
              load_command: list[str] | None, own_threads: bool) -> dict[str, float]:
    """Seconds of the unit alone, with three competitors, and beside a CPU load. ``own_threads``:
    this tree's choice of threads (4 units: the cores / 4); otherwise torch's default everywhere."""
    cores = usable_cores()

    def one(threads=None):
        return finish_unit(kind, tree, data_root, steps, sets,
                           start_unit(kind, tree, data_root, work, steps, threads, sets))

    result = {"alone": one()}
    shared = max(1, cores // 4) if own_threads else None
    started = [start_unit(kind, tree, data_root, work, steps, shared, sets) for _ in range(4)]
    result["4 units"] = statistics.median(finish_unit(kind, tree, data_root, steps, sets, s) for s in started)
    command = load_command or [sys.executable, "-c", BURN.format(seconds=24 * 3600)]
    load = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(1 if load_command else cores)]
    try:
        time.sleep(1.0)  # let the load start
        result["beside a CPU load"] = one()
    finally:
        for process in load:
            process.kill()
            process.wait()
    return result


FAIR = {"alone": 1.0, "4 units": 4.0, "beside a CPU load": 2.0}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=list(time_units.KINDS), default="pretrain")
    parser.add_argument("--baseline", metavar="REV", help="also run the scenarios for this git revision")
    parser.add_argument("--steps", type=int, help="shorten the units to this many steps and extrapolate")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every unit")
    parser.add_argument("--load-command", help="the unrelated load, one command (default: a busy process per core)")
    parser.add_argument("--data-root", help="digits folder (default: a temporary one, written first)")
    return parser


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="load_test-") as temp:
        work = Path(temp)
        data_root = Path(args.data_root) if args.data_root else work / "digits"
        sys.path.insert(0, str(ROOT))
        from repeatseg.data.digits import ensure_digits

        ensure_digits(data_root)
        load_before = os.getloadavg()
        command = shlex.split(args.load_command) if args.load_command else None
        trees = {"this tree": (ROOT, True)}
        if args.baseline:
            trees[f"baseline {args.baseline}"] = (time_units.checkout(args.baseline, work), False)
        try:
            results = {name: scenarios(args.kind, tree, data_root, work, args.steps, args.set, command, own)
                       for name, (tree, own) in trees.items()}
        finally:
            if args.baseline:
                time_units.remove_checkout(trees[f"baseline {args.baseline}"][0])
    print(f"{args.kind} unit under load, {usable_cores()} usable cores"
          + (f"; shortened to {args.steps} steps, seconds EXTRAPOLATED" if args.steps else ""))
    print(f"{'tree':<22} {'scenario':<18} {'seconds':>8} {'slowdown':>9} {'fair share':>11}")
    for name, result in results.items():
        for scenario, seconds in result.items():
            print(f"{name:<22} {scenario:<18} {seconds:8.1f} {seconds / result['alone']:8.2f}x {FAIR[scenario]:10.1f}x")
    print("load (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(
        *load_before, *os.getloadavg()))
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
