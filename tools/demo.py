"""The demo (`make demo`): a small f-RepeatNet 4x pretrained on real digits, fine-tuned on digit
scenes under the study's U-Net, evaluated; prints the metrics and writes a picture of validation
images, their ground truth and the predictions.

    python tools/demo.py                        # runs/demo, data in demo_data/digits (written if absent)
    python tools/demo.py --output runs/demo2 --encoder dense_r18_w4_b8

It is a one-encoder, one-seed transfer study (configs/cls/digits.yaml then configs/seg/demo.yaml):
running it again skips what is finished and resumes what was interrupted.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import _interrupt  # first: Ctrl-C while the rest imports exits 130, no traceback; run() ends the tool


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/demo", help="demo folder (a small study folder)")
    parser.add_argument("--encoder", default="repeat_r18_f4_b4")
    parser.add_argument("--seg-config", default="configs/seg/demo.yaml")
    parser.add_argument("--cls-config", default="configs/cls/digits.yaml")
    parser.add_argument("--data-root", help="digits folder (default: the configs', demo_data/digits)")
    parser.add_argument("--figure", help="picture path (default: <output>/predictions.png)")
    parser.add_argument("--samples", type=int, default=6, help="validation scenes in the picture")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (default 1: the documented demo figures were made at 1, and a result "
                             "reproduces at the same thread count only)")
    return parser


if __name__ == "__main__":  # --help and usage errors answer here, before torch and the package load
    get_args_parser().parse_args()

from PIL import Image, PngImagePlugin

import repeatseg  # noqa: F401  (registers the encoders)
from repeatseg.config import PretrainStudyConfig, SegConfig, StudyConfig, load_config
from repeatseg.data import VOCSegmentation, voc_palette
from repeatseg.engine import distributed
from repeatseg.engine.seg import segmentation_root
from repeatseg.errors import OutputError, RepeatsegError
from repeatseg.files import atomic_write_bytes
from repeatseg.metrics import format_table
from repeatseg.outputs import enclosing_dataset
from repeatseg.segmenter import load_segmenter
from repeatseg.study.report import prediction_panel
from repeatseg.study.runner import plan_cells, run_study

FIGURE_MARK = ("Software", "repeatseg demo")  # a PNG text chunk: the demo replaces only its own picture


def check_figure(figure: Path, demo_folder: Path) -> None:
    """Refuse a --figure that would replace a file the demo did not write, or land in a dataset
    (the demo folder is the demo's own: its picture there is replaced on every run)."""
    if demo_folder.resolve() in figure.resolve().parents:
        return
    dataset = enclosing_dataset(figure.parent)
    if dataset is not None:
        raise OutputError(f"--figure {figure} is inside the dataset {dataset}: write it outside")
    if figure.exists():
        try:
            with Image.open(figure) as image:
                ours = image.text.get(FIGURE_MARK[0]) == FIGURE_MARK[1]
        except Exception:  # noqa: BLE001 - not a picture at all
            ours = False
        if not ours:
            raise OutputError(f"--figure {figure} exists and is not a picture the demo wrote: choose another path")


def legend_strip(names: list[str], width: int, swatch: int = 14, pad: int = 6) -> Image.Image:
    """A white strip ``width`` pixels wide naming each class beside its colour (the VOC palette the
    ground truth and predictions are drawn in; void is white), wrapped onto as many rows as needed."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=swatch - 2)
    palette = voc_palette()
    entries = [(tuple(int(c) for c in palette[index]), name) for index, name in enumerate(names)]
    entries.append(((255, 255, 255), "void (ignored)"))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    sizes = [swatch + 4 + int(measure.textlength(name, font=font)) + 2 * pad for _, name in entries]
    rows, row, used = [], [], pad
    for entry, size in zip(entries, sizes):
        if row and used + size > width:
            rows.append(row)
            row, used = [], pad
        row.append((entry, size))
        used += size
    rows.append(row)
    strip = Image.new("RGB", (width, pad + len(rows) * (swatch + pad)), "white")
    draw = ImageDraw.Draw(strip)
    for number, row in enumerate(rows):
        top, left = pad + number * (swatch + pad), pad
        for (colour, name), size in row:
            draw.rectangle([left, top, left + swatch, top + swatch], fill=colour, outline=(120, 120, 120))
            draw.text((left + swatch + 4, top), name, fill="black", font=font)
            left += size
    return strip


def finish_figure(figure: Path, class_names: list[str]) -> None:
    """Add the colour legend below the picture and mark it as the demo's (``check_figure``)."""
    with Image.open(figure) as image:
        picture = image.convert("RGB")
    legend = legend_strip(class_names, picture.width)
    combined = Image.new("RGB", (picture.width, picture.height + legend.height), "white")
    combined.paste(picture, (0, 0))
    combined.paste(legend, (0, picture.height))
    info = PngImagePlugin.PngInfo()
    info.add_text(*FIGURE_MARK)
    buffer = io.BytesIO()
    combined.save(buffer, format="PNG", pnginfo=info)
    atomic_write_bytes(figure, buffer.getvalue())


def main(args: argparse.Namespace) -> int:
    out = Path(args.output)
    shared_sets = [f"data.root={args.data_root}"] if args.data_root else []
    shared_sets.append(f"train.threads={args.threads}")
    study = StudyConfig(encoders=[args.encoder], seeds=[0], seg_config=args.seg_config,
                        seg_sets=["train.log_mode=plain", *shared_sets],
                        pretrain=PretrainStudyConfig(enabled=True, config=args.cls_config, tag="digits",
                                                     sets=["train.log_mode=plain", *shared_sets]))
    dist = distributed.setup("cpu")
    try:
        run_study(study, out, dist)
        cell = plan_cells(study, out)[0]
        metrics = json.loads((cell.run_dir / "metrics.json").read_text())
        cfg = load_config(SegConfig, [cell.run_dir / "config.yaml"])
        dataset = VOCSegmentation(segmentation_root(cfg), cfg.data.val_split, class_names=cfg.data.classes)
        figure = Path(args.figure or out / "predictions.png")
        check_figure(figure, out)
        figure.parent.mkdir(parents=True, exist_ok=True)
        model, _ = load_segmenter(cell.run_dir)
        prediction_panel(dataset, list(range(min(args.samples, len(dataset)))), [(args.encoder, model)], figure)
        finish_figure(figure, list(dataset.class_names))
    except RepeatsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to continue ({out})", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    top1 = json.loads((cell.pretrain.run_dir / "metrics.json").read_text())["top1"]
    print(format_table(metrics))
    print(f"{args.encoder}: pretrained top-1 {100 * top1:.2f}% on held-out digits; "
          f"fine-tuned mIoU {100 * metrics['miou']:.2f}% on {len(dataset)} validation scenes")
    print(f"picture (image / ground truth / prediction, colour legend below): {figure}\nrun folder: {cell.run_dir}")
    return 0


if __name__ == "__main__":
    _interrupt.run(main, get_args_parser())
