"""Train a segmenter (the study's U-Net on a repeatseg encoder) on Pascal VOC or the synthetic set.

    python tools/train_seg.py --encoder repeat_r18_f4 --data-root ~/data --output runs/f4
    python tools/train_seg.py --config configs/seg/voc_unet.yaml --encoder dense_r18_w4 --set optim.lr=0.02
    torchrun --nproc_per_node=8 tools/train_seg.py --config configs/seg/voc_unet.yaml --data-root ~/data --output runs/f4
    python tools/train_seg.py --resume runs/f4

Precedence: defaults < --config files < flags < --set. The resolved config is saved as
<output>/config.yaml; --resume reads it back (flags and --set still apply, e.g. --workers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import repeatseg  # noqa: F401  (registers the encoders)
from repeatseg.config import ConfigError, SegConfig, load_config
from repeatseg.data import DataError
from repeatseg.engine import distributed
from repeatseg.engine.seg import train_segmentation
from repeatseg.engine.trainer import NonFiniteLossError
from repeatseg.metrics import format_table

# flag -> dotted config key
FLAGS = {
    "encoder": "model.encoder", "encoder_weights": "model.encoder_weights", "weights_dir": "model.weights_dir",
    "data_root": "data.root", "dataset": "data.dataset", "split": "data.split", "crop_size": "data.crop_size",
    "workers": "data.workers", "batch_size": "train.batch_size", "lr": "optim.lr", "device": "train.device",
    "seed": "train.seed", "amp": "train.amp", "log_mode": "train.log_mode", "output": "output",
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s), later ones win")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set optim.lr=0.02 (repeatable)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--encoder", help="registered encoder name, e.g. repeat_r18_f4 (or repeat_r18_f4_b16)")
    parser.add_argument("--encoder-weights", help="pretrained encoder: a file path or a tag such as imagenet")
    parser.add_argument("--weights-dir", help="folder where weight tags resolve (default $REPEATSEG_WEIGHTS)")
    parser.add_argument("--data-root", help="folder holding VOCdevkit (or VOCdevkit, or VOC2012)")
    parser.add_argument("--dataset", choices=["voc", "synthetic"])
    parser.add_argument("--split", help="training split: train, trainval or train_aug")
    parser.add_argument("--output", help="run folder")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="schedule length in epochs")
    length.add_argument("--iters", type=int, help="schedule length in iterations")
    parser.add_argument("--batch-size", type=int, help="total batch size over all processes")
    parser.add_argument("--crop-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--workers", type=int, help="DataLoader workers per process")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], help="mixed precision on CUDA (default bf16)")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument("--log-mode", choices=["bar", "plain", "quiet"], help="progress bar, log lines, or silence")
    return parser


def flag_overrides(args: argparse.Namespace) -> list[dict]:
    updates = []
    for flag, dotted in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            section, _, key = dotted.rpartition(".")
            updates.append({section: {key: value}} if section else {key: value})
    if args.epochs is not None:
        updates.append({"schedule": {"epochs": args.epochs, "iters": None}})
    if args.iters is not None:
        updates.append({"schedule": {"iters": args.iters, "epochs": None}})
    if args.compile:
        updates.append({"train": {"compile": True}})
    return updates


def main(args: argparse.Namespace) -> int:
    files = list(args.config)
    if args.resume:
        files = [Path(args.resume) / "config.yaml", *files]
        args.output = args.resume
    try:
        cfg = load_config(SegConfig, files, flag_overrides(args), args.set)
        if not cfg.output:
            raise ConfigError("no run folder: pass --output DIR")
        dist = distributed.setup(cfg.train.device)
    except (ConfigError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        metrics = train_segmentation(cfg, cfg.output, dist, resume=bool(args.resume))
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except (DataError, ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    if dist.is_main and cfg.train.log_mode != "quiet":
        print(format_table(metrics))
        print(f"run folder: {cfg.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
