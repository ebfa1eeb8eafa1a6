"""Write a deterministic ImageFolder classification set (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) of
textured-shape classes, so tests and the demo exercise the real reader.

    python tools/make_synthetic_imagenet.py --output demo_cls --classes 10 --per-class 50
"""

from __future__ import annotations

import argparse

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True)
    parser.add_argument("--classes", type=int, default=10, help="number of classes (1..20)")
    parser.add_argument("--per-class", type=int, default=50, help="train images per class")
    parser.add_argument("--val-per-class", type=int, default=10, help="val images per class")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


from repeatseg.cli import generate
from repeatseg.data.synthetic import make_synthetic_imagenet


def main(args: argparse.Namespace) -> int:
    code, _ = generate(lambda: make_synthetic_imagenet(args.output, args.classes, args.per_class, args.val_per_class,
                                                       args.seed, args.size, progress=True), args.output)
    if code:
        return code
    print(f"wrote {args.classes} classes x ({args.per_class} train + {args.val_per_class} val) images to {args.output}")
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
