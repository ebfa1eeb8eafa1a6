"""Evaluate a trained segmenter on a VOC-layout split: mIoU (whole-split confusion matrix), pixel
accuracy, mean class accuracy, per-class IoU; optional palette PNG predictions.

    python tools/eval_seg.py --checkpoint runs/f4 --data-root ~/data --output runs/f4/eval
    python tools/eval_seg.py --checkpoint runs/f4/checkpoints/best.safetensors --data-root ~/data \\
        --save-predictions runs/f4/pred --flip
    torchrun --nproc_per_node=8 tools/eval_seg.py --checkpoint runs/f4 --data-root ~/data

--checkpoint takes a run folder (its best checkpoint, else last, and its config supply the
model) or a weights file (its metadata names the encoder; --encoder overrides).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="run folder or .safetensors weights file")
    parser.add_argument("--data-root", help="folder holding VOCdevkit (default: the run's data root)")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the run's val split)")
    parser.add_argument("--output", help="folder for metrics.json (default: print only)")
    parser.add_argument("--save-predictions", metavar="DIR", help="write one palette PNG per image id")
    parser.add_argument("--flip", action="store_true", help="add horizontal-flip test-time augmentation")
    parser.add_argument("--encoder", help="encoder name, when the weights file's metadata lacks it")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch and process")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=["auto", "none", "bf16", "fp16"], default=None)
    parser.add_argument("--force", action="store_true", help="refill an --output or --save-predictions folder an earlier "
                                                             "eval_seg.py filled (only if it holds nothing else)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


import repeatseg
from repeatseg.cli import fail
from repeatseg.config import ConfigError, SegConfig, load_config, shows_bars
from repeatseg.engine import checkpoint as ckpt
from repeatseg.engine import distributed
from repeatseg.engine.seg import evaluate, prediction_writer, segmentation_root, val_loader_for
from repeatseg.errors import RepeatsegError
from repeatseg.metrics import format_table
from repeatseg.outputs import check_owned_folder, fill_owned_folder


def run_config(weights: Path) -> SegConfig:
    """The config of the run a checkpoint belongs to, or the defaults."""
    config = weights.parent.parent / "config.yaml"
    return load_config(SegConfig, [config]) if config.is_file() else SegConfig()


def main(args: argparse.Namespace) -> int:
    try:
        model, metadata = repeatseg.load_segmenter(args.checkpoint, args.encoder)
        weights, encoder, classes = Path(metadata["checkpoint"]), metadata["encoder"], model.segmentation_head[0].out_channels
        ckpt.check_against_manifest(weights)
        cfg = run_config(weights)
        root = args.data_root or segmentation_root(cfg)
        if not root:
            raise ConfigError("no data root: pass --data-root")
        if args.output:  # before anything is evaluated
            if args.save_predictions and Path(args.output).resolve() == Path(args.save_predictions).resolve():
                raise ConfigError(f"--output and --save-predictions are both {args.output}: give two folders")
            check_owned_folder(args.output, "eval", args.force, "--output", dataset=root)
        dist = distributed.setup(args.device or cfg.train.device)
    except RepeatsegError as error:
        return fail(error)
    try:
        model.to(dist.device)
        loader = val_loader_for(Path(root), args.split or cfg.data.val_split, dist,
                                args.batch_size or cfg.train.eval_batch_size,
                                cfg.data.workers if args.workers is None else args.workers, class_names=cfg.data.classes,
                                max_pixels=cfg.train.eval_max_pixels)
        if loader.dataset.num_classes != classes:
            raise ConfigError(f"the model predicts {classes} classes but {loader.dataset.voc_root} has "
                              f"{loader.dataset.num_classes} ({', '.join(loader.dataset.class_names[:5])}, ...)")
        writer = (prediction_writer(loader.dataset, args.save_predictions, args.force, take=dist.is_main)
                  if args.save_predictions else None)
        if args.output and dist.is_main:
            fill_owned_folder(args.output, "eval", ["metrics.json"], checkpoint=str(weights))
        if dist.is_main:
            trained = f", epoch {metadata['epoch']}" if metadata.get("epoch") else ""
            print(f"evaluating {weights} ({encoder}{trained}) on split {loader.dataset.split!r} of "
                  f"{loader.dataset.voc_root}: {len(loader.dataset)} images{', with flip' if args.flip else ''}",
                  file=sys.stderr, flush=True)
        metrics = evaluate(model, loader, dist.device, classes, args.amp or cfg.train.amp, channels_last=False,
                           flip=args.flip, on_prediction=writer, progress=dist.is_main and shows_bars("bar"))
        if dist.is_main:
            summary = dict(metrics, encoder=encoder, checkpoint=str(weights), split=loader.dataset.split,
                           images=len(loader.dataset), flip=args.flip)
            if args.output:
                ckpt.write_json(Path(args.output) / "metrics.json", summary)
    except RepeatsegError as error:
        return fail(error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    if dist.is_main:
        print(format_table(metrics))
        if not args.output:
            print(json.dumps({k: summary[k] for k in ("miou", "pixel_acc", "mean_class_acc")}))
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
