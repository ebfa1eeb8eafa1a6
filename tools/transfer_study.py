"""Run a transfer study (encoders x seeds, each an ordinary train_seg run, optionally pretrained first) and write the report.

    python tools/transfer_study.py --config configs/study/voc_table3.yaml --output studies/table3 --data-root ~/data
    torchrun --nproc_per_node=8 tools/transfer_study.py --config configs/study/voc_table3.yaml --output studies/table3
    python tools/transfer_study.py --config configs/study/demo.yaml --output studies/demo     # CPU, synthetic
    python tools/transfer_study.py --config configs/study/digits.yaml --output studies/digits # CPU, real digits
    python tools/transfer_study.py --report-only --output studies/table3                      # rebuild the report
    python tools/transfer_study.py --config configs/study/rot_digits.yaml --output results/rot_digits  # Table 4

    python tools/transfer_study.py --config configs/study/voc_table3.yaml --plan --tflops 160  # the bill, no training
    python tools/transfer_study.py --config configs/study/voc_table3.yaml --plan --json --tflops-from bench.json
    python tools/transfer_study.py --config configs/study/voc_table3.yaml --output studies/table3 --shard 2/8

Finished units (pretraining per encoder and seed, cells) are skipped and interrupted ones resumed:
run the same command again after a kill. With --shard i/n, n jobs share the study folder, each
running its part of the grid (docs/scale-out.md); every unit is claimed before it runs, so none
runs twice, and the shard that finds the whole grid finished writes the report. Every unit runs at
one thread count (--threads, else the usable cores shared among the study's processes on this
host), fixed when the study first starts and recorded in study.yaml: results reproduce at it.
Writes <output>/report.md, results.csv, results.json and figures/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool

REPORT_CLAIM = ".report"  # <study>/.report/ is claimed while a process writes the report
# repeatseg.study.runner's WAIT_S and POLL_S, written out so that --help needs no import (a test keeps them equal)
WAIT_MINUTES = 360.0  # how long a cell waits, without progress, for a pretraining another process runs
POLL_SECONDS = 30.0


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="study YAML (configs/study/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a study field")
    parser.add_argument("--output", help="study folder (required, except for --plan)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from finished cells")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the recipe's)")
    parser.add_argument("--data-root", help="segmentation data root for every cell (adds data.root to seg_sets)")
    parser.add_argument("--threads", type=int, help="intra-op threads of every unit, part of the recipe (default: "
                                                    "$OMP_NUM_THREADS, else the usable cores / the study processes "
                                                    "on this host; fixed once per study, in study.yaml)")
    scale = parser.add_argument_group("scale-out")
    scale.add_argument("--shard", default="0/1", metavar="I/N",
                       help="run only shard I of N (0-based; default 0/1, the whole grid)")
    scale.add_argument("--wait-minutes", type=float, default=WAIT_MINUTES,
                       help="how long a cell waits for a pretraining another process is running (default %(default)g)")
    scale.add_argument("--poll-seconds", type=float, default=POLL_SECONDS, help="how often it looks (default %(default)g)")
    plan = parser.add_argument_group("plan (prints the bill, trains nothing)")
    plan.add_argument("--plan", action="store_true", help="print images, FLOPs and hours per unit and the totals")
    plan.add_argument("--json", action="store_true", help="with --plan: print JSON instead of tables")
    throughput = plan.add_mutually_exclusive_group()
    throughput.add_argument("--tflops", type=float, help="sustained training TFLOPS per device, for the hours")
    throughput.add_argument("--tflops-from", metavar="BENCH_JSON", help="take it from tools/bench.py --json (dense model)")
    plan.add_argument("--images-per-epoch", type=int, help="training images of the segmentation split, if not known")
    plan.add_argument("--pretrain-images-per-epoch", type=int, help="training images of the pretraining split")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


import repeatseg  # noqa: F401  (registers the encoders)
from repeatseg.config import ConfigError, StudyConfig, load_config
from repeatseg.engine import distributed
from repeatseg.errors import MissingFileError, RepeatsegError, exit_code
from repeatseg.files import FolderClaimedError, claim_run_folder
from repeatseg.outputs import is_study_folder
from repeatseg.study import run_study, write_report
from repeatseg.study.classification_report import write_classification_report
from repeatseg.study.plan import format_plan, make_shard, plan_costs, plan_json, tflops_from_bench
from repeatseg.study.processes import at_recorded_threads, at_threads
from repeatseg.study.runner import PretrainPlan, check_study, parse_shard, plan_units, resolve_config_paths, study_complete


def resolve_study(args: argparse.Namespace, study_dir: Path | None) -> StudyConfig:
    """The study config: --config files (or the study folder's study.yaml) + --set, --data-root, --device."""
    files = list(args.config)
    if not files and study_dir is not None and (study_dir / "study.yaml").is_file():
        files = [study_dir / "study.yaml"]
    if not files:
        where = f" and no {study_dir / 'study.yaml'} to reuse" if study_dir is not None else ""
        raise ConfigError(f"no --config given{where}")
    overrides = [{"output": str(study_dir)}] if study_dir is not None else []
    study = resolve_config_paths(load_config(StudyConfig, files, overrides, args.set), Path(files[-1]))
    if args.data_root:
        study.seg_sets = [*study.seg_sets, f"data.root={args.data_root}"]
    if args.device:
        study.seg_sets = [*study.seg_sets, f"train.device={args.device}"]
        study.pretrain.sets = [*study.pretrain.sets, f"train.device={args.device}"]
    if args.threads is not None:
        study = at_threads(study, args.threads)
    return study


def check_args(args: argparse.Namespace) -> None:
    """Refuse flag combinations that cannot mean anything, before anything is read or written."""
    for flag in ("images_per_epoch", "pretrain_images_per_epoch"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.tflops is not None and args.tflops <= 0:
        raise ConfigError(f"--tflops must be positive, got {args.tflops}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.wait_minutes < 0 or args.poll_seconds <= 0:
        raise ConfigError("--wait-minutes must be >= 0 and --poll-seconds > 0")
    if args.json and not args.plan:
        raise ConfigError("--json goes with --plan")
    if args.output is None and not args.plan:
        raise ConfigError("--output (the study folder) is required, except with --plan")


def print_plan(args: argparse.Namespace, study: StudyConfig, study_dir: Path | None, shards: int) -> int:
    tflops = tflops_from_bench(args.tflops_from) if args.tflops_from else args.tflops
    costs = plan_costs(study, study_dir, args.images_per_epoch, args.pretrain_images_per_epoch)
    if shards > 1:
        shard = make_shard(study, 0, shards)
        for cost in costs:
            cost.shard = shard.assignment[(cost.encoder, cost.seed)]
    if args.json:
        print(json.dumps(plan_json(costs, tflops), indent=2))
    else:
        source = ", ".join(str(f) for f in args.config) or str(study_dir / "study.yaml")
        print(format_plan(costs, tflops, f"plan of {source}: {sum(c.kind == 'cell' for c in costs)} cells, "
                                         f"{sum(c.kind == 'pretrain' for c in costs)} pretrainings"
                                         + (f", {shards} shards" if shards > 1 else "")))
    return 0


def check_report_folder(study: StudyConfig, study_dir: Path) -> None:
    """--report-only reads a study folder whose units ran the recipe it reports them under."""
    if not is_study_folder(study_dir):
        raise MissingFileError(f"--report-only {study_dir}: not a study folder (no study.yaml or study marker)")
    check_study(study, study_dir)


def report_is_current(study: StudyConfig, study_dir: Path) -> bool:
    """Whether report.md was written after every unit of the grid had finished: a shard finishing
    just after another, or a rerun of a finished study, then has nothing to write."""
    report = study_dir / "report.md"
    outputs = [unit.weights if isinstance(unit, PretrainPlan) and unit.export else unit.run_dir / "metrics.json"
               for unit in plan_units(study, study_dir)]
    if not report.is_file() or not all(path.is_file() for path in outputs):
        return False
    return report.stat().st_mtime >= max(path.stat().st_mtime for path in outputs)


def write_report_once(study: StudyConfig, study_dir: Path, force: bool = False) -> None:
    """Write the report under a claim, so two shards finishing together do not write it at once,
    unless it is up to date already (``force``: write it anyway). A classification study
    (``cells: false``) gets Table 4's form."""
    with claim_run_folder(study_dir / REPORT_CLAIM):
        if not force and report_is_current(study, study_dir):
            print(f"the grid is complete and {study_dir / 'report.md'} is up to date (--report-only rewrites it)")
            return
        rows = (write_report if study.cells else write_classification_report)(study, study_dir)
    print(f"report: {study_dir / 'report.md'} ({sum(r.n for r in rows)} runs, {len(rows)} encoders)")


def main(args: argparse.Namespace) -> int:
    study_dir = Path(args.output) if args.output else None
    try:
        check_args(args)
        shard_index, shard_count = parse_shard(args.shard)
        study = resolve_study(args, study_dir)
        if args.plan:
            return print_plan(args, study, study_dir, shard_count)
        dist = distributed.setup(args.device or "auto")
    except RepeatsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if args.report_only:
            study = at_recorded_threads(study, study_dir)
            check_report_folder(study, study_dir)
        else:
            shard = make_shard(study, shard_index, shard_count)
            run_study(study, study_dir, dist, shard, wait_s=args.wait_minutes * 60, poll_s=args.poll_seconds)
        if dist.is_main:
            if args.report_only or study_complete(study, study_dir):
                try:
                    write_report_once(study, study_dir, force=args.report_only)
                except FolderClaimedError as error:
                    if args.report_only:
                        raise
                    print(f"the grid is complete; another process is writing the report ({error})")
            else:
                print(f"shard {args.shard}: done with its part; the grid is not complete yet (other shards are "
                      "running or some units are left): the shard that completes it writes the report, "
                      f"or run --report-only --output {study_dir}")
    except RepeatsegError as error:  # anything else is a bug: it keeps its traceback
        print(f"error: {error}", file=sys.stderr)
        return exit_code(error)
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to continue (finished units are kept, the interrupted "
              f"one resumes from its last checkpoint): {study_dir}", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
