"""Write the deterministic synthetic dataset in the Pascal VOC layout (see repeatseg/data/synthetic.py).

    python tools/make_synthetic_voc.py --output demo_data --num-train 200 --num-val 50 --seed 0
"""

from __future__ import annotations

import argparse
import sys

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder that will hold VOCdevkit/VOC2012")
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-val", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-size", type=int, default=160, help="smallest image side in pixels")
    parser.add_argument("--max-size", type=int, default=256, help="largest image side in pixels")
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(1, 21)),
                        help="object classes to draw (1..20; default all)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


from repeatseg.cli import generate
from repeatseg.data.synthetic import make_synthetic_voc


def main(args: argparse.Namespace) -> int:
    if args.num_train < 1 or args.num_val < 1 or not 32 <= args.min_size <= args.max_size <= 4096 or args.seed < 0:
        print("error: need --num-train >= 1, --num-val >= 1, 32 <= --min-size <= --max-size <= 4096 and --seed >= 0",
              file=sys.stderr)
        return 2
    if not set(args.classes) <= set(range(1, 21)):
        print(f"error: --classes must be within 1..20, got {args.classes}", file=sys.stderr)
        return 2
    code, voc = generate(lambda: make_synthetic_voc(args.output, args.num_train, args.num_val, args.seed, args.min_size,
                                                    args.max_size, classes=tuple(args.classes), progress=True), args.output)
    if code:
        return code
    print(f"wrote {args.num_train} train + {args.num_val} val images to {voc} (or found them there, written with "
          "these arguments)")
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
