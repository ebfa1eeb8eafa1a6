"""The one training loop (segmentation now, classification later): AMP, DDP, checkpoints, resume.

``Trainer.fit`` runs epochs until the iteration budget is spent. After every epoch it evaluates
(every ``eval_every`` epochs and at the end), writes ``checkpoints/last.*`` and, when the primary
metric improves, ``checkpoints/best.safetensors``. Resuming reloads ``last`` and continues with
the same data order and augmentation (both are seeded by epoch), so on CPU a resumed run ends with
the same weights as an uninterrupted one.
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
from torch import nn
from tqdm import tqdm

from ..layers import default_regularization_weight, regularization_loss, regularized_layers
from . import checkpoint as ckpt
from .distributed import DistInfo, broadcast_flag, mean_over_ranks
from .optim import build_optimizer, build_scheduler


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is left as it was."""


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed
    best_metric: float = -math.inf
    best_epoch: int = -1
    history: list = field(default_factory=list)  # per-epoch evaluation records


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. AMP is a CUDA feature here; CPU runs in fp32."""
    if device.type != "cuda" or amp == "none":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def start_run(run_dir: Path, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one that is not there."""
    state = Path(run_dir) / "checkpoints" / "last.state.pt"
    if resume and not state.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: no checkpoints/last.state.pt to resume from")
    if not resume and state.exists():
        raise FileExistsError(f"{run_dir} already holds a run: use --resume {run_dir} or another --output")
    Path(run_dir).mkdir(parents=True, exist_ok=True)


def total_steps(schedule_cfg, steps_per_epoch: int, default: dict) -> int:
    """The schedule's length in optimiser steps, from ``epochs`` or ``iters`` (not both), else from
    the task's ``default`` (``{"iters": N}`` or ``{"epochs": N}``)."""
    epochs, iters = schedule_cfg.epochs, schedule_cfg.iters
    if epochs is not None and iters is not None:
        raise ValueError("give exactly one of schedule.epochs (--epochs) and schedule.iters (--iters), not both")
    if epochs is None and iters is None:
        epochs, iters = default.get("epochs"), default.get("iters")
    return iters if iters is not None else epochs * steps_per_epoch


def prepare_model(model: nn.Module, train_cfg, dist: DistInfo) -> tuple[nn.Module, nn.Module]:
    """(bare model on the device, the model the step calls): SyncBN + DDP + compile as configured.
    SyncBatchNorm needs CUDA; a CPU (gloo) run keeps per-process BN statistics."""
    cuda = dist.device.type == "cuda"
    if cuda and dist.distributed and train_cfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(dist.device)
    if cuda and train_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model = model
    if dist.distributed:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index] if cuda else None)
    if train_cfg.compile:
        train_model = torch.compile(train_model)
    return model, train_model


def uses_channels_last(train_cfg, dist: DistInfo) -> bool:
    return dist.device.type == "cuda" and train_cfg.channels_last


