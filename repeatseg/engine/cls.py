"""ImageNet-style classification (encoder pretraining), wired onto the shared Trainer."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..classifiers import build_classifier_model, is_classifier
from ..config import ClsConfig, shows_bars
from ..data import to_device
from ..data.digits import ensure_digits
from ..data.imagenet import ImageFolderClassification, classification_transforms
from ..data.rot_digits import ROTATION_SETS, make_rot_digits, rotation_datasets
from ..data.synthetic import accept_for_config, make_synthetic_imagenet
from ..errors import ConfigError
from ..extras import require
from ..layers import cached
from ..registry import register
from ..segmenter import options_named
from ..threads import apply_threads
from .distributed import DistInfo, ShardSampler, barrier
from .optim import check_optimizer_name
from .trainer import begin_run, build_trainer, run_to_end, seed_everything, start_run, uses_channels_last

MulticlassAccuracy = require("torchmetrics.classification", extra="train").MulticlassAccuracy

DEFAULT_LENGTH = {"epochs": 90}  # when a config gives neither epochs nor iters (the paper's ImageNet length)


def build_classifier(name: str, num_classes: int, drop_rate: float = 0.0, options: dict | None = None) -> nn.Module:
    """A repeatseg timm model (registering e.g. ``repeat_resnet18_f4_b16`` on the fly) or any timm
    model. ``options`` are a recipe's model options: the model gets those it reads
    (``Variant.recipe_options``), kept as ``model.model_options`` for its checkpoints. The
    classification-only families (``rotcnn_*``) take theirs as they are."""
    if is_classifier(name):
        model = build_classifier_model(name, num_classes=num_classes, drop_rate=drop_rate, options=options or {})
        model.model_options = dict(getattr(model, "options", None) or options or {})
        return model
    try:
        variant = register(name)
    except ValueError:
        if not timm.is_model(name) or options:
            raise
        model = timm.create_model(name, num_classes=num_classes, drop_rate=drop_rate)
        model.model_options = {}
        return model
    variant = register(variant, **variant.recipe_options(options))
    with options_named(variant):
        model = timm.create_model(variant.timm_name, num_classes=num_classes, drop_rate=drop_rate,
                                  options=variant.option_dict)
    model.model_options = variant.option_dict
    return model


def data_root(cfg: ClsConfig, dist: DistInfo) -> Path:
    """The folder holding train/ and val/; generated sets are written first if absent."""
    if not cfg.data.root:
        raise ConfigError("data.root is not set: pass --data-root (the folder holding train/ and val/)")
    root = Path(cfg.data.root)
    if cfg.data.dataset == "digits":  # root holds cls/ and seg/ (tools/make_digits.py)
        if dist.is_main:
            ensure_digits(root, progress=shows_bars(cfg.train.log_mode))
        barrier()
        return root / "cls"
    if cfg.data.dataset == "rot_digits":
        if dist.is_main:
            make_rot_digits(root, cfg.data.rot_seed, *cfg.data.rot_per_class, progress=shows_bars(cfg.train.log_mode))
        barrier()
    if cfg.data.dataset == "synthetic":
        if dist.is_main:  # written once (repeatseg.data.generate); a set of another class count is refused
            make_synthetic_imagenet(root, num_classes=cfg.model.num_classes or 10, progress=shows_bars(cfg.train.log_mode),
                                    accept=accept_for_config("num_classes", cfg.model.num_classes, "train"))
        barrier()
    return root


def build_loaders(cfg: ClsConfig, dist: DistInfo) -> tuple[DataLoader, DataLoader]:
    """Training and validation loaders; ``model.num_classes`` comes from the class folders when unset."""
    root = data_root(cfg, dist)
    if cfg.train.batch_size % dist.world_size:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} is not divisible by {dist.world_size} processes")
    if cfg.data.dataset in ROTATION_SETS:  # one-channel digits, the authors' rotation recipe
        train_set, val_set = rotation_datasets(cfg.data.dataset, root, cfg.data.train_split, cfg.data.val_split,
                                               cfg.data.image_size, cfg.data.hflip, cfg.data.vflip, cfg.train.seed,
                                               eval_resample=cfg.data.eval_resample)
    else:
        train_tf, eval_tf = classification_transforms(cfg.data.image_size, cfg.data.crop_pct, cfg.data.scale,
                                                      cfg.data.hflip, cfg.data.color_jitter, cfg.data.affine)
        train_set = ImageFolderClassification(root, cfg.data.train_split, train_tf, seed=cfg.train.seed)
        val_set = ImageFolderClassification(root, cfg.data.val_split, eval_tf, val_labels=cfg.data.val_labels,
                                            classes=train_set.classes)
    found = len(train_set.classes)
    if cfg.model.num_classes is None:
        cfg.model.num_classes = found
    elif found != cfg.model.num_classes:
        raise ConfigError(f"{root / cfg.data.train_split} has {found} class folders but model.num_classes is "
                          f"{cfg.model.num_classes}: remove model.num_classes (--num-classes) from the config to take "
                          f"the count from the folders, or set it to {found}")
    if cfg.data.dataset == "digits":  # 5,000 tiny images: decoded once, not every epoch
        train_set.preload()
        val_set.preload()
    per_rank = cfg.train.batch_size // dist.world_size
    options = dict(num_workers=cfg.data.workers, pin_memory=dist.device.type == "cuda")
    sampler = DistributedSampler(train_set, dist.world_size, dist.rank, shuffle=True, seed=cfg.train.seed, drop_last=True)
    train_loader = DataLoader(train_set, per_rank, sampler=sampler, drop_last=True, **options)
    val_loader = DataLoader(val_set, cfg.train.eval_batch_size,
                            sampler=ShardSampler(len(val_set), dist.rank, dist.world_size), **options)
    return train_loader, val_loader


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, num_classes: int,
             channels_last: bool = False, progress: bool = False) -> dict:
    """Top-1 and top-5 accuracy (fractions) over the whole split, summed across ranks by torchmetrics."""
    was_training = model.training
    model.eval()
    metrics = {k: MulticlassAccuracy(num_classes, top_k=k, average="micro", validate_args=False).to(device)
               for k in (1, min(5, num_classes))}
    with cached(model):  # each generated weight once per evaluation (repeatseg.layers.cached)
        for images, labels in tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False):
            logits = model(to_device(images, device, channels_last)).float()
            for metric in metrics.values():
                metric.update(logits, labels.to(device))
    model.train(was_training)
    top1, top5 = (float(metric.compute()) for metric in metrics.values())
    return {"top1": top1, "top5": top5}


def train_classification(cfg: ClsConfig, run_dir: str | Path, dist: DistInfo, resume: bool = False) -> dict:
    """Pretrain a classifier; writes the same run folder as segmentation. Returns final metrics."""
    run_dir = Path(run_dir)
    apply_threads(cfg.train)
    check_optimizer_name(cfg.optim.name)  # before anything is read or written
    seed_everything(cfg.train.seed)
    train_loader, val_loader = build_loaders(cfg, dist)
    start_run(run_dir, resume, task="train_cls", is_main=dist.is_main)
    model = build_classifier(cfg.model.name, cfg.model.num_classes, cfg.model.drop_rate, cfg.model.options)
    if dist.is_main and not resume:
        begin_run(run_dir, cfg, "train_cls")
    channels_last = uses_channels_last(cfg.train, dist)

    def prepare_batch(batch):
        images, labels = batch
        return to_device(images, dist.device, channels_last), labels.to(dist.device, non_blocking=True)

    def loss_fn(logits, labels):
        return F.cross_entropy(logits.float(), labels, label_smoothing=cfg.train.label_smoothing)

    def run_eval(bare_model):
        return evaluate(bare_model, val_loader, dist.device, cfg.model.num_classes, channels_last,
                        progress=dist.is_main and shows_bars(cfg.train.log_mode))

    trainer = build_trainer(
        model, cfg, dist, run_dir, train_loader, prepare_batch=prepare_batch, loss_fn=loss_fn, evaluate=run_eval,
        primary_metric="top1", resume=resume, default_length=DEFAULT_LENGTH,
        about=[f"data: {len(train_loader.dataset)} training images ({cfg.data.train_split}), "
               f"{len(val_loader.dataset)} validation images ({cfg.data.val_split}), batch {cfg.train.batch_size}",
               "weights: " + ("from the run's checkpoint" if resume else "random init")],
        metadata={"model": cfg.model.name, "num_classes": cfg.model.num_classes, "task": "classification",
                  "options": model.model_options,
                  "classes": train_loader.dataset.classes},
    )
    return run_to_end(trainer, model=cfg.model.name, split=cfg.data.val_split, val_images=len(val_loader.dataset))
