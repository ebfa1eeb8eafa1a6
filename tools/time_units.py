"""Time one digits pretraining unit and one digits cell (the two kinds of study unit), for this tree
against another commit or setting, measured in one run; or profile one of them.

    python tools/time_units.py --baseline main                       # this tree / main, 3 repeats each
    python tools/time_units.py --baseline HEAD~3 --repeats 5 --threads 2
    python tools/time_units.py --baseline-set data.workers=1         # this tree against itself, one setting changed
    python tools/time_units.py --steps 40                            # shortened units, per-step time extrapolated
    python tools/time_units.py --baseline main --together 2          # two units at once, as two shards run
    python tools/time_units.py --profile pretrain --workers 0        # where the time goes (torch.profiler)

Every measurement runs in a fresh process: ``tools/train_cls.py`` (configs/cls/digits.yaml) or
``tools/train_seg.py`` (configs/seg/digits.yaml, random init) of the tree being measured, with
``PYTHONPATH`` set to that tree. The baseline commit is checked out in a temporary git worktree;
its own tools and configs are used, so a change of recipe file counts as part of the commit.
Runs alternate (this tree, baseline, this tree, ...) so drift on a shared machine hits both
alike; the tool prints each side's median seconds, the ratio baseline / this tree (above 1: this
tree is faster), whether the two sides' first units ended with bit-identical weights (a speed-up
that changed the computation shows here), and ``os.getloadavg()`` before and after. Both sides run at ``--threads`` intra-op
threads (``OMP_NUM_THREADS`` in the child's environment: every commit honours it), so they compute
at the same thread count; a result reproduces at the same thread count only.

``--together N`` starts N identical units of a side at once, each at ``--threads``, as N study
shards on one host run them, and times the slowest: the cost of a unit where the study runs it.

``--steps N`` shortens every unit to N optimiser steps and extrapolates: the unit's seconds minus
its training-loop seconds, plus the loop's seconds per step times the recipe's steps. The loop's
seconds come from the run's ``metrics.jsonl`` (``images_per_s`` of every logged window), which
every commit writes. A shortened unit still evaluates once (as the recipes do) but writes fewer
epoch checkpoints; the printed table says when the figures are extrapolated.

``--profile KIND`` runs one unit of this tree, shortened to ``--steps`` (default 60: a whole
cell's trace does not fit in memory), in this process under ``torch.profiler`` and prints the
share of the unit's wall time (measured, and extrapolated to the whole unit) in each phase of the
loop (the trainer's ``repeatseg.*`` ranges: data, forward, backward, optimiser, logging,
evaluation, checkpoints), the loop's remainder (per-step bookkeeping), the set-up before the
loop, and the operators that take the most time.
With ``--workers 0`` the data loading is inside the profiled process; with workers it runs in
another process and shows up as the loop's wait for the next batch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool
import yaml

ROOT = Path(__file__).resolve().parents[1]
KINDS = {  # kind -> (tool, recipe, flags)
    "pretrain": ("train_cls", "configs/cls/digits.yaml", []),
    "cell": ("train_seg", "configs/seg/digits.yaml", []),
}


def unit_argv(kind: str, tree: Path, data_root: Path, output: Path, steps: int | None, sets: list[str],
              workers: int | None = None) -> list[str]:
    """The command line (after the interpreter) of one ``kind`` unit of ``tree``."""
    tool, recipe, flags = KINDS[kind]
    argv = [str(tree / "tools" / f"{tool}.py"), "--config", str(tree / recipe), "--data-root", str(data_root),
            "--output", str(output), "--log-mode", "quiet", *flags]
    if steps is not None:
        argv += ["--iters", str(steps)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    for item in sets:
        argv += ["--set", item]
    return argv


def recipe(kind: str, tree: Path, sets: list[str]) -> dict:
    """The unit's recipe file of ``tree`` with ``sets`` applied, as plain YAML values (read without
    the tree's config classes, so any commit's recipe reads)."""
    from repeatseg.config import merge, parse_override

    values = yaml.safe_load((tree / KINDS[kind][1]).read_text()) or {}
    for item in sets:
        values = merge(values, parse_override(item))
    return values


def recipe_steps(kind: str, tree: Path, data_root: Path, sets: list[str]) -> int:
    """The optimiser steps of the full unit: its schedule over the digits training split."""
    values = recipe(kind, tree, sets)
    schedule, batch = values.get("schedule", {}), values["train"]["batch_size"]
    if schedule.get("iters") is not None:
        return schedule["iters"]
    if kind == "pretrain":
        images = sum(1 for _ in (data_root / "cls" / values["data"].get("train_split", "train")).glob("*/*.png"))
    else:
        split = values["data"].get("split", "train")
        images = len((data_root / "seg" / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / f"{split}.txt")
                     .read_text().split())
    return schedule["epochs"] * (images // batch)


def loop_seconds(run_dir: Path, batch_size: int) -> tuple[float, int]:
    """(seconds inside the training loop, steps) from the run's logged windows."""
    seconds, last_step = 0.0, 0
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "images_per_s" in record:
            steps = record["step"] - last_step
            seconds += steps * batch_size / record["images_per_s"]
            last_step = record["step"]
    return seconds, last_step


