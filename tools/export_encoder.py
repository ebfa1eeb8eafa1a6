"""Export a pretrained encoder (classifier head dropped) for segmentation, as safetensors with metadata.

    python tools/export_encoder.py runs/cls_f4 --output weights/repeat_r18_f4-imagenet.safetensors
    python tools/train_seg.py --encoder repeat_r18_f4 --encoder-weights imagenet --weights-dir weights ...
"""

from __future__ import annotations

import argparse
import json
import sys

from repeatseg.weights import export_encoder


def main(args: argparse.Namespace) -> int:
    try:
        metadata = export_encoder(args.source, args.output, args.which)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    print(json.dumps(metadata, indent=2))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="train_cls.py run folder, or a checkpoint file in one")
    parser.add_argument("--output", required=True, help="output .safetensors path (name it <encoder>-<tag>.safetensors "
                                                        "to load it by tag)")
    parser.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint of a run folder")
    sys.exit(main(parser.parse_args()))
