"""What the training tools share behind the command line: the common flags' config keys, error exits.

Exit codes: 0 done; 2 bad input (a ``repeatseg.RepeatsegError``: config, data, files, a run folder
in use, disk full), with a one-line message naming the file or key and no traceback; 3 non-finite
loss or weights (the last good checkpoint is kept); 130 interrupted (Ctrl-C), with the command that
resumes. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .config import FREE_ON_RESUME, ConfigError, config_differences, fixed_values, load_config, value_differences
from .engine import distributed
from .errors import RepeatsegError, error_message, exit_code
from .files import claim_run_folder, read_marker
from .outputs import enclosing_dataset, is_run_folder
from .threads import apply_threads, oversubscription

# flag -> dotted config key, for the flags every training tool has (defined in tools/_common.py,
# standard library only so that --help answers before torch loads)
COMMON_FLAGS = {
    "batch_size": "train.batch_size", "lr": "optim.lr", "workers": "data.workers", "device": "train.device",
    "seed": "train.seed", "amp": "train.amp", "log_mode": "train.log_mode", "output": "output",
    "data_root": "data.root", "threads": "train.threads",
}


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
    if getattr(args, "logger", None):
        updates.append({"train": {"loggers": list(dict.fromkeys(["jsonl", *args.logger]))}})
    return updates


def fail(error: BaseException | str, code: int = 2) -> int:
    """Print ``error`` as one line on stderr; return the exit code."""
    print(f"error: {error_message(error)}", file=sys.stderr)
    return code


def generate(make: Callable[[], object], output) -> tuple[int, object]:
    """Run a data generator for a tool (``make_digits.py``, ``make_synthetic_*.py``): (0, its
    result), or (2, None) with a one-line message, or (130, None) on Ctrl-C; a failed or
    interrupted generator leaves nothing at ``output`` (``repeatseg.data.generate``)."""
    try:
        return 0, make()
    except RepeatsegError as error:
        return fail(error), None
    except KeyboardInterrupt:
        print(f"interrupted; nothing was written at {output}", file=sys.stderr)
        return 130, None


def check_resume_config(saved_path: Path, saved, cfg) -> None:
    """Refuse flags and ``--set`` values that would change what a resumed run trains (see
    ``repeatseg.config.FREE_ON_RESUME`` for what may change), naming every such key with both values;
    and a ``config.yaml`` edited since the run started (its marker records what it trains with)."""
    started = (read_marker(saved_path.parent) or {}).get("trains")
    if started is not None:
        now = json.loads(json.dumps(fixed_values(saved)))
        edited = value_differences(started, now)
        if edited:
            listed = "; ".join(f"{key} was {old!r}, now {new!r}" for key, old, new in edited[:6])
            raise ConfigError(f"{saved_path} was edited after its run started ({listed}): the checkpoint was trained "
                              "with the first values; restore them, or start a new run with another --output")
    changed = config_differences(saved, cfg, FREE_ON_RESUME)
    if changed:
        listed = "; ".join(f"{key} is {old!r} in {saved_path}, not {new!r}" for key, old, new in changed[:6])
        raise ConfigError(f"{listed}: a resumed run keeps what it was started with (only the schedule length, "
                          "data root, workers, device and logging may change): drop those flags, or start a new "
                          "run with another --output")


def interrupted(run_dir: Path) -> int:
    if (run_dir / "checkpoints" / "last.state.pt").is_file():
        print(f"interrupted; resume with --resume {run_dir}", file=sys.stderr)
    else:
        print(f"interrupted before the first checkpoint; start again with the same command ({run_dir})", file=sys.stderr)
    return 130


def run_training(args: argparse.Namespace, config_cls: type, flags: dict[str, str],
                 train: Callable, report: Callable[[dict], str], default_output: Callable[[object], str]) -> int:
    """Resolve the config, join torchrun's group, claim the run folder, train, print
    ``report(metrics)``; exit codes as in the module docstring. Without ``--output`` the run
    folder is ``default_output(config)`` (e.g. runs/<encoder>)."""
    files = list(args.config)
    if args.resume:
        if not is_run_folder(args.resume):
            return fail(f"--resume {args.resume}: not a repeatseg run folder (it has no run marker and no checkpoint)")
        saved_path = Path(args.resume) / "config.yaml"
        files = [saved_path, *files]
        args.output = args.resume
    try:
        cfg = load_config(config_cls, files, flag_overrides(args, flags), args.set)
        if args.resume:
            check_resume_config(saved_path, load_config(config_cls, [saved_path]), cfg)
        cfg.output = cfg.output or default_output(cfg)
        inside = enclosing_dataset(cfg.output)  # before the claim creates the folder
        if inside is not None:
            raise ConfigError(f"--output {cfg.output} is inside the dataset {inside}: choose a folder outside it")
        dist = distributed.setup(cfg.train.device)
    except RepeatsegError as error:
        return fail(error)
    crowded = oversubscription(1, apply_threads(cfg.train))
    if crowded and dist.is_main:
        print(f"warning: {crowded}", file=sys.stderr)
    try:
        # Rank 0 claims the folder for the whole run: a second training on it is refused.
        with claim_run_folder(cfg.output) if dist.is_main else contextlib.nullcontext():
            metrics = train(cfg, cfg.output, dist, resume=bool(args.resume))
    except RepeatsegError as error:  # anything else is a bug: it keeps its traceback
        return fail(error, exit_code(error))
    except KeyboardInterrupt:
        return interrupted(Path(cfg.output))
    finally:
        distributed.cleanup()
    if dist.is_main and cfg.train.log_mode != "quiet":
        print(report(metrics))
        print(f"run folder: {cfg.output}")
    return 0