def time_unit(kind: str, tree: Path, data_root: Path, work: Path, steps: int | None, full_steps: int,
              batch_size: int, sets: list[str], threads: int, workers: int | None,
              together: int = 1) -> tuple[float, Path]:
    """(seconds, run folder) of one unit of ``tree`` in a fresh process; the seconds are extrapolated
    to ``full_steps`` when the unit is shortened to ``steps``. With ``together`` > 1 that many identical
    units start at once (as study shards on one host do) and the seconds are the slowest one's."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    outputs = [Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work)) / "run" for _ in range(together)]
    start = time.perf_counter()
    logs = [output.parent / "stderr.txt" for output in outputs]  # a file, not a pipe: no unit waits on a reader
    handles = [log.open("w") for log in logs]
    processes = [subprocess.Popen([sys.executable, *unit_argv(kind, tree, data_root, output, steps, sets, workers)],
                                  cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=handle)
                 for output, handle in zip(outputs, handles)]
    took = []
    try:
        for process, log in zip(processes, logs):
            process.wait()
            took.append(time.perf_counter() - start)  # a later unit's end is read no earlier than it came
            if process.returncode != 0:
                raise RuntimeError(f"{kind} unit of {tree} failed ({process.returncode}):\n{log.read_text()[-3000:]}")
    finally:  # a failed or interrupted unit leaves no sibling running
        for process, handle in zip(processes, handles):
            if process.poll() is None:
                process.kill()
                process.wait()
            handle.close()
    if steps is not None:
        for index, output in enumerate(outputs):
            loop, done = loop_seconds(output, batch_size)
            took[index] = took[index] - loop + loop / done * full_steps
    for output in outputs[1:]:
        shutil.rmtree(output.parent, ignore_errors=True)
    return max(took), outputs[0]


def same_weights(first: Path, second: Path) -> bool:
    """Whether two runs ended with bit-identical weights (``checkpoints/last.safetensors``)."""
    from safetensors.torch import load_file

    a, b = (load_file(run / "checkpoints" / "last.safetensors") for run in (first, second))
    return a.keys() == b.keys() and all(a[key].equal(b[key]) for key in a)


def checkout(rev: str, work: Path) -> Path:
    """A detached git worktree of ``rev`` under ``work`` (removed by ``remove_checkout``)."""
    tree = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), rev], check=True)
    return tree


def remove_checkout(tree: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def compare(args: argparse.Namespace, data_root: Path, work: Path) -> list[dict]:
    """Alternate this tree and the baseline ``args.repeats`` times per kind; one summary per kind."""
    baseline = checkout(args.baseline, work) if args.baseline else ROOT
    rows = []
    try:
        for kind in args.kinds:
            sides = {"this tree": (ROOT, args.set), "baseline": (baseline, [*args.set, *args.baseline_set])}
            full = {name: recipe_steps(kind, tree, data_root, sets) for name, (tree, sets) in sides.items()}
            batch = {name: _batch_size(kind, tree, sets) for name, (tree, sets) in sides.items()}
            seconds: dict[str, list[float]] = {name: [] for name in sides}
            first_run: dict[str, Path] = {}
            load_before = os.getloadavg()
            for repeat in range(args.repeats):
                order = list(sides) if repeat % 2 == 0 else list(sides)[::-1]
                for name in order:
                    tree, sets = sides[name]
                    took, run = time_unit(kind, tree, data_root, work, args.steps, full[name], batch[name], sets,
                                          args.threads, args.workers, args.together)
                    seconds[name].append(took)
                    first_run.setdefault(name, run)
                    if first_run[name] != run:
                        shutil.rmtree(run.parent, ignore_errors=True)
                    print(f"  {kind} {name}: {took:.1f} s", file=sys.stderr, flush=True)
            identical = same_weights(first_run["this tree"], first_run["baseline"])
            mine, theirs = statistics.median(seconds["this tree"]), statistics.median(seconds["baseline"])
            rows.append({"kind": kind, "this_tree_s": mine, "baseline_s": theirs, "ratio": theirs / mine,
                         "same_weights": identical, "repeats": args.repeats, "steps": full["this tree"],
                         "measured_steps": args.steps, "threads": args.threads, "together": args.together,
                         "load_before": load_before,
                         "load_after": os.getloadavg(), "seconds": seconds})
    finally:
        if args.baseline:
            remove_checkout(baseline)
    return rows


def _batch_size(kind: str, tree: Path, sets: list[str]) -> int:
    return recipe(kind, tree, sets)["train"]["batch_size"]


def print_comparison(rows: list[dict], args: argparse.Namespace) -> None:
    against = f"baseline {args.baseline or 'this tree'}" + (f" with {' '.join(args.baseline_set)}" if args.baseline_set else "")
    at_once = f", {args.together} units at once (seconds: the slowest)" if args.together > 1 else ""
    print(f"units of the digits study: this tree ({ROOT}) against {against}; {args.repeats} repeats each, "
          f"alternating, {args.threads} intra-op thread(s){at_once}, {os.cpu_count()} CPUs")
    if args.steps:
        print(f"shortened to {args.steps} steps: seconds EXTRAPOLATED to the recipe's steps from the loop's time per step")
    print(f"{'unit':<9} {'steps':>6} {'this tree s':>12} {'baseline s':>11} {'baseline/this':>14} {'same weights':>13}"
          "  load (1, 5, 15 min) before -> after")
    for row in rows:
        load = "{:.2f} {:.2f} {:.2f}".format(*row["load_before"]) + " -> " + "{:.2f} {:.2f} {:.2f}".format(*row["load_after"])
        print(f"{row['kind']:<9} {row['steps']:>6} {row['this_tree_s']:>12.1f} {row['baseline_s']:>11.1f} "
              f"{row['ratio']:>13.2f}x {'yes' if row['same_weights'] else 'NO':>13}  {load}")
    print("same weights: whether the first unit of each side ended with bit-identical weights (yes: the same computation; "
          "a --set or --baseline-set that changes what is trained or saved gives NO)")


# ------------------------------------------------------------------------------------ profile
LOOP_PHASES = ("data", "forward", "backward", "optimizer", "log")
PROFILE_STEPS = 60  # a profiled unit is shortened to this (the trace of a whole cell does not fit in memory)


def profile(kind: str, data_root: Path, work: Path, steps: int, sets: list[str], threads: int,
            workers: int | None, top: int) -> dict:
    """Run a ``steps``-step unit of this tree here under torch.profiler and print where its time
    goes, measured and extrapolated to the whole unit; returns both tables (seconds)."""
    sys.path.insert(0, str(ROOT))
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from repeatseg.engine.trainer import PHASES

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT / "tools"))
    tool = __import__(KINDS[kind][0])
    output = work / f"profile-{kind}"
    argv = unit_argv(kind, ROOT, data_root, output, steps, sets, workers)[1:]
    with torch_profile(activities=[ProfilerActivity.CPU]) as trace:
        start = time.perf_counter()
        code = tool.main(tool.get_args_parser().parse_args(argv))
        wall = time.perf_counter() - start  # before the profiler's own processing at exit
    if code != 0:
        raise RuntimeError(f"the profiled {kind} unit failed (exit {code})")
    averages = trace.key_averages()
    spent = {name: next((a.cpu_time_total / 1e6 for a in averages if a.key == label), 0.0)
             for name, label in PHASES.items()}
    checkpoints = next((a.count for a in averages if a.key == PHASES["checkpoint"]), 1)
    loop = spent.pop("epoch")
    measured = {**{name: spent[name] for name in LOOP_PHASES},
                "bookkeeping": loop - sum(spent[name] for name in LOOP_PHASES),
                "evaluate": spent["evaluate"], "checkpoint": spent["checkpoint"]}
    measured["setup"] = wall - sum(measured.values())
    full_steps = recipe_steps(kind, ROOT, data_root, sets)
    epochs = -(-full_steps // _steps_per_epoch(kind, ROOT, data_root, sets))
    scale = {**{name: full_steps / steps for name in (*LOOP_PHASES, "bookkeeping")}, "checkpoint": epochs / checkpoints}
    whole = {name: seconds * scale.get(name, 1.0) for name, seconds in measured.items()}
    total = sum(whole.values())
    print(f"{kind} unit of this tree, {threads} thread(s), workers {workers if workers is not None else 'as in the recipe'}"
          f"; load {os.getloadavg()[0]:.2f}. Profiled {steps} steps ({wall:.1f} s under the profiler); the whole unit"
          f" ({full_steps} steps, {epochs} checkpoints) EXTRAPOLATED: loop phases x {full_steps / steps:.1f}")
    print(f"  {'phase':<12} {'measured s':>10} {'whole unit s':>13} {'share':>7}")
    for name, seconds in measured.items():
        print(f"  {name:<12} {seconds:10.2f} {whole[name]:13.2f} {100 * whole[name] / total:6.1f}%")
    print(f"  {'total':<12} {wall:10.2f} {total:13.2f}")
    ops = sorted((a for a in averages if not a.key.startswith("repeatseg.")),
                 key=lambda a: a.self_cpu_time_total, reverse=True)[:top]
    print(f"  top {top} operators by own time (measured):")
    for average in ops:
        print(f"    {average.key[:52]:<52} {average.self_cpu_time_total / 1e6:7.2f} s {average.count:8d} calls")
    return {"kind": kind, "steps": steps, "full_steps": full_steps, "threads": threads, "measured_s": measured,
            "whole_unit_s": whole, "load": os.getloadavg()}


def _steps_per_epoch(kind: str, tree: Path, data_root: Path, sets: list[str]) -> int:
    """Optimiser steps of one epoch over the digits training split."""
    with_epochs = [*sets, "schedule.iters=null", "schedule.epochs=1"]
    return recipe_steps(kind, tree, data_root, with_epochs)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", metavar="REV", help="git revision to compare with (default: this tree itself)")
    parser.add_argument("--baseline-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for the baseline's units only (the setting being compared)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every unit")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--repeats", type=int, default=3, help="units of each kind per side (default 3)")
    parser.add_argument("--steps", type=int, help="shorten every unit to this many steps and extrapolate")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every unit (default 1)")
    parser.add_argument("--workers", type=int, help="data workers of every unit (default: each recipe's)")
    parser.add_argument("--together", type=int, default=1, metavar="N",
                        help="start N identical units at once, as N study shards on one host run (default 1)")
    parser.add_argument("--data-root", help="digits folder (default: a temporary one, written first)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--profile", choices=list(KINDS), help="profile one unit of this tree instead")
    parser.add_argument("--top", type=int, default=15, help="operators listed by --profile")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.repeats < 1 or (args.steps is not None and args.steps < 1) or args.threads < 1 or args.together < 1:
        print("error: --repeats, --steps, --threads and --together must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="time_units-") as temp:
        work = Path(temp)
        data_root = Path(args.data_root) if args.data_root else work / "digits"
        sys.path.insert(0, str(ROOT))
        from repeatseg.data.digits import ensure_digits

        ensure_digits(data_root)
        if args.profile:
            result = profile(args.profile, data_root, work, args.steps or PROFILE_STEPS, args.set, args.threads,
                             args.workers, args.top)
        else:
            result = compare(args, data_root, work)
            print_comparison(result, args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
