"""Export a pretrained encoder (classifier head dropped) for segmentation, as safetensors with metadata.

    python tools/export_encoder.py runs/cls_f4 --output weights/repeat_r18_f4-imagenet.safetensors
    python tools/train_seg.py --encoder repeat_r18_f4 --encoder-weights imagenet --weights-dir weights ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from repeatseg.cli import fail
from repeatseg.weights import export_encoder


def check_output(output: Path) -> None:
    """Refuse an --output that is a folder, or that lies in a run's checkpoints folder."""
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file name")
    if (output.parent / "last.state.pt").exists():
        raise ValueError(f"--output {output} would write into a run's checkpoints folder; write the export elsewhere")


def main(args: argparse.Namespace) -> int:
    try:
        check_output(Path(args.output))
        metadata = export_encoder(args.source, args.output, args.which)
    except (ValueError, OSError) as error:
        return fail(error)
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
