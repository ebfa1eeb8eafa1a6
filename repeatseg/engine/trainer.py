"""The one training loop (segmentation now, classification later): AMP, DDP, checkpoints, resume.

``Trainer.fit`` runs epochs until the iteration budget is spent. After every epoch it evaluates
(every ``eval_every`` epochs and at the end) and commits a checkpoint (``checkpoints/last.*`` and,
when the primary metric improves, ``best.safetensors``) as one unit, refusing non-finite weights.
Resuming verifies the checkpoint, cuts ``metrics.jsonl`` back to it and continues with the same
data order and augmentation (both are seeded by epoch), so on CPU a resumed run ends with the
same weights as an uninterrupted one, however it was killed.

A changed schedule length on resume (``--resume RUN --epochs N``) is followed as if the run had
been planned with the new length from the start: from the current step on, the lr is the new
schedule's (a finished poly or cosine run restarts at the lr the longer schedule has at this step,
then decays to its new end). ``config.yaml`` is updated and records the change under
``provenance.schedule_changes``. A length shorter than the steps already trained is refused.

With ``train.ema_decay`` an exponential moving average of the weights (timm's ``ModelEmaV3``,
parameters and BatchNorm buffers, its decay warmed up as ``1 - (1 + step)^-3/4`` up to the cap) is
the model the run stands for: it is evaluated, and ``last``/``best.safetensors`` hold it, so every
reader of a run (eval_seg, the study's hand-off, fold and export) sees the weights the metrics
measured. The raw training weights travel in ``last.state.pt`` for the resume.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.profiler import record_function
from tqdm import tqdm

from ..config import effective_log_mode, fixed_values, load_config, save_config
from ..errors import ConfigError, MissingFileError, NonFiniteLossError, OutputExistsError, WriteError  # noqa: F401  (re-exported)
from ..files import marker_kind, non_finite_keys, weights_bytes, write_marker
from ..layers import default_regularization_weight, regularization_loss, regularized_layers, sharing_diagnostics
from ..outputs import enclosing_dataset
from . import checkpoint as ckpt
from .distributed import DistInfo, barrier, broadcast_flag, mean_over_ranks
from .loggers import RunLog, check_loggers
from .optim import build_optimizer, build_scheduler

# Labels of the loop's phases in a torch.profiler trace (tools/time_units.py --profile adds them up):
# an epoch's loop holds data ... log; evaluation and checkpoints follow it.
PHASES = {name: f"repeatseg.{name}" for name in ("epoch", "data", "forward", "backward", "optimizer", "log",
                                                  "evaluate", "checkpoint")}
EMA_WARMUP_POWER = 3 / 4  # ModelEmaV3's warmup for runs of thousands of steps, not millions (its docstring)


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed
    best_metric: float = -math.inf
    best_epoch: int = -1
    history: list = field(default_factory=list)  # per-epoch evaluation records


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. ``auto`` is bf16 on CUDA and fp32 elsewhere; an explicit
    ``bf16``/``fp16`` applies on any device (CPU autocast runs both)."""
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "none"
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def start_run(run_dir: Path, resume: bool, task: str = "train", is_main: bool = True) -> None:
    """Refuse to overwrite a run or a folder that is not one, or to resume a run that is not there.

    A folder is a run folder only if it carries the run marker (``repeatseg.files.MARKER``, written
    by ``begin_run``) or, from before markers, a checkpoint: a folder of other files is never
    written into, whatever their names, nor one inside a dataset. A run folder of ours that stopped
    before its first checkpoint holds no run: it may start again. Only rank 0 (``is_main``) checks."""
    run_dir = Path(run_dir)
    if not is_main:
        return
    if resume:
        if not ckpt.committed(run_dir / "checkpoints"):
            hint = " (its run stopped before its first checkpoint: start it again without --resume)" \
                if marker_kind(run_dir) == "run" else ""
            raise MissingFileError(f"--resume {run_dir}: no checkpoint to resume from{hint}")
        if marker_kind(run_dir) is None:  # a run from before markers: adopted
            write_marker(run_dir, "run", task=task)
        return
    if ckpt.committed(run_dir / "checkpoints"):
        raise OutputExistsError(f"{run_dir} already holds a run: use --resume {run_dir} or another --output")
    dataset = enclosing_dataset(run_dir)
    if dataset is not None:
        raise OutputExistsError(f"{run_dir} is inside the dataset {dataset}: choose an --output outside it")
    kind = marker_kind(run_dir)
    if kind not in (None, "run"):
        raise OutputExistsError(f"{run_dir} is a repeatseg {kind} folder, not a run folder: choose another --output")
    own = kind == "run" or _aborted_before_markers(run_dir)
    entries = ckpt.foreign_entries(run_dir) if own else ckpt.folder_entries(run_dir)
    if entries:
        what = "holds files a run does not write" if own else "is not empty and not a repeatseg run folder"
        raise OutputExistsError(f"{run_dir} {what} ({', '.join(entries[:5])}): nothing was written there; choose "
                              "another --output")
    run_dir.mkdir(parents=True, exist_ok=True)


