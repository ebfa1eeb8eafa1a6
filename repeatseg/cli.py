"""What the training tools share on the command line: common flags, their config keys, error exits."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .config import ConfigError, load_config
from .data import DataError
from .engine import distributed
from .engine.trainer import NonFiniteLossError

# flag -> dotted config key, for the flags every training tool has
COMMON_FLAGS = {
    "batch_size": "train.batch_size", "lr": "optim.lr", "workers": "data.workers", "device": "train.device",
    "seed": "train.seed", "amp": "train.amp", "log_mode": "train.log_mode", "output": "output",
    "data_root": "data.root",
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", default=[], help="YAML config file(s), later ones win")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set optim.lr=0.02 (repeatable)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--data-root", help="dataset root folder")
    parser.add_argument("--output", help="run folder")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="schedule length in epochs")
    length.add_argument("--iters", type=int, help="schedule length in iterations")
    parser.add_argument("--batch-size", type=int, help="total batch size over all processes")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--workers", type=int, help="DataLoader workers per process")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], help="mixed precision on CUDA (default bf16)")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument("--log-mode", choices=["bar", "plain", "quiet"], help="progress bar, log lines, or silence")


def flag_overrides(args: argparse.Namespace, flags: dict[str, str]) -> list[dict]:
    """Config updates for the flags that were given (``None`` means not given)."""
    updates = []
    for flag, dotted in {**COMMON_FLAGS, **flags}.items():
        value = getattr(args, flag, None)
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


def run_training(args: argparse.Namespace, config_cls: type, flags: dict[str, str],
                 train: Callable, report: Callable[[dict], str], default_output: Callable[[object], str]) -> int:
    """Resolve the config, join torchrun's group, train, print ``report(metrics)``; exit codes:
    0 done, 2 bad input (config, data, files), 3 non-finite loss. Without ``--output`` the run
    folder is ``default_output(config)`` (e.g. runs/<encoder>)."""
    files = list(args.config)
    if args.resume:
        files = [Path(args.resume) / "config.yaml", *files]
        args.output = args.resume
    try:
        cfg = load_config(config_cls, files, flag_overrides(args, flags), args.set)
        cfg.output = cfg.output or default_output(cfg)
        dist = distributed.setup(cfg.train.device)
    except (ConfigError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        metrics = train(cfg, cfg.output, dist, resume=bool(args.resume))
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except (DataError, ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    if dist.is_main and cfg.train.log_mode != "quiet":
        print(report(metrics))
        print(f"run folder: {cfg.output}")
    return 0
