"""Typed run configuration: dataclasses, YAML files, ``--set a.b=value`` overrides.

Every field has a type; loading checks it. An unknown key or a value of the wrong type is a
``ConfigError`` that names the key (``optim.lrr``), so a typo never silently trains the default.
The resolved config is written to the run folder and is all ``--resume`` needs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError  # noqa: F401  (re-exported)

MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """DataLoader workers per process when a config gives none: up to 4, one core left for the
    training process itself, never more than the cores this process may use (torch warns above
    that): 1 on 2 cores, 0 (load in the main process) on 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(MAX_DEFAULT_WORKERS, cores - 1))


@dataclass
class ModelConfig:
    encoder: str = "repeat_r18_f4"
    encoder_weights: str | None = None  # a path or a tag (see repeatseg.weights)
    weights_dir: str | None = None
    classes: int | None = None  # None: the dataset's class count (its class list); a set value must match it
    in_channels: int = 3
    options: dict = field(default_factory=dict)  # model options, e.g. {gradient: bireal} (--set model.options.gradient=bireal)
    decoder_channels: list[int] | None = None  # the U-Net decoder's; None: smp's (256, 128, 64, 32, 16)


@dataclass
class DataConfig:
    # voc: any VOC-layout set; synthetic: generated shapes; digits: real MNIST digit scenes. Generated
    # sets are written at root if absent (digits: root holds cls/ and seg/, as tools/make_digits.py writes).
    dataset: Literal["voc", "synthetic", "digits"] = "voc"
    root: str | None = None
    classes: list[str] | None = None  # class names, index = class; None: the set's classes.txt, else VOC's 21
    synthetic_classes: list[int] = field(default_factory=lambda: list(range(1, 21)))  # when generating
    split: str = "train"  # train, trainval or train_aug
    val_split: str = "val"
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    workers: int = field(default_factory=default_workers)  # per process


@dataclass
class OptimConfig:
    name: str = "sgd"  # any timm optimizer name (timm.optim.create_optimizer_v2)
    lr: float = 0.01
    lr_base_batch: int | None = None  # if set, lr is for this total batch and scales linearly
    momentum: float = 0.9
    weight_decay: float = 1e-4
    encoder_lr_mult: float = 1.0
    # Parameter kinds without weight decay: "norm" (BN), "bias", "scores" (f-RepeatNet latent
    # scores), "transform" (s-RepeatNet b1/b2). The authors decayed everything: set [] for that.
    no_decay: list[str] = field(default_factory=lambda: ["norm", "bias", "scores", "transform"])
    # Weight of the model's regularisation term (shared bases: the orthogonality penalty); null:
    # what the model's layers ask for (10 for shared bases, 0 for families without a term).
    regularization_weight: float | None = None
    clip_grad_norm: float | None = None  # clip the global gradient norm (the authors' ImageNet code: 1.0)


@dataclass
class ScheduleConfig:
    """Length and shape of the lr schedule; every schedule is stepped per iteration (timm's factory)."""

    epochs: int | None = None  # at most one of epochs and iters; neither: 20k iters (seg), 90 epochs (cls)
    iters: int | None = None
    name: Literal["poly", "cosine", "multistep"] = "poly"
    power: float = 0.9  # poly
    milestones: list[int] = field(default_factory=lambda: [30, 60])  # multistep, in epochs
    decay_rate: float = 0.1  # multistep
    min_lr: float = 0.0
    warmup_iters: int = 0  # segmentation: 500 (SegConfig)
    warmup_lr_init: float = 1e-5


def shows_bars(log_mode: str) -> bool:
    """Whether progress bars are drawn: ``train.log_mode`` ``bar`` with stderr on a terminal. A bar
    redrawn with carriage returns is noise in a log file, so there ``bar`` means ``plain``."""
    import sys

    return log_mode == "bar" and sys.stderr.isatty()


def effective_log_mode(log_mode: str) -> str:
    """``log_mode``, with ``bar`` read as ``plain`` where no bar is drawn (``shows_bars``)."""
    return "plain" if log_mode == "bar" and not shows_bars(log_mode) else log_mode


