"""From finished cells to one row per encoder: means, spreads, relative contribution, accounting.

Relative contribution (the paper's definition): (RepeatNet - base) / (dense of the same width -
base), computed on the seed means of mIoU, with base = the dense 1x model of the same family.
Its uncertainty is propagated to first order (delta method) from the standard errors of the
three means (sample std / sqrt(n)); with one seed per encoder it is undefined (NaN). The same is
computed on the pretrained classifiers' top-1 (the paper's Table 1 form) when the study pretrains.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..variants import EncoderVariant, get_variant

# The paper's Table 3 (their claim, U-Net on Pascal VOC; ResNet-18 encoders pretrained on ImageNet).
PAPER_TABLE3 = {
    "dense_r18_w1": {"miou": 0.595, "pixel_acc": 0.894},
    "dense_r18_w2": {"miou": 0.647, "pixel_acc": 0.910},
    "dense_r18_w4": {"miou": 0.680, "pixel_acc": 0.918},
    "repeat_r18_f2": {"miou": 0.621, "pixel_acc": 0.902},
    "repeat_r18_f4": {"miou": 0.645, "pixel_acc": 0.907},
}


# The paper's ImageNet top-1 (Table 2, ResNet-18; their claim), in the same form.
PAPER_TOP1 = {"dense_r18_w1": 0.6624, "dense_r18_w2": 0.7267, "dense_r18_w4": 0.766,
              "repeat_r18_f2": 0.6996, "repeat_r18_f4": 0.7241}


@dataclass
class Cell:
    """One finished segmentation run of the study."""

    encoder: str
    seed: int
    run_dir: str
    miou: float
    pixel_acc: float
    per_class_iou: dict
    train_images_per_s: float | None = None
    weights_sha256: str | None = None


def read_cell(run_dir: Path, encoder: str, seed: int) -> Cell | None:
    """The cell's result if it finished (its metrics.json exists), else None."""
    summary_path = run_dir / "metrics.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    sha = None
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        import yaml

        provenance = (yaml.safe_load(config_path.read_text()) or {}).get("provenance") or {}
        sha = (provenance.get("encoder_weights") or {}).get("sha256")
    return Cell(encoder=encoder, seed=seed, run_dir=str(run_dir), miou=summary["miou"], pixel_acc=summary["pixel_acc"],
                per_class_iou=summary.get("per_class_iou", {}), train_images_per_s=summary.get("train_images_per_s"),
                weights_sha256=sha)


def read_top1(run_dir: Path) -> float | None:
    """A finished pretraining run's final top-1, else None."""
    summary_path = run_dir / "metrics.json"
    return json.loads(summary_path.read_text()).get("top1") if summary_path.is_file() else None


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def relative_contribution(repeat: list[float], dense: list[float], base: list[float]) -> tuple[float, float]:
    """(value, propagated standard deviation) of (R - B) / (D - B) over seed means."""
    if not (repeat and dense and base):
        return math.nan, math.nan
    r, d, b = (statistics.fmean(v) for v in (repeat, dense, base))
    gap = d - b
    if gap == 0:
        return math.nan, math.nan
    value = (r - b) / gap
    if min(len(repeat), len(dense), len(base)) < 2:
        return value, math.nan
    se = [statistics.stdev(v) / math.sqrt(len(v)) for v in (repeat, dense, base)]
    partials = [1 / gap, -(r - b) / gap**2, (r - d) / gap**2]  # d/dR, d/dD, d/dB
    return value, math.sqrt(sum((p * s) ** 2 for p, s in zip(partials, se)))


def gap(wide: list[float], base: list[float]) -> tuple[float, float]:
    """(mean(wide) - mean(base), its standard error from the two seed means' standard errors)."""
    if len(wide) < 2 or len(base) < 2:
        return (statistics.fmean(wide) - statistics.fmean(base) if wide and base else math.nan), math.nan
    se = [statistics.stdev(v) / math.sqrt(len(v)) for v in (wide, base)]
    return statistics.fmean(wide) - statistics.fmean(base), math.hypot(*se)


def base_of(variant: EncoderVariant) -> EncoderVariant:
    return dataclasses.replace(variant, width=1, transform=None)


