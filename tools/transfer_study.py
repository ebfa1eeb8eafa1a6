"""Run the paper's Table 3 grid (encoders x seeds, each an ordinary train_seg run) and write the report.

    python tools/transfer_study.py --config configs/study/voc_table3.yaml --output studies/table3 --data-root ~/data
    torchrun --nproc_per_node=8 tools/transfer_study.py --config configs/study/voc_table3.yaml --output studies/table3
    python tools/transfer_study.py --config configs/study/demo.yaml --output studies/demo     # CPU, synthetic
    python tools/transfer_study.py --config configs/study/digits.yaml --output studies/digits # CPU, real digits
    python tools/transfer_study.py --report-only --output studies/table3                      # rebuild the report

Finished units (pretraining per encoder and seed, cells) are skipped and interrupted ones resumed:
run the same command again after a kill.
Writes <output>/report.md, results.csv, results.json and figures/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import repeatseg  # noqa: F401  (registers the encoders)
from repeatseg.config import ConfigError, StudyConfig, load_config
from repeatseg.data import DataError
from repeatseg.engine import distributed
from repeatseg.engine.trainer import NonFiniteLossError
from repeatseg.study import run_study, write_report


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="study YAML (configs/study/*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a study field")
    parser.add_argument("--output", required=True, help="study folder")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from finished cells")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the recipe's)")
    parser.add_argument("--data-root", help="segmentation data root for every cell (adds data.root to seg_sets)")
    return parser


def main(args: argparse.Namespace) -> int:
    study_dir = Path(args.output)
    files = list(args.config)
    if not files and (study_dir / "study.yaml").is_file():
        files = [study_dir / "study.yaml"]
    try:
        if not files:
            raise ConfigError(f"no --config given and no {study_dir / 'study.yaml'} to reuse")
        study = load_config(StudyConfig, files, [{"output": str(study_dir)}], args.set)
        if args.data_root:
            study.seg_sets = [*study.seg_sets, f"data.root={args.data_root}"]
        if args.device:
            study.seg_sets = [*study.seg_sets, f"train.device={args.device}"]
            study.pretrain.sets = [*study.pretrain.sets, f"train.device={args.device}"]
        dist = distributed.setup(args.device or "auto")
    except (ConfigError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if not args.report_only:
            run_study(study, study_dir, dist)
        if dist.is_main:
            rows = write_report(study, study_dir)
            print(f"report: {study_dir / 'report.md'} ({sum(r.n for r in rows)} runs, {len(rows)} encoders)")
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except (ConfigError, DataError, ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
