"""Export a pretrained encoder (classifier head dropped) for segmentation, as safetensors with metadata.

    python tools/export_encoder.py runs/cls_f4 --output weights/repeat_r18_f4-imagenet.safetensors
    python tools/train_seg.py --encoder repeat_r18_f4 --encoder-weights imagenet --weights-dir weights ...
"""

from __future__ import annotations

import argparse
import json
import sys

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="train_cls.py run folder, or a checkpoint file in one")
    parser.add_argument("--output", required=True, help="output .safetensors path (name it <encoder>-<tag>.safetensors "
                                                        "to load it by tag)")
    parser.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint of a run folder")
    parser.add_argument("--force", action="store_true",
                        help="replace --output if it exists and a repeatseg export wrote it (never any other file)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


from repeatseg.cli import fail
from repeatseg.errors import RepeatsegError
from repeatseg.outputs import check_output_file
from repeatseg.weights import export_encoder


def main(args: argparse.Namespace) -> int:
    try:
        check_output_file(args.output, force=args.force)
        metadata = export_encoder(args.source, args.output, args.which)
    except RepeatsegError as error:
        return fail(error)
    except KeyboardInterrupt:
        print("interrupted (nothing was written)", file=sys.stderr)
        return 130
    print(f"wrote {args.output}")
    print(json.dumps(metadata, indent=2))
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
