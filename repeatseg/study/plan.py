"""What a study costs before it runs, and which shard runs which unit.

Per unit (a cell, or a pretraining) the plan counts the images it processes and turns them into
FLOPs with the accounting's MACs (``repeatseg.accounting``: conv + linear multiply-accumulates of
one image at the recipe's input size; BN, activations, pooling, interpolation and RepeatNet's
weight generation are not counted):

    training images   = steps x total batch; a schedule in epochs has epochs x floor(split / batch) steps
    training FLOPs    = 6 x MACs x training images     (2 FLOP per MAC; backward about twice the forward)
    evaluation images = evaluations x val split (x2 with eval_flip); one evaluation every
                        ``eval_every`` epochs and one at the end (``engine.trainer.evaluations``)
    evaluation FLOPs  = 2 x MACs x evaluation images   (forward only)
    hours             = FLOPs / (TFLOPS x 1e12) / 3600, at a sustained throughput the user gives

A cell's MACs are its U-Net's (``describe(encoder, crop, segmenter=True)``) at the training crop;
its evaluations are costed at the crop size too (VOC's images, at most 500 px and padded to a
multiple of 32, cost about 0.75 of a 512 crop: an upper bound there; exact for digits). A
pretraining's MACs are its classifier's (timm model with head) at ``data.image_size``, for
training and evaluation (the centre crop).

Split sizes, first found: ``--images-per-epoch`` (train split only); the split on disk (the
VOC split file, or the ImageFolder's files); the known size of a known data set (``KNOWN_SEG``,
``KNOWN_CLS``); else unknown, said in the row and left out of the totals.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from ..accounting import count_macs, describe
from ..classifiers import is_classifier, timm_name_of
from ..config import ClsConfig, SegConfig, StudyConfig, load_config
from ..data.digits import TRAIN_PER_CLASS, make_digits
from ..data.synthetic import make_synthetic_imagenet, make_synthetic_voc
from ..data.voc import DataError, find_voc_root, read_class_names, read_split
from ..engine.cls import DEFAULT_LENGTH as CLS_DEFAULT_LENGTH  # the lengths when a recipe sets neither
from ..engine.seg import DEFAULT_LENGTH as SEG_DEFAULT_LENGTH
from ..engine.trainer import evaluations, schedule_length
from ..errors import ConfigError
from .runner import CellPlan, PretrainPlan, Shard, cls_config_for, plan_units, seg_config_for

TRAIN_FLOPS_PER_MAC = 6  # 2 FLOP per MAC x (1 forward + 2 backward)
EVAL_FLOPS_PER_MAC = 2  # forward only
NO_FOLDER = Path("/nonexistent/repeatseg-plan")  # unit paths for a plan without a study folder


def _default(function, name: str) -> int:
    """A generator's default count, so a known size follows the code that writes the set."""
    return inspect.signature(function).parameters[name].default


# data set -> (what it is, split -> images); for sets the configs write themselves, their generators' defaults
KNOWN_SEG = {
    "voc": ("Pascal VOC 2012 (train_aug: + SBD)", {"train": 1464, "val": 1449, "trainval": 2913, "train_aug": 10582}),
    "digits": ("digit scenes of tools/make_digits.py", {"train": _default(make_digits, "train_scenes"),
                                                        "val": _default(make_digits, "val_scenes")}),
    "synthetic": ("generated shapes", {"train": _default(make_synthetic_voc, "num_train"),
                                       "val": _default(make_synthetic_voc, "num_val")}),
}
IMAGENET = ("ImageNet-1k (model.num_classes 1000)", {"train": 1281167, "val": 50000})
MNIST_ROT = ("MNIST-rot (Larochelle et al. 2007)", {"train": 12000, "test": 50000})
DIGITS_PER_CLASS = 500  # mnist_5k.csv.gz: 5,000 digits, 500 per class


@dataclass
class SplitSizes:
    train: int | None
    val: int | None
    source: str  # where the numbers come from, shown in the plan