@dataclass
class TrainConfig:
    batch_size: int = 16  # total over all processes
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU; bf16/fp16 on any device
    channels_last: bool | None = None  # null: on CUDA only; true/false: on any device
    compile: bool = False
    sync_bn: bool = True  # CUDA DDP only
    seed: int = 0
    eval_every: int = 1  # epochs; segmentation: 5 (SegConfig)
    eval_batch_size: int = 8  # per process, for images up to 512x512: larger ones go in smaller batches (or alone)
    eval_max_pixels: int = 4096 * 4096  # an evaluation image larger than this (height x width) is refused
    eval_flip: bool = False
    log_every: int = 20  # iterations between metrics.jsonl records
    log_mode: Literal["bar", "plain", "quiet"] = "bar"  # bar: on a terminal; elsewhere (a log file) plain lines
    # where records go besides metrics.jsonl (always written): tensorboard -> <run>/tensorboard/ (scalars and,
    # at each evaluation, validation predictions beside their ground truth; repeatseg.engine.loggers)
    loggers: list[Literal["jsonl", "tensorboard"]] = field(default_factory=lambda: ["jsonl"])
    # intra-op threads (part of the recipe: results reproduce at the same count); null: $OMP_NUM_THREADS,
    # else the cores this process may use / the study processes on this host (repeatseg.threads)
    threads: int | None = None
    # evaluate an exponential moving average of the weights (timm's ModelEmaV3) instead of the weights
    # themselves: its decay warms up as 1 - (1 + step)^-3/4 (0.994 after 1,000 steps) and stops at this;
    # metrics, last/best.safetensors and hand-offs hold the average (repeatseg.engine.trainer); null: none
    ema_decay: float | None = None


# The segmentation recipe's schedule and evaluation (configs/seg/voc_unet.yaml) where a config says
# nothing: train_seg.py without --config trains as the study does (its length aside: 20k iterations).
SEG_WARMUP_ITERS = 500
SEG_EVAL_EVERY = 5  # epochs


@dataclass
class SegConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_iters=SEG_WARMUP_ITERS))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(eval_every=SEG_EVAL_EVERY))
    output: str | None = None
    provenance: dict = field(default_factory=dict)  # written by the run (weights path, sha256)


@dataclass
class ClsModelConfig:
    name: str = "repeat_resnet18_f4"  # a timm model name
    num_classes: int | None = None  # None: the number of class folders in the training split
    drop_rate: float = 0.0
    options: dict = field(default_factory=dict)  # model options, as in ModelConfig


@dataclass
class ClsDataConfig:
    # synthetic: generated at root if absent; digits: the MNIST digit split, root as for DataConfig (reads root/cls);
    # rot_digits: rotated real digits (written at root if absent), mnist_rot: the MNIST-rot .amat files at root
    # (both: one-channel 28x28 digits, the authors' rotation recipe, repeatseg/data/rot_digits.py)
    dataset: Literal["imagefolder", "synthetic", "digits", "rot_digits", "mnist_rot"] = "imagefolder"
    root: str | None = None  # holds train/<wnid>/ and val/<wnid>/
    train_split: str = "train"
    val_split: str = "val"
    val_labels: str | None = None  # for a flat val folder: '<file> <wnid>' lines
    image_size: int = 224
    crop_pct: float = 0.875  # eval resize = image_size / crop_pct (256 for 224)
    scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    vflip: float = 0.0  # rot_digits / mnist_rot only (the authors' MNIST-rot recipe: hflip and vflip 0.5)
    # rot_digits / mnist_rot only: eval digits resampled like the training ones (false: only padded, the authors')
    eval_resample: bool = True
    color_jitter: float = 0.0
    # torchvision RandomAffine before the crop (the authors' code: degrees 20, scale [0.8, 1.2], shear 20); {} = off
    affine: dict = field(default_factory=dict)
    workers: int = field(default_factory=default_workers)  # per process
    rot_per_class: tuple[int, int] = (400, 100)  # rot_digits written at root: (train, test) digits of each class
    rot_seed: int = 0  # rot_digits written at root: the split and the angles