def _contribution(name: str, values: dict[str, list[float]]) -> tuple[float | None, float | None]:
    """Relative contribution of a RepeatNet encoder on ``values`` (encoder -> per-seed numbers)."""
    variant = get_variant(name)
    if variant.is_dense:
        return None, None
    twin, base = variant.dense_twin.name, base_of(variant).name
    if not values.get(twin) or not values.get(base):
        return None, None
    return relative_contribution(values.get(name, []), values[twin], values[base])


@dataclass
class Row:
    """One encoder's line of the report. Metric values are fractions in [0, 1]."""

    encoder: str
    n: int
    miou_mean: float
    miou_std: float
    pixel_acc_mean: float
    pixel_acc_std: float
    rel_contribution: float | None
    rel_contribution_std: float | None
    trainable_params: int
    packed_bytes: int
    macs: int
    train_images_per_s: float | None
    paper_miou: float | None = None
    paper_pixel_acc: float | None = None
    top1_n: int = 0  # pretrained classifiers (one per seed when the study pretrains)
    top1_mean: float | None = None
    top1_std: float | None = None
    top1_rel_contribution: float | None = None
    top1_rel_contribution_std: float | None = None
    paper_top1: float | None = None
    per_class_iou: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)
    weights_sha256: list = field(default_factory=list)


def summarise(cells: list[Cell], encoders: list[str], input_size: int, classes: int,
              top1: dict[str, list[float]] | None = None) -> list[Row]:
    """One Row per configured encoder, in the configured order (n = 0 for an encoder with no finished
    cell). ``top1``: encoder -> final top-1 of each of its pretrained classifiers."""
    from ..accounting import describe

    top1 = top1 or {}
    by_encoder = {name: [c for c in cells if c.encoder == name] for name in encoders}
    mious = {name: [c.miou for c in group] for name, group in by_encoder.items()}
    rows = []
    for name in encoders:
        group = by_encoder[name]
        miou, miou_std = mean_std(mious[name])
        acc, acc_std = mean_std([c.pixel_acc for c in group])
        rc, rc_std = _contribution(name, mious)
        top1_mean, top1_std = mean_std(top1.get(name, []))
        top1_rc, top1_rc_std = _contribution(name, top1)
        per_class = {}
        for cls in (group[0].per_class_iou if group else {}):
            values = [c.per_class_iou.get(cls) for c in group if c.per_class_iou.get(cls) is not None]
            per_class[cls] = statistics.fmean(values) if values else None
        speeds = [c.train_images_per_s for c in group if c.train_images_per_s]
        stats = describe(name, input_size=input_size, segmenter=True, classes=classes)
        paper = PAPER_TABLE3.get(name, {})
        rows.append(Row(
            encoder=name, n=len(group), miou_mean=miou, miou_std=miou_std, pixel_acc_mean=acc, pixel_acc_std=acc_std,
            rel_contribution=rc, rel_contribution_std=rc_std, trainable_params=stats.trainable_params,
            packed_bytes=stats.packed_bytes, macs=stats.macs,
            train_images_per_s=statistics.fmean(speeds) if speeds else None,
            paper_miou=paper.get("miou"), paper_pixel_acc=paper.get("pixel_acc"), top1_n=len(top1.get(name, [])),
            top1_mean=top1_mean, top1_std=top1_std, top1_rel_contribution=top1_rc,
            top1_rel_contribution_std=top1_rc_std, paper_top1=PAPER_TOP1.get(name), per_class_iou=per_class,
            runs=[c.run_dir for c in group], weights_sha256=sorted({c.weights_sha256 for c in group if c.weights_sha256}),
        ))
    return rows


def paper_relative_contribution(name: str) -> float | None:
    """The paper's relative contribution for an encoder of its Table 3, from its numbers."""
    variant = get_variant(name)
    if variant.is_dense or name not in PAPER_TABLE3:
        return None
    twin, base = PAPER_TABLE3.get(variant.dense_twin.name), PAPER_TABLE3.get(base_of(variant).name)
    if not twin or not base:
        return None
    return (PAPER_TABLE3[name]["miou"] - base["miou"]) / (twin["miou"] - base["miou"])
