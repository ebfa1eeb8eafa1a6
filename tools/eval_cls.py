"""Evaluate a trained classifier (a train_cls.py run folder) on its validation split: top-1, top-5.

    python tools/eval_cls.py --run runs/cls_f4
    python tools/eval_cls.py --run results/rot_digits/pretrain/rotcnn_s_c4/seed0 --which last \\
        --set data.eval_resample=false --output results/rot_digits/pretrain/rotcnn_s_c4/seed0/eval_authors

The model, data and evaluation come from the run's config.yaml; --set changes any of them for this
evaluation (a test protocol, another split, a data root), so one trained model can be measured under
two protocols. --output writes metrics.json (top1, top5, the checkpoint and its sha256, the sets).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a train_cls.py run folder (holds config.yaml and checkpoints/)")
    parser.add_argument("--which", choices=["best", "last"], default="best", help="which checkpoint (default best)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                        help="override a field of the run's config for this evaluation (repeatable)")
    parser.add_argument("--output", help="folder for metrics.json (default: print only)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: the run's)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--force", action="store_true", help="refill an --output folder an earlier eval_cls.py filled")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()


import repeatseg  # noqa: F401  (registers the models)
from repeatseg.cli import fail
from repeatseg.config import ClsConfig, ConfigError, load_config
from repeatseg.engine import checkpoint as ckpt
from repeatseg.engine import distributed
from repeatseg.engine.cls import build_classifier, build_loaders, evaluate
from repeatseg.errors import CheckpointError, RepeatsegError
from repeatseg.outputs import check_owned_folder, fill_owned_folder
from repeatseg.threads import apply_threads
from repeatseg.weights import read_checkpoint, run_checkpoint


def main(args: argparse.Namespace) -> int:
    try:
        run = Path(args.run)
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"{run} has no config.yaml: give a train_cls.py run folder")
        sets = [*args.sets, *([f"train.threads={args.threads}"] if args.threads else [])]
        cfg = load_config(ClsConfig, [run / "config.yaml"], sets=sets)
        weights = run_checkpoint(run, args.which)
        ckpt.check_against_manifest(weights)
        tensors, metadata = read_checkpoint(weights)
        if metadata.get("task") != "classification":
            raise CheckpointError(f"{weights} is not a classification checkpoint (train_cls.py)")
        if args.output:  # before anything is evaluated
            check_owned_folder(args.output, "eval", args.force, "--output", dataset=cfg.data.root)
        apply_threads(cfg.train)
        dist = distributed.setup(args.device or cfg.train.device)
    except RepeatsegError as error:
        return fail(error)
    try:
        _, loader = build_loaders(cfg, dist)
        model = build_classifier(cfg.model.name, cfg.model.num_classes, cfg.model.drop_rate, cfg.model.options)
        try:
            model.load_state_dict(tensors)
        except RuntimeError as error:
            raise CheckpointError(f"{weights} does not fit {cfg.model.name} as its config.yaml builds it: "
                                  f"{str(error).splitlines()[0]} ...") from error
        model.to(dist.device)
        if args.output and dist.is_main:
            fill_owned_folder(args.output, "eval", ["metrics.json"], checkpoint=str(weights))
        metrics = evaluate(model, loader, dist.device, cfg.model.num_classes)
        summary = dict(metrics, model=cfg.model.name, checkpoint=str(weights), sha256=ckpt.sha256_of(weights),
                       which=args.which, epoch=metadata.get("epoch"), split=cfg.data.val_split, images=len(loader.dataset),
                       sets=args.sets)
        if args.output and dist.is_main:
            ckpt.write_json(Path(args.output) / "metrics.json", summary)
    except RepeatsegError as error:
        return fail(error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    if dist.is_main:
        print(json.dumps({k: summary[k] for k in ("model", "top1", "top5", "images", "sets")}))
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
