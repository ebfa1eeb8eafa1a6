"""Export a pretrained encoder for segmentation: a model folder (timm / smp / Hugging Face) or one safetensors file.

    python tools/export_encoder.py runs/cls_f4 --output models/repeat_r18_f4-imagenet
    python tools/export_encoder.py runs/cls_f4 --output weights/repeat_r18_f4-imagenet.safetensors
    python tools/train_seg.py --encoder repeat_r18_f4 --encoder-weights models/repeat_r18_f4-imagenet ...
    python tools/train_seg.py --encoder repeat_r18_f4 --encoder-weights imagenet --weights-dir weights ...

An --output ending in .safetensors (or an existing file) is one file (the head dropped; what the study hands on); any other
is a model folder: config.json, model.safetensors (the classifier, head included) and a README.md
model card, which timm.create_model("local-dir:FOLDER", pretrained=True) loads after import repeatseg,
build_segmenter(..., encoder_weights=FOLDER) starts from, and huggingface_hub uploads as it is.
A train_seg.py run gives its segmenter's folder, which smp.from_pretrained(FOLDER) loads after import repeatseg.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="train_cls.py run folder, or a checkpoint file in one (a train_seg.py run: "
                                       "its segmenter, as a model folder)")
    parser.add_argument("--output", required=True,
                        help="a model folder, or a .safetensors file (name it <encoder>-<tag>.safetensors to load it "
                             "by tag)")
    parser.add_argument("--which", choices=["best", "last"], default="best", help="checkpoint of a run folder")
    parser.add_argument("--force", action="store_true",
                        help="replace --output if a repeatseg export wrote it (never any other file or folder)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


from repeatseg.cli import fail
from repeatseg.errors import RepeatsegError
from repeatseg.outputs import check_output_file
from repeatseg.pretrained import export_model_folder
from repeatseg.weights import export_encoder


def main(args: argparse.Namespace) -> int:
    as_file = str(args.output).endswith(".safetensors") or Path(args.output).is_file()
    try:
        if as_file:
            check_output_file(args.output, force=args.force)
            metadata = export_encoder(args.source, args.output, args.which)
        else:
            metadata = export_model_folder(args.source, args.output, args.which, force=args.force)
    except RepeatsegError as error:
        return fail(error)
    except KeyboardInterrupt:
        print("interrupted (nothing was written)" if as_file else f"interrupted; {args.output} may be incomplete: "
              "export it again with --force", file=sys.stderr)
        return 130
    print(f"wrote {args.output}")
    print(json.dumps(metadata, indent=2))
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
