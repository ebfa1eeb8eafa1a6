"""Convert SBD (benchmark_RELEASE) into VOC's SegmentationClassAug + train_aug.txt (no VOC val id included).

    python tools/convert_sbd.py --sbd-root ~/data/benchmark_RELEASE --data-root ~/data
"""

from __future__ import annotations

import argparse
import sys

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sbd-root", required=True, help="benchmark_RELEASE folder (or its dataset/ folder)")
    parser.add_argument("--data-root", required=True, help="folder holding VOCdevkit (or VOCdevkit, or VOC2012)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


from repeatseg.data import DataError
from repeatseg.data.sbd import convert_sbd


def main(args: argparse.Namespace) -> int:
    try:
        ids = convert_sbd(args.sbd_root, args.data_root, progress=True)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"train_aug: {len(ids)} ids (the standard set has 10,582)")
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