def build_trainer(model: nn.Module, cfg, dist: DistInfo, run_dir: Path, train_loader, *, prepare_batch: Callable,
                  loss_fn: Callable, evaluate: Callable, primary_metric: str, metadata: dict, default_length: dict,
                  resume: bool = False) -> "Trainer":
    """Everything a task shares: device/DDP/compile, optimiser and schedule from the config,
    the Trainer, and (when ``resume``) the state of the run's last checkpoint."""
    model, train_model = prepare_model(model, cfg.train, dist)
    optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size)
    steps = total_steps(cfg.schedule, len(train_loader), default_length)
    trainer = Trainer(
        model=model, train_model=train_model, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.schedule, steps, len(train_loader)), train_loader=train_loader,
        prepare_batch=prepare_batch, loss_fn=loss_fn, evaluate=evaluate, run_dir=run_dir, dist=dist,
        total_steps=steps, amp=cfg.train.amp, eval_every=cfg.train.eval_every, log_every=cfg.train.log_every,
        log_mode=cfg.train.log_mode, primary_metric=primary_metric, metadata=metadata,
        regularization_weight=cfg.optim.regularization_weight,
    )
    if resume:
        trainer.resume()
    return trainer


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
    """

    def __init__(
        self, *, model: nn.Module, train_model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
        train_loader, prepare_batch: Callable, loss_fn: Callable, evaluate: Callable[[nn.Module], dict],
        run_dir: str | Path, dist: DistInfo, total_steps: int, amp: str = "none", eval_every: int = 1,
        log_every: int = 20, log_mode: str = "bar", primary_metric: str = "miou", metadata: dict | None = None,
        regularization_weight: float | None = None,
    ):
        self.model, self.train_model = model, train_model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_loader, self.prepare_batch, self.loss_fn, self.evaluate = train_loader, prepare_batch, loss_fn, evaluate
        self.run_dir, self.dist = Path(run_dir), dist
        self.total_steps, self.eval_every, self.log_every, self.log_mode = total_steps, eval_every, log_every, log_mode
        self.primary_metric, self.metadata = primary_metric, dict(metadata or {})
        self.amp_dtype = autocast_dtype(amp, dist.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.progress = Progress()
        self.steps_per_epoch = len(train_loader)
        self.total_epochs = math.ceil(total_steps / self.steps_per_epoch)
        self.throughput: list[float] = []
        self.regularized = regularized_layers(model)
        self.regularization_weight = (default_regularization_weight(model) if regularization_weight is None
                                      else regularization_weight)

    # ----------------------------------------------------------------------------- files
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def log(self, record: dict) -> None:
        if self.dist.is_main:
            with open(self.run_dir / "metrics.jsonl", "a") as out:
                out.write(json.dumps(record) + "\n")

    def say(self, text: str) -> None:
        if self.dist.is_main and self.log_mode != "quiet":
            tqdm.write(text, file=sys.stderr)

    def save(self, best: bool) -> None:
        if not self.dist.is_main:
            return
        meta = dict(self.metadata, epoch=self.progress.epoch, step=self.progress.step)
        state_dict = self.model.state_dict()
        ckpt.save_weights(self.checkpoint_dir / "last.safetensors", state_dict, meta)
        if best:
            ckpt.save_weights(self.checkpoint_dir / "best.safetensors", state_dict, meta)
        ckpt.save_state(self.checkpoint_dir / "last.state.pt", {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": vars(self.progress),
            "rng": torch.get_rng_state(),
        })

    def resume(self) -> None:
        """Load ``last``: weights, optimiser, scheduler, scaler, progress, RNG."""
        state_path = self.checkpoint_dir / "last.state.pt"
        self.model.load_state_dict(ckpt.load_weights(self.checkpoint_dir / "last.safetensors"))
        state = ckpt.load_state(state_path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])
        torch.set_rng_state(state["rng"])
        self.say(f"resumed from {self.checkpoint_dir} after epoch {self.progress.epoch} "
                 f"(step {self.progress.step}/{self.total_steps})")

    # ----------------------------------------------------------------------------- loop
    def fit(self) -> dict:
        """Train to the end of the schedule; returns the final evaluation."""
        final: dict = self.progress.history[-1]["val"] if self.progress.history else {}
        while self.progress.step < self.total_steps:
            epoch = self.progress.epoch
            self.train_one_epoch(epoch)
            self.progress.epoch += 1
            done = self.progress.step >= self.total_steps
            improved = False
            if done or self.progress.epoch % self.eval_every == 0:
                final = self.evaluate(self.model)
                record = {"epoch": self.progress.epoch, "step": self.progress.step,
                          "val": {k: v for k, v in final.items() if k != "confusion_matrix"}}
                self.progress.history.append(record)
                self.log(record)
                score = final[self.primary_metric]
                improved = score > self.progress.best_metric
                if improved:
                    self.progress.best_metric, self.progress.best_epoch = score, self.progress.epoch
                self.say(f"epoch {self.progress.epoch}/{self.total_epochs}: {self.primary_metric} "
                         f"{100 * score:.2f} (best {100 * self.progress.best_metric:.2f} at epoch {self.progress.best_epoch})")
            self.save(best=improved)
        return final

    def write_summary(self, final: dict, **extra) -> None:
        """``metrics.json``: the final evaluation, progress, best epoch and median training images/s."""
        if not self.dist.is_main:
            return
        summary = dict(final, **extra, epochs=self.progress.epoch, steps=self.progress.step,
                       **{f"best_{self.primary_metric}": self.progress.best_metric}, best_epoch=self.progress.best_epoch,
                       train_images_per_s=float(np.median(self.throughput)) if self.throughput else None)
        ckpt.write_json(self.run_dir / "metrics.json", summary)

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
                self._log_window(window, epoch, bar)
                window = self._empty_window()
        bar.close()

    @staticmethod
    def _empty_window() -> dict:
        return {"loss": 0.0, "regularization": 0.0, "steps": 0, "images": 0, "wait": 0.0, "start": time.perf_counter()}

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        with torch.autocast(self.dist.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            loss = self.loss_fn(self.train_model(inputs), targets)
        loss_value = float(loss.detach())
        self.last_regularization = None
        if self.regularized and self.regularization_weight:
            regularization = regularization_loss(self.model, self.regularized)
            self.last_regularization = float(regularization.detach())
            loss = loss + self.regularization_weight * regularization
        if broadcast_flag(not math.isfinite(loss_value), self.dist.device):
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value}) at step {self.progress.step + 1} (epoch {self.progress.epoch + 1}); "
                f"stopped. The last good checkpoint in {self.checkpoint_dir} is intact: lower the lr, "
                "add warmup, or try --amp bf16 instead of fp16."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress.step += 1
        self.scheduler.step_update(self.progress.step)
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