@dataclass
class ClsTrainConfig(TrainConfig):
    label_smoothing: float = 0.0
    eval_batch_size: int = 256


@dataclass
class ClsConfig:
    model: ClsModelConfig = field(default_factory=ClsModelConfig)
    data: ClsDataConfig = field(default_factory=ClsDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.1, lr_base_batch=256))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="multistep"))
    train: ClsTrainConfig = field(default_factory=ClsTrainConfig)
    output: str | None = None
    provenance: dict = field(default_factory=dict)


def _table3_encoders() -> list[str]:
    return ["dense_r18_w1", "dense_r18_w2", "dense_r18_w4", "repeat_r18_f2", "repeat_r18_f4",
            "repeat_r18_s2", "repeat_r18_s4", "repeat_r18_l2", "repeat_r18_l4"]


@dataclass
class PretrainStudyConfig:
    """Pretrain every encoder first (train_cls.py), export it, and start segmentation from it.

    Pretraining runs once per (encoder, seed) with the cell's seed, so the spread over seeds
    includes pretraining as well as fine-tuning variance.
    """

    enabled: bool = False
    config: str | None = None  # a configs/cls/*.yaml recipe
    sets: list[str] = field(default_factory=list)  # --set overrides for it
    tag: str = "pretrained"  # weights/<encoder>-<tag>-seed<k>.safetensors


@dataclass
class StudyConfig:
    encoders: list[str] = field(default_factory=_table3_encoders)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    seg_config: str = "configs/seg/voc_unet.yaml"  # the segmentation recipe every cell runs
    seg_sets: list[str] = field(default_factory=list)  # --set overrides for every cell
    weights: dict = field(default_factory=dict)  # encoder -> tag or path ("default" applies to all)
    weights_dir: str | None = None
    pretrain: PretrainStudyConfig = field(default_factory=PretrainStudyConfig)
    qualitative_ids: list[str] = field(default_factory=list)  # val ids for the figure; default: first 4
    # Encoders pretrained with different recipes (repeatseg.recipe) stop the study before it runs;
    # true runs it anyway, and the report says so in its first lines.
    allow_mixed_recipes: bool = False
    # Units recorded on another kind of CPU (timing.jsonl: model, kernels' instruction set) stop the
    # study before it runs more here: their numbers differ at the rounding level and beyond
    # (repeatseg.study.machines); true pools them anyway, and the report lists the kinds.
    allow_mixed_machines: bool = False
    # false: a classification study: its pretraining runs are the study (evaluated every epoch as their
    # recipe says), nothing is exported or fine-tuned; reported by repeatseg.study.classification_report
    cells: bool = True
    # Precision targets (repeatseg.study.precision): after ``seeds``, the runner adds seeds where they
    # shrink the furthest-from-goal standard error most, until every target is met, an encoder has
    # ``max_seeds`` or the study has spent ``budget_unit_hours`` (its units' wall hours, all processes).
    # A target: {quantity: rel_contribution | gap | mean, encoders: [...], se: 0.08 and/or z: 8}.
    targets: list[dict] = field(default_factory=list)
    max_seeds: int = 10
    budget_unit_hours: float | None = None
    output: str | None = None


# ---------------------------------------------------------------------------------------------

# Sizes and counts that must be at least 1 when given (0 would fail deep inside a library).
AT_LEAST_ONE = {"schedule.epochs", "schedule.iters", "data.crop_size", "data.image_size", "train.batch_size",
                "train.eval_batch_size", "train.eval_every", "train.log_every", "train.eval_max_pixels", "train.threads",
                "max_seeds", "model.in_channels", "model.classes", "model.num_classes", "model.decoder_channels"}
