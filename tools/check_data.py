"""Scan a VOC-layout split and list every problem at once (missing or unreadable files, size
mismatches, mask values outside 0..20 and 255). Exit status 1 if any.

    python tools/check_data.py --data-root ~/data --split train_aug
"""

from __future__ import annotations

import argparse

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="folder holding VOCdevkit (or VOCdevkit, or VOC2012)")
    parser.add_argument("--split", nargs="+", default=["train", "val"], help="split name(s)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


from repeatseg.data import check_split


def main(args: argparse.Namespace) -> int:
    status = 0
    for split in args.split:
        problems = check_split(args.data_root, split)
        if problems:
            status = 1
            print(f"{split}: {len(problems)} problem(s)")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"{split}: ok")
    return status


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