@dataclass
class UnitCost:
    """One unit's bill; ``None`` where a split size is unknown (left out of the totals)."""

    kind: str  # "cell" or "pretrain"
    encoder: str
    seed: int
    input_size: int  # px: the training crop, or the classifier's image size
    batch: int  # total over all processes
    steps: int | None
    train_images: int | None
    eval_images: int | None
    macs: int  # forward MACs per image at input_size
    sizes: str  # where the split sizes come from
    status: str = "to do"  # "finished", "started" or "to do" in the study folder
    shard: int | None = None

    @property
    def train_flops(self) -> int | None:
        return None if self.train_images is None else TRAIN_FLOPS_PER_MAC * self.macs * self.train_images

    @property
    def eval_flops(self) -> int:
        return EVAL_FLOPS_PER_MAC * self.macs * (self.eval_images or 0)

    @property
    def flops(self) -> int | None:
        return None if self.train_flops is None else self.train_flops + self.eval_flops

    def as_dict(self) -> dict:
        return dict(dataclasses.asdict(self), train_flops=self.train_flops, eval_flops=self.eval_flops,
                    flops=self.flops)


# ------------------------------------------------------------------------------------ split sizes

@functools.lru_cache(maxsize=None)
def _voc_split_size(root: Path, split: str) -> int | None:
    try:
        return len(read_split(find_voc_root(root), split))
    except DataError:
        return None


@functools.lru_cache(maxsize=None)
def _image_folder_size(folder: Path) -> int | None:
    """Images in ``folder``'s class folders (or in it, for a flat val folder), as the ImageFolder
    reader counts them; None if there are none."""
    if not folder.is_dir():
        return None
    subfolders = [p for p in folder.iterdir() if p.is_dir()]
    places = subfolders or [folder]
    return sum(1 for place in places for p in place.iterdir()
               if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS) or None


def _seg_root(cfg: SegConfig) -> Path | None:
    from ..engine.seg import segmentation_root

    return segmentation_root(cfg)


def seg_split_sizes(cfg: SegConfig, images_per_epoch: int | None = None, look_on_disk: bool = True) -> SplitSizes:
    """Train and val split sizes of a segmentation recipe (see the module docstring for the order)."""
    sizes = SplitSizes(None, None, "unknown (give --images-per-epoch, or --data-root with the data)")
    root = _seg_root(cfg)
    known = KNOWN_SEG.get(cfg.data.dataset)
    if look_on_disk and root is not None and _voc_split_size(root, cfg.data.split):
        sizes = SplitSizes(_voc_split_size(root, cfg.data.split), _voc_split_size(root, cfg.data.val_split),
                           f"counted in {root}")
    elif known and not (cfg.data.dataset == "voc" and cfg.data.classes) and cfg.data.split in known[1]:
        sizes = SplitSizes(known[1][cfg.data.split], known[1].get(cfg.data.val_split), f"known: {known[0]}")
    if images_per_epoch:
        sizes = SplitSizes(images_per_epoch, sizes.val, f"--images-per-epoch {images_per_epoch}, val {sizes.source}")
    return sizes


def _cls_root(cfg: ClsConfig) -> Path | None:
    """The folder holding train/ and val/ (a digits root holds it in cls/)."""
    if not cfg.data.root:
        return None
    root = Path(cfg.data.root).expanduser()
    return root / "cls" if cfg.data.dataset == "digits" else root


def _known_cls(cfg: ClsConfig) -> tuple[str, dict[str, int]] | None:
    if cfg.data.dataset == "digits":
        return "digit split of tools/make_digits.py", {"train": 10 * TRAIN_PER_CLASS,
                                                       "val": 10 * (DIGITS_PER_CLASS - TRAIN_PER_CLASS)}
    if cfg.data.dataset == "synthetic":
        classes = cfg.model.num_classes or _default(make_synthetic_imagenet, "num_classes")
        return "generated shapes", {"train": classes * _default(make_synthetic_imagenet, "per_class"),
                                    "val": classes * _default(make_synthetic_imagenet, "val_per_class")}
    if cfg.data.dataset == "rot_digits":
        train, test = cfg.data.rot_per_class
        return "rotated digits of tools/make_rot_digits.py", {"train": 10 * train, "test": 10 * test}
    if cfg.data.dataset == "mnist_rot":
        return MNIST_ROT
    if cfg.model.num_classes == 1000:
        return IMAGENET
    return None