# Sizes beyond which one sample cannot fit in memory (a 100,000 px crop is 30 GB before the model).
AT_MOST = {"data.crop_size": 4096, "data.image_size": 4096}
# Numbers that are never negative (a negative lr or worker count fails deep inside torch, or trains nonsense).
NON_NEGATIVE = {"optim.lr", "optim.momentum", "optim.weight_decay", "optim.encoder_lr_mult", "optim.regularization_weight",
                "optim.clip_grad_norm", "schedule.power", "schedule.decay_rate", "schedule.min_lr", "schedule.warmup_iters",
                "schedule.warmup_lr_init", "data.workers", "train.seed", "model.drop_rate", "train.label_smoothing",
                "data.color_jitter", "data.hflip", "budget_unit_hours"}
FRACTIONS = {"data.hflip", "data.crop_pct", "model.drop_rate", "train.label_smoothing"}  # within [0, 1]
OPEN_FRACTIONS = {"train.ema_decay"}  # within (0, 1): 0 would evaluate the raw weights, 1 the first step's
# (low, high) pairs of positive numbers: a reversed range would be sampled as nonsense, not refused.
RANGES = {"data.scale_range", "data.scale"}
# Lists whose items must differ: a repeated class name merges two classes' IoU; a repeated encoder
# or seed counts one training twice.
UNIQUE = {"data.classes", "encoders", "seeds", "schedule.milestones", "train.loggers"}
NOT_EMPTY = {"encoders", "seeds", "data.classes"}
# Fields that become part of a file or folder name (runs/<encoder>, cells/<encoder>/seed<k>,
# weights/<encoder>-<tag>-seed<k>, ImageSets/Segmentation/<split>.txt, ROOT/<split>/): plain names only.
PLAIN_NAMES = {"model.encoder", "model.name", "encoders", "pretrain.tag", "data.split", "data.val_split",
               "data.train_split"}


def is_plain_name(text: str) -> bool:
    """A file or folder name, not a path: no separator, not ``.`` or ``..``, no control characters
    or surrounding spaces."""
    return (bool(text) and text not in (".", "..") and text == text.strip() and "/" not in text and "\\" not in text
            and all(ord(char) >= 32 for char in text))


def _check_list(value: list, key: str) -> None:
    if key in NOT_EMPTY and not value:
        raise ConfigError(f"{key}: must not be empty")
    if key in UNIQUE:
        repeated = sorted({str(v) for v in value if value.count(v) > 1})
        if repeated:
            raise ConfigError(f"{key}: {', '.join(repeated)} given more than once")
    if key in RANGES and len(value) == 2 and not 0 < value[0] <= value[1]:
        raise ConfigError(f"{key}: expected [low, high] with 0 < low <= high, got {list(value)}")
    if key == "seeds" and any(isinstance(v, int) and v < 0 for v in value):
        raise ConfigError(f"{key}: seeds must be >= 0, got {list(value)}")


