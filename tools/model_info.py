"""Accounting of repeatseg encoders: parameters, storage, MACs, and ratios to the dense model each
is compared with (the dense model of the same width; dense 1x for the compression families).

    python tools/model_info.py --encoder repeat_r18_f4
    python tools/model_info.py --all [--segmenter] [--input-size 512] [--json]
    python tools/model_info.py --encoder rotcnn_c4            # a classification-only model, at 29x29
    python tools/model_info.py --classifiers                  # every one of them (rotcnn_*, Table 4)
"""

from __future__ import annotations

import argparse
import json
import sys

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--encoder", help="a registered encoder name, e.g. repeat_r18_f4")
    which.add_argument("--all", action="store_true", help="every registered encoder, one table")
    which.add_argument("--classifiers", action="store_true",
                       help="every classification-only model (rotcnn_*; MACs on the folded model)")
    parser.add_argument("--segmenter", action="store_true", help="count the whole U-Net, not the encoder alone")
    parser.add_argument("--input-size", type=int, default=None,
                        help="square input side for MACs (default 512; a classifier's own, 29 for rotcnn_*)")
    parser.add_argument("--classes", type=int, default=21, help="segmentation classes, with --segmenter")
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


import repeatseg
from repeatseg.accounting import accounting_table
from repeatseg.classifiers import CLASSIFIERS, is_classifier
from repeatseg.errors import ConfigError


def main(args: argparse.Namespace) -> int:
    names = list(repeatseg.VARIANTS) if args.all else list(CLASSIFIERS) if args.classifiers else [args.encoder]
    try:
        if args.segmenter and any(map(is_classifier, names)):
            raise ConfigError("--segmenter: the classification-only models (rotcnn_*) are not smp encoders")
        stats = [repeatseg.describe(n, args.input_size or (None if is_classifier(n) else 512), args.segmenter,
                                    args.classes) for n in names]
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([s.as_dict() for s in stats], indent=2))
    elif args.all or args.classifiers:
        print(accounting_table(stats))
    else:
        print(stats[0])
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