def begin_run(run_dir: Path, cfg, task: str) -> None:
    """The first files a fresh run writes (after ``start_run`` accepted the folder and the model
    was built): the run marker, then ``config.yaml``."""
    if marker_kind(run_dir) is None:  # ``trains``: what config.yaml must still say when the run is resumed
        write_marker(run_dir, "run", task=task, trains=json.loads(json.dumps(fixed_values(cfg))))
    save_config(cfg, Path(run_dir) / "config.yaml")


def _aborted_before_markers(run_dir: Path) -> bool:
    """A run folder written before markers existed whose run stopped before its first checkpoint:
    no ``metrics.json``, and a ``config.yaml`` that names this folder as its ``output`` and carries
    ``provenance``, as only the training tools write it."""
    import yaml

    if (run_dir / "metrics.json").exists() or not (run_dir / "config.yaml").is_file():
        return False
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        return (isinstance(saved, dict) and "provenance" in saved and saved.get("output") is not None
                and Path(saved["output"]).resolve() == run_dir.resolve())
    except (OSError, ValueError, yaml.YAMLError):
        return False


def schedule_length(schedule_cfg, steps_per_epoch: int | None, default: dict) -> tuple[int | None, int | None]:
    """(optimiser steps, epochs) of a schedule, from ``epochs`` or ``iters`` (not both), else from
    the task's ``default`` (``{"iters": N}`` or ``{"epochs": N}``); the last epoch may be partial.
    None where ``steps_per_epoch`` is needed and unknown (the study's plan, before the data exist)."""
    epochs, iters = schedule_cfg.epochs, schedule_cfg.iters
    if epochs is not None and iters is not None:
        raise ConfigError("give exactly one of schedule.epochs (--epochs) and schedule.iters (--iters), not both")
    if epochs is None and iters is None:
        epochs, iters = default.get("epochs"), default.get("iters")
    if iters is not None:
        return iters, None if steps_per_epoch is None else math.ceil(iters / steps_per_epoch)
    return None if steps_per_epoch is None else epochs * steps_per_epoch, epochs


def total_steps(schedule_cfg, steps_per_epoch: int, default: dict) -> int:
    """The schedule's length in optimiser steps (``schedule_length``)."""
    return schedule_length(schedule_cfg, steps_per_epoch, default)[0]


def evaluates_after(epoch: int, total_epochs: int, eval_every: int) -> bool:
    """Whether a run evaluates after ``epoch`` (1-based) of ``total_epochs``: every ``eval_every``
    epochs and after the last."""
    return epoch % eval_every == 0 or epoch >= total_epochs


def evaluations(total_epochs: int, eval_every: int) -> int:
    """How many times a run of ``total_epochs`` evaluates (``evaluates_after``)."""
    return sum(evaluates_after(epoch, total_epochs, eval_every) for epoch in range(1, total_epochs + 1))


def prepare_model(model: nn.Module, train_cfg, dist: DistInfo) -> tuple[nn.Module, nn.Module]:
    """(bare model on the device, the model the step calls): SyncBN + DDP + compile as configured.
    SyncBatchNorm needs CUDA; a CPU (gloo) run keeps per-process BN statistics."""
    cuda = dist.device.type == "cuda"
    if cuda and dist.distributed and train_cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(dist.device)
    if uses_channels_last(train_cfg, dist):
        model = model.to(memory_format=torch.channels_last)
    train_model = model
    if dist.distributed:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index] if cuda else None)
    if train_cfg.compile:
        train_model = torch.compile(train_model)
    return model, train_model


