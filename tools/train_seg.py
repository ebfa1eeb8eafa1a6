"""Train a segmenter (the study's U-Net on a repeatseg encoder) on Pascal VOC, any VOC-layout set with its
own classes (ImageSets/Segmentation/classes.txt or data.classes), the digit scenes or the synthetic set.

    python tools/train_seg.py --encoder repeat_r18_f4 --data-root ~/data --output runs/f4
    python tools/train_seg.py --config configs/seg/voc_unet.yaml --encoder dense_r18_w4 --set optim.lr=0.02
    torchrun --nproc_per_node=8 tools/train_seg.py --config configs/seg/voc_unet.yaml --data-root ~/data --output runs/f4
    python tools/train_seg.py --resume runs/f4

Precedence: defaults < --config files < flags < --set. Without --output the run folder is
runs/<encoder>. The resolved config is saved as <output>/config.yaml; --resume reads it back
(flags and --set still apply, e.g. --workers).
"""

from __future__ import annotations

import argparse

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool
from _common import add_common_arguments

FLAGS = {"encoder": "model.encoder", "encoder_weights": "model.encoder_weights", "weights_dir": "model.weights_dir",
         "dataset": "data.dataset", "split": "data.split", "crop_size": "data.crop_size"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--encoder", help="registered encoder name, e.g. repeat_r18_f4 (or repeat_r18_f4_b16)")
    parser.add_argument("--encoder-weights", help="pretrained encoder: a file path or a tag such as imagenet")
    parser.add_argument("--weights-dir", help="folder where weight tags resolve (default $REPEATSEG_WEIGHTS)")
    parser.add_argument("--dataset", choices=["voc", "synthetic", "digits"],
                        help="digits: the real-digit scenes (tools/make_digits.py), written at --data-root if absent")
    parser.add_argument("--split", help="training split: train, trainval or train_aug")
    parser.add_argument("--crop-size", type=int)
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


import repeatseg  # noqa: F401  (registers the encoders)
from repeatseg.cli import run_training
from repeatseg.config import SegConfig
from repeatseg.engine.seg import train_segmentation
from repeatseg.metrics import format_table


def main(args: argparse.Namespace) -> int:
    return run_training(args, SegConfig, FLAGS, train_segmentation, format_table,
                        default_output=lambda cfg: f"runs/{cfg.model.encoder}")


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
