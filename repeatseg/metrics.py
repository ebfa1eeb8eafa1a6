"""Segmentation metrics over a whole split, the VOC way.

One confusion matrix is accumulated over every pixel of the split (void 255 excluded) and IoU is
computed per class from it, then averaged over the classes present. That is torchmetrics'
``MulticlassJaccardIndex(average="macro", ignore_index=255)`` updated per batch and computed
once; averaging per-image IoUs instead inflates the number. Under DDP torchmetrics sums the
states across processes at ``compute()``.
"""

from __future__ import annotations

import torch

from .data.voc import CLASS_NAMES, IGNORE_INDEX
from .errors import ConfigError
from .extras import require

MetricCollection = require("torchmetrics", extra="train").MetricCollection
_classification = require("torchmetrics.classification", extra="train")
MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex = (
    _classification.MulticlassAccuracy, _classification.MulticlassConfusionMatrix, _classification.MulticlassJaccardIndex)


class SegmentationMetrics:
    """mIoU, pixel accuracy, mean class accuracy, per-class IoU (named by ``class_names``) and the
    confusion matrix (fractions), for any number of classes."""

    def __init__(self, num_classes: int = 21, ignore_index: int = IGNORE_INDEX, device=None,
                 class_names: tuple[str, ...] | None = None):
        options = dict(num_classes=num_classes, ignore_index=ignore_index, validate_args=False)
        self.collection = MetricCollection({
            "miou": MulticlassJaccardIndex(average="macro", **options),
            "confusion": MulticlassConfusionMatrix(**options),
            "pixel_acc": MulticlassAccuracy(average="micro", **options),
            "mean_class_acc": MulticlassAccuracy(average="macro", **options),
        }).to(device or "cpu")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names for {num_classes} classes: {list(class_names)[:5]}...")
        # A dataset's own list names its classes; without one, VOC's names fit 21 classes.
        self.class_names = tuple(class_names) if class_names else (
            CLASS_NAMES if num_classes == len(CLASS_NAMES) else tuple(f"class_{i}" for i in range(num_classes)))

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """``prediction`` and ``target``: (N, H, W) class indices; target 255 is ignored."""
        self.collection.update(prediction, target.long())

    def compute(self) -> dict:
        values = self.collection.compute()
        confusion = values["confusion"].double()
        true_positive = confusion.diag()
        union = confusion.sum(0) + confusion.sum(1) - true_positive
        per_class = torch.where(union > 0, true_positive / union.clamp(min=1), torch.nan)
        return {
            "miou": float(values["miou"]),
            "pixel_acc": float(values["pixel_acc"]),
            "mean_class_acc": float(values["mean_class_acc"]),
            # null for a class absent from both targets and predictions
            "per_class_iou": {name: (None if torch.isnan(v) else float(v))
                              for name, v in zip(self.class_names, per_class)},
            "confusion_matrix": values["confusion"].long().tolist(),
        }


def format_table(metrics: dict) -> str:
    """Per-class IoU and the summary numbers, in percent, for the terminal."""
    lines = [f"{'class':<14} {'IoU %':>7}"]
    for name, value in metrics["per_class_iou"].items():
        lines.append(f"{name:<14} {'-' if value is None else f'{100 * value:.2f}':>7}")
    lines.append("-" * 22)
    for key in ("miou", "pixel_acc", "mean_class_acc"):
        lines.append(f"{key:<14} {100 * metrics[key]:>7.2f}")
    return "\n".join(lines)