def uses_channels_last(train_cfg, dist: DistInfo) -> bool:
    """``train.channels_last``: null means on CUDA only; true or false applies on any device."""
    return dist.device.type == "cuda" if train_cfg.channels_last is None else train_cfg.channels_last


def build_trainer(model: nn.Module, cfg, dist: DistInfo, run_dir: Path, train_loader, *, prepare_batch: Callable,
                  loss_fn: Callable, evaluate: Callable, primary_metric: str, metadata: dict, default_length: dict,
                  resume: bool = False, preview: Callable | None = None, about: list[str] = ()) -> "Trainer":
    """Everything a task shares: device/DDP/compile, optimiser and schedule from the config,
    the Trainer, and (when ``resume``) the state of the run's last checkpoint. ``about``: lines
    the task adds to the start banner (its data, what the encoder weights loaded)."""
    model, train_model = prepare_model(model, cfg.train, dist)
    optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size)
    steps = total_steps(cfg.schedule, len(train_loader), default_length)
    trainer = Trainer(
        model=model, train_model=train_model, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.schedule, steps, len(train_loader)), train_loader=train_loader,
        prepare_batch=prepare_batch, loss_fn=loss_fn, evaluate=evaluate, run_dir=run_dir, dist=dist,
        total_steps=steps, amp=cfg.train.amp, eval_every=cfg.train.eval_every, log_every=cfg.train.log_every,
        log_mode=cfg.train.log_mode, primary_metric=primary_metric, metadata=metadata,
        regularization_weight=cfg.optim.regularization_weight, clip_grad_norm=cfg.optim.clip_grad_norm,
        loggers=cfg.train.loggers, preview=preview, ema_decay=cfg.train.ema_decay,
    )
    if resume:
        trainer.resume()
        if trainer.schedule_change and dist.is_main:
            record_schedule_change(run_dir, cfg, trainer.schedule_change)
    elif dist.is_main:
        ckpt.discard_aborted(run_dir)
    trainer.about = [*about, f"device {dist.device} x {dist.world_size} process(es), {torch.get_num_threads()} "
                             f"thread(s), {cfg.data.workers} loader worker(s) per process, "
                             f"{str(trainer.amp_dtype or torch.float32).removeprefix('torch.')}"]
    warmup = cfg.schedule.warmup_iters
    if warmup and steps < warmup and not trainer.finished_before_resume:
        trainer.warn(f"the schedule ends after {steps} steps, before its {warmup} warmup steps do "
                     f"(schedule.warmup_iters): the lr never reaches optim.lr {cfg.optim.lr:g}; give --iters above "
                     f"{warmup}, or --set schedule.warmup_iters=N with N well below {steps}")
    return trainer


def run_to_end(trainer: "Trainer", **summary) -> dict:
    """Train to the end of the schedule and write ``metrics.json``; returns the final evaluation.
    A resumed run that had already finished is left as it is: it says so and returns its summary
    (``--epochs``/``--iters`` longer than the run continue it instead). One that finished its steps
    but was stopped before writing its summary is evaluated again and the summary written."""
    summary_path = trainer.run_dir / "metrics.json"
    if trainer.finished_before_resume:
        if summary_path.is_file():
            trainer.say(f"{trainer.run_dir} already finished its {trainer.total_steps} steps: nothing to do, nothing "
                        "changed (give a longer --epochs/--iters to train on)")
            return json.loads(summary_path.read_text())
        final = trainer.evaluate(trainer.evaluated_model)
    else:
        final = trainer.fit()
    trainer.write_summary(final, **summary)
    return final


def record_schedule_change(run_dir: Path, cfg, change: dict) -> None:
    """Write the new schedule length into the run's ``config.yaml`` (only that: other flags given
    with ``--resume`` apply to this invocation alone) and list the change in its provenance."""
    saved = load_config(type(cfg), [Path(run_dir) / "config.yaml"])
    saved.schedule.epochs, saved.schedule.iters = cfg.schedule.epochs, cfg.schedule.iters
    changes = saved.provenance.setdefault("schedule_changes", [])
    if change not in changes:
        changes.append(change)
    save_config(saved, Path(run_dir) / "config.yaml")


