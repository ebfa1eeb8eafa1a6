"""The study's report: results.csv, results.json, figures/*.png and report.md that embeds them."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

from ..extras import require

require("matplotlib", extra="train").use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..config import SegConfig, StudyConfig, load_config  # noqa: E402
from ..data import IGNORE_INDEX, VOCSegmentation, collate_padded, to_device, voc_palette  # noqa: E402
from ..files import atomic_write_text, write_json  # noqa: E402
from ..layers import cached  # noqa: E402
from ..segmenter import load_segmenter  # noqa: E402
from ..variants import get_variant  # noqa: E402
from .aggregate import (  # noqa: E402
                        PAPER_TABLE3,
                        PAPER_TOP1,
                        Row,
                        gap,
                        paired_gap,
                        paper_relative_contribution,
                        read_cell,
                        read_top1,
                        summarise,
                        timing_records,
)
from .machines import machine_lines  # noqa: E402
from .recipes import describe, encoder_recipes  # noqa: E402
from .runner import plan_cells, plan_pretraining, plan_units  # noqa: E402
from .validity import diagnostics_lines, interval_lines  # noqa: E402

CSV_COLUMNS = ["encoder", "family", "reference", "n", "miou_mean", "miou_std", "pixel_acc_mean", "pixel_acc_std",
               "rel_contribution", "rel_contribution_std", "kept_per_byte", "kept_per_byte_se", "trainable_params",
               "packed_bytes", "stored_bits_per_weight", "macs", "train_images_per_s", "paper_miou", "paper_pixel_acc",
               "top1_n", "top1_mean", "top1_std", "top1_rel_contribution", "top1_rel_contribution_std", "paper_top1"]
FIGURES = ("miou_vs_storage.png", "contribution_vs_bits.png", "per_class_iou.png", "qualitative.png",
           "training_curves.png")
MARKERS = ("o", "^", "s", "v", "D", "P", "X", "*", "<", ">")  # one per width in the bits figure


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def write_tables(rows: list[Row], study_dir: Path, extra: dict) -> None:
    with open(study_dir / "results.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow(["" if _clean(getattr(row, c)) is None else getattr(row, c) for c in CSV_COLUMNS])
    write_json(study_dir / "results.json", {
        **extra, "rows": [{k: _clean(v) for k, v in dataclasses.asdict(row).items()} for row in rows]})


# ------------------------------------------------------------------------------------------ figures

def plot_miou_vs_storage(rows: list[Row], path: Path) -> None:
    """mIoU against stored MiB (left) and against MACs (right): a line per dense family and base width
    (solid, then dashed, dotted for narrower bases), every other family's points by group in its
    variant's ``style``, error bars std over seeds; the paper's Table 3 in grey."""
    measured = [r for r in rows if r.n]
    variants = {r.encoder: get_variant(r.encoder) for r in measured}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    axes_spec = ((axes[0], lambda r: r.packed_bytes / 2**20, "stored size of the segmenter, MiB (packed; log scale)"),
                 (axes[1], lambda r: r.macs / 1e9, "GMACs per image at the crop size (log scale)"))
    dense = [r for r in measured if variants[r.encoder].is_dense]
    lines = list(dict.fromkeys((r.label, variants[r.encoder].base_width) for r in dense))  # one per family and base
    groups = list(dict.fromkeys(r.label for r in measured if not variants[r.encoder].is_dense))
    for ax, x, xlabel in axes_spec:
        for label, base in sorted(lines, key=lambda line: -line[1]):
            line = sorted((r for r in dense if (r.label, variants[r.encoder].base_width) == (label, base)), key=x)
            style = variants[line[0].encoder].style
            narrower = sum(1 for other, other_base in lines if other == label and other_base > base)
            ax.errorbar([x(r) for r in line], [100 * r.miou_mean for r in line], yerr=[100 * r.miou_std for r in line],
                        fmt=("-", "--", ":", "-.")[narrower % 4] + style["marker"], color=style["color"], capsize=3,
                        label=f"{label} (base width {base})")
        for group in groups:
            points = [r for r in measured if r.label == group]
            style = variants[points[0].encoder].style
            ax.errorbar([x(r) for r in points], [100 * r.miou_mean for r in points],
                        yerr=[100 * r.miou_std for r in points], fmt=style["marker"], color=style["color"], capsize=3,
                        label=group)
        paper = [r for r in rows if r.paper_miou is not None]
        if paper:
            ax.scatter([x(r) for r in paper], [100 * r.paper_miou for r in paper], facecolors="none",
                       edgecolors="grey", marker="D", label="paper's Table 3")
        values = [x(r) for r in measured]
        if values and max(values) > 10 * min(values):  # a log axis only where the range spans decades
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            xlabel = xlabel.replace(" (log scale)", "").replace("; log scale", "")
        ax.set_xlabel(xlabel)
        ax.locator_params(axis="x", nbins=6)
        ax.grid(alpha=0.3)
        annotate_apart(ax, [(x(r), 100 * r.miou_mean, r.encoder) for r in measured])
    axes[0].set_ylabel("val mIoU, % (mean ± std over seeds)")
    axes[0].set_title("mIoU against storage")
    axes[1].set_title("mIoU against compute")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def annotate_apart(ax, points: list[tuple[float, float, str]], fontsize: float = 6) -> None:
    """Label every (x, y, text) beside its point, moving a label up until it is ``gap_pt`` points
    clear of every label placed near it (1.5 font sizes; points within 120 pt horizontally), with a thin leader
    line where it moved far: labels of points close together never overlap."""
    ax.autoscale_view()
    gap_pt = 1.5 * fontsize
    to_pt = 72 / ax.figure.dpi
    placed: list[tuple[float, float]] = []
    for x, y, text in sorted(points, key=lambda point: point[1]):
        px, py = ax.transData.transform((x, y)) * to_pt
        label_y = py + 3
        while any(abs(ox - px) < 120 and abs(oy - label_y) < gap_pt for ox, oy in placed):
            label_y += gap_pt / 2
        placed.append((px, label_y))
        moved = label_y - py > 10
        ax.annotate(text, (x, y), xytext=(5, label_y - py), textcoords="offset points", fontsize=fontsize,
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "grey"} if moved else None)


def plot_contribution_vs_bits(rows: list[Row], path: Path) -> None:
    """What the bits buy: relative contribution (± its SE) of every width-family encoder against the
    mask bits it stores per generated weight (0 for seeded or float-only transforms, 1 for f),
    one colour per transform and one marker per width, x on a symmetric log axis (0 included)."""
    points = [r for r in rows if r.n and get_variant(r.encoder).bits_figure and r.rel_contribution is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    widths = sorted({get_variant(r.encoder).width for r in points})
    labels = list(dict.fromkeys(r.label for r in points))
    colours = [get_variant(next(r.encoder for r in points if r.label == label)).style["color"] for label in labels]
    for index, (label, colour) in enumerate(zip(labels, colours)):
        for offset, (width, marker) in enumerate(zip(widths, MARKERS)):
            group = [r for r in points if r.label == label and get_variant(r.encoder).width == width]
            if group:  # nudged sideways by a few points so that encoders at the same x stay apart
                nudge = matplotlib.transforms.ScaledTranslation((index * len(widths) + offset) * 0.05 - 0.2, 0,
                                                                fig.dpi_scale_trans)
                ax.errorbar([r.stored_bits_per_weight for r in group], [100 * r.rel_contribution for r in group],
                            yerr=[100 * (r.rel_contribution_std or 0) for r in group], fmt=marker, color=colour,
                            capsize=3, label=f"{label} {width}x", transform=ax.transData + nudge)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(100, color="grey", lw=0.8, ls="--")
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlim(-3e-4, 2.0)  # nudged artists do not update the data limits: set both axes
    spans = [100 * (r.rel_contribution + sign * (r.rel_contribution_std or 0)) for r in points for sign in (-1, 1)]
    low, high = min([0.0, *spans]), max([100.0, *spans])
    ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_xlabel("stored mask bits per generated weight (symmetric log; 0 = none)")
    ax.set_ylabel("relative contribution, % (± SE)")
    ax.set_title("What the stored bits buy")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_per_class(rows: list[Row], path: Path) -> None:
    measured = [r for r in rows if r.n]
    classes = [c for c in (measured[0].per_class_iou if measured else {})
               if any(r.per_class_iou.get(c) is not None for r in measured)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(classes) * max(1, len(measured)) ** 0.5), 4.5))
    width = 0.8 / max(1, len(measured))
    for i, row in enumerate(measured):
        values = [100 * (row.per_class_iou.get(c) or 0.0) for c in classes]
        ax.bar(np.arange(len(classes)) + i * width, values, width, label=row.encoder)
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("IoU, % (mean over seeds)")
    ax.set_title("Per-class IoU")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _colour(mask: np.ndarray) -> np.ndarray:
    palette = voc_palette()
    coloured = palette[mask]
    coloured[mask == IGNORE_INDEX] = 255
    return coloured


@torch.no_grad()
def prediction_panel(dataset: VOCSegmentation, indices: list[int], models: list[tuple[str, torch.nn.Module]],
                     path: Path) -> None:
    """One row per sample: image, ground truth (void white), then each model's prediction."""
    columns = 2 + len(models)
    fig, axes = plt.subplots(len(indices), columns, figsize=(1.9 * columns, 1.9 * len(indices)), squeeze=False)
    samples = [dataset[i] for i in indices]
    for row_axes, (image, mask, _) in zip(axes, samples):
        row_axes[0].imshow(image.permute(1, 2, 0).numpy())
        row_axes[1].imshow(_colour(mask.numpy()))
    for column, (_, model) in enumerate(models, start=2):
        model.eval()
        with cached(model):
            predictions = [model(to_device(collate_padded([sample])[0], torch.device("cpu"))).argmax(1)[0]
                           for sample in samples]
        for row_axes, sample, prediction in zip(axes, samples, predictions):
            height, width = collate_padded([sample])[3][0].tolist()
            row_axes[column].imshow(_colour(prediction[:height, :width].numpy().astype(np.uint8)))
    for column, title in enumerate(["image", "ground truth", *[title for title, _ in models]]):
        axes[0][column].set_title(title, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_qualitative(rows: list[Row], study: StudyConfig, path: Path) -> None:
    """Image, ground truth and each encoder's prediction (its lowest-seed run) for a few val ids."""
    measured = [r for r in rows if r.n]
    if not measured:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no finished cells yet", ha="center")
        ax.axis("off")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return
    from ..engine.seg import segmentation_root

    cfg = load_config(SegConfig, [Path(measured[0].runs[0]) / "config.yaml"])
    dataset = VOCSegmentation(segmentation_root(cfg), cfg.data.val_split, class_names=cfg.data.classes)
    ids = study.qualitative_ids or dataset.ids[:4]
    indices = [dataset.ids.index(i) for i in ids if i in dataset.ids]
    prediction_panel(dataset, indices, [(r.encoder, load_segmenter(sorted(r.runs)[0])[0]) for r in measured], path)


def plot_training_curves(rows: list[Row], path: Path) -> None:
    fig, (loss_ax, miou_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for index, row in enumerate(r for r in rows if r.n):
        colour = f"C{index % 10}"
        for run_number, run in enumerate(sorted(row.runs)):
            records = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
            train = [r for r in records if "loss" in r]
            val = [r for r in records if "val" in r]
            label = row.encoder if run_number == 0 else None
            loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], color=colour, alpha=0.7, label=label)
            miou_ax.plot([r["epoch"] for r in val], [100 * r["val"]["miou"] for r in val], "-o", color=colour,
                         markersize=3, alpha=0.7, label=label)
    loss_ax.set(xlabel="iteration", ylabel="training loss", title="Training loss (every seed)")
    miou_ax.set(xlabel="epoch", ylabel="val mIoU, %", title="Validation mIoU (every seed)")
    for ax in (loss_ax, miou_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ report

def _pm(mean, std, scale=100.0, digits=1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _spread(row: Row, key: str = "miou_std") -> float | None:
    """A row's std over seeds, or None with one run (a single run has no spread to show)."""
    return getattr(row, key) if row.n > 1 else None


def variance_note(study: StudyConfig) -> str:
    """Which sources of variance the spread over seeds includes."""
    if study.pretrain.enabled:
        return ("Each seed pretrains its own encoder and fine-tunes it, so the spread includes pretraining and "
                "fine-tuning variance (initialisation, data order, augmentation); the data set, its split and the "
                "validation scenes are fixed.")
    return ("The encoder weights are the same for every seed, so the spread includes fine-tuning variance only "
            "(decoder initialisation, data order, augmentation), not that of pretraining.")


def effect_lines(rows: list[Row], per_seed: dict[str, dict[str, dict[int, float]]]) -> list[str]:
    """Width effect of the dense models: gap to dense 1x, its standard error and their ratio, unpaired
    and paired by seed, for each metric in ``per_seed`` (metric label -> encoder -> seed -> value,
    fractions)."""
    names = {r.encoder for r in rows}
    lines = []
    for row in rows:
        narrow = get_variant(row.encoder).widened_from
        if narrow is None:
            continue
        base = narrow.name
        if base not in names:
            continue
        for label, values in per_seed.items():
            wide, narrow = values.get(row.encoder, {}), values.get(base, {})
            if wide and narrow:
                value, se = gap(list(wide.values()), list(narrow.values()))
                paired, paired_se, pairs = paired_gap(wide, narrow)
                lines.append(f"| {row.encoder} - {base} | {label} | {100 * value:+.2f} | {_se(se)} | {_ratio(value, se)} "
                             f"| {len(wide)}, {len(narrow)} | {100 * paired:+.2f} | {_se(paired_se)} "
                             f"| {_ratio(paired, paired_se)} | {pairs} |")
    if not lines:
        return []
    return ["## Width effect", "",
            "Difference of seed means in points, its standard error (from the two means' standard errors) and "
            "their ratio; n = runs behind each mean. Paired: the mean of the per-seed differences and its "
            "standard error over the seeds both have (within a seed both runs see the same data order and "
            "augmentations, so pairing removes that shared variance; initialisations still differ).", "",
            "| comparison | metric | gap | SE | gap / SE | n | paired gap | paired SE | paired gap / SE | pairs |",
            "|---|---|---|---|---|---|---|---|---|---|", *lines, ""]


def _se(se: float) -> str:
    return "-" if math.isnan(se) else f"{100 * se:.2f}"


def _ratio(value: float, se: float) -> str:
    return "-" if math.isnan(se) or se == 0 else f"{value / se:.1f}"


def classification_lines(rows: list[Row]) -> list[str]:
    """The pretraining side (the paper's Table 1 form): top-1 and relative contribution in accuracy."""
    if not any(r.top1_n for r in rows):
        return []
    lines = ["## Pretraining (classification)", "",
             "Top-1 of every pretrained classifier on the held-out split, in %, mean ± sample std over seeds (n); "
             "relative contribution in accuracy as above. The paper's column is its ImageNet top-1 (Table 2).", "",
             "| encoder | n | top-1 | rel. contribution | paper top-1 |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.encoder} | {r.top1_n} | {_pm(r.top1_mean, r.top1_std, digits=2)} "
                     f"| {_pm(r.top1_rel_contribution, r.top1_rel_contribution_std)} | {_pm(r.paper_top1, None, digits=2)} |")
    return [*lines, ""]


def timing_lines(study_dir: Path) -> list[str]:
    """Total and per-kind wall time of the units run, with the machine load seen around them."""
    records = timing_records(study_dir)
    if not records:
        return []
    total = sum(r["seconds"] for r in records)
    parts = []
    for kind in ("pretrain", "cell"):
        chosen = [r["seconds"] for r in records if r["kind"] == kind]
        if chosen:
            parts.append(f"{kind}: {len(chosen)} units, {sum(chosen) / 60:.1f} min")
    loads = [r[k] for r in records for k in ("load_before", "load_after")]
    return ["## Wall time", "",
            f"{total / 60:.1f} minutes of units run ({'; '.join(parts)}) on {records[0].get('cpus', '?')} CPUs; "
            f"1-minute load average around the units {min(loads):.1f}-{max(loads):.1f} (median "
            f"{sorted(loads)[len(loads) // 2]:.1f}). Per unit: `timing.jsonl`.", ""]


def recipe_lines(study: StudyConfig, study_dir: Path | None) -> list[str]:
    """The report's first lines when the encoders were pretrained with different recipes (which
    encoders, which recipes); nothing when they share one."""
    if study_dir is None:
        return []
    try:
        recipes = encoder_recipes(study, study_dir)
    except (FileNotFoundError, ValueError) as error:
        return [f"**Pretraining recipes unknown**: the weights could not be read ({error}).", ""]
    if len(recipes) <= 1:
        return []
    return ["**Mixed pretraining recipes** (`allow_mixed_recipes: true`): these encoders were not pretrained "
            "alike, so the differences between them below mix the encoders' effect with the recipes'.", "",
            *(f"- {line}" for line in describe(recipes)), ""]


def markdown(rows: list[Row], study: StudyConfig, seg: SegConfig, input_size: int, study_dir: Path | None = None,
             per_seed: dict[str, dict[str, dict[int, float]]] | None = None, sections: list[str] | None = None) -> str:
    lines = [
        "# Transfer study: parameter-sharing vs dense encoders under one U-Net",
        "",
        *recipe_lines(study, study_dir),
        *machine_lines(study_dir),
        f"Segmentation recipe `{study.seg_config}` ({seg.data.dataset}, split {seg.data.split} -> {seg.data.val_split}, "
        f"crop {seg.data.crop_size}); seeds {study.seeds}; encoder weights: "
        + ("pretrained in this study (`pretrain/`)" if study.pretrain.enabled else
           (json.dumps(study.weights) if study.weights else "none (from scratch)")) + ".",
        "",
        "mIoU and pixel accuracy in %, mean ± sample std over seeds (n runs; no spread with one run). Relative contribution = "
        "(M - lower) / (upper - lower) on the seed means, ± its first-order propagated uncertainty from the "
        "standard errors of the three means: for RepeatNet (a width family) the paper's (dense same width, "
        "dense 1x); for a compression family (shared bases, DACNN; smaller than dense 1x) (dense 1x, dense 1x "
        "at half the base width). Kept per byte = (mIoU / mIoU of the dense model it is compared with, `vs`) / "
        "(stored bytes / its stored bytes), ± its standard error. " + variance_note(study) + " "
        "Parameters, storage and MACs "
        f"are for the whole segmenter; MACs at {input_size}x{input_size}. The paper's columns are its own "
        "claims (Table 3, ImageNet-pretrained encoders, their recipe), not reproduced here unless the "
        "recipe matches.",
        "",
        "| encoder | n | mIoU | pixel acc | rel. contribution | vs | kept per byte | paper mIoU | paper pixel acc "
        "| paper rel. contr. | trainable params | packed MiB | GMACs | train img/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper_rc = paper_relative_contribution(r.encoder)
        lines.append(
            f"| {r.encoder} | {r.n} | {_pm(r.miou_mean, _spread(r))} | {_pm(r.pixel_acc_mean, _spread(r, 'pixel_acc_std'))} "
            f"| {_pm(r.rel_contribution, r.rel_contribution_std)} | {r.reference} "
            f"| {_pm(r.kept_per_byte, r.kept_per_byte_se, scale=1.0, digits=2)} | {_pm(r.paper_miou, None)} "
            f"| {_pm(r.paper_pixel_acc, None)} | {_pm(paper_rc, None)} | {r.trainable_params / 1e6:.2f}M "
            f"| {r.packed_bytes / 2**20:.1f} | {r.macs / 1e9:.3g} "
            f"| {'-' if r.train_images_per_s is None else f'{r.train_images_per_s:.1f}'} |")
    lines += ["", *effect_lines(rows, per_seed or {}), *(sections or []), *classification_lines(rows)]
    if study_dir is not None:
        lines += timing_lines(study_dir)
    lines += ["## Figures", ""]
    captions = {
        "miou_vs_storage.png": "mIoU against stored megabytes and against MACs: dense lines, every other family's "
                               "points (error bars: std over seeds).",
        "contribution_vs_bits.png": "Relative contribution (± SE) of every RepeatNet transform against the mask "
                                    "bits it stores per generated weight.",
        "per_class_iou.png": "Per-class IoU of every encoder (mean over seeds).",
        "qualitative.png": "Image, ground truth and each encoder's prediction (lowest seed) on fixed val images.",
        "training_curves.png": "Training loss and validation mIoU of every run.",
    }
    for name in FIGURES:
        lines += [f"![{captions[name]}](figures/{name})", "", f"*{captions[name]}*", ""]
    lines += ["## Provenance", "", "| encoder | runs | encoder weights sha256 |", "|---|---|---|"]
    for r in rows:
        runs = "<br>".join(f"`{run}`" for run in r.runs) or "-"
        lines.append(f"| {r.encoder} | {runs} | {', '.join(s[:16] for s in r.weights_sha256) or '-'} |")
    missing = [r.encoder for r in rows if r.n < len(study.seeds)]  # added seeds only ever add runs
    if missing:
        lines += ["", f"**Incomplete:** {', '.join(missing)} have fewer finished runs than seeds."]
    return "\n".join(lines) + "\n"


def write_report(study: StudyConfig, study_dir: Path) -> list[Row]:
    """Aggregate every finished cell and (re)write results, figures and report.md."""
    cells = [cell for plan in plan_cells(study, study_dir)
             if (cell := read_cell(plan.run_dir, plan.encoder, plan.seed)) is not None]
    top1: dict[str, list[float]] = {}
    top1_by_seed: dict[str, dict[int, float]] = {}
    for unit in plan_pretraining(study, study_dir):
        if (value := read_top1(unit.run_dir)) is not None:
            top1.setdefault(unit.encoder, []).append(value)
            top1_by_seed.setdefault(unit.encoder, {})[unit.seed] = value
    seg = load_config(SegConfig, [Path(cells[0].run_dir) / "config.yaml"]) if cells else \
        load_config(SegConfig, [study.seg_config], sets=study.seg_sets)
    rows = summarise(cells, study.encoders, seg.data.crop_size, seg.model.classes or 21, top1,
                     seg.model.decoder_channels)
    per_seed = {"mIoU": {name: {c.seed: c.miou for c in cells if c.encoder == name} for name in study.encoders},
                "top-1": top1_by_seed}
    samples = {name: list(values.values()) for name, values in per_seed["mIoU"].items()}
    uncertainty, intervals = interval_lines(study, samples, "mIoU")
    validity, checks = diagnostics_lines(study, study_dir, plan_units(study, study_dir))
    write_tables(rows, study_dir, {"seeds": study.seeds, "seg_config": study.seg_config,
                                   "macs_input_size": seg.data.crop_size, "paper_table3": PAPER_TABLE3,
                                   "paper_top1": PAPER_TOP1, "variance": variance_note(study),
                                   "intervals": intervals, "diagnostics": checks})
    figures = study_dir / "figures"
    figures.mkdir(exist_ok=True)
    plot_miou_vs_storage(rows, figures / FIGURES[0])
    plot_contribution_vs_bits(rows, figures / FIGURES[1])
    plot_per_class(rows, figures / FIGURES[2])
    plot_qualitative(rows, study, figures / FIGURES[3])
    plot_training_curves(rows, figures / FIGURES[4])
    atomic_write_text(study_dir / "report.md", markdown(rows, study, seg, seg.data.crop_size, study_dir, per_seed,
                                                         uncertainty + validity))
    return rows