def cls_split_sizes(cfg: ClsConfig, images_per_epoch: int | None = None, look_on_disk: bool = True) -> SplitSizes:
    """Train and val split sizes of a classification recipe (see the module docstring for the order)."""
    sizes = SplitSizes(None, None, "unknown (give --pretrain-images-per-epoch, or the data at data.root)")
    root = _cls_root(cfg)
    known = _known_cls(cfg)
    if look_on_disk and root is not None and _image_folder_size(root / cfg.data.train_split):
        sizes = SplitSizes(_image_folder_size(root / cfg.data.train_split),
                           _image_folder_size(root / cfg.data.val_split), f"counted in {root}")
    elif known and {cfg.data.train_split, cfg.data.val_split} <= set(known[1]):
        sizes = SplitSizes(known[1][cfg.data.train_split], known[1][cfg.data.val_split], f"known: {known[0]}")
    if images_per_epoch:
        sizes = SplitSizes(images_per_epoch, sizes.val,
                           f"--pretrain-images-per-epoch {images_per_epoch}, val {sizes.source}")
    return sizes


# -------------------------------------------------------------------------------------- unit costs

def schedule_steps(schedule, train_size: int | None, batch: int, default: dict) -> tuple[int | None, int | None]:
    """(optimiser steps, epochs run) as the trainer counts them (``engine.trainer.schedule_length``,
    one epoch = floor(split / batch) steps); None where the split size would be needed and is unknown."""
    steps_per_epoch = None if train_size is None else train_size // batch
    if steps_per_epoch == 0:
        raise ConfigError(f"the training split has {train_size} images, fewer than one batch of {batch}")
    return schedule_length(schedule, steps_per_epoch, default)


def _eval_images(epochs: int | None, eval_every: int, val_size: int | None, passes: int = 1) -> int | None:
    if epochs is None or val_size is None:
        return None
    return evaluations(epochs, eval_every) * val_size * passes


def seg_classes(cfg: SegConfig, look_on_disk: bool = True) -> int:
    """The U-Net's output classes: the recipe's, the data set's class list, else VOC's 21 (digits 11)."""
    if cfg.model.classes:
        return cfg.model.classes
    if cfg.data.classes:
        return len(cfg.data.classes)
    root = _seg_root(cfg) if look_on_disk else None
    try:
        return len(read_class_names(find_voc_root(root))) if root is not None else _default_classes(cfg)
    except DataError:
        return _default_classes(cfg)


def _default_classes(cfg: SegConfig) -> int:
    return 11 if cfg.data.dataset == "digits" else 21  # background + 10 digits; VOC's 21


def cell_cost(cfg: SegConfig, images_per_epoch: int | None = None, look_on_disk: bool = True) -> UnitCost:
    """The bill of one segmentation run of recipe ``cfg``."""
    sizes = seg_split_sizes(cfg, images_per_epoch, look_on_disk)
    batch = cfg.train.batch_size
    steps, epochs = schedule_steps(cfg.schedule, sizes.train, batch, SEG_DEFAULT_LENGTH)
    macs = describe(cfg.model.encoder, cfg.data.crop_size, segmenter=True, classes=seg_classes(cfg, look_on_disk),
                    decoder_channels=cfg.model.decoder_channels).macs
    return UnitCost("cell", cfg.model.encoder, cfg.train.seed, cfg.data.crop_size, batch, steps,
                    None if steps is None else steps * batch,
                    _eval_images(epochs, cfg.train.eval_every, sizes.val, 2 if cfg.train.eval_flip else 1),
                    macs, sizes.source)


@functools.lru_cache(maxsize=None)
def classifier_macs(model_name: str, num_classes: int, image_size: int, options_json: str = "{}") -> int:
    """Forward MACs of the timm classifier (head included) at ``image_size``, built on the meta device
    (a classification-only model, rotcnn_*: built for real and measured folded, repeatseg.classifiers)."""
    from ..classifiers import describe_classifier
    from ..engine.cls import build_classifier

    if is_classifier(model_name):
        return describe_classifier(model_name, image_size, json.loads(options_json)).macs

    with torch.device("meta"):
        model = build_classifier(model_name, num_classes, options=json.loads(options_json))
    return count_macs(model, image_size)


def _cls_classes(cfg: ClsConfig, look_on_disk: bool = True) -> int:
    """The classifier's classes: the recipe's, the class folders', else 10 (digits, synthetic) or 1000."""
    if cfg.model.num_classes:
        return cfg.model.num_classes
    root = _cls_root(cfg) if look_on_disk else None
    folder = None if root is None else root / cfg.data.train_split
    if folder is not None and folder.is_dir():
        return sum(1 for p in folder.iterdir() if p.is_dir()) or 1000
    return 10 if cfg.data.dataset in ("digits", "synthetic", "rot_digits", "mnist_rot") else 1000