class Trainer:
    """Args:
        model: the bare model (its state_dict is what checkpoints hold).
        train_model: what the step calls (DDP- and/or compile-wrapped ``model``).
        prepare_batch: batch from the loader -> (inputs, targets) on the device.
        evaluate: model -> metrics dict (reduced over ranks); ``primary_metric`` picks "best".
        total_steps: the schedule's length in optimiser steps.
        metadata: stored in every weights file (encoder name, classes, ...).
        regularization_weight: weight of the model's regularisation term in the loss (None: what
            its layers ask for; 0 or a model without a term: none).
        clip_grad_norm: clip the global gradient norm to this before each step (None: no clipping).
        loggers: where records go besides ``metrics.jsonl`` (``repeatseg.engine.loggers``).
        preview: model -> {tag: uint8 (H, W, 3) image}, called after each evaluation when a logger
            shows images (validation predictions beside their ground truth).
        ema_decay: the cap of the weights' moving average that is evaluated and saved (module
            docstring); None: the weights themselves.
    """

    def __init__(
        self, *, model: nn.Module, train_model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
        train_loader, prepare_batch: Callable, loss_fn: Callable, evaluate: Callable[[nn.Module], dict],
        run_dir: str | Path, dist: DistInfo, total_steps: int, amp: str = "none", eval_every: int = 1,
        log_every: int = 20, log_mode: str = "bar", primary_metric: str = "miou", metadata: dict | None = None,
        regularization_weight: float | None = None, clip_grad_norm: float | None = None,
        loggers: list[str] | tuple[str, ...] = ("jsonl",), preview: Callable | None = None,
        ema_decay: float | None = None,
    ):
        self.model, self.train_model = model, train_model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_loader, self.prepare_batch, self.loss_fn, self.evaluate = train_loader, prepare_batch, loss_fn, evaluate
        self.run_dir, self.dist = Path(run_dir), dist
        self.total_steps, self.eval_every, self.log_every = total_steps, eval_every, log_every
        self.log_mode = effective_log_mode(log_mode)  # bar: plain lines when stderr is not a terminal
        self.primary_metric, self.metadata = primary_metric, dict(metadata or {})
        self.amp_dtype = autocast_dtype(amp, dist.device)
        self.scaler = torch.amp.GradScaler(dist.device.type, enabled=self.amp_dtype == torch.float16)
        self.clip_grad_norm = clip_grad_norm
        check_loggers(loggers)
        self.loggers, self.preview = tuple(loggers), preview
        self.run_log: RunLog | None = None  # opened by fit(), once the step it continues from is known
        self.progress = Progress()
        self.steps_per_epoch = len(train_loader)
        self.total_epochs = math.ceil(total_steps / self.steps_per_epoch)
        self.throughput: list[float] = []
        self.regularized = regularized_layers(model)
        self.ema = None if ema_decay is None else ModelEmaV3(model, decay=ema_decay, use_warmup=True,
                                                             warmup_power=EMA_WARMUP_POWER)
        self.regularization_weight = (default_regularization_weight(model) if regularization_weight is None
                                      else regularization_weight)
        self.about: list[str] = []  # the task's lines of the start banner (build_trainer)
        self.schedule_change: dict | None = None  # set by resume() when the length changed
        self.finished_before_resume = False  # set by resume(): the checkpoint is the end of this schedule

    # ----------------------------------------------------------------------------- files
    @property
    def evaluated_model(self) -> nn.Module:
        """The model the run stands for: the moving average with ``ema_decay``, else the model."""
        return self.model if self.ema is None else self.ema.module

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / ckpt.CHECKPOINT_DIR

    def log(self, record: dict) -> None:
        if self.run_log is not None:
            self.run_log.write(record)

    def say(self, text: str) -> None:
        if self.dist.is_main and self.log_mode != "quiet":
            tqdm.write(text, file=sys.stderr)

    def warn(self, text: str) -> None:
        """A warning, shown whatever the log mode (rank 0)."""
        if self.dist.is_main:
            tqdm.write(f"warning: {text}", file=sys.stderr)

    def banner(self) -> str:
        """What the run is about to do: schedule, evaluations, model size and the task's lines."""
        from ..accounting import count_storage

        storage = count_storage(self.model)
        left = self.total_steps - self.progress.step
        start = f", from step {self.progress.step} (epoch {self.progress.epoch})" if self.progress.step else ""
        evaluated = evaluations(self.total_epochs, self.eval_every) - sum(
            evaluates_after(epoch, self.total_epochs, self.eval_every) for epoch in range(1, self.progress.epoch + 1))
        lines = [f"training {left} of {self.total_steps} steps{start}: {self.total_epochs} epochs of "
                 f"{self.steps_per_epoch} steps, {evaluated} evaluation(s) to come (every {self.eval_every} epochs and "
                 "after the last)",
                 f"model: {storage['trainable_params']:,} trainable parameters; stored {storage['stored_floats']:,} "
                 f"floats + {storage['mask_bits']:,} mask bits",
                 *self.about]
        return "\n  ".join(lines)

    def _checkpoint_note(self) -> str:
        """What a stopped run leaves: its last good checkpoint, or none if it stopped before the first."""
        if ckpt.committed(self.checkpoint_dir):
            return f"The last good checkpoint in {self.checkpoint_dir} is intact (--resume continues from it)"
        return (f"No checkpoint was written (it stopped before the first one), so there is nothing to resume: "
                f"start {self.run_dir} again with other settings")

    def save(self, best: bool) -> None:
        """Commit ``last`` (weights + state) and, if ``best``, ``best.safetensors`` as one checkpoint.
        Non-finite weights are refused on every rank, so a diverged run never replaces a good checkpoint."""
        state_dict = self.evaluated_model.state_dict()
        bad = non_finite_keys(state_dict) or (self.ema is not None and non_finite_keys(self.model.state_dict()))
        if bad:
            raise NonFiniteLossError(
                f"non-finite weights after step {self.progress.step} (epoch {self.progress.epoch}) in "
                f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}; not saved. {self._checkpoint_note()}: "
                "lower the lr, add warmup, or try --amp bf16 instead of fp16.")
        if not self.dist.is_main:
            return
        weights = weights_bytes(state_dict, dict(self.metadata, epoch=self.progress.epoch, step=self.progress.step))
        files = {ckpt.WEIGHTS: weights, ckpt.STATE: ckpt.state_bytes({
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": vars(self.progress),
            "rng": torch.get_rng_state(),
            "total_steps": self.total_steps,
            **({} if self.ema is None else {"train_weights": self.model.state_dict()}),
        })}
        if best:
            files[ckpt.BEST] = weights
        metrics = self.run_dir / "metrics.jsonl"
        ckpt.commit(self.checkpoint_dir, files, {
            "epoch": self.progress.epoch, "step": self.progress.step, "total_steps": self.total_steps,
            "metrics_jsonl_bytes": metrics.stat().st_size if metrics.is_file() else 0,
        })

    def resume(self) -> None:
        """Load ``last`` (weights, optimiser, scheduler, scaler, progress, RNG) after finishing or
        discarding an interrupted checkpoint write and verifying every file against the manifest;
        ``metrics.jsonl`` is cut back to the records the checkpoint had seen."""
        if self.dist.is_main:
            ckpt.recover(self.run_dir)
        barrier()
        manifest = ckpt.verify(self.checkpoint_dir)
        weights_path = self.checkpoint_dir / ckpt.WEIGHTS
        weights = ckpt.read_weights(weights_path)
        state = ckpt.load_state(self.checkpoint_dir / ckpt.STATE)
        if self.ema is not None and "train_weights" not in state:
            raise ckpt.CheckpointError(f"{self.checkpoint_dir} holds no moving average of the weights: the run was "
                                       "trained without train.ema_decay")
        try:
            self.evaluated_model.load_state_dict(weights)
            if self.ema is not None:
                self.model.load_state_dict(state["train_weights"])
        except RuntimeError as error:
            raise ckpt.CheckpointError(f"{weights_path} does not fit this run's model: "
                                       f"{str(error).splitlines()[0]}") from error
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        torch.set_rng_state(state["rng"])
        if manifest is not None and self.dist.is_main:
            ckpt.truncate(self.run_dir / "metrics.jsonl", manifest["metrics_jsonl_bytes"])
        self.say(f"resumed from {self.checkpoint_dir} after epoch {self.progress.epoch} "
                 f"(step {self.progress.step}/{self.total_steps})")
        self.schedule_change = self._follow_schedule_length(state.get("total_steps", state["scheduler"].get("t_initial")))
        self.finished_before_resume = self.progress.step >= self.total_steps

    def _follow_schedule_length(self, saved_total: int | None) -> dict | None:
        """Apply a schedule length that differs from the checkpoint's (see the module docstring)."""
        if saved_total is None or saved_total == self.total_steps:
            return None
        if self.total_steps < self.progress.step:
            raise ConfigError(f"{self.run_dir} has already trained {self.progress.step} steps ({self.progress.epoch} "
                              f"epochs); a schedule of {self.total_steps} steps would have ended before that. "
                              f"Give a longer --epochs/--iters, or none to keep {saved_total} steps.")
        if hasattr(self.scheduler, "t_initial"):  # poly and cosine; multistep's milestones do not depend on it
            self.scheduler.t_initial = self.total_steps
        self.scheduler.step_update(self.progress.step)
        self.say(f"schedule length changed from {saved_total} to {self.total_steps} steps at step "
                 f"{self.progress.step}: lr now {self.optimizer.param_groups[0]['lr']:.3e}")
        return {"at_step": self.progress.step, "from_steps": saved_total, "to_steps": self.total_steps}

    # ----------------------------------------------------------------------------- loop
    def fit(self) -> dict:
        """Train to the end of the schedule; returns the final evaluation."""
        final: dict = self.progress.history[-1]["val"] if self.progress.history else {}
        self.run_log = RunLog(self.run_dir, self.loggers, enabled=self.dist.is_main, start_step=self.progress.step)
        if self.dist.is_main and self.log_mode != "quiet":
            self.say(self.banner())
        try:
            while self.progress.step < self.total_steps:
                final = self._train_and_evaluate_epoch(final)
        finally:
            self.run_log.close()
            self.run_log = None
        return final

    def _train_and_evaluate_epoch(self, final: dict) -> dict:
        """One epoch, its evaluation when one is due, and its checkpoint; returns the latest evaluation."""
        epoch = self.progress.epoch
        with record_function(PHASES["epoch"]):
            self.train_one_epoch(epoch)
        self.progress.epoch += 1
        done = self.progress.step >= self.total_steps
        improved = False
        if evaluates_after(self.progress.epoch, self.progress.epoch if done else self.total_epochs, self.eval_every):
            with record_function(PHASES["evaluate"]):
                final = self.evaluate(self.evaluated_model)
            record = {"epoch": self.progress.epoch, "step": self.progress.step,
                      "val": {k: v for k, v in final.items() if k != "confusion_matrix"}}
            self.progress.history.append(record)
            self.log(record)
            if self.preview is not None and self.run_log.wants_images:
                self.run_log.images(self.progress.step, self.preview(self.evaluated_model))
            score = final[self.primary_metric]
            improved = score > self.progress.best_metric
            if improved:
                self.progress.best_metric, self.progress.best_epoch = score, self.progress.epoch
            self.say(f"epoch {self.progress.epoch}/{self.total_epochs}: {self.primary_metric} "
                     f"{100 * score:.2f} (best {100 * self.progress.best_metric:.2f} at epoch {self.progress.best_epoch})")
        with record_function(PHASES["checkpoint"]):
            self.save(best=improved)
        return final

    def write_summary(self, final: dict, **extra) -> None:
        """``metrics.json``: the final evaluation, progress, best epoch, median training images/s, the
        intra-op thread count it ran at and ``sharing``: whether the sharing layers' learnable parts
        moved (``repeatseg.layers.sharing_diagnostics``, of the final weights)."""
        if not self.dist.is_main:
            return
        summary = dict(final, **extra, epochs=self.progress.epoch, steps=self.progress.step,
                       **{f"best_{self.primary_metric}": self.progress.best_metric}, best_epoch=self.progress.best_epoch,
                       train_images_per_s=self._median_throughput(), threads=torch.get_num_threads(),
                       sharing=sharing_diagnostics(self.evaluated_model))
        ckpt.write_json(self.run_dir / "metrics.json", summary)

    def _median_throughput(self) -> float | None:
        """Median training images/s of this invocation's log windows, else of those ``metrics.jsonl``
        recorded (a run resumed only to write its summary trained nothing itself)."""
        speeds = list(self.throughput)
        path = self.run_dir / "metrics.jsonl"
        if not speeds and path.is_file():
            records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
            speeds = [r["images_per_s"] for r in records if "images_per_s" in r]
        return float(np.median(speeds)) if speeds else None

    def train_one_epoch(self, epoch: int) -> None:
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        dataset = self.train_loader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        self.train_model.train()
        steps = min(self.steps_per_epoch, self.total_steps - self.progress.step)
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{self.total_epochs}", unit="it", dynamic_ncols=True,
                   disable=not self.dist.is_main or self.log_mode != "bar", file=sys.stderr)
        window = self._empty_window()
        iterator = iter(self.train_loader)
        for index in range(steps):
            fetch_start = time.perf_counter()
            with record_function(PHASES["data"]):
                batch = next(iterator)
                window["wait"] += time.perf_counter() - fetch_start
                inputs, targets = self.prepare_batch(batch)
            loss = self.step(inputs, targets)
            window["loss"] += loss
            window["regularization"] += self.last_regularization or 0.0
            window["steps"] += 1
            window["images"] += inputs.shape[0] * self.dist.world_size
            bar.update()
            # Every rank must take this branch together: it all-reduces the loss.
            if window["steps"] == self.log_every or index + 1 == steps:
                with record_function(PHASES["log"]):
                    self._log_window(window, epoch, bar)
                window = self._empty_window()
        bar.close()

    @staticmethod
    def _empty_window() -> dict:
        return {"loss": 0.0, "regularization": 0.0, "steps": 0, "images": 0, "wait": 0.0, "start": time.perf_counter()}

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        with record_function(PHASES["forward"]), torch.autocast(
                self.dist.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss = self.loss_fn(self.train_model(inputs), targets)
        loss_value = float(loss.detach())
        self.last_regularization = None
        if self.regularized and self.regularization_weight:
            with record_function(PHASES["forward"]):
                regularization = regularization_loss(self.model, self.regularized)
            self.last_regularization = float(regularization.detach())
            loss = loss + self.regularization_weight * regularization
        if broadcast_flag(not math.isfinite(loss_value), self.dist.device):
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value}) at step {self.progress.step + 1} (epoch {self.progress.epoch + 1}); "
                f"stopped. {self._checkpoint_note()}: lower the lr, add warmup, or try --amp bf16 instead of fp16."
            )
        with record_function(PHASES["backward"]):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        with record_function(PHASES["optimizer"]):
            if self.clip_grad_norm:  # on the true gradients: unscaled first under fp16
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.progress.step += 1
            self.scheduler.step_update(self.progress.step)
            if self.ema is not None:
                self.ema.update(self.model, step=self.progress.step)
        return loss_value

    def _log_window(self, window: dict, epoch: int, bar) -> None:
        elapsed = time.perf_counter() - window["start"]
        loss = mean_over_ranks(window["loss"] / window["steps"], self.dist.device)
        record = {
            "epoch": epoch + 1, "step": self.progress.step, "loss": loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": window["images"] / elapsed, "data_wait_share": window["wait"] / elapsed,
        }
        if self.regularized and self.regularization_weight:  # the penalty itself, before its weight
            record["regularization"] = mean_over_ranks(window["regularization"] / window["steps"], self.dist.device)
        self.throughput.append(record["images_per_s"])
        self.log(record)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}", img_s=f"{record['images_per_s']:.1f}")
        if self.log_mode == "plain" and self.dist.is_main:
            print(f"epoch {epoch + 1} step {self.progress.step}/{self.total_steps} loss {loss:.4f} "
                  f"lr {record['lr']:.3e} {record['images_per_s']:.1f} img/s "
                  f"data wait {100 * record['data_wait_share']:.0f}%", flush=True)
