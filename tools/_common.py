"""The command-line flags every training tool (train_seg.py, train_cls.py) shares.

Standard library only, like ``_interrupt``: the tools build their parser, and answer ``--help`` and
usage errors, before torch and the package load. What each flag sets in the config is
``repeatseg.cli.COMMON_FLAGS`` (read by ``repeatseg.cli.flag_overrides``).
"""

from __future__ import annotations

import argparse


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
    parser.add_argument("--amp", choices=["auto", "none", "bf16", "fp16"],
                        help="mixed precision (default auto: bf16 on CUDA, fp32 on CPU; bf16/fp16 on any device)")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument("--log-mode", choices=["bar", "plain", "quiet"], help="progress bar, log lines, or silence")
    parser.add_argument("--logger", action="append", choices=["jsonl", "tensorboard"],
                        help="where records go besides metrics.jsonl (always written), repeatable: tensorboard "
                             "writes <output>/tensorboard/ (train.loggers)")
    parser.add_argument("--threads", type=int, help="intra-op threads, part of the recipe (default: $OMP_NUM_THREADS, "
                                                    "else the cores this process may use)")
