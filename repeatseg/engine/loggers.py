"""Where a run's records go: ``metrics.jsonl`` always, TensorBoard on request (``train.loggers``).

The trainer hands every record to a ``RunLog``: a training window (``{"epoch", "step", "loss",
"lr", "images_per_s", "data_wait_share", "regularization"?}``) or an evaluation (``{"epoch",
"step", "val": {metric: value, "per_class_iou": {class: value}}}``). ``metrics.jsonl`` is the run's
own record and what resume cuts back to its checkpoint; TensorBoard gets the same numbers as
scalars (``train/<key>``, ``val/<metric>``, ``val/per_class_iou/<class>``) at the record's
optimiser step, plus, at each evaluation, the images the task provides (validation predictions
beside their ground truth) under ``<run>/tensorboard/``.

Resume continues the same curves without duplicated steps: the writer opens the folder with
``purge_step`` = the first step after the checkpoint, so TensorBoard hides whatever a killed run
had logged past it (``metrics.jsonl`` is cut back to the same point).
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

from ..checkpoint_files import TENSORBOARD_DIR
from ..errors import WriteError

LOGGERS = ("jsonl", "tensorboard")
METRICS_JSONL = "metrics.jsonl"


def scalars(record: dict) -> dict[str, float]:
    """TensorBoard tags and values of one record: every number but its epoch and step; a nested
    mapping (per-class IoU) gives one tag per entry. Non-numbers (lists, None) are left out."""
    if "val" in record:
        return _flat(record["val"], "val")
    return _flat({key: value for key, value in record.items() if key not in ("epoch", "step")}, "train")


def _flat(values: dict, prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}/{key}"))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[f"{prefix}/{key}"] = float(value)
    return out


class JsonlSink:
    """One JSON object a line, appended to ``<run>/metrics.jsonl``."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_JSONL

    def write(self, record: dict) -> None:
        try:
            with open(self.path, "a") as out:
                out.write(json.dumps(record) + "\n")
        except OSError as error:  # e.g. disk full: name the file
            raise WriteError(error.errno, f"cannot write {self.path}: {error.strerror}") from error

    def images(self, step: int, images: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TensorboardSink:
    """TensorBoard event files in ``<run>/tensorboard/`` (torch's SummaryWriter). ``purge_step``:
    events a killed run wrote at this step or later are hidden (resume)."""

    def __init__(self, run_dir: Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch's writer needs the tensorboard package
            raise ImportError("train.loggers: tensorboard needs the tensorboard package: "
                              "pip install 'repeatseg[train]'") from error
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge_step)

    def write(self, record: dict) -> None:
        step = int(record["step"])
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def images(self, step: int, images: dict) -> None:
        """``images``: tag -> uint8 array (H, W, 3)."""
        for tag, image in images.items():
            self.writer.add_image(tag, image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def check_loggers(loggers) -> None:
    unknown = [name for name in loggers if name not in LOGGERS]
    if unknown:
        raise ValueError(f"train.loggers: unknown logger {unknown[0]!r}; expected any of {list(LOGGERS)}")


class RunLog:
    """Every sink of a run; only the main process (``enabled``) writes. ``metrics.jsonl`` is
    always written. ``start_step``: the optimiser step the run continues from (0 for a fresh run);
    TensorBoard hides what an earlier attempt had logged after it."""

    def __init__(self, run_dir: str | Path, loggers=("jsonl",), enabled: bool = True, start_step: int = 0):
        check_loggers(loggers)
        self.sinks: list = []
        if not enabled:
            return
        self.sinks.append(JsonlSink(Path(run_dir)))
        if "tensorboard" in loggers:
            self.sinks.append(TensorboardSink(Path(run_dir), purge_step=start_step + 1))

    @property
    def wants_images(self) -> bool:
        return any(isinstance(sink, TensorboardSink) for sink in self.sinks)

    def write(self, record: dict) -> None:
        for sink in self.sinks:
            sink.write(record)

    def images(self, step: int, images: dict) -> None:
        for sink in self.sinks:
            sink.images(step, images)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