def pretrain_cost(cfg: ClsConfig, encoder: str, images_per_epoch: int | None = None,
                  look_on_disk: bool = True) -> UnitCost:
    """The bill of one classification pretraining of recipe ``cfg`` (for study encoder ``encoder``)."""
    sizes = cls_split_sizes(cfg, images_per_epoch, look_on_disk)
    batch = cfg.train.batch_size
    steps, epochs = schedule_steps(cfg.schedule, sizes.train, batch, CLS_DEFAULT_LENGTH)
    macs = classifier_macs(cfg.model.name, _cls_classes(cfg, look_on_disk), cfg.data.image_size,
                           json.dumps(cfg.model.options, sort_keys=True))
    return UnitCost("pretrain", encoder, cfg.train.seed, cfg.data.image_size, batch, steps,
                    None if steps is None else steps * batch, _eval_images(epochs, cfg.train.eval_every, sizes.val),
                    macs, sizes.source)


def _status(unit: PretrainPlan | CellPlan) -> str:
    return "finished" if unit.finished else "started" if unit.started else "to do"


def plan_costs(study: StudyConfig, study_dir: Path | None = None, images_per_epoch: int | None = None,
               pretrain_images_per_epoch: int | None = None) -> list[UnitCost]:
    """One ``UnitCost`` per unit of ``plan_units``, in run order, with its status in ``study_dir``
    (a started unit is costed with the config it started with); without a folder, status "-"."""
    if study.pretrain.enabled and not study.pretrain.config:
        raise ConfigError("pretrain.enabled needs pretrain.config (a configs/cls/*.yaml recipe)")
    costs = []
    for unit in plan_units(study, study_dir or NO_FOLDER):
        if isinstance(unit, PretrainPlan):
            cost = pretrain_cost(cls_config_for(study, unit), unit.encoder, pretrain_images_per_epoch)
        else:
            cost = cell_cost(seg_config_for(study, unit, None), images_per_epoch)
        status = _status(unit) if study_dir is not None else "-"
        costs.append(dataclasses.replace(cost, encoder=unit.encoder, seed=unit.seed, status=status))
    return costs


# ------------------------------------------------------------------------------------------ shards

def pair_weights(study: StudyConfig) -> dict[str, float]:
    """encoder -> the FLOPs of its cell plus its pretraining, from the config alone (nothing read from
    disk or the study folder, so every shard computes the same numbers). A unit whose split size is
    unknown counts its per-image MACs instead."""
    seg_recipe = load_config(SegConfig, [study.seg_config], [], study.seg_sets)
    cls_recipe = load_config(ClsConfig, [study.pretrain.config], [], study.pretrain.sets) \
        if study.pretrain.enabled and study.pretrain.config else None
    weights = {}
    for encoder in study.encoders:
        seg_recipe.model.encoder = encoder
        costs = [cell_cost(seg_recipe, look_on_disk=False)] if study.cells else []
        if cls_recipe is not None:
            cls_recipe.model.name = timm_name_of(encoder)
            costs.append(pretrain_cost(cls_recipe, encoder, look_on_disk=False))
        weights[encoder] = float(sum(c.flops if c.flops is not None else c.macs for c in costs))
    return weights


def assign_pairs(pairs: list[tuple[str, int]], weight: dict[str, float], count: int) -> dict[tuple[str, int], int]:
    """(encoder, seed) -> shard: heaviest pair first, each to the shard with the least work so far
    (the lowest-numbered on a tie; equal pairs keep plan order). Deterministic for a given plan."""
    order = sorted(range(len(pairs)), key=lambda i: (-weight[pairs[i][0]], i))
    load = [0.0] * count
    assignment = {}
    for i in order:
        shard = min(range(count), key=lambda s: (load[s], s))
        assignment[pairs[i]] = shard
        load[shard] += weight[pairs[i][0]]
    return assignment


def make_shard(study: StudyConfig, index: int, count: int) -> Shard:
    """Shard ``index`` of ``count``: the study's (encoder, seed) pairs (a pretraining and its cell
    together) balanced over the shards by their FLOPs (``assign_pairs``)."""
    if count == 1:
        return Shard(index, count)
    pairs = [(encoder, seed) for seed in study.seeds for encoder in study.encoders]
    return Shard(index, count, assign_pairs(pairs, pair_weights(study), count))


