"""Pretrain an encoder as an ImageNet classifier (any repeatseg timm model), with the same engine,
run folder and flags as train_seg.py.

    python tools/train_cls.py --model repeat_resnet18_f4 --data-root ~/data/imagenet --output runs/cls_f4
    torchrun --nproc_per_node=8 tools/train_cls.py --config configs/cls/imagenet_r18.yaml --model dense_resnet18_w4 \\
        --data-root ~/data/imagenet --output runs/cls_d4
    python tools/train_cls.py --resume runs/cls_f4
    python tools/export_encoder.py runs/cls_f4 --output weights/repeat_r18_f4-imagenet.safetensors
"""

from __future__ import annotations

import argparse

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool
from _common import add_common_arguments

FLAGS = {"model": "model.name", "num_classes": "model.num_classes", "val_labels": "data.val_labels",
         "image_size": "data.image_size"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--model", help="timm model name, e.g. repeat_resnet18_f4 (or repeat_resnet18_f4_b16)")
    parser.add_argument("--num-classes", type=int, help="classes in train/ (default: the number of class folders)")
    parser.add_argument("--val-labels", help="labels for a flat val/ folder: '<file> <wnid>' lines")
    parser.add_argument("--image-size", type=int, help="train crop and eval size (default 224)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


import repeatseg  # noqa: F401  (registers the models)
from repeatseg.cli import run_training
from repeatseg.config import ClsConfig
from repeatseg.engine.cls import train_classification


def report(metrics: dict) -> str:
    return f"top-1 {100 * metrics['top1']:.2f}%  top-5 {100 * metrics['top5']:.2f}%"


def main(args: argparse.Namespace) -> int:
    return run_training(args, ClsConfig, FLAGS, train_classification, report,
                        default_output=lambda cfg: f"runs/cls_{cfg.model.name}")


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
