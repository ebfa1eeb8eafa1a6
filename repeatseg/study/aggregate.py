"""From finished cells to one row per encoder: means, spreads, relative contribution, accounting.

Relative contribution: (M - lower) / (upper - lower) on the seed means of mIoU, with (upper,
lower) the variant's ``contrast``: for a width family (RepeatNet) the paper's definition, (dense
of the same width, dense 1x); for a compression family (shared bases, DACNN), (dense 1x, dense 1x
at half the base width). Its uncertainty is propagated to first order (delta method) from the
standard errors of the three means (sample std / sqrt(n)); with one seed per encoder it is
undefined (NaN). The same is computed on the pretrained classifiers' top-1 (the paper's Table 1
form) when the study pretrains.

Kept per stored byte: (M / M_ref) / (bytes / bytes_ref) with ref = the variant's ``reference``
(the dense model it is compared with; 1 for a dense model), its uncertainty from the two means'
standard errors (the byte counts are exact).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..variants import get_variant

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


def read_summary(path: Path, required: tuple[str, ...]) -> dict:
    """A finished run's ``metrics.json``, checked: a JSON object whose ``required`` entries are
    finite numbers. Anything else is a ValueError naming the file (a report never averages it in)."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"{path} is not valid JSON ({error}): the run's summary is damaged; rerun its unit "
                        "(remove the file to have the study train it again)") from error
    if not isinstance(summary, dict):
        raise DataError(f"{path} holds a {type(summary).__name__}, not a run summary (a JSON object)")
    for key in required:
        value = summary.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(f"{path}: {key} is {value!r}, not a finite number")
    return summary


def read_cell(run_dir: Path, encoder: str, seed: int) -> Cell | None:
    """The cell's result if it finished (its metrics.json exists), else None."""
    summary_path = run_dir / "metrics.json"
    if not summary_path.is_file():
        return None
    summary = read_summary(summary_path, ("miou", "pixel_acc"))
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
    return read_summary(summary_path, ("top1",))["top1"] if summary_path.is_file() else None


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


def paired_gap(wide: dict[int, float], base: dict[int, float]) -> tuple[float, float, int]:
    """(mean of the per-seed differences wide - base over the seeds both have, its standard error,
    the number of pairs). Within a seed every encoder sees the same data order and augmentation
    draws (seeded by the seed alone), so pairing removes that shared part of the seed's variance."""
    diffs = [wide[seed] - base[seed] for seed in sorted(set(wide) & set(base))]
    if len(diffs) < 2:
        return (diffs[0] if diffs else math.nan), math.nan, len(diffs)
    return statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs)), len(diffs)


def _contribution(name: str, values: dict[str, list[float]]) -> tuple[float | None, float | None]:
    """Relative contribution of an encoder on ``values`` (encoder -> per-seed numbers); None for a
    dense model or when its contrast models were not run."""
    contrast = get_variant(name).contrast
    if contrast is None:
        return None, None
    upper, lower = (v.name for v in contrast)
    if not values.get(upper) or not values.get(lower):
        return None, None
    return relative_contribution(values.get(name, []), values[upper], values[lower])


def kept_per_byte(mine: list[float], reference: list[float], byte_ratio: float) -> tuple[float, float]:
    """(value, standard error) of (mean(mine) / mean(reference)) / byte_ratio."""
    if not mine or not reference or statistics.fmean(reference) == 0:
        return math.nan, math.nan
    m, r = statistics.fmean(mine), statistics.fmean(reference)
    value = m / r / byte_ratio
    if min(len(mine), len(reference)) < 2 or m == 0:
        return value, math.nan
    se_m, se_r = (statistics.stdev(v) / math.sqrt(len(v)) for v in (mine, reference))
    return value, abs(value) * math.hypot(se_m / m, se_r / r)


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
    rel_contribution_std: float | None  # propagated from the standard errors of the means (an SE)
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
    reference: str = ""  # the dense model it is compared with
    family: str = ""
    label: str = ""  # how figures group it: dense, RepeatNet (flip), basis, dacnn, ...
    stored_bits_per_weight: float = 0.0  # mask bits per generated (child) conv weight; 0 for floats only
    kept_per_byte: float | None = None
    kept_per_byte_se: float | None = None
    per_class_iou: dict = field(default_factory=dict)
    runs: list = field(default_factory=list)
    weights_sha256: list = field(default_factory=list)


def summarise(cells: list[Cell], encoders: list[str], input_size: int, classes: int,
              top1: dict[str, list[float]] | None = None, decoder_channels: list[int] | None = None) -> list[Row]:
    """One Row per configured encoder, in the configured order (n = 0 for an encoder with no finished
    cell). ``top1``: encoder -> final top-1 of each of its pretrained classifiers. Sizes and MACs are
    of the U-Net with the recipe's ``decoder_channels``."""
    from ..accounting import bits_per_generated_weight, describe

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
        stats = describe(name, input_size=input_size, segmenter=True, classes=classes, decoder_channels=decoder_channels)
        variant = get_variant(name)
        reference = variant.reference.name
        kept, kept_se = ((1.0, 0.0) if reference == name else  # a dense model keeps all of itself, exactly
                         kept_per_byte(mious[name], mious.get(reference, []), stats.ratio_to_dense["packed_bytes"]))
        paper = PAPER_TABLE3.get(name, {})
        rows.append(Row(
            encoder=name, n=len(group), miou_mean=miou, miou_std=miou_std, pixel_acc_mean=acc, pixel_acc_std=acc_std,
            rel_contribution=rc, rel_contribution_std=rc_std, trainable_params=stats.trainable_params,
            packed_bytes=stats.packed_bytes, macs=stats.macs,
            train_images_per_s=statistics.fmean(speeds) if speeds else None,
            paper_miou=paper.get("miou"), paper_pixel_acc=paper.get("pixel_acc"), top1_n=len(top1.get(name, [])),
            top1_mean=top1_mean, top1_std=top1_std, top1_rel_contribution=top1_rc,
            top1_rel_contribution_std=top1_rc_std, paper_top1=PAPER_TOP1.get(name), reference=reference,
            family=variant.family, label=variant.label, stored_bits_per_weight=bits_per_generated_weight(name),
            kept_per_byte=kept, kept_per_byte_se=kept_se, per_class_iou=per_class,
            runs=[c.run_dir for c in group], weights_sha256=sorted({c.weights_sha256 for c in group if c.weights_sha256}),
        ))
    return rows


def paper_relative_contribution(name: str) -> float | None:
    """The paper's relative contribution for an encoder of its Table 3, from its numbers."""
    contrast = get_variant(name).contrast
    if contrast is None or name not in PAPER_TABLE3:
        return None
    upper, lower = (PAPER_TABLE3.get(v.name) for v in contrast)
    if not upper or not lower:
        return None
    return (PAPER_TABLE3[name]["miou"] - lower["miou"]) / (upper["miou"] - lower["miou"])


def timing_records(study_dir: Path) -> list[dict]:
    """The study's ``timing.jsonl``: one record per unit run (seconds, load, threads, shard, host)."""
    path = study_dir / "timing.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
