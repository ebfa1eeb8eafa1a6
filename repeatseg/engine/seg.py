"""Segmentation training and evaluation on VOC-layout data, wired onto the shared Trainer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from ..config import SegConfig, shows_bars
from ..data import IGNORE_INDEX, DataError, VOCSegmentation, collate_padded, to_device, train_transform, voc_palette
from ..data.digits import ensure_digits
from ..data.synthetic import accept_for_config, make_synthetic_voc
from ..data.voc import mask_png
from ..errors import ConfigError
from ..files import atomic_write_bytes
from ..layers import cached
from ..metrics import SegmentationMetrics
from ..outputs import check_owned_folder, fill_owned_folder
from ..segmenter import build_segmenter, decoder_metadata
from ..threads import apply_threads
from ..variants import get_variant
from .distributed import DistInfo, ShardSampler, barrier
from .optim import check_optimizer_name
from .trainer import autocast_dtype, begin_run, build_trainer, run_to_end, seed_everything, start_run, uses_channels_last

SYNTHETIC_ROOT = "demo_data"
DIGITS_ROOT = "demo_data/digits"
DEFAULT_LENGTH = {"iters": 20000}  # when a config gives neither epochs nor iters (mmseg's 20k for VOC)


def segmentation_root(cfg: SegConfig) -> Path | None:
    """Where the VOC-layout set lives: ``data.root`` (defaulted for generated sets); for ``digits`` the
    root holds ``cls/`` and ``seg/`` and the scenes are in ``seg/``."""
    defaults = {"digits": DIGITS_ROOT, "synthetic": SYNTHETIC_ROOT}
    root = cfg.data.root or defaults.get(cfg.data.dataset)
    if root is None:
        return None
    return Path(root) / "seg" if cfg.data.dataset == "digits" else Path(root)


def data_root(cfg: SegConfig, dist: DistInfo) -> Path:
    """The VOC-layout root; generated sets (``synthetic``, ``digits``) are written first if absent."""
    root = segmentation_root(cfg)
    if root is None:
        raise ConfigError("data.root is not set: pass --data-root (the folder holding VOCdevkit)")
    if cfg.data.dataset == "digits":
        if dist.is_main:
            ensure_digits(root.parent, progress=shows_bars(cfg.train.log_mode))
        barrier()
    elif cfg.data.dataset == "synthetic":
        if dist.is_main:  # written once (repeatseg.data.generate); a set of other classes is refused
            classes = tuple(cfg.data.synthetic_classes)
            make_synthetic_voc(root, classes=classes, progress=shows_bars(cfg.train.log_mode),
                               accept=accept_for_config("classes", sorted(set(classes)), "VOC2012/ImageSets"))
        barrier()
    return root


def resolve_classes(cfg: SegConfig, dataset: VOCSegmentation) -> None:
    """Fill ``model.classes`` and ``data.classes`` from the dataset's class list (so the saved config
    says what the run trained on); a ``model.classes`` that disagrees with it is refused."""
    names = list(dataset.class_names)
    if cfg.model.classes is not None and cfg.model.classes != len(names):
        source = "data.classes" if cfg.data.classes else \
            f"{dataset.voc_root / 'ImageSets' / 'Segmentation' / 'classes.txt'} (or VOC's 21 without it)"
        raise ConfigError(f"model.classes is {cfg.model.classes} but the dataset has {len(names)} classes, from {source}; "
                          "remove model.classes to take the dataset's count, or fix the class list")
    cfg.model.classes, cfg.data.classes = len(names), names


def build_loaders(cfg: SegConfig, dist: DistInfo, root: Path) -> tuple[DataLoader, DataLoader]:
    """Training and validation loaders; also resolves the class list into ``cfg`` (see resolve_classes)."""
    if cfg.train.batch_size % dist.world_size:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} is not divisible by {dist.world_size} processes")
    train_set = VOCSegmentation(root, cfg.data.split, seed=cfg.train.seed, class_names=cfg.data.classes,
                                transform=train_transform(cfg.data.crop_size, cfg.data.scale_range, cfg.data.hflip))
    resolve_classes(cfg, train_set)
    preload = cfg.data.dataset == "digits"  # 3,000 tiny scenes: read once, not every epoch
    if preload:
        train_set.preload()
    per_rank = cfg.train.batch_size // dist.world_size
    if len(train_set) < cfg.train.batch_size:
        raise ConfigError(f"split {cfg.data.split!r} has {len(train_set)} images, fewer than one batch of {cfg.train.batch_size}")
    # A seeded DistributedSampler also in one process: the data order depends on (seed, epoch) only.
    sampler = DistributedSampler(train_set, dist.world_size, dist.rank, shuffle=True, seed=cfg.train.seed, drop_last=True)
    loader_args = dict(num_workers=cfg.data.workers, pin_memory=dist.device.type == "cuda",
                       persistent_workers=False)
    train_loader = DataLoader(train_set, per_rank, sampler=sampler, drop_last=True, **loader_args)
    val_loader = val_loader_for(root, cfg.data.val_split, dist, cfg.train.eval_batch_size, cfg.data.workers,
                                class_names=cfg.data.classes, preload=preload, max_pixels=cfg.train.eval_max_pixels)
    return train_loader, val_loader


EVAL_IMAGE_AREA = 512 * 512  # eval_batch_size images of up to this padded area make one batch
PAD_MULTIPLE = 32  # collate_padded's


def _padded(side: int) -> int:
    return -(-side // PAD_MULTIPLE) * PAD_MULTIPLE


class SizeBoundedBatches(Sampler):
    """Evaluation batches of consecutive ``indices`` whose padded size (images x largest height x
    largest width, each rounded up to 32, as ``collate_padded`` pads) stays within ``batch_size``
    images of 512 x 512: so memory is bounded by the batch size whatever the images' sizes. Images
    up to 512 x 512 batch ``batch_size`` at a time; larger ones go in smaller batches, or alone."""

    def __init__(self, indices: list[int], sizes: list[tuple[int, int]], batch_size: int):
        budget = batch_size * EVAL_IMAGE_AREA
        self.batches, batch, height, width = [], [], 0, 0
        for index, (h, w) in zip(indices, sizes):
            grown_h, grown_w = max(height, _padded(h)), max(width, _padded(w))
            if batch and (len(batch) == batch_size or (len(batch) + 1) * grown_h * grown_w > budget):
                self.batches.append(batch)
                batch, grown_h, grown_w = [], _padded(h), _padded(w)
            batch.append(index)
            height, width = grown_h, grown_w
        if batch:
            self.batches.append(batch)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def check_image_sizes(dataset: VOCSegmentation, indices: list[int], max_pixels: int) -> list[tuple[int, int]]:
    """The (height, width) of each image, from its header; one larger than ``max_pixels`` (height x
    width) is refused, naming the file, before anything is evaluated. An unreadable one counts as
    small here: reading it fails with its own message (``check_eval_split`` lists every such file)."""
    sizes = []
    for index in indices:
        try:
            sizes.append(dataset.image_size(index))
        except DataError:
            sizes.append((1, 1))
    for index, (height, width) in zip(indices, sizes):
        if height * width > max_pixels:
            raise DataError(f"image {dataset.paths(index)[0]} is {width}x{height} ({height * width / 1e6:.1f} Mpx), "
                            f"more than train.eval_max_pixels ({max_pixels / 1e6:.1f} Mpx) an evaluation takes at "
                            "once: shrink it, or raise train.eval_max_pixels if the memory allows")
    return sizes


def val_loader_for(root: Path, split: str, dist: DistInfo, batch_size: int, workers: int,
                   class_names: list[str] | None = None, preload: bool = False,
                   max_pixels: int = 4096 * 4096) -> DataLoader:
    """This rank's shard of ``split`` in size-bounded batches (``SizeBoundedBatches``); ``preload``
    reads the split into memory first."""
    val_set = VOCSegmentation(root, split, class_names=class_names)
    indices = ShardSampler(len(val_set), dist.rank, dist.world_size).indices
    batches = SizeBoundedBatches(indices, check_image_sizes(val_set, indices, max_pixels), batch_size)
    if preload:
        val_set.preload()
    return DataLoader(val_set, batch_sampler=batches, collate_fn=collate_padded, num_workers=workers,
                      pin_memory=dist.device.type == "cuda")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, num_classes: int, amp: str = "none",
             channels_last: bool = False, flip: bool = False, on_prediction: Callable | None = None,
             progress: bool = False) -> dict:
    """Metrics over the whole split at original resolution (inputs padded to a multiple of 32,
    predictions cropped back), per-class IoU named by the dataset's class list.
    ``on_prediction(index, prediction)`` sees each cropped map."""
    was_training = model.training
    model.eval()
    names = getattr(loader.dataset, "class_names", None)
    metrics = SegmentationMetrics(num_classes, device=device,
                                  class_names=tuple(names) if names and len(names) == num_classes else None)
    dtype = autocast_dtype(amp, device)
    with cached(model):  # each generated weight once per evaluation (repeatseg.layers.cached)
        for images, masks, indices, sizes in tqdm(loader, desc="eval", unit="batch", disable=not progress, leave=False):
            check_mask_classes(masks, indices, loader.dataset, num_classes)
            inputs = to_device(images, device, channels_last)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(inputs).float()
                if flip:
                    logits = logits + model(inputs.flip(-1)).float().flip(-1)
            prediction = logits.argmax(1)
            metrics.update(prediction, masks.to(device))  # padding is 255 in masks: ignored
            if on_prediction is not None:
                for index, pred, (height, width) in zip(indices.tolist(), prediction, sizes.tolist()):
                    on_prediction(index, pred[:height, :width])
    model.train(was_training)
    return metrics.compute()


PREVIEW_IMAGES = 4  # validation images TensorBoard shows at each evaluation


@torch.no_grad()
def prediction_preview(model: nn.Module, dataset: VOCSegmentation, device: torch.device, count: int = PREVIEW_IMAGES,
                       channels_last: bool = False) -> dict[str, np.ndarray]:
    """``{"val/predictions": grid}``: the first ``count`` validation images, one row each, as
    (image | ground truth | prediction) with classes in the VOC palette (void in its cream);
    the grid is uint8 (H, W, 3), rows padded to the widest image. For TensorBoard (train.loggers)."""
    was_training = model.training
    model.eval()
    palette = voc_palette()
    rows = []
    for index in range(min(count, len(dataset))):
        image, mask = dataset.load(index)
        batch = collate_padded([(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                                 torch.from_numpy(mask), index)])
        with cached(model):
            logits = model(to_device(batch[0], device, channels_last))
        height, width = mask.shape
        prediction = logits.argmax(1)[0, :height, :width].cpu().numpy().astype(np.uint8)
        rgb = image if image.ndim == 3 and image.shape[2] == 3 else np.repeat(image[..., :1], 3, axis=2)
        rows.append(np.concatenate([rgb, palette[mask], palette[prediction]], axis=1))
    model.train(was_training)
    width = max(row.shape[1] for row in rows)
    grid = np.concatenate([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows], axis=0)
    return {"val/predictions": grid}


def check_mask_classes(masks: torch.Tensor, indices: torch.Tensor, dataset: VOCSegmentation, num_classes: int) -> None:
    """Refuse masks holding classes the model does not predict (a DataError naming the file),
    instead of an index error in the loss or a reshape error in the metrics."""
    beyond = (masks >= num_classes) & (masks != IGNORE_INDEX)
    if not bool(beyond.any()):
        return
    row = int(beyond.flatten(1).any(1).nonzero()[0])
    values = sorted({int(v) for v in masks[row][beyond[row]].unique()})
    raise DataError(f"mask {dataset.paths(int(indices[row]))[1]} holds classes {values[:10]}, but the model "
                    f"predicts {num_classes} (model.classes): 0..{num_classes - 1} and {IGNORE_INDEX} allowed")


def check_eval_split(dataset: VOCSegmentation, num_classes: int) -> None:
    """Read every sample of the validation split once before training, so bad validation data
    stops the run at once rather than after the first epoch. Lists every bad file."""
    problems = []
    for index in range(len(dataset)):
        try:
            _, mask = dataset.load(index)
            check_mask_classes(torch.from_numpy(mask)[None], torch.tensor([index]), dataset, num_classes)
        except DataError as error:
            problems.append(str(error))
    if problems:
        raise DataError(f"validation split {dataset.split!r} has {len(problems)} bad sample(s) (nothing was trained):\n  "
                        + "\n  ".join(problems[:20]))


def prediction_writer(dataset: VOCSegmentation, folder: str | Path, force: bool = False, take: bool = True) -> Callable:
    """Writes each prediction as ``<id>.png`` with the VOC palette (atomically), never outside
    ``folder``. The folder is checked and taken first (``repeatseg.outputs``): never one inside the
    dataset or a run folder; a new or empty one, or with ``force`` one of earlier predictions, whose
    files are removed first so no stale prediction survives. Only the process with ``take`` (rank 0)
    takes the folder; the others write into it after a barrier."""
    folder = Path(folder)
    if take:
        check_owned_folder(folder, "predictions", force, "--save-predictions", dataset=dataset.voc_root)
        fill_owned_folder(folder, "predictions", [f"{sample_id}.png" for sample_id in dataset.ids],
                          split=dataset.split, dataset=str(dataset.voc_root))
    barrier()

    def write(index: int, prediction: torch.Tensor) -> None:
        path = folder / f"{dataset.ids[index]}.png"
        if path.parent != folder:  # read_split refuses such ids; a dataset built otherwise might not
            raise DataError(f"image id {dataset.ids[index]!r} would write outside {folder}")
        atomic_write_bytes(path, mask_png(prediction.cpu().numpy().astype(np.uint8)))

    return write


def train_segmentation(cfg: SegConfig, run_dir: str | Path, dist: DistInfo, resume: bool = False) -> dict:
    """Train and evaluate one segmenter; writes the run folder (docs/training.md). Returns final metrics."""
    run_dir = Path(run_dir)
    apply_threads(cfg.train)
    check_optimizer_name(cfg.optim.name)  # before anything is read or written
    seed_everything(cfg.train.seed)
    root = data_root(cfg, dist)
    train_loader, val_loader = build_loaders(cfg, dist, root)
    check_eval_split(val_loader.dataset, cfg.model.classes)
    start_run(run_dir, resume, task="train_seg", is_main=dist.is_main)
    # On resume the checkpoint supplies every weight: the pretrained file is not needed again.
    model = build_segmenter(cfg.model.encoder, classes=cfg.model.classes, in_channels=cfg.model.in_channels,
                            decoder_channels=cfg.model.decoder_channels,
                            encoder_weights=None if resume else cfg.model.encoder_weights,
                            weights_dir=cfg.model.weights_dir,
                            options=get_variant(cfg.model.encoder).recipe_options(cfg.model.options))
    report = model.encoder_weights_report
    if report is not None:  # every number stays traceable to the weights it started from
        cfg.provenance["encoder_weights"] = {"path": report.path, "sha256": report.sha256, "metadata": report.metadata}
    if dist.is_main and not resume:
        begin_run(run_dir, cfg, "train_seg")
    channels_last = uses_channels_last(cfg.train, dist)

    def prepare_batch(batch):
        images, masks, indices = batch
        check_mask_classes(masks, indices, train_loader.dataset, cfg.model.classes)
        return to_device(images, dist.device, channels_last), masks.to(dist.device, non_blocking=True).long()

    def loss_fn(logits, target):
        return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)

    def run_eval(bare_model):
        return evaluate(bare_model, val_loader, dist.device, cfg.model.classes, cfg.train.amp, channels_last,
                        cfg.train.eval_flip, progress=dist.is_main and shows_bars(cfg.train.log_mode))

    def preview(bare_model):
        return prediction_preview(bare_model, val_loader.dataset, dist.device, channels_last=channels_last)

    trainer = build_trainer(
        model, cfg, dist, run_dir, train_loader, prepare_batch=prepare_batch, loss_fn=loss_fn, evaluate=run_eval,
        primary_metric="miou", resume=resume, default_length=DEFAULT_LENGTH, preview=preview,
        about=[f"data: {len(train_loader.dataset)} training images ({cfg.data.split}), {len(val_loader.dataset)} "
               f"validation images ({cfg.data.val_split}), crop {cfg.data.crop_size}, batch {cfg.train.batch_size}",
               "encoder weights: " + ("from the run's checkpoint" if resume else
                                      report.summary() if report is not None else "none (random init)")],
        metadata={"encoder": cfg.model.encoder, "classes": cfg.model.classes, "in_channels": cfg.model.in_channels,
                  "task": "segmentation", "options": model.encoder_variant.option_dict,
                  "decoder_channels": decoder_metadata(cfg.model.decoder_channels)},
    )
    return run_to_end(trainer, encoder=cfg.model.encoder, split=cfg.data.val_split,
                      val_images=len(val_loader.dataset))