def _check_range(value: Any, key: str) -> Any:
    """Values no run can use: non-finite floats anywhere (an lr of inf), zero sizes and counts,
    negative rates, reversed ranges, repeated list items, and paths where a name belongs."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: {value} is not a finite number")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in AT_LEAST_ONE and number and value < 1:
        raise ConfigError(f"{key}: must be at least 1, got {value}")
    if key in AT_LEAST_ONE and isinstance(value, (list, tuple)) and any(isinstance(v, int) and v < 1 for v in value):
        raise ConfigError(f"{key}: every value must be at least 1, got {list(value)}")
    if key in AT_MOST and number and value > AT_MOST[key]:
        raise ConfigError(f"{key}: at most {AT_MOST[key]}, got {value}")
    if key in NON_NEGATIVE and number and value < 0:
        raise ConfigError(f"{key}: must be >= 0, got {value}")
    if key in FRACTIONS and number and value > 1:
        raise ConfigError(f"{key}: must be within [0, 1], got {value}")
    if key in OPEN_FRACTIONS and number and not 0 < value < 1:
        raise ConfigError(f"{key}: must be strictly between 0 and 1, got {value}")
    if isinstance(value, (list, tuple)):
        _check_list(list(value), key)
    names = value if isinstance(value, (list, tuple)) else [value]
    if key in PLAIN_NAMES and any(isinstance(v, str) and not is_plain_name(v) for v in names):
        raise ConfigError(f"{key}: {value!r} must be a plain name (it becomes part of a file or folder name): "
                          "no '/', '\\', '..' or surrounding spaces")
    return value


def _check(value: Any, kind: Any, key: str) -> Any:
    """Return ``value`` converted to ``kind`` or raise a ConfigError naming ``key``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _check(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {kind}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is not Ellipsis and len(value) != 2:
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        item_types = args if origin is tuple else (args[0],) * len(value)
        items = [_check(v, t, f"{key}[{i}]") for i, (v, t) in enumerate(zip(value, item_types))]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return from_dict(kind, value, prefix=f"{key}.")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, float):
        return _check_range(value, key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type, values: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (partial) nested dict, checking every key and type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
    return cls(**{k: _check_range(_check(v, hints[k], f"{prefix}{k}"), f"{prefix}{k}") for k, v in values.items()})


def validated(config: Any) -> Any:
    """``config`` (a dataclass built in code, not loaded) checked as loading checks it; returns it."""
    from_dict(type(config), to_dict(config))
    return config


def to_dict(config: Any) -> dict:
    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


# What a resumed run may change: the schedule's length (followed as if planned so, see
# repeatseg.engine.trainer), where the data and weight tags live, how many loader workers, the device
# and how it is driven (compile, channels_last: the same computation), logging, and the evaluation's
# size limit (it refuses, it never changes a result). Everything else decides what is trained, and
# a resume refuses to change it: the split, batch, seed, crop, model, optimiser, schedule shape, ...
FREE_ON_RESUME = {"schedule.epochs", "schedule.iters", "data.root", "model.weights_dir", "data.workers",
                  "train.device", "train.compile", "train.channels_last", "train.log_mode", "train.log_every", "train.loggers",
                  "train.eval_max_pixels", "output", "provenance"}


def _flatten(values: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (dataclass sections only; option dicts stay values)."""
    flat = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in ("model.options", "provenance", "data.affine"):
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def fixed_values(config: Any, free: set[str] = FREE_ON_RESUME) -> dict:
    """``config`` as dotted keys, without ``free`` ones: what a run trains with (JSON-able)."""
    return {key: value for key, value in _flatten(to_dict(config)).items()
            if key not in free and key.split(".")[0] not in free}


def value_differences(before: dict, after: dict) -> list[tuple[str, object, object]]:
    """(key, before, after) for every dotted key on which two ``fixed_values`` disagree."""
    return [(key, before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)]


def config_differences(saved, cfg, free: set[str]) -> list[tuple[str, object, object]]:
    """(key, saved value, new value) for every key outside ``free`` on which ``cfg`` differs from ``saved``."""
    return value_differences(fixed_values(saved, free), fixed_values(cfg, free))


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> dict:
    """``a.b=value`` -> ``{"a": {"b": value}}`` with the value read as YAML (0.02, true, [1, 2])."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text}: the value is not valid YAML ({_first_line(error)})") from error
    out: dict = value
    for part in reversed(dotted.strip().split(".")):
        out = {part: out}
    return out


def _first_line(error: Exception) -> str:
    """A YAML error in one line, with its position (``line 3, column 7``)."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{problem}{where}"


def load_config(
    cls: type,
    files: list[str | Path] = (),
    overrides: list[dict] = (),
    sets: list[str] = (),
) -> Any:
    """Defaults < YAML files (in order) < ``overrides`` dicts (e.g. CLI flags) < ``--set`` strings.

    Starting from the full default instance keeps a config class's own defaults for a section
    (ClsConfig's optim lr 0.1) when a file sets only part of that section.
    """
    values: dict = to_dict(cls())
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not valid YAML: {_first_line(error)}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values = merge(values, loaded)
    for update in [*overrides, *(parse_override(s) for s in sets)]:
        values = merge(values, update)
    return from_dict(cls, values)


def save_config(config: Any, path: str | Path) -> None:
    from .files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
