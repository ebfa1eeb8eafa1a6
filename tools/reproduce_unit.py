"""Rerun one (encoder, seed) pair of a finished study from its committed configs and compare.

    python tools/reproduce_unit.py --study results/digits --encoder repeat_r18_f4_b4 --seed 0 --output runs/repro
    python tools/reproduce_unit.py --study results/digits --encoder dense_r18_w1_b4 --seed 1 --output runs/repro \
        --data-root demo_data/digits/seg --cls-data-root demo_data/digits

Pretrains the encoder from the pair's pretraining config, exports it and fine-tunes it from the
cell's config, in fresh folders under --output (the study is only read); prints the committed and
the new top-1 and mIoU and their differences, and writes <output>/reproduction.json. Results
reproduce at the recorded thread count on the same kind of machine (repeatseg.study.reproduce):
``machine.same_kind`` says whether the committed cell ran on this kind of CPU (null: not recorded).
"""

from __future__ import annotations

import argparse
import json
import sys

import _interrupt  # noqa: F401  (first: Ctrl-C while the rest imports exits 130, no traceback)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", required=True, help="a finished study folder, e.g. results/digits")
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--output", required=True, help="a new folder for the rerun")
    parser.add_argument("--data-root", help="the cells' data root on this machine (default: the committed one)")
    parser.add_argument("--cls-data-root", help="the pretraining's data root on this machine")
    return parser


def main(args: argparse.Namespace) -> int:
    from repeatseg.study.reproduce import reproduce_pair

    try:
        outcome = reproduce_pair(args.study, args.encoder, args.seed, args.output, args.data_root, args.cls_data_root)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(outcome, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