# ---------------------------------------------------------------------------------------- printing

def tflops_from_bench(path: str | Path) -> float:
    """The sustained training TFLOPS of ``tools/bench.py --json``'s dense model: 6 x its U-Net's MACs
    x batch / median step time (MACs at the bench's input size, 21 classes, bench's default)."""
    try:
        result = json.loads(Path(path).read_text())
        name, size, batch = result["dense"], int(result["input_size"]), int(result["batch"])
        step_s = float(result["train_step_s"]["dense"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--tflops-from {path}: not a tools/bench.py --json result ({error})") from error
    macs = describe(name, size, segmenter=not is_classifier(name)).macs  # a classifier's bench has no U-Net
    return TRAIN_FLOPS_PER_MAC * macs * batch / step_s / 1e12


def si(value: float | None) -> str:
    """3 significant digits with an SI prefix: 5.73e17 -> '573P'."""
    if value is None:
        return "?"
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.3g}"


def hours(flops: float | None, tflops: float | None) -> float | None:
    return None if flops is None or not tflops else flops / (tflops * 1e12) / 3600


def _hours_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value >= 0.01 else f"{value * 3600:.2g} s"


def totals(costs: list[UnitCost], tflops: float | None) -> list[dict]:
    """Sums per part (cells, pretraining, all, not yet finished, per shard); unknown units are counted apart."""
    parts = [("cells", [c for c in costs if c.kind == "cell"]), ("pretraining", [c for c in costs if c.kind == "pretrain"]),
             ("all", costs)]
    if any(c.status != "-" for c in costs):  # a study folder was given
        parts.append(("left (not finished)", [c for c in costs if c.status != "finished"]))
    shards = sorted({c.shard for c in costs if c.shard is not None})
    parts += [(f"shard {s}", [c for c in costs if c.shard == s]) for s in shards]
    rows = []
    for name, group in parts:
        if not group and name != "left (not finished)":
            continue
        known = [c for c in group if c.flops is not None]
        flops = sum(c.flops for c in known)
        rows.append({"part": name, "units": len(group), "unknown": len(group) - len(known),
                     "train_images": sum(c.train_images for c in known), "flops": flops,
                     "hours": hours(flops, tflops)})
    return rows


def format_plan(costs: list[UnitCost], tflops: float | None, title: str) -> str:
    """The plan as markdown tables: one row per unit, then the totals."""
    at = f"at {tflops:g} TFLOPS sustained" if tflops else "(give --tflops for times)"
    sharded = any(c.shard is not None for c in costs)
    lines = [title, "", "FLOP = 6 x MACs x training images + 2 x MACs x evaluation images; "
             f"hours {at}; MACs per image at px.", ""]
    header = ["unit", "encoder", "seed", "px", "batch", "steps", "train images", "eval images", "MACs/image",
              "FLOP", "hours", "status", *(["shard"] if sharded else [])]
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for c in costs:
        cells = [c.kind, c.encoder, c.seed, c.input_size, c.batch, "?" if c.steps is None else f"{c.steps:,}",
                 "?" if c.train_images is None else f"{c.train_images:,}",
                 "?" if c.eval_images is None else f"{c.eval_images:,}", si(c.macs), si(c.flops),
                 _hours_text(hours(c.flops, tflops)), c.status, *([c.shard] if sharded else [])]
        lines.append("| " + " | ".join(str(v) for v in cells) + " |")
    lines += ["", "| total | units | train images | FLOP | hours |", "|---|---|---|---|---|"]
    for row in totals(costs, tflops):
        unknown = f" ({row['unknown']} unknown, not counted)" if row["unknown"] else ""
        lines.append(f"| {row['part']} | {row['units']}{unknown} | {row['train_images']:,} | {si(row['flops'])} | "
                     f"{_hours_text(row['hours'])} |")
    sources = sorted({f"{c.kind}: {c.sizes}" for c in costs})
    lines += ["", "split sizes: " + "; ".join(sources)]
    return "\n".join(lines)


def plan_json(costs: list[UnitCost], tflops: float | None) -> dict:
    return {"tflops": tflops, "flops_per_mac": {"train": TRAIN_FLOPS_PER_MAC, "eval": EVAL_FLOPS_PER_MAC},
            "units": [dict(c.as_dict(), hours=hours(c.flops, tflops)) for c in costs],
            "totals": totals(costs, tflops)}
